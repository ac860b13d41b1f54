"""Fault schedules: drawn from a seed or by Hypothesis, saved and loaded back exactly, refused
with a clear message when the file is broken, and shrunk by Hypothesis towards the fewest and
shortest faults that still break a property."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.campaign import CampaignSettings
from chaos.faults import FAULTS
from chaos.schedule import (
    MIN_FAULT_S,
    NAMED,
    Context,
    FaultSpec,
    Schedule,
    ScheduleError,
    named_schedule,
    random_schedule,
    schedules,
)

CTX = Context(("b1", "b2", "b3", "controller"), ("b1", "b2", "b3"), partitions=3, consumers=("c1", "c2"),
              producers=("p0", "p1"), streams=("s0", "s1"), processors=("x0", "x1"))
SAFE = [name for name, kind in FAULTS.items() if not kind.unsafe]


def test_a_seed_always_draws_the_same_schedule_and_faults_fit_the_duration() -> None:
    """Same seed, same schedule; faults one after another, after the lead-in, ending before the end."""
    a = random_schedule(42, SAFE, CTX, 60.0)
    assert a == random_schedule(42, SAFE, CTX, 60.0)
    assert a != random_schedule(43, SAFE, CTX, 60.0)
    assert len(a.faults) >= 3
    for before, after in zip(a.faults, a.faults[1:]):
        assert before.end <= after.at
    assert all(2.0 <= f.at and f.end <= 58.0 and f.duration >= MIN_FAULT_S for f in a.faults)


@given(schedules(SAFE, CTX, 30.0, seed=5))
@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
def test_every_drawn_schedule_survives_a_json_round_trip(schedule: Schedule) -> None:
    """What schedule.json holds loads back into the very same schedule."""
    assert Schedule.from_json(json.loads(schedule.dumps())) == schedule


def test_a_saved_schedule_replays_with_its_settings(tmp_path: Path) -> None:
    """schedule.json carries the campaign settings, which load back unchanged."""
    campaign = CampaignSettings(duration=20.0, seed=9, overrides={"unclean.leader.election.enable": "true"},
                                faults=("kill", "pause"))
    schedule = Schedule((FaultSpec("kill", 2.0, 3.0, "leader", {"partition": 1}),), 20.0, 9, "x",
                        campaign.to_json())
    path = tmp_path / "schedule.json"
    schedule.save(path)
    loaded = Schedule.load(path)
    assert loaded == schedule
    assert CampaignSettings.from_json(loaded.settings) == campaign


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not JSON"),
    ("[]", "a schedule is a JSON object"),
    ('{"kconform-schedule": 1, "duration": 10, "seed": 1, "faults": [{"fault": "melt", "at": 1, '
     '"duration": 1}]}', "faults[0].fault"),
    ('{"kconform-schedule": 1, "duration": -3, "seed": 1}', "'duration'"),
    ('{"duration": 10, "seed": 1}', "kconform-schedule"),
    ('{"kconform-schedule": 1, "duration": 10, "seed": 1, "faults": [{"fault": "kill", "at": "soon", '
     '"duration": 1}]}', "faults[0].at"),
])
def test_a_broken_schedule_file_is_refused_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(text)
    with pytest.raises(ScheduleError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        Schedule.load(path)
    assert str(path) in str(info.value)


def test_settings_that_are_not_a_campaigns_are_refused() -> None:
    with pytest.raises(ScheduleError, match="settings"):
        CampaignSettings.from_json({})
    with pytest.raises(ScheduleError, match="settings"):
        CampaignSettings.from_json({"target": "reference", "brokers": "three", "workload": {"acks": "2"},
                                    "bogus": 1, "duration": 10, "seed": 1, "extra": None,
                                    "overrides": "not a dict"})


@pytest.mark.parametrize("name", [n for n, (_text, make) in NAMED.items() if make is not None])
def test_every_named_campaign_fits_its_duration(name: str) -> None:
    schedule = named_schedule(name, 1, CTX, 20.0, SAFE)
    assert schedule.faults, name
    assert all(0 <= f.at and f.end <= 20.0 for f in schedule.faults)
    assert all(f.fault in FAULTS for f in schedule.faults)


def _kills_leader_while_followers_frozen(schedule: Schedule) -> bool:
    """The acks=1 loss pattern: a kill of the leader starts while a pause of its followers is on."""
    pauses = [f for f in schedule.faults if f.fault == "pause" and f.target == "followers"]
    return any(k.fault == "kill" and k.target == "leader" and any(p.at <= k.at < p.end for p in pauses)
               for k in schedule.faults)


def test_hypothesis_shrinks_a_failing_schedule_to_the_fewest_and_shortest_faults() -> None:
    """A property broken by one pattern (kill the leader while its followers are frozen) fails
    on some drawn schedule; Hypothesis shrinks it to no more faults than it first found, only
    kills and pauses, each as short as a fault can be, at the earliest time."""
    failing: list[Schedule] = []

    ctx = Context(("b1", "b2", "b3"), ("b1", "b2", "b3"), partitions=1)

    @given(schedules(["kill", "pause"], ctx, 30.0, max_faults=8, overlap=True))
    @settings(max_examples=2000, database=None, suppress_health_check=list(HealthCheck), deadline=None)
    def no_loss(schedule: Schedule) -> None:
        if _kills_leader_while_followers_frozen(schedule):
            failing.append(schedule)
            raise AssertionError("acks=1 loses writes under this schedule")

    with pytest.raises(AssertionError, match="acks=1 loses writes"):
        no_loss()
    first, shrunk = failing[0], failing[-1]  # Hypothesis replays the minimal example last
    assert _kills_leader_while_followers_frozen(shrunk)
    # Shrinking is heuristic (a repeated identical fault may survive it), but it never grows the
    # schedule, and every fault ends up as short and as early as a fault can be.
    assert len(shrunk.faults) <= len(first.faults), (first.describe(), shrunk.describe())
    assert {f.fault for f in shrunk.faults} == {"kill", "pause"}, shrunk.describe()
    assert all(f.duration == MIN_FAULT_S and f.at == 2.0 for f in shrunk.faults), shrunk.describe()
    assert sum(f.duration for f in shrunk.faults) <= sum(f.duration for f in first.faults)


@given(st.data())
@settings(max_examples=20)
def test_drawn_targets_name_nodes_of_the_context(data: st.DataObject) -> None:
    schedule = data.draw(schedules(SAFE, CTX, 20.0))
    for f in schedule.faults:
        if f.target is None:
            continue
        names = set(f.target.split(","))
        assert names <= {*CTX.nodes, "leader", "followers", *CTX.consumers, *CTX.producers, *CTX.streams,
                         *CTX.processors}, f


def test_processor_crashes_crash_each_processor_in_turn_and_replace_it_a_second_later() -> None:
    schedule = named_schedule("processor-crashes", 3, CTX, 30.0, SAFE)
    assert [(f.fault, f.target, f.duration) for f in schedule.faults] == [
        ("processor-crash", name, 1.0) for name in ("x0", "x1", "x0", "x1")]
    assert [f.at for f in schedule.faults] == [2.0, 10.0, 18.0, 26.0]
