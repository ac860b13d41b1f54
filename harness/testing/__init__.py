"""Test helpers that ship with the harness (as trio ships ``trio.testing``): deliberately
wrong brokers that prove the suite notices when Kafka's rules are broken."""
