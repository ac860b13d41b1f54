"""Transactions: the transaction coordinator (KIP-98) and its ``__transaction_state`` records.

The coordinator's core is sans-I/O, modelled on :mod:`reference_broker.groups`. The broker owns
one (:mod:`reference_broker.broker`), loads and unloads its partitions with the leadership of
``__transaction_state`` (stored through the same internal-topic log as the groups'), answers
its requests in :mod:`reference_broker.handlers.transactions`, and hands the markers of
decided transactions to a :class:`~reference_broker.transactions.marker_channel.MarkerChannel`,
whose requests the driver (:mod:`reference_broker.drivers.txn_sender`) sends to the
partition leaders. The log side is in :mod:`reference_broker.log` and
:mod:`reference_broker.producers` (docs/broker.md, "Transactions in the log"; the coordinator:
"Transactions").

:mod:`~reference_broker.transactions.coordinator` is what callers use (start there: its
docstring is the theory of operation), over :mod:`~reference_broker.transactions.manager` (the
loaded partitions, appends, loading and unloading) and
:mod:`~reference_broker.transactions.metadata` (one transactional id and its transitions);
:mod:`~reference_broker.transactions.state` has the states and their legal transitions,
:mod:`~reference_broker.transactions.log_format` the records of the internal topic,
:mod:`~reference_broker.transactions.storage` the interface to it,
:mod:`~reference_broker.transactions.marker_channel` the markers not yet written and
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
