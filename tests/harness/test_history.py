"""History files: writing, loading, and a precise error for every kind of broken file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.history import (
    FORMAT_VERSION,
    Event,
    HistoryBuilder,
    HistoryError,
    HistoryWriter,
    load_history,
    parse_history,
)

HEADER = json.dumps({"kconform-history": FORMAT_VERSION, "meta": {}}) + "\n"
SEND = {"index": 0, "time": 10, "process": "p0", "type": "invoke", "f": "send",
        "value": {"topic": "t", "partition": 0, "key": None, "value": "p0-1"}}
SEND_OK = {"index": 1, "time": 20, "process": "p0", "type": "ok", "f": "send", "invoke": 0,
           "value": {"topic": "t", "partition": 0, "offset": 0}}


def _lines(*events: dict[str, object]) -> list[str]:
    return [HEADER] + [json.dumps(e) + "\n" for e in events]


def _error(lines: list[str]) -> HistoryError:
    with pytest.raises(HistoryError) as info:
        parse_history(lines, "h.jsonl")
    return info.value


def _changed(event: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    """A deep copy of ``event`` with ``change`` applied to it."""
    copy: dict[str, Any] = json.loads(json.dumps(event))
    change(copy)
    return copy


def _assert_refused(lines: list[str], line: int, field: str, fragment: str) -> None:
    """Loading ``lines`` fails at line ``line``, naming ``field``, with ``fragment`` in the message."""
    err = _error(lines)
    assert (err.line, err.field) == (line, field), str(err)
    assert fragment in str(err)


def test_write_then_load_round_trips_every_event(tmp_path: Path) -> None:
    """Events written with HistoryWriter load back identical, with the header's metadata."""
    path = tmp_path / "h.jsonl"
    clock = iter(range(100, 10_000, 7))
    with HistoryWriter(path, {"seed": 42}, clock=lambda: next(clock)) as w:
        s = w.invoke("p0", "send", topic="t", partition=None, key="k", value="p0-1")
        w.ok(s, topic="t", partition=3, offset=9)
        f = w.invoke("nemesis", "fault", action="start", fault="partition", targets=["n1"], params={"x": 1})
        w.info(f, "TIMEOUT")
        w.observe("c0", "rebalance", group="g", partitions=[["t", 3]], generation=2, member="m")
        poll = w.invoke("c0", "poll")
        w.ok(poll, records=[["t", 3, 9, "k", "p0-1"]], high_watermarks=[["t", 3, 10]])
    history = load_history(path)
    assert history.meta == {"seed": 42} and history.warning is None
    assert [e.index for e in history] == list(range(7))
    assert history[1] == Event(1, 107, "p0", "ok", "send", {"topic": "t", "partition": 3, "offset": 9}, 0)
    assert history[4].value["member"] == "m" and history[4].invoke is None
    assert history.operations == 4
    assert [json.loads(line) for line in path.read_text().splitlines()[1:]] == [e.to_json() for e in history]


