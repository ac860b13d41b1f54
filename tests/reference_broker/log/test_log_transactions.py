"""The log side of transactions (KIP-98): last stable offset, the ``.txnindex`` of each segment
(Kafka's TransactionIndex and AbortedTxn layout), aborted-range queries, and all of it surviving
restarts, crashes, torn index tails, truncation and retention."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from reference_broker.log import LogConfig, PartitionLog
from reference_broker.log.files import TXN_INDEX_SUFFIX, segment_path
from reference_broker.log.testing import record_set, stored_batches
from reference_broker.log.txn_index import ENTRY, AbortedTxn, TransactionIndex
from reference_broker.producers import AppendOrigin, InvalidProducerEpochError, InvalidTxnStateError
from reference_broker.records import BatchHeader, ControlType, EndTransactionMarker, Record, build_batch

CONFIG = LogConfig(segment_bytes=400, index_interval_bytes=0)
NOW = 1_000_000
ABORT = EndTransactionMarker(ControlType.ABORT, 0)
COMMIT = EndTransactionMarker(ControlType.COMMIT, 0)
TRANSACTIONAL = 0x10


class Producer:
    """One idempotent producer's sequences against a log."""

    def __init__(self, log: PartitionLog, producer_id: int) -> None:
        self.log = log
        self.producer_id = producer_id
        self.sequence = 0

    def send(self, count: int = 1, transactional: bool = True) -> int:
        """Append ``count`` records in one batch; returns its first offset."""
        data = build_batch(
            [Record(i, NOW, None, b"p%d-%d" % (self.producer_id, self.sequence + i))
             for i in range(count)],
            base_offset=0, producer_id=self.producer_id, producer_epoch=0,
            base_sequence=self.sequence, attributes=TRANSACTIONAL if transactional else 0,
        )
        self.sequence += count
        return self.log.append(*record_set(data), NOW).first_offset

    def end(self, marker: EndTransactionMarker, epoch: int = 0) -> int:
        return self.log.append_marker(self.producer_id, epoch, marker, NOW).first_offset


def plain(log: PartitionLog) -> int:
    return log.append(*record_set(build_batch([Record(0, NOW, None, b"x")], base_offset=0)), NOW).first_offset


def all_aborted(log: PartitionLog) -> list[AbortedTxn]:
    return log.collect_aborted_transactions(0, log.log_end_offset)


@pytest.fixture
def log(tmp_path: Path) -> PartitionLog:
    return PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)


def test_the_lso_is_the_first_offset_of_the_oldest_ongoing_transaction(log: PartitionLog) -> None:
    a, b = Producer(log, 1), Producer(log, 2)
    plain(log)
    assert log.last_stable_offset(log.log_end_offset) == 1
    first_a = a.send(2)
    first_b = b.send()
    a.send()
    end = log.log_end_offset
    assert log.last_stable_offset(end) == first_a
    assert log.last_stable_offset(0) == 0  # never above the high watermark
    a.end(COMMIT)
    # The COMMIT is not below the high watermark yet: the transaction still holds the LSO.
    assert log.last_stable_offset(end) == first_a
    assert log.last_stable_offset(log.log_end_offset) == first_b
    b.end(ABORT)
    assert log.last_stable_offset(log.log_end_offset) == log.log_end_offset


def test_an_abort_enters_the_txnindex_in_kafkas_layout(log: PartitionLog, tmp_path: Path) -> None:
    a, b = Producer(log, 1), Producer(log, 2)
    first_a = a.send()
    first_b = b.send()
    marker = a.end(ABORT)
    b.end(COMMIT)  # commits are not indexed
    expected = AbortedTxn(1, first_a, marker, first_b)  # the LSO: b was still ongoing
    assert all_aborted(log) == [expected]
    path = segment_path(tmp_path / "t-0", log.segment_base_offsets[-1], TXN_INDEX_SUFFIX)
    assert path.read_bytes() == struct.pack(">hqqqq", 0, 1, first_a, marker, first_b)
    assert ENTRY.size == 34


def test_an_abort_that_wrote_nothing_to_the_partition_is_not_indexed(log: PartitionLog) -> None:
    """Kafka indexes only transactions with data in the partition ("Only emit the CompletedTxn
    for non-empty transactions"): a read_committed Fetch must not list a transaction that only
    added the partition (the reference broker listed it at its marker's offset)."""
    a = Producer(log, 1)
    a.end(ABORT)
    a.end(COMMIT)
    plain(log)
    assert all_aborted(log) == []
    assert log.last_stable_offset(log.log_end_offset) == log.log_end_offset


