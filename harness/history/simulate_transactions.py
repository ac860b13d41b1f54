"""A simulated, correct transactional workload that records a history: for property tests and the
transaction checker's benchmark.

Theory of operation. Transactional producers, consume-transform-produce workers, read_committed
readers, a read_uncommitted reader and an observer act in random order (drawn from the
`random.Random` given, so a seed replays a run) against an in-memory model of partition logs that
behaves as Kafka promises (KIP-98, KIP-447):

- a producer's transaction stays open over many steps, appending one send at a time, so open
  transactions interleave their records in the same partitions (Kafka allows the write cycles
  this makes: G0 and G1c are expected hazards in this history);
- ending one writes a marker (an offset no reader is given) into each partition it wrote; the
  outcome is commit, or abort (asked for, or after an error: `fail`), or a commit whose answer is
  lost (`info`: the model still decides one);
- a partition's last stable offset is the first offset of its oldest open transaction, else its
  end (one replica: the high watermark is the log end);
- read_committed readers read below the LSO and skip aborted records and markers; the
  read_uncommitted reader reads everything below the high watermark;
- each worker owns input partitions of group `g`; one transaction polls them from the committed
  position, sends one output per input record, and commits its position with the output, or
  aborts and goes back to the committed position;
- the observer samples partitions' LSO and high watermark (`stable-offsets`);
- at the end, open transactions commit and a read_committed drain reads every partition.

Such a history must show no anomaly a configuration claims; the property tests then break it
in one way and expect the matching anomaly.
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from harness.history.format import READ_COMMITTED
from harness.history.simulate import drive
from harness.history.write import Recorder
from specs.transactions import Outcome, may_be_visible

INPUT, OUTPUT, GROUP = "in", "out", "g"
MARKER = ""  # a marker's value in the model (never a record's: values are non-empty)


@attrs.frozen
class TxnSimConfig:
    """The shape of a simulated transactional run."""

    operations: int = 200
    producers: int = 3
    workers: int = 2
    readers: int = 1
    input_partitions: int = 2
    output_partitions: int = 2
    max_sends: int = 4
    max_poll: int = 8
    abort: float = 0.06  # transactions the workload means to abort
    fail: float = 0.02  # transactions that fail before committing (certainly not committed)
    unknown: float = 0.03  # commits whose answer is lost (info)
    drain: bool = True
    # Relative weights of the steps (a producer's send is a step, not an operation).
    begin: int = 20
    send: int = 50
    end: int = 20
    process: int = 15
    read: int = 30
    read_uncommitted: int = 8
    sample: int = 10


class _Open:
    """A producer's open transaction: its invocation, what it still has to send, what it sent."""

    __slots__ = ("invoke", "commit", "todo", "done")

    def __init__(self, invoke: int, commit: bool, todo: list[list[Any]]) -> None:
        self.invoke, self.commit, self.todo = invoke, commit, todo
        self.done: list[list[Any]] = []


