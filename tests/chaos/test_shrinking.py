"""Hypothesis shrinks a failing fault schedule on a real cluster, not only on a model.

The property is "an acks=1 campaign loses no acknowledged write". A drawn schedule freezes the
followers of partition 0 and may kill the leader inside that window (then it loses what the
leader acknowledged alone: it breaks the property), with irrelevant extra faults later and
windows longer than needed. Hypothesis tries the simplest schedule first (no kill: it holds), then
random ones until one fails, then shrinks; each example is a real campaign (one reference cluster
behind Toxiproxy for all of them, a fresh topic each). It must come back with the two faults that
matter, each window as short as the strategy allows, and that schedule must still lose writes
when it is replayed (Hypothesis replays the minimal example last).

It costs a few minutes (a campaign per example and per shrink step): marked slow and chaos.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine as hypothesis_engine

from chaos.campaign import CampaignSession, CampaignSettings
from chaos.schedule import FaultSpec, Schedule
from chaos.workload import WorkloadSettings
from tests.chaos.conftest import require_toxiproxy

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

DURATION = 9.0
START = 2.0  # the workload's lead-in before the first fault
SETTINGS = CampaignSettings(
    duration=DURATION, seed=7,
    workload=WorkloadSettings(acks="1", idempotence=False, consumers=("assigned",), partitions=1))


@st.composite
def losing_schedules(draw: st.DrawFn) -> Schedule:
    """Followers of partition 0 frozen, maybe the leader killed inside that window, plus 0-2
    extra faults later in the run (they do not matter, so shrinking should drop them)."""
    # The followers stay frozen for less than broker.session.timeout.ms (1.5 s in campaigns):
    # frozen longer, they are fenced and leave the ISR, so the partition waits, offline, for
    # the killed leader and its data instead of electing them (KIP-841), and nothing is lost.
    gap = draw(st.sampled_from([0.25, 0.5]))  # from freezing the followers to the kill
    faults = [FaultSpec("pause", START, gap + draw(st.sampled_from([0.25, 0.5])), "followers",
                        {"partition": 0})]
    # Dead long enough for the controller to fence it and elect a follower; simplest: no kill.
    kill = draw(st.one_of(st.none(), st.sampled_from([2.0, 3.0, 4.0])))
    if kill is not None:
        faults.append(FaultSpec("kill", START + gap, kill, "leader", {"partition": 0}))
    for at in draw(st.lists(st.sampled_from([6.0, 6.5, 7.0]), max_size=2, unique=True)):
        fault = draw(st.sampled_from(["pause", "latency"]))
        target = draw(st.sampled_from(["b1", "b2", "b3"]))
        params = {"latency": 200, "jitter": 50, "paths": "all"} if fault == "latency" else {}
        faults.append(FaultSpec(fault, at, 1.0, target, params))
    return Schedule(tuple(faults), DURATION, SETTINGS.seed, "hypothesis")


def test_a_failing_schedule_shrinks_to_the_faults_that_matter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_toxiproxy()
    # Shrinking *is* what this test checks: Hypothesis's own five-minute budget, not the
    # one-minute cap tests/conftest.py puts on every other property test.
    monkeypatch.setattr(hypothesis_engine, "MAX_SHRINKING_SECONDS", 300)
    with CampaignSession(SETTINGS) as session:
        _shrink(session, tmp_path)


def _shrink(session: CampaignSession, tmp_path: Path) -> None:
    runs = itertools.count()
    failing: list[tuple[Schedule, int]] = []

    @given(losing_schedules())
    @settings(max_examples=4, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    def no_acknowledged_write_is_lost(schedule: Schedule) -> None:
        result = session.run(schedule, tmp_path / f"run-{next(runs)}")
        lost = result.anomalies.get("lost-write", 0)
        if lost:
            failing.append((schedule, lost))
        assert not lost, f"{lost} acknowledged writes lost under\n{schedule.describe()}"

    with pytest.raises(AssertionError, match="acknowledged writes lost"):
        no_acknowledged_write_is_lost()
    first, shrunk = failing[0][0], failing[-1][0]  # Hypothesis replays the minimal example last
    print(f"{next(runs)} campaigns; first failure:\n{first.describe()}\nshrunk:\n{shrunk.describe()}")
    assert [f.fault for f in shrunk.faults] == ["pause", "kill"], shrunk.describe()
    assert len(shrunk.faults) <= len(first.faults)
    assert sum(f.duration for f in shrunk.faults) <= sum(f.duration for f in first.faults)
    # Shrunk as far as the strategy allows while the writes are still lost.
    assert shrunk.faults[1].duration == 2.0 and shrunk.faults[1].at == START + 0.25, shrunk.describe()
    assert shrunk.faults[0].duration == 0.5, shrunk.describe()
