"""Checkers of transactions (KIP-98) and consume-transform-produce (KIP-447), for read_committed
readers (specs.transactions has the rules; docs/anomalies.md defines each anomaly).

- aborted reads of transactions (G1a) are part of `aborted-read` (harness/checkers/log.py):
  `aborted_txn_reads` finds a read_committed read of a record whose transaction aborted.
- G1b (intermediate read): a read_committed read of a record whose transaction had not asked to
  end when the read returned (or that the transaction itself polled); or a cycle of wr edges
  alone, which no run can make without such a read.
- torn-transaction: a read_committed reader saw some of a committed transaction's records and
  read past another one of them without seeing it.
- lso-above-hw: one answer gave a partition's last stable offset above its high watermark.
- lso-past-open-transaction: an answer gave an LSO past a record of a transaction that had not yet
  asked to end, and then committed.
- hanging-transaction: a partition's LSO stayed at one offset below its high watermark for longer
  than the transaction timeout plus the coordinator's check interval.
- exactly-once-processing: in a consume-transform-produce group, an input record processed by
  two committed transactions, below the group's committed offset but processed by none, or
  processed by a committed transaction whose committed offsets do not pass it.

A read is read_committed when its poll (or its transaction) says so; read_uncommitted readers may
see anything below the high watermark, and are not judged here.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from harness.checkers._common import checker, tp_name, with_invocation
from harness.checkers.attribution import BROKER_ANSWERS
from harness.checkers.cycles import DependencyGraph
from harness.checkers.dependencies import NO_TRANSACTIONS, dependency_graph, wr_cycles
from harness.checkers.polls import skips
from harness.checkers.result import Anomaly, CheckResult
from harness.checkers.txn_view import Txn, TxnView, txn_view
from harness.history.index import DerivedView, HistoryIndex
from harness.history.load import History
from specs.delivery import Guarantee, violations
from specs.transactions import (
    ABORT_CHECK_INTERVAL_MS,
    TRANSACTION_TIMEOUT_MS,
    Outcome,
    hanging,
    must_be_visible,
    passes_open_transaction,
    stable_offsets_consistent,
)

TP = tuple[str, int]
# One observation of a partition's LSO and high watermark, from one answer:
# (time of the event that recorded it, that event, LSO, high watermark).
Sample = tuple[int, int, int, int]
NO_SAMPLES = ("the history records no last stable offset with its high watermark (read_committed polls "
              "with last_stable_offsets and high_watermarks, or stable-offsets observations)")


def _where(record: list[Any]) -> str:
    return f"{tp_name(record[0], record[1])}@{record[2]}"


def aborted_txn_reads(history: History) -> list[Anomaly]:
    """A read_committed read of a record whose transaction certainly did not commit (G1a)."""
    if not history.index.txns:
        return []
    anomalies = []
    done: set[tuple[int, int]] = set()
    for record, w, event, process in txn_view(history).read_committed_reads().aborted:
        if (w.id, event) in done:
            continue  # one anomaly per transaction and read
        done.add((w.id, event))
        how = "failed" if w.completion is not None and history.raw[w.completion]["type"] == "fail" else "aborted"
        anomalies.append(Anomaly(
            "aborted-read",
            f"{process} (read_committed) read {record[4]!r} at {_where(record)}, written by {w.describe()}, "
            f"which {how}", (*w.events, *with_invocation(history, history.index, event))))
    return anomalies


@checker
def intermediate_read(history: History) -> CheckResult:
    """A read_committed reader saw a transaction's record before the transaction committed."""
    if not history.index.txns:
        return CheckResult("G1b", skipped=NO_TRANSACTIONS)
    anomalies = []
    done: set[tuple[int, int]] = set()
    for record, w, event, process in txn_view(history).read_committed_reads().early:
        if (w.id, event) in done:
            continue
        done.add((w.id, event))
        if history.raw[event].get("invoke") == w.id:
            when = "its own transaction polled it before committing (a read_committed reader never sees an " \
                   "open transaction's records, its own included)"
        else:
            when = "the read returned before that transaction asked to end (end_invoked)"
        anomalies.append(Anomaly(
            "G1b", f"{process} (read_committed) read {record[4]!r} at {_where(record)}, written by "
                   f"{w.describe()}: {when}", (*w.events, *with_invocation(history, history.index, event))))
    anomalies.extend(wr_cycles(history))
    return CheckResult("G1b", tuple(anomalies))


