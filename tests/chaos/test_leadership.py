"""Each partition's leadership story from ``partition-state`` observations, and how the report
draws it (a literal history; the real observer is exercised by the campaigns in test_verdicts)."""

from __future__ import annotations

import pytest

from chaos.leadership import partition_timelines
from chaos.results import HighWatermarkRegression, PartitionObservation
from harness.history import HistoryError, parse_history
from harness.history.write import HistoryBuilder


def _state(h: HistoryBuilder, partition: int, leader: str | None, epoch: int, isr: list[str], hw: int | None) -> None:
    h.observe("observer", "partition-state", topic="t", partition=partition, leader=leader, leader_epoch=epoch,
              isr=isr, high_watermark=hw)


def _story() -> HistoryBuilder:
    """t-0: b1 leads (epoch 0) with all three, loses b3 from the ISR, then has no leader for
    0.3 s, then b2 (epoch 1) leads with a shorter log: the high watermark goes from 40 back to
    25. t-10 is observed once. 100 ms per event."""
    h = HistoryBuilder({}, step=100_000_000)
    _state(h, 0, "b1", 0, ["b1", "b2", "b3"], 10)    # 0.0 s
    _state(h, 10, "b2", 0, ["b2"], 0)                 # 0.1 s
    _state(h, 0, "b1", 0, ["b1", "b2", "b3"], 40)    # 0.2 s
    _state(h, 0, "b1", 0, ["b1", "b2"], 40)          # 0.3 s
    _state(h, 0, None, 1, ["b2"], None)               # 0.4 s
    h.send("p0", "t", "v", partition=0, offset=41)    # 0.5, 0.6 s
    _state(h, 0, "b2", 2, ["b2"], 25)                 # 0.7 s
    _state(h, 0, "b2", 2, ["b2", "b1"], 45)           # 0.8 s
    return h


def test_timelines_give_leader_changes_leaderless_time_isr_shrinks_and_hw_regressions() -> None:
    timelines = partition_timelines(_story().history())
    assert list(timelines) == ["t-0", "t-10"]  # in partition order, not string order
    t0 = timelines["t-0"]
    assert [s.t for s in t0.states] == [0.0, 0.2, 0.3, 0.4, 0.7, 0.8]
    assert t0.states[3] == PartitionObservation(t=0.4, leader=None, leader_epoch=1, isr=("b2",), high_watermark=None)
    assert t0.leader_changes == 1  # b1 -> (none) -> b2 is one election
    assert t0.leaderless_s == pytest.approx(0.3)
    assert t0.isr_shrinks == 2 and t0.min_isr == 1
    assert t0.high_watermark_regressions == (HighWatermarkRegression(t=0.7, from_=40, to=25, leader="b2",
                                                                     leader_epoch=2),)
    t10 = timelines["t-10"]
    assert len(t10.states) == 1 and t10.leader_changes == 0 and t10.high_watermark_regressions == ()


def test_an_unobserved_run_has_no_timelines() -> None:
    h = HistoryBuilder({})
    h.send("p0", "t", "v", partition=0, offset=0)
    assert partition_timelines(h.history()) == {}


def test_a_partition_state_is_validated_like_any_observation() -> None:
    """A malformed observation names its field; one with an invocation is refused."""
    header = '{"kconform-history": 3, "meta": {}}\n'
    bad = ('{"index": 0, "time": 1, "process": "observer", "type": "ok", "f": "partition-state", "value": '
           '{"topic": "t", "partition": 0, "leader": 1, "leader_epoch": 0, "isr": [], "high_watermark": 0}}\n')
    with pytest.raises(HistoryError, match="value.leader"):
        parse_history([header, bad])
    invoked = bad.replace('"leader": 1', '"leader": "b1"').replace('"type": "ok"', '"type": "invoke"')
    with pytest.raises(HistoryError, match="must have type ok"):
        parse_history([header, invoked])
