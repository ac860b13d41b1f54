"""Property tests: simulated correct transactional runs break no claim; one injected fault is named."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from harness.checkers import check
from harness.checkers.judgement import judge
from harness.history import History, HistoryBuilder, parse_history
from harness.history.simulate_transactions import TxnSimConfig, TxnSimulation
from specs.claims import Configuration, claims_for

Raw = list[dict[str, Any]]


@st.composite
def runs(draw: st.DrawFn) -> Raw:
    """The raw events of a simulated correct transactional run."""
    config = TxnSimConfig(
        operations=draw(st.integers(0, 80)),
        producers=draw(st.integers(1, 3)),
        workers=draw(st.integers(1, 2)),
        input_partitions=draw(st.integers(1, 3)),
        output_partitions=draw(st.integers(1, 2)),
        max_poll=draw(st.integers(1, 5)),
        abort=0.2, fail=0.1, unknown=0.1,
    )
    b = HistoryBuilder()
    TxnSimulation(b, draw(st.randoms(use_true_random=False)), config).run()
    return b.history().raw


def _reload(raw: Raw) -> History:
    """`raw` through the file format (validated and indexed again)."""
    lines = [json.dumps({"kconform-history": 4, "meta": {}}) + "\n"] + [json.dumps(e) + "\n" for e in raw]
    return parse_history(lines)


def _append_poll(raw: Raw, process: str, records: list[list[Any]]) -> int:
    """Append a read_committed poll of `records`; returns its completion's index."""
    i, t = len(raw), raw[-1]["time"] + 1
    raw.append({"index": i, "time": t, "process": process, "type": "invoke", "f": "poll",
                "value": {"isolation_level": "read_committed"}})
    raw.append({"index": i + 1, "time": t, "process": process, "type": "ok", "f": "poll", "invoke": i,
                "value": {"records": records}})
    return i + 1


@given(runs())
def test_a_simulated_correct_transactional_run_breaks_no_claim(raw: Raw) -> None:
    """Only what Kafka allows (G0, G1c, G-single) may be found."""
    verdict = judge(check(_reload(raw)), claims_for(Configuration(transactions=True)))
    assert not verdict.violations and not verdict.unjudged, verdict.found


@given(runs())
def test_a_read_committed_read_of_an_aborted_record_is_named(raw: Raw) -> None:
    aborted = [(e, op) for e in raw if e["f"] == "txn" and "invoke" in e
               and (e["type"] == "fail" or e["value"].get("outcome") == "abort")
               for op in e["value"].get("ops", []) if op[0] == "send" and op[5] is not None]
    assume(aborted)
    done, op = aborted[0]
    read = _append_poll(raw, "intruder", [[op[1], op[2], op[5], None, op[4]]])
    found = check(_reload(raw), checks=["aborted-read"]).result("aborted-read").anomalies
    assert [a.events for a in found] == [(done["invoke"], done["index"], read)]


@given(runs())
def test_a_committed_record_the_drain_read_past_without_seeing_it_is_named(raw: Raw) -> None:
    """Drop a committed transaction's record from the drain, between two records the drain read
    (so it read past it) when it saw another record of that transaction: torn-transaction (and
    poll-skip)."""
    writer = {op[4]: e["invoke"] for e in raw if e["f"] == "txn" and e["type"] == "ok"
              and e["value"]["outcome"] == "commit" for op in e["value"]["ops"] if op[0] == "send"}
    drain = [e for e in raw if e["process"] == "drainer" and e["f"] == "poll" and e["type"] == "ok"]
    read = [(e, i) for e in drain for i, r in enumerate(e["value"]["records"][:-1]) if i and r[4] in writer]
    victims = [(e, i) for e, i in read
               if sum(writer.get(r[4]) == writer[e["value"]["records"][i][4]]
                      for d in drain for r in d["value"]["records"]) > 1]
    assume(victims)
    event, i = victims[0]
    record = event["value"]["records"].pop(i)
    report = check(_reload(raw), checks=["torn-transaction", "poll-skip"])
    torn = report.result("torn-transaction").anomalies
    assert len(torn) == 1 and f"without its {record[4]!r}" in torn[0].explanation
    assert writer[record[4]] in torn[0].events and "drainer (read_committed)" in torn[0].explanation
    assert report.result("poll-skip").count == 1  # and a lost-write when nobody else read it


@given(runs())
def test_a_zombie_that_processes_committed_input_again_duplicates_the_output(raw: Raw) -> None:
    """A second committed transaction of the group processes input a committed one processed."""
    ctp = [e for e in raw if e["f"] == "txn" and e["type"] == "ok" and e["value"]["outcome"] == "commit"
           and any(op[0] == "offsets" for op in e["value"]["ops"])]
    assume(ctp)
    done = ctp[0]
    polled = next(op for op in done["value"]["ops"] if op[0] == "poll")
    offsets = next(op for op in done["value"]["ops"] if op[0] == "offsets")
    i, t = len(raw), raw[-1]["time"] + 1
    ops = [polled, ["send", "out", 0, None, "zombie-1", None], offsets]
    raw.append({"index": i, "time": t, "process": "zombie", "type": "invoke", "f": "txn",
                "value": {"ops": [["poll"], ["offsets", "g"]], "commit": True, "isolation_level": "read_committed"}})
    raw.append({"index": i + 1, "time": t, "process": "zombie", "type": "ok", "f": "txn", "invoke": i,
                "value": {"ops": ops, "outcome": "commit"}})
    found = check(_reload(raw), checks=["exactly-once-processing"]).result("exactly-once-processing").anomalies
    assert len(found) == len(polled[1])
    assert all(done["invoke"] in a.events and i in a.events and "processed by 2" in a.explanation for a in found)