@checker
def torn_transaction(history: History) -> CheckResult:
    """A read_committed reader saw part of a committed transaction and read past the rest."""
    ix = history.index
    if not ix.txns:
        return CheckResult("torn-transaction", skipped=NO_TRANSACTIONS)
    view = txn_view(history)
    # Jumps of read_committed readers over committed transactions' records (none in a valid
    # history, where such readers skip only markers and aborted records): the candidates.
    candidates = []
    for (t, p, a, b, ea, eb, proc), between in skips(history):
        missed = [(o, w) for o in between
                  if (w := view.writer.get(ix.at_offset[(t, p, o)][0])) is not None and w.outcome is Outcome.COMMITTED]
        if missed and view.reads_committed(eb):
            candidates.append((t, p, a, b, ea, eb, proc, missed))
    seen = view.seen_by(frozenset(c[6] for c in candidates))
    anomalies = []
    reported: set[tuple[str, str, int, int]] = set()
    for t, p, a, b, ea, eb, proc, missed in candidates:
        mine = seen[proc]
        for o, w in missed:
            val = ix.at_offset[(t, p, o)][0]
            saw = [(v[0], mine[v[0]]) for v in w.writes if v[0] in mine]
            if not saw or val in mine or (proc, t, p, o) in reported:
                continue
            reported.add((proc, t, p, o))
            other, where = saw[0]
            anomalies.append(Anomaly(
                "torn-transaction",
                f"{proc} (read_committed) saw {len(saw)} of {w.describe()}'s records (e.g. {other!r}) but read "
                f"{tp_name(t, p)} from offset {a} to {b} without its {val!r} at offset {o}",
                (*w.events, *with_invocation(history, ix, where), ea, *with_invocation(history, ix, eb))))
    anomalies.sort(key=lambda x: x.events)
    return CheckResult("torn-transaction", tuple(anomalies))


SAMPLES: DerivedView[dict[TP, list[Sample]]] = DerivedView("stable-offset-samples")


def _samples(history: History) -> dict[TP, list[Sample]]:
    """Per partition, every (LSO, high watermark) pair one answer gave, in history order."""
    def compute() -> dict[TP, list[Sample]]:
        raw = history.raw
        ix = history.index
        out: dict[TP, list[Sample]] = {}
        for i in sorted([*ix.read_committed_polls, *ix.stable_offsets]):
            e = raw[i]
            v = e["value"]
            if e["f"] == "stable-offsets":
                out.setdefault((v["topic"], v["partition"]), []).append(
                    (e["time"], i, v["last_stable_offset"], v["high_watermark"]))
                continue
            lsos, hws = v.get("last_stable_offsets"), v.get("high_watermarks")
            if not lsos or not hws:
                continue
            if len(lsos) == 1 and len(hws) == 1:  # one partition per fetch, most often
                (t, p, lso), (t2, p2, hw) = lsos[0], hws[0]
                if t == t2 and p == p2:
                    out.setdefault((t, p), []).append((e["time"], i, lso, hw))
                continue
            hw_of = {(t, p): o for t, p, o in hws}
            for t, p, lso in lsos:
                hw = hw_of.get((t, p))
                if hw is not None:
                    out.setdefault((t, p), []).append((e["time"], i, lso, hw))
        return out

    return history.index.derived(SAMPLES, compute)


@checker
def lso_above_hw(history: History) -> CheckResult:
    """One answer gave a last stable offset above the high watermark."""
    samples = _samples(history)
    if not samples:
        return CheckResult("lso-above-hw", skipped=NO_SAMPLES)
    anomalies = [
        Anomaly("lso-above-hw", f"{history.raw[event]['process']} was told {tp_name(*tp)} has last stable offset "
                                f"{lso} and high watermark {hw} in one answer", (event,),
                BROKER_ANSWERS["lso-above-hw"])
        for tp, series in sorted(samples.items()) for _time, event, lso, hw in series
        if not stable_offsets_consistent(lso, hw)]
    return CheckResult("lso-above-hw", tuple(anomalies))


