"""Where the coordinator's records go: the ``__consumer_offsets`` topic, or memory in tests.

:class:`OffsetsLog` is all the coordinator needs from storage: create the topic on first use,
append a few key/value records to one partition, and replay every record at start.
:class:`TopicOffsetsLog` is the broker's, backed by the compacted internal topic's partition logs;
:class:`MemoryOffsetsLog` is a test double (it can be told to fail appends, or to hold their
completion until the test releases it, and a new coordinator can replay it, which is how unit
tests simulate a restart).

Two kinds of append, as in Kafka's GroupMetadataManager:

* :meth:`OffsetsLog.append_committed` is Kafka's ``appendForGroup``: ``requiredAcks`` =
  ``offsets.commit.required.acks`` (-1) and ``timeout`` = ``offsets.commit.timeout.ms``. It is
  refused (NOT_ENOUGH_REPLICAS, nothing appended) while the partition's ISR is smaller than
  ``min.insync.replicas``, and its callback runs once the high watermark has passed the records
  (every ISR member has them), or with NOT_ENOUGH_REPLICAS_AFTER_APPEND,
  NOT_LEADER_OR_FOLLOWER or REQUEST_TIMED_OUT, like an acks=all produce. Offset commits and the
  group metadata written by SyncGroup go this way; on a single node (an ISR of one) the callback
  runs before the call returns.
* :meth:`OffsetsLog.append` appends to the leader's log and returns: tombstones (Kafka's
  ``cleanupGroupMetadata`` appends them with ``requiredAcks`` = 0: a lost tombstone is written
  again by the next cleanup) and the record of a generation's start (kconform's own, see
  :mod:`~reference_broker.groups.persistence`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from kio.schema.errors import ErrorCode

from reference_broker.groups.log_format import OFFSETS_TOPIC
from reference_broker.log import RecordListTooLargeError, RecordTooLargeError
from reference_broker.records import (
    Record,
    RecordError,
    build_batch,
    iter_records,
    scan_valid_prefix,
    validate_batches,
)
from reference_broker.replication import Partition, ReplicationError, Role

if TYPE_CHECKING:
    from reference_broker.broker import Broker

log = logging.getLogger(__name__)

KeyValue = tuple[bytes, bytes | None]
# Called once with None (the records are committed) or an error.
AppendCallback = Callable[[ErrorCode | None], None]

# Kafka's offsets.topic.segment.bytes default; the topic's other settings are Kafka's too:
# compacted, producer compression (GroupCoordinator.offsetsTopicConfigs).
OFFSETS_TOPIC_SEGMENT_BYTES = 100 * 1024 * 1024
_REPLAY_READ_BYTES = 1024 * 1024


class OffsetsLog(Protocol):
    """Storage for the coordinator's records; errors are Kafka errors (ErrorCode)."""

    def partition_count(self) -> int | None:
        """Partitions of the offsets topic, or None while it does not exist."""

    def ensure(self, now_ms: int) -> ErrorCode | None:
        """Create the topic if it is missing; an error if that is impossible."""

    def append(self, partition: int, records: Sequence[KeyValue], now_ms: int) -> ErrorCode | None:
        """Append records to one partition (one batch) without waiting for the followers; an
        error if it failed."""

    def append_committed(
        self, partition: int, records: Sequence[KeyValue], now_ms: int, deadline_ms: int,
        callback: AppendCallback,
    ) -> None:
        """Append records to one partition (one batch) with acks=-1: ``callback`` gets None
        once they are committed (below the high watermark), else an error; it runs
        exactly once, possibly before this returns. ``deadline_ms``: REQUEST_TIMED_OUT then."""

    def replay(self) -> Iterator[KeyValue]:
        """Every stored record, oldest first within each partition."""

    def replay_partition(self, partition: int) -> Iterator[KeyValue]:
        """The records of one partition, oldest first."""


class MemoryOffsetsLog:
    """An in-memory :class:`OffsetsLog` for unit tests.

    ``fail_with`` makes appends fail before anything is stored (as a follower's or a too-small
    ISR's refusal). ``hold`` makes :meth:`append_committed` store the records (as the leader's
    log does) but keep the callback until the test calls :meth:`complete`, as if followers had
    not fetched yet. Otherwise appends are committed at once, as on a single node.
    """

    def __init__(self, partitions: int = 50) -> None:
        self.partitions = partitions
        self.records: dict[int, list[KeyValue]] = {}
        self.created = False
        self.fail_with: ErrorCode | None = None
        self.hold = False
        self.held: list[tuple[int, int, AppendCallback]] = []  # (partition, deadline, callback)

    def partition_count(self) -> int | None:
        return self.partitions if self.created else None

    def ensure(self, now_ms: int) -> ErrorCode | None:
        self.created = True
        return None

    def append(self, partition: int, records: Sequence[KeyValue], now_ms: int) -> ErrorCode | None:
        if self.fail_with is not None:
            return self.fail_with
        assert 0 <= partition < self.partitions
        self.records.setdefault(partition, []).extend(records)
        return None

    def append_committed(
        self, partition: int, records: Sequence[KeyValue], now_ms: int, deadline_ms: int,
        callback: AppendCallback,
    ) -> None:
        error = self.append(partition, records, now_ms)
        if error is not None or not self.hold:
            callback(error)
        else:
            self.held.append((partition, deadline_ms, callback))

    def complete(self, error: ErrorCode | None = None, count: int | None = None) -> int:
        """Finish the oldest ``count`` held appends (all by default) with ``error`` (None: they
        are committed); returns how many were finished."""
        count = len(self.held) if count is None else count
        done, self.held = self.held[:count], self.held[count:]
        for _, _, callback in done:
            callback(error)
        return len(done)

    def replay(self) -> Iterator[KeyValue]:
        for partition in sorted(self.records):
            yield from self.records[partition]

    def replay_partition(self, partition: int) -> Iterator[KeyValue]:
        yield from self.records.get(partition, [])


