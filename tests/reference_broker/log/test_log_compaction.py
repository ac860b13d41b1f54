"""Log compaction: newest record per key, preserved offsets, tombstones, lag, crash safety."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_broker.log import LogConfig, PartitionLog
from reference_broker.log.segment import LogSegment
from reference_broker.log.testing import batch, compress, read_records, record_set, stored_batches
from reference_broker.records import Compression

COMPACT = frozenset({"compact"})


def _config(
    *,
    segment_bytes: int = 200,
    delete_retention_ms: int = 24 * 3600 * 1000,
    min_compaction_lag_ms: int = 0,
) -> LogConfig:
    return LogConfig(
        segment_bytes=segment_bytes,
        cleanup_policy=COMPACT,
        delete_retention_ms=delete_retention_ms,
        min_compaction_lag_ms=min_compaction_lag_ms,
    )


def _put(log: PartitionLog, key: bytes, value: bytes | None, timestamp: int = 0) -> None:
    log.append(*record_set(batch(value, keys=[key], timestamps=[timestamp])), 0)


def _contents(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(r.offset, r.key, r.value) for r in read_records(log)]


def test_compaction_keeps_the_newest_record_per_key_at_its_offset(tmp_path: Path) -> None:
    """Superseded records disappear; survivors keep their original offsets."""
    log = PartitionLog.open(tmp_path / "t-0", _config(), 0)
    for i, key in enumerate([b"a", b"b", b"a", b"c", b"b", b"a", b"d", b"e"]):
        _put(log, key, b"v%d" % i)
    assert len(log.segment_base_offsets) > 2
    stats = log.compact(0)
    assert stats.records_removed == 3
    assert _contents(log) == [
        (3, b"c", b"v3"),
        (4, b"b", b"v4"),
        (5, b"a", b"v5"),
        (6, b"d", b"v6"),
        (7, b"e", b"v7"),
    ]
    assert log.log_end_offset == 8
    log.close()


def test_compaction_never_rewrites_the_active_segment(tmp_path: Path) -> None:
    """Duplicates inside the active segment survive and its file is left byte for byte."""
    log = PartitionLog.open(tmp_path / "t-0", _config(segment_bytes=10_000), 0)
    for value in (b"1", b"2", b"3"):
        _put(log, b"k", value)
    active = tmp_path / "t-0" / "00000000000000000000.log"
    before = active.read_bytes()
    assert log.compact(0).segments_rewritten == 0
    assert active.read_bytes() == before
    assert [v for _, _, v in _contents(log)] == [b"1", b"2", b"3"]
    log.close()


def test_a_record_superseded_from_the_active_segment_is_removed(tmp_path: Path) -> None:
    """The key map spans the whole log, so a newer value in the active segment wins."""
    log = PartitionLog.open(tmp_path / "t-0", _config(), 0)
    _put(log, b"k", b"old" * 30)
    _put(log, b"x", b"other" * 20)
    _put(log, b"k", b"new")
    assert log.segment_base_offsets[-1] == 2
    log.compact(0)
    assert _contents(log) == [(1, b"x", b"other" * 20), (2, b"k", b"new")]
    log.close()


@pytest.mark.parametrize("reopen", ["none", "clean", "crash"])
def test_tombstones_are_dropped_only_after_delete_retention_ms(tmp_path: Path, reopen: str) -> None:
    """A tombstone outlives delete.retention.ms from the first pass keeping it, across restarts."""
    config = _config(delete_retention_ms=500)
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    _put(log, b"k", b"value")
    _put(log, b"k", None)
    for filler in (b"f1", b"f2", b"f3"):
        _put(log, filler, b"x" * 60)
    log.compact(1000)
    assert (1, b"k", None) in _contents(log)
    if reopen == "clean":
        log.close()
        log = PartitionLog.open(tmp_path / "t-0", config, 0)
    elif reopen == "crash":
        log.abandon()
        log = PartitionLog.open(tmp_path / "t-0", config, 0)
    log.compact(1499)
    assert (1, b"k", None) in _contents(log)
    log.compact(1500)
    assert [key for _, key, _ in _contents(log)] == [b"f1", b"f2", b"f3"]
    log.close()


def test_min_compaction_lag_protects_recent_segments_and_all_after(tmp_path: Path) -> None:
    """Cleaning stops at the first segment holding a record newer than min.compaction.lag.ms."""
    log = PartitionLog.open(tmp_path / "t-0", _config(min_compaction_lag_ms=1000), 0)
    for key, timestamp in [(b"a", 0), (b"a", 100), (b"a", 5000), (b"a", 200), (b"b", 6000)]:
        _put(log, key, b"v" * 60, timestamp)
    assert log.compact(now_ms=5500).segments_rewritten == 2
    assert [offset for offset, _, _ in _contents(log)] == [2, 3, 4]
    assert log.compact(now_ms=6000).segments_rewritten == 1
    assert [offset for offset, _, _ in _contents(log)] == [3, 4]
    log.close()


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.LZ4, Compression.ZSTD])
def test_compressed_batches_are_compacted(tmp_path: Path, codec: Compression) -> None:
    """A changed compressed batch is rebuilt uncompressed; an unchanged one is copied as is."""
    log = PartitionLog.open(tmp_path / "t-0", _config(segment_bytes=10_000), 0)
    changed = compress(batch(b"a1", b"b1", b"c1", keys=[b"a", b"b", b"c"]), codec)
    unchanged = compress(batch(b"d1", b"e1", keys=[b"d", b"e"]), codec)
    log.append(*record_set(changed), 0)
    unchanged_records, unchanged_headers = record_set(unchanged)
    log.append(unchanged_records, unchanged_headers, 0)
    log.update_config(_config(segment_bytes=100))  # the next append rolls
    log.append(*record_set(batch(b"b2", keys=[b"b"])), 0)
    log.compact(0)
    stored = log.read(0, 1 << 20).records
    headers = stored_batches(stored)
    assert [(h.base_offset, h.last_offset, h.compression) for h in headers] == [
        (0, 2, Compression.NONE),
        (3, 4, codec),
    ]
    assert stored[headers[1].position :] == bytes(unchanged_records)
    assert _contents(log) == [
        (0, b"a", b"a1"),
        (2, b"c", b"c1"),
        (3, b"d", b"d1"),
        (4, b"e", b"e1"),
        (5, b"b", b"b2"),
    ]
    log.close()


def test_an_unchanged_log_is_not_rewritten(tmp_path: Path) -> None:
    """A second pass with nothing to remove rewrites no segment."""
    log = PartitionLog.open(tmp_path / "t-0", _config(), 0)
    for key in (b"a", b"b", b"a", b"c"):
        _put(log, key, b"x" * 60)
    assert log.compact(0).segments_rewritten == 1
    assert log.compact(0).segments_rewritten == 0
    log.close()


def test_a_producers_last_batch_stays_as_an_empty_batch(tmp_path: Path) -> None:
    """An emptied batch stays (empty) while it is its producer's last one, then goes."""
    log = PartitionLog.open(tmp_path / "t-0", _config(), 0)
    for producer_id, sequence in ((7, 0), (7, 1), (8, 0)):
        log.append(*record_set(batch(b"x" * 60, keys=[b"k"], producer_id=producer_id,
                                     base_sequence=sequence)), 0)
    _put(log, b"k", b"newest")
    log.compact(0)
    data = log.read(0, 1 << 20).records
    headers = stored_batches(data)
    assert [(h.base_offset, h.producer_id, h.record_count) for h in headers] == [(1, 7, 0)]
    assert [offset for offset, _, _ in _contents(log)] == [3]
    log.append(*record_set(batch(b"x" * 60, keys=[b"z"], producer_id=7, base_sequence=2)), 0)
    _put(log, b"y", b"roll")
    log.compact(0)
    headers = stored_batches(log.read(0, 1 << 20).records)
    assert [(h.base_offset, h.producer_id, h.record_count) for h in headers] == [(2, 8, 0)]
    log.close()