class TxnSimulation:
    """Drives the model and records every operation to `recorder`."""

    def __init__(self, recorder: Recorder, rng: random.Random, config: TxnSimConfig) -> None:
        self.r, self.rng, self.c = recorder, rng, config
        self.topics = {INPUT: config.input_partitions, OUTPUT: config.output_partitions}
        self.partitions = [(t, p) for t, n in self.topics.items() for p in range(n)]
        # partition -> [(value or MARKER, writer key)]; writer key -> its outcome (unknown while open)
        self.logs: dict[tuple[str, int], list[tuple[str, int]]] = {tp: [] for tp in self.partitions}
        self.state: dict[int, Outcome] = {}
        self.open_first: dict[tuple[str, int], dict[int, int]] = {tp: {} for tp in self.partitions}
        self.open: dict[int, _Open] = {}  # producer -> its open transaction
        self.counters: dict[str, int] = {}
        self.position: dict[tuple[str, tuple[str, int]], int] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.ops = 0

    # --- the model -------------------------------------------------------------------------------

    def lso(self, tp: tuple[str, int]) -> int:
        firsts = self.open_first[tp]
        return min(firsts.values()) if firsts else len(self.logs[tp])

    def _append(self, tp: tuple[str, int], value: str, writer: int) -> int:
        log = self.logs[tp]
        if value != MARKER and writer not in self.open_first[tp]:
            self.open_first[tp][writer] = len(log)
        log.append((value, writer))
        return len(log) - 1

    def _finish(self, writer: int, partitions: set[tuple[str, int]], outcome: Outcome) -> None:
        """Write the markers: the transaction is decided everywhere at once."""
        self.state[writer] = outcome
        for tp in sorted(partitions):
            self._append(tp, MARKER, writer)
            del self.open_first[tp][writer]

    def _value(self, process: str) -> str:
        n = self.counters[process] = self.counters.get(process, 0) + 1
        return f"{process}-{n}"

    def _read(self, reader: str, tp: tuple[str, int], limit: int, committed_only: bool) -> list[list[Any]]:
        """The next records `reader` is given from `tp`, moving its position."""
        log = self.logs[tp]
        end = self.lso(tp) if committed_only else len(log)
        pos = self.position.get((reader, tp), 0)
        out: list[list[Any]] = []
        while pos < end and len(out) < limit:
            value, writer = log[pos]
            if value != MARKER and not (committed_only and not may_be_visible(self.state[writer])):
                out.append([tp[0], tp[1], pos, None, value])
            pos += 1
        self.position[(reader, tp)] = pos
        return out

    def _invoke(self, process: str, f: str, value: dict[str, Any]) -> int:
        self.ops += 1
        return self.r.invoke(process, f, value)

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> None:
        c = self.c
        readers = [f"c{i}" for i in range(c.readers)]
        for reader in [*readers, "ru"]:
            self.r.ok(self._invoke(reader, "assign", {"partitions": [list(tp) for tp in self.partitions]}))
        drive(self, self.rng, {"begin": c.begin, "send": c.send, "end": c.end, "process": c.process, "read": c.read,
                               "read_uncommitted": c.read_uncommitted, "sample": c.sample},
              lambda: self.ops >= c.operations)
        for producer in list(self.open):
            self._end(producer, force_commit=True)
        if c.drain:
            self.final_drain()

    def begin(self) -> None:
        idle = [p for p in range(self.c.producers) if p not in self.open]
        if not idle:
            return
        producer = self.rng.choice(idle)
        process = f"tp{producer}"
        todo = [["send", INPUT, self.rng.randrange(self.c.input_partitions), None, self._value(process)]
                for _ in range(self.rng.randint(1, self.c.max_sends))]
        commit = self.rng.random() >= self.c.abort
        invoke = self._invoke(process, "txn", {"ops": todo, "commit": commit})
        self.open[producer] = _Open(invoke, commit, list(todo))
        self.state[invoke] = Outcome.UNKNOWN

    def send(self) -> None:
        sending = [p for p, t in self.open.items() if t.todo]
        if not sending:
            return
        t = self.open[self.rng.choice(sending)]
        op = t.todo.pop(0)
        offset = self._append((op[1], op[2]), op[4], t.invoke)
        t.done.append([*op, offset])

    def end(self) -> None:
        ready = [p for p, t in self.open.items() if not t.todo]
        if ready:
            self._end(self.rng.choice(ready))

    def _end(self, producer: int, force_commit: bool = False) -> None:
        t = self.open.pop(producer)
        for op in t.todo:  # only when forced: send the rest first
            t.done.append([*op, self._append((op[1], op[2]), op[4], t.invoke)])
        end_invoked = self.r.now()
        partitions = {(op[1], op[2]) for op in t.done}
        roll = self.rng.random()
        if not t.commit and not force_commit:
            self._finish(t.invoke, partitions, Outcome.ABORTED)
            self.r.ok(t.invoke, ops=t.done, outcome="abort", end_invoked=end_invoked)
        elif roll < self.c.fail and not force_commit:
            self._finish(t.invoke, partitions, Outcome.ABORTED)
            self.r.fail(t.invoke, "INVALID_TXN_STATE", ops=t.done, end_invoked=end_invoked)
        elif roll < self.c.fail + self.c.unknown and not force_commit:
            self._finish(t.invoke, partitions, self.rng.choice([Outcome.COMMITTED, Outcome.ABORTED]))
            self.r.info(t.invoke, "TIMEOUT", ops=t.done, end_invoked=end_invoked)
        else:
            self._finish(t.invoke, partitions, Outcome.COMMITTED)
            self.r.ok(t.invoke, ops=t.done, outcome="commit", end_invoked=end_invoked)

    def process(self) -> None:
        """One consume-transform-produce transaction of a worker, from its committed position."""
        w = self.rng.randrange(self.c.workers)
        process = f"w{w}"
        owned = [(INPUT, p) for p in range(w, self.c.input_partitions, self.c.workers)]
        if not owned:
            return
        for tp in owned:
            self.position[(process, tp)] = self.committed.get(tp, 0)
        records = [r for tp in owned for r in self._read(process, tp, self.c.max_poll, committed_only=True)]
        if not records:
            return
        invoke = self._invoke(process, "txn", {"ops": [["poll"], ["offsets", GROUP]], "commit": True,
                                               "isolation_level": READ_COMMITTED})
        self.state[invoke] = Outcome.UNKNOWN
        outputs: list[list[Any]] = []
        for r in records:
            tp = (OUTPUT, r[2] % self.c.output_partitions)
            value = self._value(process)
            outputs.append(["send", tp[0], tp[1], None, value, self._append(tp, value, invoke)])
        positions = {tp: self.position[(process, tp)] for tp in owned}
        ops = [["poll", records], *outputs, ["offsets", GROUP, [[t, p, o] for (t, p), o in positions.items()]]]
        end_invoked = self.r.now()
        partitions = {(op[1], op[2]) for op in outputs}
        if self.rng.random() < self.c.abort:
            self._finish(invoke, partitions, Outcome.ABORTED)
            self.r.ok(invoke, ops=ops, outcome="abort", end_invoked=end_invoked)
            return
        self._finish(invoke, partitions, Outcome.COMMITTED)
        self.committed.update(positions)
        self.r.ok(invoke, ops=ops, outcome="commit", end_invoked=end_invoked)

    def read(self, reader: str | None = None) -> None:
        reader = reader or f"c{self.rng.randrange(self.c.readers)}"
        tp = self.rng.choice(self.partitions)
        invoke = self._invoke(reader, "poll", {"isolation_level": READ_COMMITTED})
        records = self._read(reader, tp, self.c.max_poll, committed_only=True)
        self.r.ok(invoke, records=records, high_watermarks=[[*tp, len(self.logs[tp])]],
                  last_stable_offsets=[[*tp, self.lso(tp)]])

    def read_uncommitted(self) -> None:
        tp = (INPUT, self.rng.randrange(self.c.input_partitions))
        invoke = self._invoke("ru", "poll", {"isolation_level": "read_uncommitted"})
        records = self._read("ru", tp, self.c.max_poll, committed_only=False)
        self.r.ok(invoke, records=records, high_watermarks=[[*tp, len(self.logs[tp])]])

    def sample(self) -> None:
        tp = self.rng.choice(self.partitions)
        self.ops += 1
        self.r.observe("observer", "stable-offsets", topic=tp[0], partition=tp[1],
                       high_watermark=len(self.logs[tp]), last_stable_offset=self.lso(tp))

    def final_drain(self) -> None:
        drainer = "drainer"
        self.r.ok(self._invoke(drainer, "assign", {"partitions": [list(tp) for tp in self.partitions]}))
        drain = self._invoke(drainer, "drain", {})
        for tp in self.partitions:
            while self.position.get((drainer, tp), 0) < len(self.logs[tp]):
                invoke = self._invoke(drainer, "poll", {"isolation_level": READ_COMMITTED})
                records = self._read(drainer, tp, max(2, self.c.max_poll), committed_only=True)
                self.r.ok(invoke, records=records, high_watermarks=[[*tp, len(self.logs[tp])]],
                          last_stable_offsets=[[*tp, self.lso(tp)]])
        self.r.ok(drain)


def simulate_transactions(recorder: Recorder, rng: random.Random, config: TxnSimConfig = TxnSimConfig()) -> None:
    """Record one simulated correct transactional run (see the module docstring) to `recorder`."""
    TxnSimulation(recorder, rng, config).run()
