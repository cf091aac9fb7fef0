"""Table Storage adapters: entity mapping, the store, generic repositories, the outbox."""