def test_builder_lines_load_like_a_file() -> None:
    """HistoryBuilder.lines() is a valid file; its history equals the parsed one."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    b.poll("c0", [("t", 0, 0, "a")])
    assert parse_history(b.lines()).raw == b.history().raw


def test_a_truncated_last_line_is_reported_and_earlier_events_kept(tmp_path: Path) -> None:
    """A half-written last line (crash mid-write) is dropped with a warning naming its line."""
    path = tmp_path / "h.jsonl"
    path.write_text(HEADER + json.dumps(SEND) + "\n" + json.dumps(SEND_OK)[:25])
    history = load_history(path)
    assert len(history) == 1
    assert history.warning is not None and f"{path}:3" in history.warning and "incomplete" in history.warning
    with pytest.raises(HistoryError, match=r"h.jsonl:3: not valid JSON"):
        load_history(path, allow_truncated=False)


def test_bad_json_in_the_middle_names_the_line() -> None:
    """Broken JSON before the last line makes the file unusable, naming the line."""
    err = _error([HEADER, '{"index": 0,\n', json.dumps(SEND) + "\n"])
    assert (err.line, err.field) == (2, None) and "not valid JSON" in str(err)
    assert str(err).startswith("h.jsonl:2: ")


def test_an_empty_line_is_an_error() -> None:
    """Blank lines are not allowed between events."""
    assert "empty line" in str(_error([HEADER, "\n", json.dumps(SEND) + "\n"]))


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (lambda e: e.update(type="started"), "type", "unknown event type 'started'"),
        (lambda e: e.update(f="produce"), "f", "unknown operation 'produce'"),
        (lambda e: e.pop("time"), "time", "missing"),
        (lambda e: e.update(time="10"), "time", "expected an integer, got str"),
        (lambda e: e.update(index=5), "index", "expected 0"),
        (lambda e: e["value"].pop("value"), "value.value", "missing (required for send invoke)"),
        (lambda e: e["value"].update(partition="0"), "value.partition", "expected an integer or null, got str"),
        (lambda e: e.update(extra=1), "extra", "unknown event field"),
        (lambda e: e.update(value=[]), "value", "expected an object, got array"),
        (lambda e: e.update(process=""), "process", "non-empty string"),
        (lambda e: e.update(invoke=3), "invoke", "only completions"),
    ],
)
def test_each_invalid_event_names_its_line_and_field(change: Callable[[dict[str, Any]], object], field: str,
                                                     fragment: str) -> None:
    """Unknown types and operations, missing or mistyped fields are reported precisely."""
    _assert_refused(_lines(_changed(SEND, change), SEND_OK), 2, field, fragment)


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (lambda e: e.pop("invoke"), "invoke", "must name its invocation"),
        (lambda e: e.update(invoke=7), "invoke", "7 is not an open invocation"),
        (lambda e: e.update(process="p1"), "invoke", "not p1's 'send'"),
        (lambda e: e.update(time=5), "time", "went backwards"),
        (lambda e: e["value"].update(offset=-1), "value.offset", "expected an integer >= 0"),
        (lambda e: e.update(f="poll"), "value.records", "missing (required for poll ok)"),
    ],
)
def test_completion_rules_are_enforced(change: Callable[[dict[str, Any]], object], field: str, fragment: str) -> None:
    """A completion must name an open invocation of the same process and operation, in time order."""
    _assert_refused(_lines(SEND, _changed(SEND_OK, change)), 3, field, fragment)


def test_a_second_completion_of_one_invocation_is_refused() -> None:
    """An invocation completes once; completing it again names the line."""
    again = dict(SEND_OK, index=2, time=30)
    err = _error(_lines(SEND, SEND_OK, again))
    assert (err.line, err.field) == (4, "invoke") and "already completed" in str(err)


def test_poll_records_are_validated_item_by_item() -> None:
    """A malformed record in a poll names the item."""
    poll = {"index": 0, "time": 1, "process": "c", "type": "invoke", "f": "poll", "value": {}}
    done = {"index": 1, "time": 2, "process": "c", "type": "ok", "f": "poll", "invoke": 0,
            "value": {"records": [["t", 0, 0, None, "a"], ["t", 0, "1", None, "b"]]}}
    err = _error(_lines(poll, done))
    assert err.field == "value.records" and "item 1" in str(err)


def test_observations_have_no_invocation_and_only_type_ok() -> None:
    """rebalance is a single ok event; an invoke of it is refused."""
    bad = {"index": 0, "time": 1, "process": "c", "type": "invoke", "f": "rebalance",
           "value": {"group": "g", "partitions": []}}
    err = _error(_lines(bad))
    assert err.field == "type" and "must have type ok" in str(err)


def test_wrong_version_and_missing_header_are_refused() -> None:
    """The header names the format version; another version or no header is unusable."""
    other = json.dumps({"kconform-history": FORMAT_VERSION + 1, "meta": {}}) + "\n"
    err = _error([other, json.dumps(SEND) + "\n"])
    assert (err.line, err.field) == (1, "kconform-history") and "not supported" in str(err)
    err = _error([json.dumps(SEND) + "\n"])
    assert err.line == 1 and "not a kconform history" in str(err)
    assert "empty file" in str(_error([]))


def test_a_version_1_file_still_loads_and_says_its_version() -> None:
    """Files written before batch identities existed load unchanged (version 1)."""
    v1 = json.dumps({"kconform-history": 1, "meta": {"seed": 3}}) + "\n"
    history = parse_history([v1, json.dumps(SEND) + "\n", json.dumps(SEND_OK) + "\n"])
    assert history.version == 1 and history.meta == {"seed": 3} and len(history) == 2
    assert parse_history(_lines(SEND)).version == FORMAT_VERSION == 4


def test_batches_and_clients_are_validated() -> None:
    """A poll's batch identities need seven fields; meta.clients maps names to strings."""
    poll = {"index": 0, "time": 1, "process": "drain", "type": "invoke", "f": "poll", "value": {}}
    done = {"index": 1, "time": 2, "process": "drain", "type": "ok", "f": "poll", "invoke": 0,
            "value": {"records": [["t", 0, 0, None, "a"]], "batches": [["t", 0, 0, 0, 7, 0]]}}
    err = _error(_lines(poll, done))
    assert (err.line, err.field) == (3, "value.batches") and "producer epoch" in str(err)
    done["value"]["batches"] = [["t", 0, 0, 0, 7, 0, 5]]  # type: ignore[index]
    assert parse_history(_lines(poll, done)).raw[1]["value"]["batches"] == [["t", 0, 0, 0, 7, 0, 5]]
    bad = json.dumps({"kconform-history": FORMAT_VERSION, "meta": {"clients": {"p0": 1}}}) + "\n"
    err = _error([bad])
    assert (err.line, err.field) == (1, "meta.clients")


