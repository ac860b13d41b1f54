"""Compaction of transactional data (KIP-98, as Kafka's LogCleaner does it): aborted records go
and never shadow committed ones, nothing at or above the last stable offset is cleaned, markers
go once their transaction has no data and delete.retention.ms has passed, a producer's last
batch stays (empty) with its marker, and a reopened compacted log rebuilds the same producer
state, transaction index and read_committed view."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_broker.log import LogConfig, PartitionLog
from reference_broker.log.checkpoint import write_offset
from reference_broker.log.files import RECOVERY_POINT_CHECKPOINT
from reference_broker.log.segment import LogSegment
from reference_broker.log.testing import (
    Producer,
    batch,
    fetches,
    read_committed_records,
    read_records,
    record_set,
)
from reference_broker.log.txn_index import AbortedTxn, TransactionIndex
from reference_broker.producers.state import InvalidProducerEpochError
from reference_broker.records import BatchHeader, ControlType

ABORT, COMMIT = ControlType.ABORT, ControlType.COMMIT
DELETE_RETENTION_MS = 500
# segment.bytes below two batches: every batch gets a segment of its own, so everything but
# the newest batch lies outside the active segment.
CONFIG = LogConfig(
    segment_bytes=100,
    cleanup_policy=frozenset({"compact"}),
    delete_retention_ms=DELETE_RETENTION_MS,
)
NOW = 1_000


def put(log: PartitionLog, key: bytes, value: bytes | None) -> int:
    """A plain (non-idempotent) keyed record; returns its offset."""
    return log.append(*record_set(batch(value, keys=[key], timestamps=[NOW])), NOW).first_offset


def committed(log: PartitionLog, high_watermark: int | None = None) -> dict[bytes | None, bytes | None]:
    """The newest value of each key a read_committed consumer reads."""
    stable = log.last_stable_offset(log.log_end_offset if high_watermark is None else high_watermark)
    return {record.key: record.value for record in read_committed_records(log, stable)}


def stored(log: PartitionLog) -> list[BatchHeader]:
    """Every stored batch, empty and control batches included, as fetched."""
    return [header for _, _, headers in fetches(log) for header in headers]


def all_aborted(log: PartitionLog) -> list[AbortedTxn]:
    return log.collect_aborted_transactions(0, log.log_end_offset)


def raw_from(log: PartitionLog, offset: int) -> list[bytes]:
    """The bytes of every batch reaching ``offset`` or later."""
    return [
        data[header.position : header.position + header.size]
        for _, data, headers in fetches(log)
        for header in headers
        if header.last_offset >= offset
    ]


def producers(log: PartitionLog) -> dict[int, tuple[int, int, int, int, int | None]]:
    """What must survive compaction and a reload of each producer: epoch, last sequence, last
    offset, last timestamp (expiry counts from it) and its open transaction's first offset."""
    return {
        entry.producer_id: (
            entry.epoch, entry.last_seq, entry.last_offset, entry.last_timestamp,
            entry.current_txn_first_offset,
        )
        for entry in log.producer_state.entries()
    }


def reopen_log(log: PartitionLog, directory: Path, how: str, now_ms: int) -> PartitionLog:
    """``log`` opened again after a ``clean`` close, or after a crash that lost its producer
    snapshots (``crash-without-snapshots``) and also its recovery point
    (``recover-everything``)."""
    if how == "clean":
        log.close()
    else:
        log.abandon()
        for snapshot in directory.glob("*.snapshot"):
            snapshot.unlink()
        if how == "recover-everything":
            (directory / RECOVERY_POINT_CHECKPOINT).unlink()
    return PartitionLog.open(directory, CONFIG, now_ms)


@pytest.fixture
def log(tmp_path: Path) -> PartitionLog:
    return PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)


def test_aborted_values_are_removed_and_never_shadow_committed_ones(log: PartitionLog) -> None:
    """An aborted record goes at once, whatever its key, and takes no part in choosing the
    newest record of its key: the older committed value stays."""
    put(log, b"k", b"committed-old")
    aborting, committing = Producer(log, 1), Producer(log, 2)
    aborting.send((b"k", b"aborted"), timestamp=NOW)
    aborting.end(ABORT)
    committing.send((b"j", b"committed-in-txn"), timestamp=NOW)
    committing.end(COMMIT)
    put(log, b"filler", b"x")  # the active segment
    before = committed(log)
    assert before == {b"k": b"committed-old", b"j": b"committed-in-txn", b"filler": b"x"}
    assert log.compact(NOW).records_removed == 1
    assert committed(log) == before
    assert b"aborted" not in [record.value for record in read_records(log)]


