"""The streams-exactly-once check: a Kafka Streams application's output against its input.

The Streams workload (``harness/clients/java_streams.py``) writes, for the input record with
value V at partition P, offset O, one output record ``V@P:O#N`` (N: how many input records of P
its state store had counted, this one included). Streams' own transactions are invisible to
the history; what it promises with ``processing.guarantee=exactly_once_v2`` (KIP-447) is
visible in its output, read by read_committed readers (KIP-98):

- **lost output**: an input record that a read_committed reader must be given (an
  acknowledged write, or a record read, whose transaction did not abort) below the application's
  committed offset (the last ``committed`` operation that read it), whose output no read_committed reader
  read, although the output was read to its end (a completed ``drain`` of the output topic);
- **duplicated output**: an input record named by output records at two offsets;
- **phantom output**: an output record naming an input that is not there: its offset holds
  another value, or a record of a transaction that aborted, or (after a complete drain of the
  input) no record at all;
- **state**: two successive outputs of one input partition (in input offset order) whose counts
  do not follow one another, or the first of a partition that does not start at 1: the state
  store missed or repeated an update its output did not (EOS covers state too).

The history's ``meta.streams`` says which topics and application (docs/history-format.md); a
history without it skips the check, and so does one whose application processed nothing (no
output read, no committed offset above 0: a check with nothing to judge has not held).
"""

from __future__ import annotations

from typing import Any

from harness.checkers._common import checker, tp_name, with_invocation
from harness.checkers.result import Anomaly, CheckResult
from harness.checkers.txn_view import txn_view
from harness.history.load import History
from specs.transactions import must_be_visible

NAME = "streams-exactly-once"
NO_STREAMS = "the history has no Kafka Streams workload (meta.streams)"
NOTHING_PROCESSED = ("the Streams application processed nothing the history shows (no output read, no "
                     "committed offset above 0): nothing to judge; the run's warnings say why")

TP = tuple[str, int]


def parse_output(value: str) -> tuple[str, int, int, int] | None:
    """``"p0-17@1:42#9"`` -> ("p0-17", 1, 42, 9), the input value, partition, offset and the
    count; None when the value is not in that shape."""
    head, hash_, count = value.rpartition("#")
    original, at, where = head.rpartition("@")
    partition, colon, offset = where.partition(":")
    if not (hash_ and at and colon and partition.isdigit() and offset.isdigit() and count.isdigit()):
        return None
    return original, int(partition), int(offset), int(count)


class _Output:
    """Every output record read_committed readers read, once per output offset."""

    def __init__(self, history: History, topic: str) -> None:
        raw = history.raw
        # (input partition, input offset) -> [(output partition, output offset, value, event)]
        self.by_input: dict[tuple[int, int], list[tuple[int, int, str, int]]] = {}
        self.malformed: list[tuple[int, int, str, int]] = []
        seen: set[tuple[int, int]] = set()
        for event in history.index.read_committed_polls:
            for t, p, o, _key, value in raw[event]["value"]["records"]:
                if t != topic or (p, o) in seen:
                    continue
                seen.add((p, o))
                parsed = parse_output(value)
                if parsed is None:
                    self.malformed.append((p, o, value, event))
                else:
                    self.by_input.setdefault((parsed[1], parsed[2]), []).append((p, o, value, event))


