"""The local Functions host's parts; `localdev.host` is the entry point (CLI and LocalHost)."""