def test_compaction_does_nothing_on_a_delete_only_topic(tmp_path: Path) -> None:
    """cleanup.policy=delete alone never compacts."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=200), 0)
    for _ in range(3):
        _put(log, b"k", b"x" * 60)
    assert log.compact(0).segments_rewritten == 0
    assert len(_contents(log)) == 3
    log.close()


def _fail(*args: object, **kwargs: object) -> None:
    raise OSError("simulated crash")


@pytest.mark.parametrize("crash_point", ["before rename", "after rename"])
def test_a_crash_during_compaction_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_point: str
) -> None:
    """Killed before or after swapping in the cleaned segment, the log reopens whole and clean."""
    log = PartitionLog.open(tmp_path / "t-0", _config(), 0)
    for i, key in enumerate([b"a", b"b", b"a", b"c", b"d"]):
        _put(log, key, b"v%d" % i * 20)
    before = _contents(log)
    with monkeypatch.context() as patch:
        if crash_point == "before rename":
            patch.setattr(os, "replace", _fail)
        else:
            patch.setattr(LogSegment, "rebuild_indexes", _fail)
        with pytest.raises(OSError, match="simulated crash"):
            log.compact(0)
    log.abandon()
    log = PartitionLog.open(tmp_path / "t-0", _config(), 0)
    assert not list((tmp_path / "t-0").glob("*.cleaned"))
    after = _contents(log)
    if crash_point == "before rename":
        assert after == before
    else:
        assert after == [r for r in before if r[0] != 0]
    _put(log, b"e", b"more")
    assert _contents(log)[-1] == (5, b"e", b"more")
    log.close()


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"a", b"b", b"c", b"d"]),
            st.one_of(st.none(), st.binary(max_size=40)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_compaction_agrees_with_a_dictionary(writes: list[tuple[bytes, bytes | None]]) -> None:
    """After compaction, reading the log back still yields the same final value for every key."""
    with tempfile.TemporaryDirectory() as directory:
        log = PartitionLog.open(Path(directory) / "t-0", _config(delete_retention_ms=0), 0)
        for key, value in writes:
            _put(log, key, value)
        expected: dict[bytes, bytes | None] = dict(writes)
        log.compact(0)
        log.compact(0)  # the second pass may drop tombstones whose horizon (0 ms) passed
        seen: dict[bytes | None, bytes | None] = {}
        offsets = []
        for offset, stored_key, stored_value in _contents(log):
            seen[stored_key] = stored_value
            offsets.append(offset)
        assert offsets == sorted(offsets)
        assert {k: v for k, v in seen.items() if v is not None} == {
            k: v for k, v in expected.items() if v is not None
        }
        assert log.log_end_offset == len(writes)
        log.close()


def test_needs_compaction_follows_the_dirty_ratio(tmp_path: Path) -> None:
    """The cleaner is due once the share of never-compacted bytes reaches
    min.cleanable.dirty.ratio, and not again until enough new data arrives."""
    config = attrs.evolve(_config(), min_cleanable_dirty_ratio=0.5)
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    log.compact(0)  # nothing yet: settles the tombstone check of a fresh open
    for i in range(8):
        _put(log, b"k%d" % i, b"v%d" % i)
    assert log.needs_compaction(0)  # everything is dirty
    log.compact(0)
    assert log.dirty_ratio() == 0.0
    assert not log.needs_compaction(0)
    for i in range(8):
        _put(log, b"n%d" % i, b"w%d" % i)
    assert log.dirty_ratio() >= 0.5 and log.needs_compaction(0)
    log.close()


def test_kept_tombstones_bring_the_cleaner_back_after_delete_retention(tmp_path: Path) -> None:
    """With a tombstone kept, the cleaner is due again delete.retention.ms later even without
    new data, and that pass removes the tombstone."""
    log = PartitionLog.open(tmp_path / "t-0", _config(delete_retention_ms=1000), 0)
    _put(log, b"gone", b"value")
    _put(log, b"gone", None)
    for i in range(6):
        _put(log, b"k%d" % i, b"v%d" % i)
    assert log.compact(10).tombstones_kept
    assert not log.needs_compaction(500)
    assert log.needs_compaction(1010)
    log.compact(1010)
    assert b"gone" not in [key for _, key, _ in _contents(log)]
    assert not log.needs_compaction(5000)
    log.close()


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.LZ4, Compression.ZSTD, Compression.SNAPPY])
def test_a_decompression_bomb_is_refused_not_inflated(codec: Compression) -> None:
    """A batch whose body inflates past MAX_DECOMPRESSED_BATCH_BYTES is reported as corrupt
    instead of being decompressed into memory."""
    from reference_broker import records
    from reference_broker.log.testing import compress_body

    huge = b"\0" * (records.MAX_DECOMPRESSED_BATCH_BYTES + 1)
    with pytest.raises(records.CorruptRecordError, match="inflates past"):
        records.decompress(codec, compress_body(huge, codec))


def test_xerial_framed_snappy_from_java_clients_decompresses() -> None:
    """Snappy in the xerial stream framing (what Java clients and kafka-python write) is read
    block by block, like raw snappy from librdkafka."""
    import struct as _struct

    import cramjam

    from reference_broker import records

    blocks = [b"first block " * 50, b"second block " * 40]
    framed = b"\x82SNAPPY\x00" + _struct.pack(">ii", 1, 1)
    for block in blocks:
        raw = bytes(cramjam.snappy.compress_raw(block))
        framed += _struct.pack(">i", len(raw)) + raw
    assert records.decompress(Compression.SNAPPY, framed) == b"".join(blocks)
