"""The transaction model (specs/transactions.py): outcomes, visibility, the LSO's rules, cycles."""

from __future__ import annotations

import pytest

from specs.log import LogModel, ModelRecord
from specs.transactions import (
    KAFKA_ALLOWS,
    Dependency,
    Outcome,
    Transaction,
    TxnRecord,
    cycle_anomaly,
    hanging,
    may_be_visible,
    must_be_visible,
    outcome_of,
    passes_open_transaction,
    read_committed_view,
    stable_offsets_consistent,
)
from specs.types import Offset, PartitionId, TopicPartition

WW, WR, RW = Dependency.WW, Dependency.WR, Dependency.RW


@pytest.mark.parametrize(("completion", "ended", "outcome"), [
    ("ok", "commit", Outcome.COMMITTED),
    ("ok", "abort", Outcome.ABORTED),
    ("fail", None, Outcome.ABORTED),
    ("info", None, Outcome.UNKNOWN),
    (None, None, Outcome.UNKNOWN),  # never completed
])
def test_the_outcome_follows_the_completion(completion: str | None, ended: str | None, outcome: Outcome) -> None:
    assert outcome_of(completion, ended) is outcome


def test_read_committed_readers_see_committed_and_plain_records_never_aborted_ones() -> None:
    assert must_be_visible(Outcome.COMMITTED) and must_be_visible(None)
    assert not must_be_visible(Outcome.UNKNOWN) and may_be_visible(Outcome.UNKNOWN)
    assert not may_be_visible(Outcome.ABORTED)


def test_a_read_committed_view_stops_at_the_lso_and_skips_aborted_records() -> None:
    """Records 0 (plain), 1 (aborted), 2 (committed), 3 (open): the LSO is 3, the first open one."""
    log = LogModel(high_watermark=Offset(4), records=tuple(ModelRecord(v) for v in "abcd"),
                   first_open_transaction_offset=Offset(3))
    outcomes = [(Offset(0), None), (Offset(1), Outcome.ABORTED), (Offset(2), Outcome.COMMITTED),
                (Offset(3), Outcome.UNKNOWN)]
    assert read_committed_view(outcomes, log.last_stable_offset) == (0, 2)


def test_the_lso_rules() -> None:
    assert stable_offsets_consistent(5, 5) and not stable_offsets_consistent(6, 5)
    assert passes_open_transaction(4, 3) and not passes_open_transaction(3, 3)


def test_a_transaction_hangs_only_past_its_timeout_and_the_coordinators_check_interval() -> None:
    assert not hanging(70_000 * 1_000_000)  # 60 s timeout + 10 s between checks: not yet
    assert hanging(70_001 * 1_000_000)
    assert hanging(2_000_000_001, timeout_ms=1_000, check_interval_ms=1_000)


@pytest.mark.parametrize(("edges", "name"), [
    ([WW, WW], "G0"),
    ([WW, WR], "G1c"),
    ([WR, WR, WR], "G1c"),
    ([WR, RW], "G-single"),
    ([RW, WW, RW], "G2"),
])
def test_cycles_are_named_as_adya_and_elle_name_them(edges: list[Dependency], name: str) -> None:
    assert cycle_anomaly(edges) == name


def test_kafka_allows_write_cycles_and_read_skew_and_says_why() -> None:
    assert set(KAFKA_ALLOWS) == {"G0", "G1c", "G-single"}
    assert "do not isolate writes" in KAFKA_ALLOWS["G0"]


def test_a_transaction_knows_the_partitions_it_marks() -> None:
    t0, t1 = TopicPartition("t", PartitionId(0)), TopicPartition("t", PartitionId(1))
    txn = Transaction(1, "p0", Outcome.COMMITTED, (TxnRecord(t0, "a", offset=Offset(3)), TxnRecord(t1, "b"),
                                                   TxnRecord(t0, "c")))
    assert txn.partitions() == {t0, t1}
