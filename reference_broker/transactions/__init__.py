"""Transactions: the transaction coordinator (KIP-98) and its ``__transaction_state`` records.

This is the first slice of transactions: the coordinator's core, sans-I/O, modelled on
:mod:`reference_broker.groups`. It is NOT wired into the broker, its request handlers or
ApiVersions yet: the broker still answers InitProducerId with a transactional id and
FindCoordinator for transactions with COORDINATOR_NOT_AVAILABLE (docs/broker.md). Wiring it
comes after the log side of transactions (control batches, the last stable offset,
WriteTxnMarkers, read_committed Fetch) has landed.

:mod:`~reference_broker.transactions.state` has the states and their legal transitions,
:mod:`~reference_broker.transactions.log_format` the records of the internal topic.
"""
