"""What Fetch and ListOffsets may answer for a partition log, and what a consumer's position is.

Theory of operation. A fetch at offset `o` (Kafka protocol guide, Fetch API):

- is out of range (`OFFSET_OUT_OF_RANGE`) when `o` is below the log start offset or above the
  log end offset; the consumer then applies `auto.offset.reset`;
- otherwise returns records from `o` on, but only below the high watermark for
  `read_uncommitted` consumers and below the last stable offset for `read_committed` ones
  (Kafka documentation 4.7 "Replication", KIP-98 "Transactional messaging"). An offset between
  the high watermark and the log end is in range but answers no records yet;
- always reports the high watermark, last stable offset and log start offset, which is how a
  wire client can tell a record was read at or past the high watermark (read-uncommitted).

ListOffsets (KIP-79 for timestamps) answers the log start offset for `earliest`, the high
watermark (`read_uncommitted`) or the LSO (`read_committed`) for `latest`, and for a timestamp
the first offset whose record timestamp is at or after it, among the records a consumer of that
isolation level may read, or -1 when there is none.

A consumer's *position* is the offset of the next record it will be given; the committed
offset for a partition is, by convention, the position to resume from, i.e. the last processed
offset + 1 (KafkaConsumer javadoc, "Offsets and Consumer Position").
"""

from __future__ import annotations

import enum

import attrs

from specs.log import PartitionLog, Record
from specs.types import NO_OFFSET, Offset


class IsolationLevel(enum.Enum):
    """The consumer's `isolation.level`."""

    READ_UNCOMMITTED = "read_uncommitted"
    READ_COMMITTED = "read_committed"


OFFSET_OUT_OF_RANGE = "OFFSET_OUT_OF_RANGE"


def readable_end(log: PartitionLog, isolation: IsolationLevel) -> Offset:
    """The first offset a consumer of this isolation level may not read yet."""
    if isolation is IsolationLevel.READ_COMMITTED:
        return log.last_stable_offset
    return log.high_watermark


@attrs.frozen
class FetchAnswer:
    """A Fetch response for one partition."""

    error: str | None
    records: tuple[tuple[Offset, Record], ...]
    high_watermark: Offset
    last_stable_offset: Offset
    log_start_offset: Offset


def fetch(
    log: PartitionLog,
    offset: Offset,
    isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
    max_records: int | None = None,
) -> FetchAnswer:
    """The answer to a fetch at `offset` (the model returns as much as allowed, up to max_records)."""
    if offset < log.log_start_offset or offset > log.log_end_offset:
        records: tuple[tuple[Offset, Record], ...] = ()
        error: str | None = OFFSET_OUT_OF_RANGE
    else:
        end = readable_end(log, isolation)
        if max_records is not None:
            end = Offset(min(end, offset + max_records))
        records, error = tuple(log.entries(offset, end)), None
    return FetchAnswer(error, records, log.high_watermark, log.last_stable_offset, log.log_start_offset)


def fetch_allows(
    log: PartitionLog,
    offset: Offset,
    returned: tuple[tuple[Offset, Record], ...],
    isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
) -> bool:
    """Whether a fetch at `offset` may legitimately return `returned` (any prefix is allowed).

    A broker may return fewer records than it has (size limits, `max.poll.records`), but the
    ones it returns are the log's own, contiguous from the fetch offset and below the readable
    end.
    """
    allowed = fetch(log, offset, isolation)
    if allowed.error is not None:
        return not returned
    return returned == allowed.records[: len(returned)]


class OffsetSpec(enum.Enum):
    """The symbolic timestamps of ListOffsets (Kafka protocol guide, ListOffsets)."""

    LATEST = -1
    EARLIEST = -2


def list_offsets(
    log: PartitionLog,
    spec: OffsetSpec | int,
    isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
) -> Offset:
    """The offset ListOffsets answers for `spec` (a symbolic spec or a timestamp in ms)."""
    if spec is OffsetSpec.EARLIEST:
        return log.log_start_offset
    if spec is OffsetSpec.LATEST:
        return readable_end(log, isolation)
    assert isinstance(spec, int)
    if spec < 0:
        raise ValueError(f"unknown ListOffsets timestamp {spec}")
    for offset, record in log.entries(end=readable_end(log, isolation)):
        if record.timestamp >= spec:
            return offset
    return NO_OFFSET


def position_after(records: tuple[tuple[Offset, Record], ...], before: Offset) -> Offset:
    """A consumer's position after being given `records` (unchanged when there are none)."""
    return Offset(records[-1][0] + 1) if records else before


def offset_to_commit(last_processed: Offset) -> Offset:
    """The offset to commit after processing `last_processed`: the next one to read."""
    return Offset(last_processed + 1)