def _committed(history: History, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """The application's last recorded committed offset of each input partition, with the
    event that read it."""
    found: dict[int, tuple[int, int]] = {}
    for g, t, p, o, _invoke, event in history.index.committed_reads:
        if g == group and t == topic and event > found.get(p, (0, -1))[1]:
            found[p] = (o, event)
    return found


def _drained(history: History, topic: str) -> bool:
    """Whether a completed drain read ``topic`` to its end."""
    return any((d.topics is not None and topic in d.topics)
               or (d.partitions is not None and any(t == topic for t, _p in d.partitions))
               for d in history.index.drains)


@checker
def streams_exactly_once(history: History) -> CheckResult:
    """The Streams application's output names each input record it must process exactly once,
    names no input that is not there, and carries a state that counts every record once."""
    meta: dict[str, Any] | None = history.meta.get("streams")
    if not meta:
        return CheckResult(NAME, skipped=NO_STREAMS)
    source, sink, group = str(meta["input"]), str(meta["output"]), str(meta["application_id"])
    ix = history.index
    out = _Output(history, sink)
    if not out.by_input and not out.malformed and not any(
            o for o, _event in _committed(history, group, source).values()):
        return CheckResult(NAME, skipped=NOTHING_PROCESSED)  # held vacuously is not held
    anomalies = [Anomaly(NAME, f"phantom output: {tp_name(sink, p)}@{o} holds {value!r}, which names no input "
                               "record (expected '<value>@<partition>:<offset>#<count>')", (event,))
                 for p, o, value, event in out.malformed]
    known = ix.known_offsets()
    input_drained = _drained(history, source)
    named: dict[tuple[int, int], list[tuple[int, int, str, int]]] = {}  # the outputs naming their input rightly
    for (p, o), outputs in sorted(out.by_input.items()):
        offsets = set(known.get((source, p), ()))
        for output in outputs:
            phantom = _phantom(history, source, p, o, output, input_drained and o not in offsets)
            if phantom is None:
                named.setdefault((p, o), []).append(output)
            else:
                anomalies.append(phantom)
    for (p, o), outputs in sorted(named.items()):
        if len(outputs) > 1:
            shown = ", ".join(f"{tp_name(sink, q)}@{r} {v!r}" for q, r, v, _e in outputs)
            anomalies.append(Anomaly(NAME, f"duplicated output: input {tp_name(source, p)}@{o} is named by "
                                           f"{len(outputs)} committed output records: {shown}",
                                     [e for *_rest, e in outputs]))
    anomalies += _lost(history, source, sink, group, out)
    anomalies += _state(source, named)
    anomalies.sort(key=lambda a: a.events)
    return CheckResult(NAME, tuple(anomalies))


def _phantom(history: History, source: str, p: int, o: int, output: tuple[int, int, str, int],
             absent: bool) -> Anomaly | None:
    """Why ``output`` (naming input ``p``@``o``) names an input that is not there, or None;
    ``absent``: a complete drain of the input found no record at ``o``."""
    _q, _r, value, event = output
    original = value.rpartition("@")[0]
    holder = history.index.at_offset.get((source, p, o))
    view = txn_view(history)
    if holder is not None and holder[0] != original:
        return Anomaly(NAME, f"phantom output: {value!r} names {original!r} at {tp_name(source, p)}@{o}, which "
                             f"holds {holder[0]!r}", (event, holder[1]))
    if view.invisible_to_read_committed(original):
        w = view.writer[original]
        return Anomaly(NAME, f"phantom output: {value!r} names {original!r}, written by {w.describe()}: a "
                             "read_committed application never gets it", (event, *w.events))
    if holder is None and absent:
        return Anomaly(NAME, f"phantom output: {value!r} names {tp_name(source, p)}@{o}, where the complete drain "
                             "of the input found no record", (event,))
    return None


def _lost(history: History, source: str, sink: str, group: str, out: _Output) -> list[Anomaly]:
    """Lost output, judged when the output was drained to its end and the application's
    committed offsets were recorded (below them, every input must have its output)."""
    committed = _committed(history, group, source)
    if not committed or not _drained(history, sink):
        return []
    ix = history.index
    view = txn_view(history)
    found = []
    for (t, p), known in sorted(ix.known_offsets().items()):
        if t != source:
            continue
        upto, event = committed.get(p, (0, -1))
        for o in known:
            if o >= upto:
                break
            value, where = ix.at_offset[(t, p, o)][:2]
            w = view.writer.get(value)
            if (p, o) not in out.by_input and must_be_visible(None if w is None else w.outcome):
                found.append(Anomaly(NAME, f"lost output: input {tp_name(t, p)}@{o} ({value!r}) is below the "
                                           f"application's committed offset {upto} but no read_committed reader "
                                           f"of {sink} read an output naming it",
                                     (*with_invocation(history, ix, where), event)))
    return found


def _state(source: str, named: dict[tuple[int, int], list[tuple[int, int, str, int]]]) -> list[Anomaly]:
    """The first break per input partition of the counts' succession (1, 2, 3, ... in input
    offset order), over the outputs that name their input rightly."""
    found = []
    by_partition: dict[int, list[tuple[int, int, str, int]]] = {}
    for (p, o), outputs in sorted(named.items()):
        _q, _r, value, event = outputs[0]
        parsed = parse_output(value)
        assert parsed is not None
        by_partition.setdefault(p, []).append((o, parsed[3], value, event))
    for p, series in sorted(by_partition.items()):
        expected, previous = 1, None
        for o, count, value, event in series:
            if count != expected:
                after = "the first output of the partition" if previous is None else \
                    f"it follows {previous[2]!r}"
                found.append(Anomaly(NAME, f"state: {value!r} (input {tp_name(source, p)}@{o}) carries count {count}, "
                                           f"expected {expected}: {after}; the state store and the output disagree",
                                     (event,) if previous is None else (previous[3], event)))
                break
            expected, previous = count + 1, (o, count, value, event)
    return found
