"""Property tests: simulated correct runs pass every check; one injected fault is always named."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from harness.checkers import CHECKS, TRANSACTIONAL, check
from harness.history import History, HistoryBuilder, parse_history
from harness.history.simulate import SimConfig, Simulation

Raw = list[dict[str, Any]]


@st.composite
def runs(draw: st.DrawFn, **overrides: Any) -> Raw:
    """The raw events of a simulated correct run, starting with three acked sends to partition 0."""
    config = SimConfig(
        operations=draw(st.integers(0, 120)),
        producers=draw(st.integers(1, 3)),
        consumers=draw(st.integers(1, 3)),
        partitions=draw(st.integers(1, 3)),
        max_poll=draw(st.integers(1, 5)),
        **overrides,
    )
    b = HistoryBuilder()
    sim = Simulation(b, draw(st.randoms(use_true_random=False)), config)
    for i in range(3):
        sim.acked_send("seed-producer", 0, f"seed-{i}")
    sim.run()
    return b.history().raw


def _reload(raw: Raw) -> History:
    """The history of `raw` after a round trip through the file format (so it is validated)."""
    lines = [json.dumps({"kconform-history": 1, "meta": {}}) + "\n"] + [json.dumps(e) + "\n" for e in raw]
    return parse_history(lines)


def _append(raw: Raw, process: str, f: str, value: dict[str, Any], result: dict[str, Any] | None = None) -> None:
    """Append a complete operation (or an observation when result is None and f is one) at the end."""
    t = raw[-1]["time"] + 1
    i = len(raw)
    if f in ("rebalance", "assignment"):
        raw.append({"index": i, "time": t, "process": process, "type": "ok", "f": f, "value": value})
        return
    raw.append({"index": i, "time": t, "process": process, "type": "invoke", "f": f, "value": value})
    raw.append({"index": i + 1, "time": t, "process": process, "type": "ok", "f": f, "invoke": i,
                "value": result or {}})


def _drain_polls(raw: Raw) -> list[dict[str, Any]]:
    return [e for e in raw if e["process"] == "drainer" and e["f"] == "poll" and e["type"] == "ok"]


def _p0_records(raw: Raw) -> dict[int, str]:
    return {o: v for e in _drain_polls(raw) for t, p, o, _k, v in e["value"]["records"] if p == 0}


@given(runs())
def test_a_simulated_correct_run_passes_every_check(raw: Raw) -> None:
    """Every anomaly check finds nothing in a run of the correct model."""
    report = check(_reload(raw))
    assert report.valid, report.anomalies
    # The transactional checks and the Streams workload's skip on a history without them.
    assert set(report.skipped) == {*TRANSACTIONAL, "streams-exactly-once"}, report.skipped


@given(runs(seeks=False, failed_polls=False))
def test_without_seeks_or_lost_polls_the_group_gets_everything_at_least_once(raw: Raw) -> None:
    """Committing after processing, with rebalances resuming at the commits, is at-least-once."""
    assert check(_reload(raw), guarantees=["at-least-once"], checks=[]).valid


def _drop_acked(raw: Raw) -> str:
    """Remove an acked record from every read.

    The drain reads partition 0 contiguously from offset 0, so it reads through the record (a
    lost-write) unless the record is the first or the last one; then the drain merely never
    saw it (unseen).
    """
    records = _p0_records(raw)
    acked = [e["value"]["offset"] for e in raw if e["f"] == "send" and e["type"] == "ok" and e["value"]["partition"] == 0]
    target = random.Random(len(raw)).choice(acked)
    for e in raw:
        if e["f"] == "poll" and e["type"] == "ok":
            e["value"]["records"] = [r for r in e["value"]["records"] if not (r[1] == 0 and r[2] == target)]
    return "lost-write" if min(records) < target < max(records) else "unseen"


def _duplicate(raw: Raw) -> str:
    """A late reader finds the first value again past the end of partition 0."""
    end = max(_p0_records(raw)) + 1
    _append(raw, "late", "poll", {}, {"records": [["t", 0, end, None, "seed-0"]]})
    return "duplicate"


def _overwrite(raw: Raw) -> str:
    """A late reader finds another value at offset 0."""
    _append(raw, "late", "poll", {}, {"records": [["t", 0, 0, None, "forged"]]})
    return "inconsistent-offsets"


def _reorder_reads(raw: Raw) -> str:
    """The drainer's first poll returns partition 0's first two records swapped."""
    first = next(e for e in _drain_polls(raw) if sum(r[1] == 0 for r in e["value"]["records"]) >= 2)
    rows = first["value"]["records"]
    i, j = [k for k, r in enumerate(rows) if r[1] == 0][:2]
    rows[i], rows[j] = rows[j], rows[i]
    return "nonmonotonic-poll"


def _reorder_sends(raw: Raw) -> str:
    """The seed producer's first two sends are acknowledged at swapped offsets."""
    acks = [e for e in raw if e["process"] == "seed-producer" and e["type"] == "ok"][:2]
    acks[0]["value"]["offset"], acks[1]["value"]["offset"] = acks[1]["value"]["offset"], acks[0]["value"]["offset"]
    return "nonmonotonic-send"


def _fail_a_read_send(raw: Raw) -> str:
    """The first send (which the drain reads) is recorded as a definite failure."""
    ack = next(e for e in raw if e["process"] == "seed-producer" and e["type"] == "ok")
    ack["type"], ack["value"] = "fail", {"error": "MESSAGE_TOO_LARGE"}
    return "aborted-read"


def _lower_high_watermark(raw: Raw) -> str:
    """The drainer's first poll reports a high watermark at its second record of partition 0."""
    first = next(e for e in _drain_polls(raw) if sum(r[1] == 0 for r in e["value"]["records"]) >= 2)
    second = [r for r in first["value"]["records"] if r[1] == 0][1]
    first["value"]["high_watermarks"] = [["t", 0, second[2]]]
    return "read-uncommitted"


def _regress_commit(raw: Raw) -> str:
    """A member of a new generation commits a lower offset than the last commit."""
    gen = max([e["value"]["generation"] for e in raw if e["f"] == "rebalance"]) + 1
    _append(raw, "c0", "commit", {"group": "g", "generation": gen, "member": "x", "offsets": [["t", 0, 3]]})
    _append(raw, "c0", "commit", {"group": "g", "generation": gen, "member": "x", "offsets": [["t", 0, 2]]})
    return "committed-offset-regression"


def _second_owner(raw: Raw) -> str:
    """An observer sees an intruder owning partition 0 in generation 1."""
    _append(raw, "observer", "assignment", {"group": "g", "generation": 1, "member": "intruder",
                                            "partitions": [["t", 0]]})
    return "group-split-brain"


INJECTIONS: dict[str, Callable[[Raw], str]] = {
    "drop-acked": _drop_acked,
    "duplicate": _duplicate,
    "overwrite": _overwrite,
    "reorder-reads": _reorder_reads,
    "reorder-sends": _reorder_sends,
    "fail-a-read-send": _fail_a_read_send,
    "lower-high-watermark": _lower_high_watermark,
    "regress-commit": _regress_commit,
    "second-owner": _second_owner,
}


@given(runs(), st.sampled_from(sorted(INJECTIONS)))
def test_one_injected_fault_is_detected_with_its_name(raw: Raw, injection: str) -> None:
    """Breaking a correct run in one specific way is always reported under the right name."""
    expected = INJECTIONS[injection](raw)
    report = check(_reload(raw))
    assert expected in CHECKS
    assert report.anomalies.get(expected, 0) >= 1, (injection, dict(report.anomalies))