def _open_until(graph: DependencyGraph) -> dict[TP, tuple[list[int], list[tuple[int, Txn, int]]]]:
    """Per partition, the offsets of committed transactions' records in log order, and for each
    the latest `end_invoked` among the records up to it (with its transaction and that record's
    offset). Any record of a transaction bounds the LSO while it is open, so "some transaction
    with a record below the LSO was still open" is "the latest end up to the LSO is later"."""
    out = {}
    for tp, (offsets, writers) in graph.log.items():
        latest: list[tuple[int, Txn, int]] = []
        best: tuple[int, Txn, int] = (-1, graph.nodes[writers[0]], -1)
        for o, n in zip(offsets, writers):
            t = graph.nodes[n]
            if t.end_invoked is not None and t.end_invoked > best[0]:
                best = (t.end_invoked, t, o)
            latest.append(best)
        out[tp] = (offsets, latest)
    return out


@checker
def lso_past_open_transaction(history: History) -> CheckResult:
    """An answer gave an LSO past a record of a transaction that had not yet asked to end."""
    if not history.index.txns:
        return CheckResult("lso-past-open-transaction", skipped=NO_TRANSACTIONS)
    samples = _samples(history)
    if not samples:
        return CheckResult("lso-past-open-transaction", skipped=NO_SAMPLES)
    if all(t.end_invoked is None for t in txn_view(history).committed()):
        return CheckResult("lso-past-open-transaction", skipped="no committed transaction recorded when it asked "
                                                                "to commit (end_invoked)")
    open_until = _open_until(dependency_graph(history))
    anomalies = []
    for tp, series in sorted(samples.items()):
        found = open_until.get(tp)
        if found is None:
            continue
        offsets, latest = found
        for time, event, lso, _hw in series:
            k = bisect_left(offsets, lso)  # the records below the LSO
            if k == 0:
                continue
            end, t, offset = latest[k - 1]
            if end > time and passes_open_transaction(lso, offset):
                anomalies.append(Anomaly(
                    "lso-past-open-transaction",
                    f"{history.raw[event]['process']} was told {tp_name(*tp)} has last stable offset {lso}, past "
                    f"offset {offset} of {t.describe()}, which had not yet asked to commit",
                    (event, *t.events), BROKER_ANSWERS["lso-past-open-transaction"]))
    return CheckResult("lso-past-open-transaction", tuple(anomalies))