def test_aborted_range_queries(tmp_path: Path) -> None:
    index = TransactionIndex.create(tmp_path / "x.txnindex")
    entries = [AbortedTxn(1, 0, 5, 6), AbortedTxn(2, 3, 9, 10), AbortedTxn(1, 12, 14, 15)]
    for entry in entries:
        index.append(entry)
    assert index.collect_aborted(0, 100) == entries
    assert index.collect_aborted(6, 12) == [entries[1]]  # ends before 6 / starts at 12: out
    assert index.collect_aborted(10, 13) == [entries[2]]
    assert index.collect_aborted(15, 20) == []
    assert index.collect_aborted(0, 1) == [entries[0]]
    assert TransactionIndex.load(index.path).entries == entries
    with pytest.raises(ValueError):
        index.append(AbortedTxn(3, 13, 14, 15))


def test_a_torn_txnindex_tail_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "x.txnindex"
    index = TransactionIndex.create(path)
    index.append(AbortedTxn(1, 0, 5, 6))
    index.append(AbortedTxn(2, 6, 8, 9))
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    assert TransactionIndex.load(path).entries == [AbortedTxn(1, 0, 5, 6)]
    assert path.stat().st_size == ENTRY.size
    path.write_bytes(data[: ENTRY.size] + struct.pack(">h", 9) + data[ENTRY.size + 2 :])
    assert TransactionIndex.load(path).entries == [AbortedTxn(1, 0, 5, 6)]


def test_aborted_transactions_spanning_segments_are_found_from_the_first(log: PartitionLog) -> None:
    a = Producer(log, 1)
    first = a.send()
    for _ in range(12):
        plain(log)
    marker = a.end(ABORT)
    assert len(log.segment_base_offsets) > 2
    assert log.collect_aborted_transactions(first, first + 1) == [
        AbortedTxn(1, first, marker, marker + 1)
    ]
    assert log.collect_aborted_transactions(marker + 1, log.log_end_offset) == []


def transactions(log: PartitionLog) -> tuple[int, list[AbortedTxn]]:
    """An aborted transaction, a committed one, and one still ongoing, across segments."""
    a, b, c = Producer(log, 1), Producer(log, 2), Producer(log, 3)
    a.send()
    b.send(2)
    for _ in range(6):
        plain(log)
    a.end(ABORT)
    b.end(COMMIT)
    open_first = c.send()
    for _ in range(6):
        plain(log)
    c.send()
    return open_first, all_aborted(log)


@pytest.mark.parametrize("how", ["clean", "crash", "crash-without-snapshots"])
def test_transactions_survive_a_restart(tmp_path: Path, how: str) -> None:
    """The ongoing transaction keeps the LSO where it was, and the aborted ones stay indexed:
    after a clean close from the snapshot and the trusted index, after a crash from recovery
    (which rebuilds the txnindex of the segments it checks) and replay."""
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    open_first, aborted = transactions(log)
    end = log.log_end_offset
    assert log.last_stable_offset(end) == open_first and aborted
    if how == "clean":
        log.close()
    else:
        log.abandon()
        (tmp_path / "t-0" / "recovery-point-offset-checkpoint").unlink()
        if how == "crash-without-snapshots":
            for snapshot in (tmp_path / "t-0").glob("*.snapshot"):
                snapshot.unlink()
    reopened = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    assert reopened.log_end_offset == end
    assert reopened.last_stable_offset(end) == open_first
    assert all_aborted(reopened) == aborted
    entry = reopened.producer_state.entry(3)
    assert entry is not None and entry.current_txn_first_offset == open_first


def test_a_crash_rebuilds_a_lost_txnindex(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    _, aborted = transactions(log)
    log.abandon()
    for path in (tmp_path / "t-0").glob("*" + TXN_INDEX_SUFFIX):
        path.write_bytes(path.read_bytes()[:-3])  # torn by a power loss
    (tmp_path / "t-0" / "recovery-point-offset-checkpoint").unlink()
    assert all_aborted(PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)) == aborted


def test_truncation_cuts_the_txnindex_and_reopens_transactions(log: PartitionLog) -> None:
    a = Producer(log, 1)
    first = a.send()
    plain(log)
    marker = a.end(ABORT)
    assert all_aborted(log)
    log.truncate_to(marker)
    assert all_aborted(log) == []
    assert log.last_stable_offset(log.log_end_offset) == first  # ongoing again
    assert log.append_marker(1, 0, ABORT, NOW).first_offset == marker
    assert all_aborted(log) == [AbortedTxn(1, first, marker, marker + 1)]
    log.truncate_to(first)
    assert all_aborted(log) == [] and log.last_stable_offset(log.log_end_offset) == first
    log.truncate_fully_and_start_at(50, NOW)
    assert log.last_stable_offset(50) == 50 and all_aborted(log) == []