def test_nothing_at_or_above_the_last_stable_offset_is_cleaned(log: PartitionLog) -> None:
    """A record after the first offset of an open transaction does not supersede an older
    value, and the batches from that offset on stay byte for byte, until the transaction ends."""
    put(log, b"k", b"v1")
    open_txn = Producer(log, 1)
    first = open_txn.send((b"t", b"open"), timestamp=NOW)
    put(log, b"k", b"v2")
    put(log, b"k", b"v3")
    put(log, b"filler", b"x")
    assert log.last_stable_offset(log.log_end_offset) == first
    above = raw_from(log, first)
    log.compact(NOW)
    assert [record.value for record in read_records(log)][0] == b"v1"
    assert raw_from(log, first) == above
    assert committed(log) == {b"k": b"v1"}
    open_txn.end(COMMIT)
    log.compact(NOW)
    values = [record.value for record in read_records(log)]
    assert b"v1" not in values and b"v2" not in values
    assert committed(log) == {b"k": b"v3", b"t": b"open", b"filler": b"x"}


def test_records_above_the_high_watermark_never_shadow_older_ones(log: PartitionLog) -> None:
    """Records not yet on every in-sync replica may be truncated away: they supersede nothing."""
    put(log, b"k", b"v1")
    newer = put(log, b"k", b"v2")
    put(log, b"filler", b"x")
    log.compact(NOW, high_watermark=newer)
    assert [record.value for record in read_records(log)][:2] == [b"v1", b"v2"]
    log.compact(NOW, high_watermark=log.log_end_offset)
    assert [record.value for record in read_records(log)] == [b"v2", b"x"]


def test_markers_go_after_delete_retention_once_their_transaction_has_no_data(
    log: PartitionLog,
) -> None:
    """A pass that removes a transaction's last batches keeps its marker (and an abort's
    .txnindex entry); the next pass stamps the marker with a delete horizon and drops the
    entry; a pass at the horizon removes the marker."""
    aborting, committing = Producer(log, 1), Producer(log, 2)
    aborting.send((b"a", b"aborted"), timestamp=NOW)
    abort_at = aborting.end(ABORT)
    committing.send((b"c", b"c1"), timestamp=NOW)
    commit_at = committing.end(COMMIT)
    put(log, b"c", b"c2")  # supersedes the committed c1
    # Later batches of both producers, so the transactions' batches are not their last.
    aborting.send((b"x", b"later-1"), transactional=False, timestamp=NOW)
    committing.send((b"y", b"later-2"), transactional=False, timestamp=NOW)
    put(log, b"filler", b"x")
    markers = {abort_at, commit_at}

    def kept_markers() -> dict[int, int | None]:
        return {h.base_offset: h.delete_horizon_ms for h in stored(log) if h.is_control}

    assert all_aborted(log) == [AbortedTxn(1, 0, abort_at, abort_at + 1)]
    log.compact(NOW)
    assert {h.base_offset for h in stored(log)}.isdisjoint({0, commit_at - 1})
    assert kept_markers() == dict.fromkeys(markers)
    assert all_aborted(log) == [AbortedTxn(1, 0, abort_at, abort_at + 1)]
    assert not log.needs_compaction(NOW + 10 * DELETE_RETENTION_MS)  # no dirt, no horizon yet
    log.compact(NOW)
    assert kept_markers() == dict.fromkeys(markers, NOW + DELETE_RETENTION_MS)
    assert all_aborted(log) == []
    assert not log.needs_compaction(NOW + DELETE_RETENTION_MS - 1)
    assert log.needs_compaction(NOW + DELETE_RETENTION_MS)
    log.compact(NOW + DELETE_RETENTION_MS - 1)
    assert kept_markers().keys() == markers
    log.compact(NOW + DELETE_RETENTION_MS)
    assert kept_markers() == {}
    assert committed(log) == {b"c": b"c2", b"x": b"later-1", b"y": b"later-2", b"filler": b"x"}


@pytest.mark.parametrize("reopen", ["clean", "crash-without-snapshots", "recover-everything"])
def test_a_producers_last_batch_stays_empty_with_its_marker(tmp_path: Path, reopen: str) -> None:
    """An aborted batch that is its producer's last stays as an empty batch with its timestamp,
    and its ABORT marker and .txnindex entry stay with it however much time passes; reopening
    rebuilds the producer (sequence, epoch, timestamp) and finds its transaction ended."""
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    producer = Producer(log, 1)
    first = producer.send((b"a", b"aborted-1"), (b"b", b"aborted-2"), timestamp=NOW + 7)
    marker = producer.end(ABORT)
    put(log, b"filler", b"x")
    state = producers(log)
    for now in (NOW, NOW, NOW + 100 * DELETE_RETENTION_MS):
        log.compact(now)
    kept = stored(log)
    assert [(h.base_offset, h.record_count, h.is_transactional, h.max_timestamp) for h in kept[:1]] == [
        (first, 0, True, NOW + 7)
    ]
    assert [h.base_offset for h in kept if h.is_control] == [marker]
    assert all_aborted(log) == [AbortedTxn(1, first, marker, marker + 1)]
    reopened = reopen_log(log, tmp_path / "t-0", reopen, NOW + 8)
    assert producers(reopened) == state == {1: (0, 1, first + 1, NOW + 7, None)}
    assert all_aborted(reopened) == [AbortedTxn(1, first, marker, marker + 1)]
    assert reopened.last_stable_offset(reopened.log_end_offset) == reopened.log_end_offset
    assert committed(reopened) == {b"filler": b"x"}


