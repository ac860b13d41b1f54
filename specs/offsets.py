"""What Fetch and ListOffsets may answer for a partition log, and what a consumer's position is.

Theory of operation. A fetch at offset `o` (Kafka protocol guide, Fetch API):

- is out of range (`OFFSET_OUT_OF_RANGE`) when `o` is below the log start offset or above the
  log end offset; the consumer then applies `auto.offset.reset`;
- otherwise returns records from `o` on, but only below the high watermark for
  `read_uncommitted` consumers and below the last stable offset for `read_committed` ones
  (Kafka documentation 4.7 "Replication", KIP-98 "Transactional messaging"). An offset between
  the high watermark and the log end is in range but answers no records yet;
- reports the high watermark, last stable offset and log start offset, which is how a wire
  client can tell a record was read at or past the high watermark (read-uncommitted); with
  `OFFSET_OUT_OF_RANGE` all three are -1 (Kafka builds an error's answer with unknown
  positions, `ReplicaManager.readFromLocalLog`; measured on Apache Kafka 4.4.0).

ListOffsets (KIP-79 for timestamps) answers the log start offset for `earliest`, the high
watermark (`read_uncommitted`) or the LSO (`read_committed`) for `latest`, and for a timestamp
the first offset whose record timestamp is at or after it, among the records a consumer of that
isolation level may read, or -1 when there is none.

Two ListOffsets answers depend on what the broker still *stores*, not only on the log. Kafka
removes records in whole segments: DeleteRecords (KIP-107) only moves the log start offset,
and a segment whose every record is below it is deleted at the next retention check
(`log.retention.check.interval.ms`); time and size retention delete whole segments too. Until
then, the records below the log start still sit in the segment files, and Kafka's lookups see
them (`UnifiedLog.fetchOffsetByTimestamp`, 3.9 and 4.x; the answers below were measured
against Apache Kafka 3.9.2 and 4.4.0, pinned by tests/harness/test_list_offsets_kafka.py):

- `max_timestamp` (MAX_TIMESTAMP, -3, KIP-734) takes the segment with the largest
  `maxTimestampSoFar` (the first on a tie), in it the first batch reaching that timestamp, in
  it the first record carrying it (`RecordBatch.offsetOfMaxTimestamp`): that is, the lowest
  stored offset whose record has the largest stored timestamp. Nothing compares it with the log
  start offset, so after DeleteRecords the answer may be *below the log start* (records 0-2 in
  one batch with one timestamp, DeleteRecords before 1: the answer is offset 0). It is answered
  only when below the high watermark (LSO for `read_committed`, `ReplicaManager.fetchOffset`),
  else -1 with timestamp -1; a partition that stores no record answers -1 / -1.
- a timestamp lookup commits to the first segment whose largest stored timestamp reaches the
  target (`searchOffsetInLocalLog`) and searches it from the log start offset only; when that
  segment has no such record at or after the log start, the answer is -1 even if a later
  segment has one.

`StoredLog` says what is stored: by default exactly the log's records, in one segment.

A consumer's *position* is the offset of the next record it will be given; the committed
offset for a partition is, by convention, the position to resume from, i.e. the last processed
offset + 1 (KafkaConsumer javadoc, "Offsets and Consumer Position").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator

import attrs

from specs.log import LogModel, ModelRecord
from specs.types import NO_OFFSET, Offset


class IsolationLevel(enum.Enum):
    """The consumer's `isolation.level`."""

    READ_UNCOMMITTED = "read_uncommitted"
    READ_COMMITTED = "read_committed"


OFFSET_OUT_OF_RANGE = "OFFSET_OUT_OF_RANGE"


def readable_end(log: LogModel, isolation: IsolationLevel) -> Offset:
    """The first offset a consumer of this isolation level may not read yet."""
    if isolation is IsolationLevel.READ_COMMITTED:
        return log.last_stable_offset
    return log.high_watermark


@attrs.frozen
class FetchAnswer:
    """A Fetch response for one partition."""

    error: str | None
    records: tuple[tuple[Offset, ModelRecord], ...]
    high_watermark: Offset
    last_stable_offset: Offset
    log_start_offset: Offset


