"""A fake ``__transaction_state`` and a driver for the coordinator's unit tests only.

The fake keeps records per partition in memory; it can fail appends, or hold their completion
until the test releases them (a write in flight). The driver owns the clock and the producer id
counter and writes the coordinator's markers when told to.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

from kio.schema.errors import ErrorCode

from reference_broker.groups.testing import Reply
from reference_broker.transactions.config import TransactionConfig
from reference_broker.transactions.coordinator import (
    EndTxnResult,
    InitProducerIdResult,
    ProducerIdAndEpoch,
    TransactionCoordinator,
    TxnMarkers,
)
from reference_broker.transactions.log_format import TopicPartition
from reference_broker.transactions.metadata import TransactionMetadata
from reference_broker.transactions.storage import AppendCallback, KeyValue

PARTITIONS = 5
TIMEOUT_MS = 60_000


class FakeTransactionStateLog:
    def __init__(self) -> None:
        self.records: dict[int, list[KeyValue]] = {}
        self.fail_with: ErrorCode | None = None
        self.hold = False
        self.held: list[AppendCallback] = []

    def append_committed(
        self, partition: int, records: Sequence[KeyValue], now_ms: int, deadline_ms: int,
        callback: AppendCallback,
    ) -> None:
        if self.fail_with is not None:
            callback(self.fail_with)
            return
        self.records.setdefault(partition, []).extend(records)
        if self.hold:
            self.held.append(callback)
        else:
            callback(None)

    def release(self, error: ErrorCode | None = None) -> None:
        held, self.held = self.held, []
        for callback in held:
            callback(error)

    def replay_partition(self, partition: int) -> Iterator[KeyValue]:
        yield from self.records.get(partition, [])


class Driver:
    """A coordinator over the fake log, every partition loaded at coordinator epoch 0."""

    def __init__(self, transaction_version: int = 2, **config: int) -> None:
        self.config = TransactionConfig(state_log_num_partitions=PARTITIONS,
                                        transaction_version=transaction_version, **config)
        self.now_ms = 1_000_000
        self.storage = FakeTransactionStateLog()
        self._ids = itertools.count(1000)
        self.coordinator_epoch = 0
        self.id_error: ErrorCode | None = None  # what allocating a producer id fails with
        self.coordinator = self.new_coordinator()

    def new_producer_id(self) -> int | ErrorCode:
        return next(self._ids) if self.id_error is None else self.id_error

    def new_coordinator(self) -> TransactionCoordinator:
        coordinator = TransactionCoordinator(self.config, self.storage, self.new_producer_id, self.now_ms)
        for partition in range(PARTITIONS):
            coordinator.load_partition(partition, self.coordinator_epoch, self.now_ms)
        return coordinator

    def fail_over(self) -> TransactionCoordinator:
        """Another coordinator (a new leader epoch) loads every partition from the log."""
        self.coordinator_epoch += 1
        self.coordinator = self.new_coordinator()
        return self.coordinator

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        self.coordinator.tick(self.now_ms)

    def txn(self, transactional_id: str = "t") -> TransactionMetadata:
        metadata = self.coordinator.metadata(transactional_id)
        assert metadata is not None
        return metadata

    # --- requests ------------------------------------------------------------------------

    def init_later(self, transactional_id: str = "t", timeout_ms: int = TIMEOUT_MS,
                   expected: tuple[int, int] | None = None) -> Reply[InitProducerIdResult]:
        reply: Reply[InitProducerIdResult] = Reply()
        self.coordinator.init_producer_id(
            transactional_id, timeout_ms, None if expected is None else ProducerIdAndEpoch(*expected),
            self.now_ms, reply)
        return reply

    def init(self, transactional_id: str = "t", timeout_ms: int = TIMEOUT_MS,
             expected: tuple[int, int] | None = None) -> InitProducerIdResult:
        return self.init_later(transactional_id, timeout_ms, expected).result

    def add_later(self, pid: int, epoch: int, partitions: Iterable[TopicPartition] = (("topic", 0),),
                  transactional_id: str = "t", version: int = 0) -> Reply[ErrorCode]:
        reply: Reply[ErrorCode] = Reply()
        self.coordinator.add_partitions(transactional_id, pid, epoch, partitions, self.now_ms, reply, version)
        return reply

    def add(self, pid: int, epoch: int, partitions: Iterable[TopicPartition] = (("topic", 0),),
            transactional_id: str = "t", version: int = 0) -> ErrorCode:
        return self.add_later(pid, epoch, partitions, transactional_id, version).result

    def end_later(self, pid: int, epoch: int, commit: bool = True, transactional_id: str = "t",
                  version: int | None = None) -> Reply[EndTxnResult]:
        reply: Reply[EndTxnResult] = Reply()
        self.coordinator.end_txn(transactional_id, pid, epoch, commit,
                                 self.config.transaction_version if version is None else version,
                                 self.now_ms, reply)
        return reply

    def end(self, pid: int, epoch: int, commit: bool = True, transactional_id: str = "t",
            version: int | None = None) -> EndTxnResult:
        return self.end_later(pid, epoch, commit, transactional_id, version).result

    def write_markers(self) -> list[TxnMarkers]:
        """Write every marker the coordinator has output, and report them written."""
        markers = self.coordinator.take_markers()
        for m in markers:
            self.coordinator.markers_written(m, self.now_ms)
        return markers
