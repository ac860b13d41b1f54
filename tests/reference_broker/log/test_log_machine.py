"""A Hypothesis state machine driving a PartitionLog against an in-memory list of batches."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reference_broker.log import (
    LogConfig,
    OffsetOutOfRangeError,
    PartitionLog,
    RecordListTooLargeError,
)
from reference_broker.log.testing import batch, record_set, stored_batches

UNLIMITED = -1


@attrs.frozen
class ModelBatch:
    """A batch as stored: its offsets, bytes and record timestamps."""

    base_offset: int
    last_offset: int
    data: bytes
    timestamps: tuple[int, ...]

    @property
    def max_timestamp(self) -> int:
        return max(self.timestamps)

    @property
    def size(self) -> int:
        return len(self.data)


batch_shapes = st.lists(
    st.lists(st.tuples(st.binary(max_size=60), st.integers(-50, 50)), min_size=1, max_size=4),
    min_size=1,
    max_size=3,
)


class PartitionLogMachine(RuleBasedStateMachine):
    """The model holds the batches still stored on disk, the log start and the log end offset."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp()) / "topic-0"
        self.config = LogConfig(
            segment_bytes=600,
            segment_ms=2000,
            segment_index_bytes=96,
            index_interval_bytes=100,
            retention_ms=UNLIMITED,
        )
        self.clock = 1_000
        self.log = PartitionLog.open(self.directory, self.config, self.clock)
        self.batches: list[ModelBatch] = []
        self.log_start = 0
        self.log_end = 0

    def teardown(self) -> None:
        self.log.abandon()
        shutil.rmtree(self.directory.parent)

    # --- helpers -------------------------------------------------------------------------------

    def _readable(self) -> list[ModelBatch]:
        return [b for b in self.batches if b.last_offset >= self.log_start]

    def _forget_deleted_segments(self) -> None:
        first_base = self.log.segment_base_offsets[0]
        self.batches = [b for b in self.batches if b.base_offset >= first_base]

    def _reopen(self) -> None:
        self.log = PartitionLog.open(self.directory, self.config, self.clock)

    # --- rules ---------------------------------------------------------------------------------

    @rule(shapes=batch_shapes)
    def append(self, shapes: list[list[tuple[bytes, int]]]) -> None:
        batches = [
            batch(*[value for value, _ in shape], timestamps=[self.clock + d for _, d in shape])
            for shape in shapes
        ]
        records, headers = record_set(*batches)
        if len(records) > self.config.segment_bytes:
            with pytest.raises(RecordListTooLargeError):
                self.log.append(records, headers, self.clock)
            return
        result = self.log.append(records, headers, self.clock)
        assert result.first_offset == self.log_end
        for header, shape in zip(stored_batches(bytes(records)), shapes):
            data = bytes(records[header.position : header.position + header.size])
            timestamps = tuple(self.clock + d for _, d in shape)
            self.batches.append(
                ModelBatch(header.base_offset, header.last_offset, data, timestamps)
            )
        self.log_end = self.batches[-1].last_offset + 1
        assert result.last_offset == self.log_end - 1

    @rule(ms=st.integers(0, 500))
    def advance_clock(self, ms: int) -> None:
        self.clock += ms

    @rule(segment_bytes=st.integers(150, 1500))
    def change_segment_size(self, segment_bytes: int) -> None:
        self.config = attrs.evolve(self.config, segment_bytes=segment_bytes)
        self.log.update_config(self.config)

    @rule(data=st.data(), max_bytes=st.integers(1, 2000), bounded=st.booleans())
    def read(self, data: st.DataObject, max_bytes: int, bounded: bool) -> None:
        offset = data.draw(st.integers(self.log_start, self.log_end))
        upper_bound = data.draw(st.integers(offset, self.log_end)) if bounded else None
        result = self.log.read(offset, max_bytes, upper_bound).records
        candidates = [
            b
            for b in self._readable()
            if b.last_offset >= offset and (upper_bound is None or b.base_offset < upper_bound)
        ]
        returned = [bytes(result[h.position : h.position + h.size]) for h in stored_batches(result)]
        assert returned == [b.data for b in candidates[: len(returned)]]
        assert bool(returned) == bool(candidates), "KIP-74: at least one batch when one exists"
        assert len(returned) == 1 or len(result) <= max_bytes

    @rule(data=st.data())
    def read_out_of_range(self, data: st.DataObject) -> None:
        offset = data.draw(
            st.one_of(
                st.integers(-5, self.log_start - 1),
                st.integers(self.log_end + 1, self.log_end + 5),
            )
        )
        with pytest.raises(OffsetOutOfRangeError):
            self.log.read(offset, 1000)

    @rule()
    def reopen_cleanly(self) -> None:
        self.log.close()
        self._reopen()

    @rule()
    def crash(self) -> None:
        self.log.abandon()
        self._reopen()

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def crash_during_a_write(self, data: st.DataObject) -> None:
        """The process dies while writing a batch: part of it reached the active segment."""
        self.log.abandon()
        whole = data.draw(st.sampled_from(self.batches)).data
        torn = whole[: data.draw(st.integers(1, len(whole) - 1))]
        with open(sorted(self.directory.glob("*.log"))[-1], "ab") as active:
            active.write(torn)
        self._reopen()

    @rule(retention_bytes=st.integers(0, 3000))
    def retention_by_size(self, retention_bytes: int) -> None:
        size_before = self.log.size_bytes
        self._apply_retention(attrs.evolve(self.config, retention_bytes=retention_bytes))
        assert size_before == self.log.size_bytes or self.log.size_bytes >= retention_bytes
        first_segment_size = sum(b.size for b in self._first_segment())
        assert first_segment_size == 0 or self.log.size_bytes - first_segment_size < retention_bytes

    @rule(age_ms=st.integers(0, 3000))
    def retention_by_time(self, age_ms: int) -> None:
        before = self.batches
        self._apply_retention(attrs.evolve(self.config, retention_ms=age_ms))
        gone = before[: len(before) - len(self.batches)]
        assert all(self.clock - b.max_timestamp > age_ms for b in gone)
        first = self._first_segment()
        assert not first or self.clock - max(b.max_timestamp for b in first) <= age_ms

    def _apply_retention(self, retention: LogConfig) -> None:
        self.log.update_config(retention)
        self.log.apply_retention(self.clock)
        self.log.update_config(self.config)
        assert self.log.log_start_offset >= self.log_start
        self.log_start = self.log.log_start_offset
        self._forget_deleted_segments()

    def _first_segment(self) -> list[ModelBatch]:
        """The model's batches in the log's oldest segment."""
        bases = self.log.segment_base_offsets
        end = bases[1] if len(bases) > 1 else self.log_end
        return [b for b in self.batches if b.base_offset < end]

    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.log_start, self.log_end))
        assert self.log.delete_records_before(offset) == offset
        self.log_start = offset
        self._forget_deleted_segments()

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(max(0, self.log_start - 3), self.log_end))
        self.log.truncate_to(offset)
        dropped = [b for b in self.batches if b.last_offset >= offset]
        self.batches = [b for b in self.batches if b.last_offset < offset]
        if dropped or offset < self.log_end:
            self.log_end = min([offset, *(b.base_offset for b in dropped)])
        self.log_start = min(self.log_start, self.log_end)

    @rule(data=st.data())
    def offset_for_timestamp(self, data: st.DataObject) -> None:
        target = data.draw(st.integers(self.clock - 600, self.clock + 60))
        assert self.log.offset_for_timestamp(target) == self._kafka_offset_for_timestamp(target)

    def _kafka_offset_for_timestamp(self, target: int) -> tuple[int, int] | None:
        """Kafka's rule (UnifiedLog.searchOffsetInLocalLog, measured on 3.9.2 and 4.4.0): the
        first segment whose largest timestamp reaches ``target``, counting the records below the
        log start that DeleteRecords left in it, is the only one searched, from the log start;
        without a match there the answer is None, even if a later segment has one."""
        bases = self.log.segment_base_offsets
        for i, base in enumerate(bases):
            end = bases[i + 1] if i + 1 < len(bases) else self.log_end
            stored = [(b.base_offset + delta, t) for b in self.batches if base <= b.base_offset < end
                      for delta, t in enumerate(b.timestamps)]
            if end <= self.log_start or not stored or max(t for _, t in stored) < target:
                continue
            return next(((o, t) for o, t in stored if o >= self.log_start and t >= target), None)
        return None

    @rule()
    def max_timestamp(self) -> None:
        stored = [
            (b.base_offset + delta, timestamp)
            for b in self.batches
            for delta, timestamp in enumerate(b.timestamps)
        ]
        newest = max((t for _, t in stored), default=None)
        expected = next(((o, t) for o, t in stored if t == newest), None)
        assert self.log.max_timestamp() == expected

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def offsets_agree(self) -> None:
        assert (self.log.log_start_offset, self.log.log_end_offset) == (
            self.log_start,
            self.log_end,
        )

    @invariant()
    def a_consumer_reads_every_readable_batch(self) -> None:
        offset = self.log_start
        seen: list[bytes] = []
        while offset < self.log_end:
            data = self.log.read(offset, 10_000).records
            headers = stored_batches(data)
            seen.extend(data[h.position : h.position + h.size] for h in headers)
            offset = headers[-1].next_offset
        assert seen == [b.data for b in self._readable()]


TestPartitionLogMachine = PartitionLogMachine.TestCase