class TopicOffsetsLog:
    """The broker's ``__consumer_offsets`` topic as an :class:`OffsetsLog`: appends go to the
    partitions this broker leads (a follower refuses them, NOT_LEADER_OR_FOLLOWER).

    ``topic`` names another compacted internal topic with the same needs: the transaction
    coordinator's ``__transaction_state`` (a
    :class:`~reference_broker.transactions.storage.TransactionStateLog`)."""

    def __init__(self, broker: Broker, topic: str = OFFSETS_TOPIC) -> None:
        self._broker = broker
        self._topic = topic

    def partition_count(self) -> int | None:
        record = self._broker.topics.get(self._topic)
        return record.partitions if record is not None else None

    def ensure(self, now_ms: int) -> ErrorCode | None:
        return self._broker.admin.ensure_internal_topic(self._topic, now_ms)

    def _leader(self, partition: int) -> Partition | ErrorCode:
        target = self._broker.partition(self._topic, partition)
        if target is None:
            return ErrorCode.unknown_topic_or_partition
        if target.role is not Role.LEADER:
            return ErrorCode.not_leader_or_follower
        return target

    def _append_to(self, target: Partition, records: Sequence[KeyValue], now_ms: int) -> int | ErrorCode:
        """Append one batch to the leader's log: the offset after it, or an error."""
        batch = bytearray(
            build_batch(
                [Record(i, now_ms, key, value) for i, (key, value) in enumerate(records)],
                base_offset=0,
            )
        )
        try:
            result = target.append_as_leader(batch, validate_batches(batch), now_ms)
        except ReplicationError as exc:
            return exc.error
        except RecordTooLargeError:
            return ErrorCode.message_too_large
        except RecordListTooLargeError:
            return ErrorCode.record_list_too_large
        except RecordError as exc:
            log.error("cannot append to %s-%d: %s", self._topic, target.index, exc)
            return ErrorCode.unknown_server_error
        except OSError as exc:
            log.error("cannot append to %s-%d: %s", self._topic, target.index, exc)
            return ErrorCode.kafka_storage_error
        self._broker.appended_internally(target)
        return result.last_offset + 1

    def append(self, partition: int, records: Sequence[KeyValue], now_ms: int) -> ErrorCode | None:
        target = self._leader(partition)
        if isinstance(target, ErrorCode):
            return target
        outcome = self._append_to(target, records, now_ms)
        return outcome if isinstance(outcome, ErrorCode) else None

    def append_committed(
        self, partition: int, records: Sequence[KeyValue], now_ms: int, deadline_ms: int,
        callback: AppendCallback,
    ) -> None:
        # ReplicaManager.appendRecords with requiredAcks=-1: the min.insync.replicas check
        # before the append, then a DelayedProduce until the HW passes the batch.
        target = self._leader(partition)
        if isinstance(target, ErrorCode):
            callback(target)
            return
        min_isr = self._broker.admin.min_insync_replicas(self._topic)
        try:
            target.check_min_isr(min_isr)
        except ReplicationError as exc:
            callback(exc.error)
            return
        outcome = self._append_to(target, records, now_ms)
        if isinstance(outcome, ErrorCode):
            callback(outcome)
            return
        target.wait_for_commit(
            outcome, min_isr, deadline_ms,
            lambda error: callback(None if error is ErrorCode.none else error),
        )

    def replay(self) -> Iterator[KeyValue]:
        for index in range(self.partition_count() or 0):
            yield from self.replay_partition(index)

    def replay_partition(self, partition: int) -> Iterator[KeyValue]:
        target = self._broker.partition(self._topic, partition)
        if target is None:
            return
        plog = target.log
        offset = plog.log_start_offset
        while offset < plog.log_end_offset:
            data = plog.read(offset, _REPLAY_READ_BYTES).records
            headers, _ = scan_valid_prefix(data)
            if not headers:
                break
            for header in headers:
                if header.is_control:
                    continue
                try:
                    for record in iter_records(data, header):
                        if record.offset >= offset and record.key is not None:
                            yield record.key, record.value
                except RecordError as exc:
                    log.error("skipping unreadable batch at %s-%d offset %d: %s",
                              self._topic, partition, header.base_offset, exc)
            offset = headers[-1].next_offset