def test_the_writer_refuses_an_invalid_event_before_writing_it(tmp_path: Path) -> None:
    """A workload bug (missing field) raises at record time and leaves the file valid."""
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as w:
        with pytest.raises(HistoryError, match="value.topic"):
            w.invoke("p0", "send", partition=0, key=None, value="x")
        w.invoke("c0", "poll")
    assert len(load_history(path)) == 1


def test_a_repeated_value_is_unusable() -> None:
    """Values must be unique per run; the index refuses a second send of one value."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    b.send("p1", "t", "a", offset=1)
    with pytest.raises(HistoryError, match="already sent by event 0"):
        _ = b.history().index


def test_unreadable_files_are_history_errors(tmp_path: Path) -> None:
    """A missing file or non-UTF-8 bytes give a HistoryError naming the file."""
    with pytest.raises(HistoryError, match="cannot read"):
        load_history(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(HEADER.encode() + b"\xff\xfe\n")
    with pytest.raises(HistoryError, match="not UTF-8"):
        load_history(bad)


def test_every_event_is_on_disk_as_soon_as_it_is_recorded(tmp_path: Path) -> None:
    """The writer flushes each line: a reader (or a crash) mid-run sees every recorded event."""
    path = tmp_path / "h.jsonl"
    w = HistoryWriter(path)
    i = w.invoke("p0", "send", topic="t", partition=0, key=None, value="a")
    assert len(load_history(path)) == 1
    w.info(i, "TIMEOUT")
    assert load_history(path)[1].type == "info"
    w.close()


def test_concurrent_recording_keeps_indexes_and_times_in_order(tmp_path: Path) -> None:
    """Threads recording at once still produce a valid file (index and time under one lock)."""
    import threading

    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as w:
        def work(n: int) -> None:
            for k in range(200):
                i = w.invoke(f"p{n}", "send", topic="t", partition=0, key=None, value=f"p{n}-{k}")
                w.ok(i, topic="t", partition=0, offset=k)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(load_history(path, index=False)) == 1600


TXN = {"index": 0, "time": 10, "process": "tp0", "type": "invoke", "f": "txn",
       "value": {"ops": [["send", "t", None, None, "tp0-1"], ["poll"], ["offsets", "g"]], "commit": True,
                 "isolation_level": "read_committed"}}
TXN_OK = {"index": 1, "time": 20, "process": "tp0", "type": "ok", "f": "txn", "invoke": 0,
          "value": {"ops": [["send", "t", 2, None, "tp0-1", 5], ["poll", [["in", 0, 3, None, "x"]]],
                            ["offsets", "g", [["in", 0, 4]]]], "outcome": "commit", "end_invoked": 15}}


def test_a_transaction_loads_and_its_sends_and_polls_are_indexed() -> None:
    """A version 4 transaction: its send is an acknowledged write at its offset, its poll a read."""
    history = parse_history(_lines(TXN, TXN_OK))
    ix = history.index
    assert ix.txns == [0] and ix.acked == {"tp0-1"} and ix.first_read == {"x": 1}
    w = ix.write("tp0-1")
    assert w is not None and (w.txn, w.status, w.topic, w.partition, w.offset, w.invoke, w.completion) == (
        True, "ok", "t", 2, 5, 0, 1)


@pytest.mark.parametrize(("change", "field", "fragment"), [
    (lambda e: e["value"]["ops"].append(["send", "t", 0, None]), "value.ops", "item 3"),
    (lambda e: e["value"]["ops"].append(["commit"]), "value.ops", '["poll"] or ["offsets", group]'),
    (lambda e: e["value"].pop("commit"), "value.commit", "missing"),
    (lambda e: e["value"].update(commit="yes"), "value.commit", "expected true or false"),
    (lambda e: e["value"].update(isolation_level="serializable"), "value.isolation_level", "read_committed"),
])
def test_a_bad_transaction_invocation_names_its_field(change: Callable[[dict[str, Any]], object], field: str,
                                                      fragment: str) -> None:
    _assert_refused(_lines(_changed(TXN, change)), 2, field, fragment)


@pytest.mark.parametrize(("change", "field", "fragment"), [
    (lambda e: e["value"]["ops"][0].pop(), "value.ops", "item 0"),  # a completed send names its offset
    (lambda e: e["value"]["ops"][0].__setitem__(2, None), "value.ops", "item 0"),  # an offset needs a partition
    (lambda e: e["value"]["ops"][1][1].append(["in", 0]), "value.ops", "item 1"),
    (lambda e: e["value"]["ops"][2][2].append(["in", 0]), "value.ops", "item 2"),
    (lambda e: e["value"].update(outcome="maybe"), "value.outcome", "commit, abort"),
    (lambda e: e["value"].update(end_invoked=-1), "value.end_invoked", ">= 0"),
])
def test_a_bad_transaction_completion_names_its_field(change: Callable[[dict[str, Any]], object], field: str,
                                                      fragment: str) -> None:
    _assert_refused(_lines(TXN, _changed(TXN_OK, change)), 3, field, fragment)


def test_an_unfinished_transaction_may_say_what_it_did() -> None:
    """fail and info carry an error, and optionally the micro-operations done before it."""
    info = _changed(TXN_OK, lambda e: e.update(type="info", value={"error": "TIMEOUT", "ops": e["value"]["ops"]}))
    history = parse_history(_lines(TXN, info))
    w = history.index.write("tp0-1")
    assert w is not None and w.status == "info" and w.offset is None and history.index.acked == set()
    assert history.index.txn_landed == {"tp0-1": (("t", 2, 5), 1)}  # its position is known all the same
    _assert_refused(_lines(TXN, _changed(info, lambda e: e["value"].pop("error"))), 3, "value.error", "missing")


def test_a_transaction_may_send_values_decided_while_it_ran_but_never_a_repeated_one() -> None:
    """A consume-transform-produce output is named only by the completion; values stay unique."""
    done = _changed(TXN_OK, lambda e: e["value"]["ops"].append(["send", "out", 0, None, "tp0-out", 0]))
    history = parse_history(_lines(TXN, done))
    out = history.index.write("tp0-out")
    assert out is not None and out.invoke == 0 and out.status == "ok"
    again = {**SEND, "index": 2, "time": 30, "value": {**SEND["value"], "value": "tp0-out"}}
    with pytest.raises(HistoryError, match="'tp0-out' was already sent by event 0"):
        parse_history(_lines(TXN, done, again))


def test_poll_isolation_and_stable_offsets_are_validated() -> None:
    """A poll may name its isolation level; stable-offsets is an observation of two offsets."""
    poll = {"index": 0, "time": 1, "process": "c0", "type": "invoke", "f": "poll",
            "value": {"isolation_level": "read_committed"}}
    done = {"index": 1, "time": 2, "process": "c0", "type": "ok", "f": "poll", "invoke": 0, "value": {"records": []}}
    assert parse_history(_lines(poll, done)).index.read_committed_polls == [1]
    _assert_refused(_lines(_changed(poll, lambda e: e["value"].update(isolation_level="rc"))), 2,
                    "value.isolation_level", "read_uncommitted")
    sample = {"index": 0, "time": 1, "process": "observer", "type": "ok", "f": "stable-offsets",
              "value": {"topic": "t", "partition": 0, "high_watermark": 9, "last_stable_offset": 4}}
    assert parse_history(_lines(sample)).index.stable_offsets == [0]
    _assert_refused(_lines(_changed(sample, lambda e: e["value"].pop("last_stable_offset"))), 2,
                    "value.last_stable_offset", "missing")


def test_version_3_files_load_unchanged() -> None:
    """A version 3 history (no transactions) loads and is indexed as before."""
    v3 = json.dumps({"kconform-history": 3, "meta": {}}) + "\n"
    history = parse_history([v3, json.dumps(SEND) + "\n", json.dumps(SEND_OK) + "\n"])
    assert history.version == 3 and history.index.acked == {"p0-1"} and history.index.txns == []
