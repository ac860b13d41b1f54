"""The broker settings the transaction coordinator obeys (Kafka's names in comments)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from reference_broker.transactions.log_format import DEFAULT_PARTITIONS


@attrs.frozen(slots=True)
class TransactionConfig:
    """Kafka's defaults (TransactionStateManagerConfig, TransactionLogConfig).

    ``transaction_version`` is the finalized level of the ``transaction.version`` feature
    (KIP-890, KIP-1022): 0 writes ``__transaction_state`` values in version 0; 1 writes the
    flexible version 1; 2 also bumps the epoch on every EndTxn of clients that use it (EndTxn
    v5+) and on the aborts the coordinator itself starts. Kafka 4 clusters start at 2.

    The transaction version is set with ``kconform.transaction.version`` (Kafka sets it as a
    cluster feature, with ``kafka-features``); every broker of a cluster should get the same.
    """

    max_timeout_ms: int = 900_000  # transaction.max.timeout.ms
    state_log_num_partitions: int = DEFAULT_PARTITIONS  # transaction.state.log.num.partitions
    # transaction.abort.timed.out.transaction.cleanup.interval.ms
    abort_timed_out_transaction_cleanup_interval_ms: int = 10_000
    transactional_id_expiration_ms: int = 7 * 24 * 3600 * 1000  # transactional.id.expiration.ms
    # transaction.remove.expired.transaction.cleanup.interval.ms
    remove_expired_transaction_cleanup_interval_ms: int = 3600 * 1000
    # request.timeout.ms: how long an append to __transaction_state may wait for the ISR.
    append_timeout_ms: int = 30_000
    transaction_version: int = 2  # the transaction.version feature level (0, 1 or 2)

    @property
    def log_value_version(self) -> int:
        """The TransactionLogValue version written (TransactionVersion.transactionLogValueVersion)."""
        return 1 if self.transaction_version >= 1 else 0

    def client_transaction_version(self, of_version_2: bool) -> int:
        """The transaction version of a request: 2 when it is one of version 2's (EndTxn 5,
        AddPartitionsToTxn 5) and this coordinator runs version 2, else 0 (Kafka's
        TransactionVersion.transactionVersionForEndTxn and ...ForAddPartitionsToTxn)."""
        return 2 if of_version_2 and self.transaction_version >= 2 else 0

    @classmethod
    def from_broker(cls, get: Callable[[str], Any]) -> TransactionConfig:
        return cls(
            max_timeout_ms=int(get("transaction.max.timeout.ms")),
            state_log_num_partitions=int(get("transaction.state.log.num.partitions")),
            abort_timed_out_transaction_cleanup_interval_ms=int(
                get("transaction.abort.timed.out.transaction.cleanup.interval.ms")),
            transactional_id_expiration_ms=int(get("transactional.id.expiration.ms")),
            remove_expired_transaction_cleanup_interval_ms=int(
                get("transaction.remove.expired.transaction.cleanup.interval.ms")),
            transaction_version=int(get("kconform.transaction.version")),
        )
