"""Transactions: the transaction coordinator (KIP-98) and its ``__transaction_state`` records.

This is the first slice of transactions: the coordinator's core, sans-I/O, modelled on
:mod:`reference_broker.groups`. It is NOT wired into the broker, its request handlers or
ApiVersions yet: the broker still answers InitProducerId with a transactional id and
FindCoordinator for transactions with COORDINATOR_NOT_AVAILABLE (docs/broker.md), and has no
``transaction.*`` configuration keys. The log side it needs is there (control batches, the
last stable offset, the aborted-transaction index, WriteTxnMarkers, read_committed Fetch:
docs/broker.md, "Transactions in the log"); wiring the coordinator to it (a TransactionStateLog
over the internal topic, markers sent to the partition leaders, the handlers) is the next step.

:mod:`~reference_broker.transactions.coordinator` is what callers use (start there: its
docstring is the theory of operation), over :mod:`~reference_broker.transactions.manager` (the
loaded partitions, appends, loading and unloading) and
:mod:`~reference_broker.transactions.metadata` (one transactional id and its transitions);
:mod:`~reference_broker.transactions.state` has the states and their legal transitions,
:mod:`~reference_broker.transactions.log_format` the records of the internal topic,
:mod:`~reference_broker.transactions.storage` the interface to it and
:mod:`~reference_broker.transactions.config` the settings.
"""

from reference_broker.transactions.config import TransactionConfig
from reference_broker.transactions.coordinator import (
    EndTxnResult,
    InitProducerIdResult,
    MarkerEntry,
    ProducerIdAndEpoch,
    TransactionCoordinator,
    TxnMarkers,
)
from reference_broker.transactions.log_format import TRANSACTION_STATE_TOPIC, partition_for
from reference_broker.transactions.state import TransactionState
from reference_broker.transactions.storage import TransactionStateLog

__all__ = [
    "TRANSACTION_STATE_TOPIC",
    "EndTxnResult",
    "InitProducerIdResult",
    "MarkerEntry",
    "ProducerIdAndEpoch",
    "TransactionConfig",
    "TransactionCoordinator",
    "TransactionState",
    "TransactionStateLog",
    "TxnMarkers",
    "partition_for",
]
