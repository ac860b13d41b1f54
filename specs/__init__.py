"""The executable model of Kafka semantics (pure Python, no I/O)."""