def _timeouts(history: History) -> tuple[int, int]:
    """`transaction.timeout.ms` and the coordinator's check interval, from the header or Kafka's defaults."""
    meta = history.meta
    timeout = meta.get("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
    interval = meta.get("transaction.abort.timed.out.transaction.cleanup.interval.ms", ABORT_CHECK_INTERVAL_MS)
    return int(timeout), int(interval)


@checker
def hanging_transaction(history: History) -> CheckResult:
    """A partition's LSO held below its high watermark for longer than the transaction timeout."""
    samples = _samples(history)
    if not samples:
        return CheckResult("hanging-transaction", skipped=NO_SAMPLES)
    timeout, interval = _timeouts(history)
    anomalies = []
    for tp, series in sorted(samples.items()):
        start: Sample | None = None  # the first sample of the current stretch with this LSO below the HW
        reported = False
        for sample in series:
            _time, _event, lso, hw = sample
            if lso >= hw or start is None or lso != start[2]:
                start, reported = (sample if lso < hw else None), False
                continue
            if not reported and hanging(sample[0] - start[0], timeout, interval):
                reported = True
                anomalies.append(Anomaly(
                    "hanging-transaction",
                    f"{tp_name(*tp)}'s last stable offset stayed at {lso}, below the high watermark, for "
                    f"{(sample[0] - start[0]) / 1e9:.1f} s, longer than transaction.timeout.ms={timeout} plus the "
                    f"coordinator's check interval ({interval} ms): the transaction at offset {lso} was never "
                    f"aborted", (start[1], sample[1]), BROKER_ANSWERS["hanging-transaction"]))
    return CheckResult("hanging-transaction", tuple(anomalies))


@checker
def exactly_once_processing(history: History) -> CheckResult:
    """Each input record of a consume-transform-produce group processed by exactly one committed
    transaction, whose committed offsets pass it."""
    ix = history.index
    if not ix.txns:
        return CheckResult("exactly-once-processing", skipped=NO_TRANSACTIONS)
    view = txn_view(history)
    # (group, topic, partition) -> offset -> the committed transactions that processed it
    processed: dict[tuple[str, str, int], dict[int, list[Txn]]] = {}
    # (group, topic, partition) -> (highest committed offset, the transaction that committed it)
    position: dict[tuple[str, str, int], tuple[int, Txn]] = {}
    anomalies = []
    for t in view.committed():
        if not t.offsets:
            continue  # not a consume-transform-produce transaction
        group = t.offsets[0][0]
        committed = {(tp, p): o for _g, tpos in t.offsets for tp, p, o in tpos}
        for (topic, partition), offset in committed.items():
            key = (group, topic, partition)
            if offset > position.get(key, (-1, t))[0]:
                position[key] = (offset, t)
        last: dict[TP, list[Any]] = {}  # per partition, the last record it processed
        for records in t.polls:
            for record in records:
                processed.setdefault((group, record[0], record[1]), {}).setdefault(record[2], []).append(t)
                if record[2] > last.get((record[0], record[1]), (None, None, -1))[2]:
                    last[(record[0], record[1])] = record
        for (topic, partition), record in last.items():
            upto = committed.get((topic, partition))
            if upto is None or upto <= record[2]:
                shown = "no offset" if upto is None else f"offset {upto}"
                anomalies.append(Anomaly(
                    "exactly-once-processing",
                    f"group {group!r}: {t.describe()} processed {record[4]!r} at {_where(record)} but committed "
                    f"{shown} for that partition: the next owner processes it again", t.events))
    known = ix.known_offsets() if processed else {}
    for key, by_offset in sorted(processed.items()):
        anomalies.extend(_coverage(history, view, known.get(key[1:], []), key, by_offset, position.get(key)))
    anomalies.sort(key=lambda a: a.events)
    return CheckResult("exactly-once-processing", tuple(anomalies))


def _coverage(history: History, view: TxnView, known: list[int], key: tuple[str, str, int],
              by_offset: dict[int, list[Txn]], position: tuple[int, Txn] | None) -> list[Anomaly]:
    """The input records of one group and partition processed twice, or skipped below the
    group's committed offset (from the first offset it processed: it may have started later);
    `known` are the partition's offsets known to hold a record."""
    group, topic, partition = key
    ix = history.index
    required = _required_inputs(ix, view, known, topic, partition, min(by_offset), position[0] if position else 0)
    found = violations(Guarantee.EXACTLY_ONCE, required, {o: len(ts) for o, ts in by_offset.items()})
    out = []
    for offset in sorted(o for o in by_offset if o in found.redelivered):
        ts = by_offset[offset]
        out.append(Anomaly(
            "exactly-once-processing",
            f"group {group!r}: {tp_name(topic, partition)}@{offset} was processed by {len(ts)} committed transactions "
            f"({', '.join(t.describe() for t in ts)}): its output was committed {len(ts)} times",
            [e for t in ts for e in t.events]))
    for offset in sorted(o for o in required if o in found.undelivered):
        assert position is not None
        upto, t = position
        seen = ix.at_offset[(topic, partition, offset)]
        out.append(Anomaly(
            "exactly-once-processing",
            f"group {group!r}: {tp_name(topic, partition)}@{offset} ({seen[0]!r}) is below the committed offset "
            f"{upto} ({t.describe()}) but no committed transaction processed it: its output is lost",
            (*t.events, seen[1])))
    return out


def _required_inputs(ix: HistoryIndex, view: TxnView, offsets: list[int], topic: str, partition: int,
                     lo: int, hi: int) -> list[int]:
    """The `offsets` in [lo, hi) of `topic`-`partition` that hold a record a read_committed reader
    must be given (not one of a transaction that aborted or may have)."""
    out = []
    for o in offsets[bisect_left(offsets, lo):bisect_left(offsets, hi)]:
        w = view.writer.get(ix.at_offset[(topic, partition, o)][0])
        if must_be_visible(None if w is None else w.outcome):
            out.append(o)
    return out

