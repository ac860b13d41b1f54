"""streams-exactly-once on tiny literal histories: a Kafka Streams run whose read_committed
output names every input once, and runs that lose, duplicate or invent output, or whose state
disagrees with it, each with the witness it prints."""

from __future__ import annotations

from harness.checkers import check, streams_exactly_once
from harness.checkers.streams import NO_STREAMS, NOTHING_PROCESSED, parse_output
from harness.history import HistoryBuilder

RC = "read_committed"
META = {"streams": {"application_id": "app", "input": "in", "output": "out", "instances": 2}}


def _run(outputs: list[tuple[int, str]], *, committed: int = 3, drained: bool = True,
         extra_input: bool = False) -> HistoryBuilder:
    """Three acknowledged inputs on in-0 (a, b, c at offsets 0-2), a read_committed reader of
    out-0 that read ``outputs`` ((offset, value)), the application's committed offset, and a
    complete read_committed drain of the output."""
    b = HistoryBuilder(META)
    for o, v in enumerate("abc"):
        b.send("p0", "in", v, partition=0, offset=o)
    if extra_input:
        b.send("p0", "in", "d", partition=0, offset=3)
    b.poll("so", [("out", 0, o, v) for o, v in outputs], isolation_level=RC)
    b.call("streams", "committed", {"group": "app", "partitions": [["in", 0]]},
           result={"offsets": [["in", 0, committed]]})
    if drained:
        b.ok(b.invoke("drain-output", "drain", partitions=[["out", 0]]))
    return b


def _explain(b: HistoryBuilder) -> list[str]:
    result = streams_exactly_once(b.history())
    for anomaly in result.anomalies:
        print(anomaly.name, anomaly.explanation, anomaly.events)  # the witnesses, shown with -s
    return [a.explanation for a in result.anomalies]


EXACT = [(0, "a@0:0#1"), (1, "b@0:1#2"), (2, "c@0:2#3")]


def test_parse_output_reads_the_input_it_names() -> None:
    assert parse_output("p0-17@1:42#9") == ("p0-17", 1, 42, 9)
    assert parse_output("x@y@0:1#1") == ("x@y", 0, 1, 1)
    assert parse_output("p0-17") is None
    assert parse_output("p0-17@1:x#1") is None


def test_each_input_once_in_the_output_holds() -> None:
    b = _run(EXACT)
    assert _explain(b) == []
    report = check(b.history(), checks=["streams-exactly-once"])
    assert report.valid and report.result("streams-exactly-once").skipped is None


def test_a_history_without_streams_is_skipped_saying_why() -> None:
    b = HistoryBuilder()
    b.send("p0", "in", "a", partition=0, offset=0)
    assert streams_exactly_once(b.history()).skipped == NO_STREAMS


def test_an_application_that_processed_nothing_is_not_judged_held() -> None:
    """Inputs written, but no output read and no offset committed (an application that never
    ran, e.g. its client could not talk to the broker): skipped saying why, not held."""
    assert streams_exactly_once(_run([], committed=0).history()).skipped == NOTHING_PROCESSED
    assert _explain(_run([], committed=3)) != []  # committed past inputs it never wrote: lost output


def test_lost_output_below_the_committed_offset() -> None:
    b = _run([(0, "a@0:0#1"), (1, "c@0:2#2")])
    found = _explain(b)
    assert len(found) == 1 and found[0].startswith("lost output: input in-0@1 ('b') is below the application's "
                                                   "committed offset 3")
    witness = streams_exactly_once(b.history()).anomalies[0].events
    assert witness == (2, 3, 9)  # b's send and acknowledgement, the committed offsets read


def test_no_loss_is_judged_above_the_committed_offset_or_without_a_complete_output_read() -> None:
    assert _explain(_run(EXACT, extra_input=True, committed=3)) == []  # d is not processed yet
    assert _explain(_run(EXACT[:2], drained=False)) == []  # the output may have more


def test_duplicated_output() -> None:
    found = _explain(_run([*EXACT, (3, "c@0:2#3")]))
    assert found == ["duplicated output: input in-0@2 is named by 2 committed output records: out-0@2 'c@0:2#3', "
                     "out-0@3 'c@0:2#3'"]


def test_phantom_output_naming_another_record_or_no_record() -> None:
    found = _explain(_run([*EXACT, (3, "z@0:1#4")]))
    assert "phantom output: 'z@0:1#4' names 'z' at in-0@1, which holds 'b'" in found
    b = _run(EXACT)
    b.ok(b.invoke("drain", "drain", partitions=[["in", 0]]))
    b.poll("so", [("out", 0, 3, "y@0:7#4")], isolation_level=RC)
    assert _explain(b) == ["phantom output: 'y@0:7#4' names in-0@7, where the complete drain of the input found "
                           "no record"]
    assert _explain(_run([*EXACT, (3, "garbage")])) == [
        "phantom output: out-0@3 holds 'garbage', which names no input record (expected "
        "'<value>@<partition>:<offset>#<count>')"]


def test_phantom_output_of_an_aborted_input() -> None:
    b = _run(EXACT)
    b.txn("p1", [["send", "in", 0, None, "t", 3]], outcome="abort")
    b.poll("so", [("out", 0, 3, "t@0:3#4")], isolation_level=RC)
    found = _explain(b)
    assert len(found) == 1 and found[0].startswith("phantom output: 't@0:3#4' names 't', written by p1's transaction")


def test_state_that_disagrees_with_the_output() -> None:
    found = _explain(_run([(0, "a@0:0#1"), (1, "b@0:1#1"), (2, "c@0:2#2")]))
    assert found == ["state: 'b@0:1#1' (input in-0@1) carries count 1, expected 2: it follows 'a@0:0#1'; the state "
                     "store and the output disagree"]
