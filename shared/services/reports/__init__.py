"""Reports: licences, usage and revenue, read from aggregates (never from history)."""