def test_retention_deletes_a_segments_txnindex(log: PartitionLog, tmp_path: Path) -> None:
    a = Producer(log, 1)
    a.send()
    a.end(ABORT)
    for _ in range(12):
        plain(log)
    assert list((tmp_path / "t-0").glob("*" + TXN_INDEX_SUFFIX))
    log.delete_records_before(log.log_end_offset - 1)
    assert not list((tmp_path / "t-0").glob("*" + TXN_INDEX_SUFFIX))
    assert all_aborted(log) == []


def test_retention_may_delete_the_start_of_an_open_transaction(tmp_path: Path) -> None:
    """Retention is bounded by the high watermark only (Kafka's deletableSegments), so it may
    delete where an open transaction starts: the producer keeps its open transaction, and the
    last stable offset moves up with the log start offset, never below it (Kafka's
    maybeIncrementFirstUnstableOffset)."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=100, retention_ms=1000), NOW)
    a = Producer(log, 1)
    first = a.send()
    for _ in range(3):
        log.append(*record_set(build_batch([Record(0, NOW + 5000, None, b"x")], base_offset=0)), NOW)
    assert log.last_stable_offset(log.log_end_offset) == first
    assert log.apply_retention(NOW + 2000, high_watermark=log.log_end_offset) == 1
    assert log.log_start_offset > first
    assert log.last_stable_offset(log.log_end_offset) == log.log_start_offset
    assert log.last_stable_offset(first) == first  # never above the high watermark
    entry = log.producer_state.entry(1)
    assert entry is not None and entry.current_txn_first_offset == first
    a.end(COMMIT)
    assert log.last_stable_offset(log.log_end_offset) == log.log_end_offset


def test_marker_and_transaction_rules(log: PartitionLog) -> None:
    """A plain batch inside an open transaction is INVALID_TXN_STATE; a marker with an epoch
    older than the producer's is INVALID_PRODUCER_EPOCH; neither writes anything."""
    a = Producer(log, 1)
    a.send()
    end = log.log_end_offset
    with pytest.raises(InvalidTxnStateError):
        a.send(transactional=False)
    with pytest.raises(InvalidProducerEpochError):
        a.end(ABORT, epoch=-1)
    assert log.log_end_offset == end
    assert log.last_stable_offset(end) == 0


def coordinator_batch(producer_id: int, epoch: int, key: bytes) -> tuple[bytearray, list[BatchHeader]]:
    """A transactional offset commit as the group coordinator writes it: the producer's id and
    epoch, the transactional flag, base sequence 0 every time (Kafka's storeOffsets)."""
    return record_set(build_batch([Record(0, NOW, key, b"offset")], base_offset=0,
                                  producer_id=producer_id, producer_epoch=epoch, base_sequence=0,
                                  attributes=TRANSACTIONAL))


def test_coordinator_batches_are_checked_for_epoch_and_transaction_state_only(
    log: PartitionLog, tmp_path: Path,
) -> None:
    """The coordinator's transactional batches (AppendOrigin.COORDINATOR) always start at
    sequence 0: each is written (as a client's Produce the second would be a duplicate), the
    first begins the producer's transaction, which holds the LSO until the marker ends it, also
    across a restart; an older epoch is INVALID_PRODUCER_EPOCH."""
    first = log.append(*coordinator_batch(9, 1, b"k1"), NOW, origin=AppendOrigin.COORDINATOR)
    second = log.append(*coordinator_batch(9, 1, b"k2"), NOW, origin=AppendOrigin.COORDINATOR)
    assert second.first_offset == first.first_offset + 1
    assert log.append(*coordinator_batch(9, 1, b"k2"), NOW).first_offset == first.first_offset
    with pytest.raises(InvalidProducerEpochError):
        log.append(*coordinator_batch(9, 0, b"k3"), NOW, origin=AppendOrigin.COORDINATOR)
    end = log.log_end_offset
    assert end == 2 and log.last_stable_offset(end) == first.first_offset
    log.close()
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    assert log.last_stable_offset(end) == first.first_offset
    log.append_marker(9, 1, COMMIT, NOW)
    assert log.last_stable_offset(log.log_end_offset) == log.log_end_offset


def test_a_follower_copying_markers_gets_the_same_transactions(tmp_path: Path) -> None:
    """Markers replicate like any batch: the follower's producer state, LSO and txnindex follow
    from the copied bytes (Kafka's appendAsFollower)."""
    leader = PartitionLog.open(tmp_path / "leader", CONFIG, NOW)
    open_first, aborted = transactions(leader)
    follower = PartitionLog.open(tmp_path / "follower", CONFIG, NOW)
    while follower.log_end_offset < leader.log_end_offset:
        data = leader.read(follower.log_end_offset, 1 << 20).records
        follower.append_as_follower(data, stored_batches(data), NOW)
    end = leader.log_end_offset
    assert follower.last_stable_offset(end) == open_first
    assert all_aborted(follower) == aborted