@pytest.mark.parametrize("reopen", ["clean", "crash-without-snapshots"])
def test_a_fence_marker_stays_so_that_a_reload_still_refuses_the_fenced_epoch(tmp_path: Path, reopen: str) -> None:
    """Kafka keeps a marker as the last entry of a producer whose current epoch has no data: the
    coordinator's abort at epoch 1 fenced epoch 0, and after compaction well past
    delete.retention.ms and a reopen, a zombie's epoch-0 batch is still refused."""
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    zombie = Producer(log, 1)
    zombie.send((b"a", b"aborted"), timestamp=NOW)
    fence = Producer(log, 1, epoch=1)
    marker = fence.end(ABORT, timestamp=NOW)
    put(log, b"filler", b"x")
    for now in (NOW, NOW, NOW + 100 * DELETE_RETENTION_MS):
        log.compact(now)
    assert [h.base_offset for h in stored(log) if h.is_control] == [marker]
    reopened = reopen_log(log, tmp_path / "t-0", reopen, NOW + 1)
    entry = reopened.producer_state.entry(1)
    assert entry is not None and entry.epoch == 1
    with pytest.raises(InvalidProducerEpochError):
        Producer(reopened, 1).send((b"a", b"zombie"), timestamp=NOW)


def _fail(*args: object, **kwargs: object) -> None:
    raise OSError("simulated crash")


@pytest.mark.parametrize("crash_point", ["txnindex", "before rename", "after rename"])
def test_a_crash_while_a_marker_goes_never_hides_committed_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_point: str
) -> None:
    """When a pass removes an ABORT marker and its .txnindex entry together, the entry goes
    first: an entry left without its marker would make consumers skip the producer's later
    committed transactions. Killed while replacing the index, or before or after the segment's
    rename, the log reads the same. (Such an entry comes back after its data is gone when crash
    recovery starts at the marker's segment: the producer snapshot taken when that segment
    rolled still holds the transaction ongoing, so its marker is indexed again, as Kafka's
    LogLoader.recoverSegment does from the snapshot at the segment's base offset.)"""
    directory = tmp_path / "t-0"
    log = PartitionLog.open(directory, CONFIG, NOW)
    producer = Producer(log, 1)
    first = producer.send((b"a", b"aborted"), timestamp=NOW)
    abort_at = producer.end(ABORT)
    producer.send((b"b", b"later"), timestamp=NOW)
    producer.end(COMMIT)
    put(log, b"filler", b"x")
    log.compact(NOW)  # the aborted batch goes
    log.compact(NOW)  # the ABORT marker gets its delete horizon, its entry goes
    assert all_aborted(log) == []
    log.abandon()
    write_offset(directory / RECOVERY_POINT_CHECKPOINT, abort_at)
    log = PartitionLog.open(directory, CONFIG, NOW)
    assert all_aborted(log) == [AbortedTxn(1, first, abort_at, abort_at + 1)]
    expected = committed(log)
    assert expected == {b"b": b"later", b"filler": b"x"}
    with monkeypatch.context() as patch:
        if crash_point == "txnindex":
            patch.setattr(TransactionIndex, "replace_entries", _fail)
        elif crash_point == "before rename":
            patch.setattr(os, "replace", _fail)
        else:
            patch.setattr(LogSegment, "rebuild_indexes", _fail)
        with pytest.raises(OSError, match="simulated crash"):
            log.compact(NOW + DELETE_RETENTION_MS)
    log.abandon()
    log = PartitionLog.open(directory, CONFIG, NOW)
    assert committed(log) == expected
    log.compact(NOW + DELETE_RETENTION_MS)
    assert abort_at not in [header.base_offset for header in stored(log)]
    assert committed(log) == expected


@attrs.frozen
class Step:
    """One step of a drawn history: who writes what, or a transaction's end, or a pass."""

    kind: str  # "put", "send", "end" or "compact"
    producer: int = 0
    key: bytes = b""
    tombstone: bool = False
    commit: bool = True
    advance_ms: int = 0