def fetch(
    log: LogModel,
    offset: Offset,
    isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
    max_records: int | None = None,
) -> FetchAnswer:
    """The answer to a fetch at `offset` (the model returns as much as allowed, up to max_records)."""
    if offset < log.log_start_offset or offset > log.log_end_offset:
        return FetchAnswer(OFFSET_OUT_OF_RANGE, (), NO_OFFSET, NO_OFFSET, NO_OFFSET)
    end = readable_end(log, isolation)
    if max_records is not None:
        end = Offset(min(end, offset + max_records))
    records = tuple(log.entries(offset, end))
    return FetchAnswer(None, records, log.high_watermark, log.last_stable_offset, log.log_start_offset)


class OffsetSpec(enum.Enum):
    """The symbolic timestamps of ListOffsets (Kafka protocol guide, ListOffsets; KIP-734)."""

    LATEST = -1
    EARLIEST = -2
    MAX_TIMESTAMP = -3


NO_TIMESTAMP = -1
"""The timestamp ListOffsets answers with an offset of -1, or for earliest and latest."""

Segment = tuple[tuple[Offset, ModelRecord], ...]


@attrs.frozen
class StoredLog:
    """The records a broker still stores for a partition, segment by segment, in offset order.

    It may hold records below the log start offset: DeleteRecords leaves them in their segment
    until the whole segment is below the log start and the broker's next retention check
    deletes it. Empty segments may be left out.
    """

    segments: tuple[Segment, ...] = ()

    @classmethod
    def of(cls, log: LogModel, below_start: Iterable[tuple[Offset, ModelRecord]] = ()) -> StoredLog:
        """One segment: ``below_start`` (records DeleteRecords left behind), then the log's."""
        return cls((tuple(below_start) + tuple(log.entries()),))

    def entries(self) -> Iterator[tuple[Offset, ModelRecord]]:
        for segment in self.segments:
            yield from segment


def list_offsets(
    log: LogModel,
    spec: OffsetSpec | int,
    isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
    stored: StoredLog | None = None,
) -> Offset:
    """The offset ListOffsets answers for `spec` (a symbolic spec or a timestamp in ms);
    `stored` is what the broker stores (default: the log's records, one segment)."""
    if spec is OffsetSpec.EARLIEST:
        return log.log_start_offset
    if spec is OffsetSpec.LATEST:
        return readable_end(log, isolation)
    if spec is OffsetSpec.MAX_TIMESTAMP:
        return max_timestamp(log, isolation, stored)[1]
    assert isinstance(spec, int)
    if spec < 0:
        raise ValueError(f"unknown ListOffsets timestamp {spec}")
    for segment in (stored or StoredLog.of(log)).segments:
        if not segment or max(r.timestamp for _, r in segment) < spec:
            continue
        # Kafka commits to the first segment whose largest timestamp (records below the log
        # start included) reaches the target, and never looks further.
        for offset, record in segment:
            if offset >= log.log_start_offset and record.timestamp >= spec:
                return offset if offset < readable_end(log, isolation) else NO_OFFSET
        return NO_OFFSET
    return NO_OFFSET


def max_timestamp(
    log: LogModel,
    isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
    stored: StoredLog | None = None,
) -> tuple[int, Offset]:
    """(timestamp, offset) ListOffsets answers for MAX_TIMESTAMP (KIP-734), as Kafka does: the
    lowest stored offset with the largest stored timestamp, below the log start offset if
    that is where it is stored; (-1, -1) when nothing is stored or that offset is not readable
    yet (at or past the high watermark, or the LSO for read_committed)."""
    best: tuple[int, Offset] | None = None
    for offset, record in (stored or StoredLog.of(log)).entries():
        if best is None or record.timestamp > best[0]:
            best = (record.timestamp, offset)
    if best is None or best[1] >= readable_end(log, isolation):
        return NO_TIMESTAMP, NO_OFFSET
    return best


def offset_to_commit(last_processed: Offset) -> Offset:
    """The offset to commit after processing `last_processed`: the next one to read."""
    return Offset(last_processed + 1)