KEYS = [b"a", b"b", b"c", b"d"]
steps = st.one_of(
    st.builds(Step, kind=st.just("put"), key=st.sampled_from(KEYS), tombstone=st.booleans()),
    st.builds(
        Step, kind=st.just("send"), producer=st.integers(1, 3), key=st.sampled_from(KEYS),
        tombstone=st.booleans(),
    ),
    st.builds(Step, kind=st.just("end"), producer=st.integers(1, 3), commit=st.booleans()),
    st.builds(Step, kind=st.just("compact"), advance_ms=st.integers(0, 2 * DELETE_RETENTION_MS)),
)


@attrs.define
class History:
    """The writes of a history and how their transactions ended: the model a read_committed
    reader is checked against."""

    writes: list[tuple[int, bytes, bytes | None, int | None]] = attrs.field(factory=list)
    transaction: dict[int, int] = attrs.field(factory=dict)  # producer -> its open transaction
    committed: set[int] = attrs.field(factory=set)
    transactions: int = 0

    def visible(self, last_stable_offset: int) -> dict[bytes | None, bytes | None]:
        """Newest value per key among the plain and committed records below the LSO."""
        return {
            key: value
            for offset, key, value, txn in self.writes
            if offset < last_stable_offset and (txn is None or txn in self.committed)
        }


def same_newest_values(seen: dict[bytes | None, bytes | None], expected: dict[bytes | None, bytes | None]) -> None:
    """``seen`` has the newest value of every key of ``expected``, except that a key whose
    newest record is a tombstone may have vanished with it (after delete.retention.ms)."""
    assert {k: v for k, v in seen.items() if v is not None} == {
        k: v for k, v in expected.items() if v is not None
    }
    assert seen.keys() <= expected.keys()


def check_pass(log: PartitionLog, history: History, now_ms: int) -> None:
    """One compaction pass changes neither the last stable offset, nor the batches from it on,
    nor the newest committed value of any key, and brings back no value a read_committed reader
    did not see before (an aborted or superseded one)."""
    stable = log.last_stable_offset(log.log_end_offset)
    before = committed(log)
    same_newest_values(before, history.visible(stable))
    read_before = [record.value for record in read_committed_records(log, stable)]
    above = raw_from(log, stable)
    log.compact(now_ms)
    assert log.last_stable_offset(log.log_end_offset) == stable
    assert raw_from(log, stable) == above
    same_newest_values(committed(log), before)
    assert {record.value for record in read_committed_records(log, stable)} <= set(read_before)


@given(st.lists(steps, max_size=40), st.sampled_from([100, 300, 1000]))
def test_compaction_never_changes_what_read_committed_readers_see(
    history_steps: list[Step], segment_bytes: int
) -> None:
    """Over random transactional histories (three producers, plain writes, tombstones,
    commits, aborts, passes at advancing times; segments of one batch or several, so the last
    stable offset may fall inside a segment): every pass keeps the read_committed view, and so
    does ending every transaction, compacting long after, and reopening the log from its
    segments alone (no producer snapshots)."""
    config = attrs.evolve(CONFIG, segment_bytes=segment_bytes)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t-0"
        log = PartitionLog.open(path, config, NOW)
        clients = {pid: Producer(log, pid) for pid in (1, 2, 3)}
        history = History()
        now = NOW
        for index, step in enumerate(history_steps):
            value = None if step.tombstone else b"v%d" % index
            if step.kind == "put":
                history.writes.append((put(log, step.key, value), step.key, value, None))
            elif step.kind == "send":
                if step.producer not in history.transaction:
                    history.transactions += 1
                    history.transaction[step.producer] = history.transactions
                offset = clients[step.producer].send((step.key, value), timestamp=now)
                history.writes.append((offset, step.key, value, history.transaction[step.producer]))
            elif step.kind == "end" and step.producer in history.transaction:
                txn = history.transaction.pop(step.producer)
                if step.commit:
                    history.committed.add(txn)
                clients[step.producer].end(COMMIT if step.commit else ABORT, timestamp=now)
            elif step.kind == "compact":
                now += step.advance_ms
                check_pass(log, history, now)
        for producer in list(history.transaction):
            history.committed.add(history.transaction.pop(producer))
            clients[producer].end(COMMIT, timestamp=now)
        put(log, b"filler", b"last")  # everything before it leaves the active segment
        history.writes.append((log.log_end_offset - 1, b"filler", b"last", None))
        for later in (0, 0, DELETE_RETENTION_MS, 2 * DELETE_RETENTION_MS):
            check_pass(log, history, now + later)
        state, view = producers(log), committed(log)
        log.abandon()
        for snapshot in path.glob("*.snapshot"):
            snapshot.unlink()
        reopened = PartitionLog.open(path, config, now)
        assert producers(reopened) == state
        assert committed(reopened) == view
        reopened.close()
