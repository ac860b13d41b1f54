"""A simulated, correct Kafka workload that records a history: for property tests and benchmarks.

Theory of operation. Producers, a consumer group and a nemesis act in random order (drawn from
the `random.Random` given, so a seed replays a run) against an in-memory model of partition
logs that behaves as Kafka promises with safe settings: offsets are contiguous, a `fail` send is
never appended, an `info` (or never completed) send may or may not be, consumers read
contiguously from their position, a rebalance starts a new generation with every partition
owned by one member and positions reset to the committed offsets, commits carry the current
generation. The run ends with a drain: a consumer outside the group reads every partition from
the beginning to the end.

Such a history must pass every anomaly check; the property tests then break it in one specific
way and expect the matching anomaly. The benchmark uses it to make large histories.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from harness.history.write import Recorder


@attrs.frozen
class SimConfig:
    """The shape of a simulated run."""

    operations: int = 200
    producers: int = 3
    consumers: int = 2
    partitions: int = 2
    topic: str = "t"
    group: str = "g"
    max_poll: int = 4
    seeks: bool = True
    failed_polls: bool = True
    faults: bool = True
    drain: bool = True
    # Relative weights of the operations.
    send: int = 50
    poll: int = 30
    commit: int = 6
    committed: int = 2
    seek: int = 2
    rebalance: int = 1
    fault: int = 1
    list_offsets: int = 1


def drive(simulation: object, rng: random.Random, steps: Mapping[str, int], done: Callable[[], bool]) -> None:
    """Call the simulation's method named by each step, drawn by its weight, until `done()`."""
    # Drop disabled steps rather than weigh them 0: Hypothesis' Random may still pick those.
    actions = [getattr(simulation, name) for name, weight in steps.items() if weight > 0]
    weights = [weight for weight in steps.values() if weight > 0]
    while not done():
        rng.choices(actions, weights)[0]()


class Simulation:
    """Drives the model and records every operation to `recorder`."""

    def __init__(self, recorder: Recorder, rng: random.Random, config: SimConfig) -> None:
        self.r, self.rng, self.c = recorder, rng, config
        self.logs: list[list[str]] = [[] for _ in range(config.partitions)]
        self.counters = [0] * config.producers
        self.consumers = [f"c{i}" for i in range(config.consumers)]
        self.members = {c: f"{c}-member" for c in self.consumers}
        self.generation = 0
        self.owned: dict[str, list[int]] = {c: [] for c in self.consumers}
        self.position: dict[tuple[str, int], int] = {}
        self.committed: dict[int, int] = {}
        self.fault_open: int | None = None
        self.pending: list[tuple[int, int, int]] = []  # pipelined sends: (invoke, partition, offset)
        self.ops = 0

    def run(self) -> None:
        c = self.c
        for consumer in self.consumers:
            self.r.ok(self._invoke(consumer, "subscribe", group=c.group, topics=[c.topic],
                                   auto_offset_reset="earliest"))
        self.rebalance()
        drive(self, self.rng, {"send": c.send, "poll": c.poll, "commit": c.commit, "committed_read": c.committed,
                               "seek": c.seek if c.seeks else 0, "rebalance": c.rebalance,
                               "fault": c.fault if c.faults else 0, "list_offsets": c.list_offsets},
              lambda: self.ops >= c.operations)
        self.flush_pipelined()
        if self.fault_open is not None:
            self.fault()
        if c.drain:
            self.final_drain()

    def _invoke(self, process: str, f: str, **value: Any) -> int:
        self.ops += 1
        return self.r.invoke(process, f, value)

    # --- producers ---------------------------------------------------------------------------

    def send(self) -> None:
        rng = self.rng
        producer = rng.randrange(self.c.producers)
        self.counters[producer] += 1
        value = f"p{producer}-{self.counters[producer]}"
        key = f"k{rng.randrange(8)}" if rng.random() < 0.5 else None
        explicit = rng.random() < 0.7
        partition = rng.randrange(self.c.partitions) if explicit or key is None else int(key[1:]) % self.c.partitions
        invoke = self._invoke(f"p{producer}", "send", topic=self.c.topic,
                              partition=partition if explicit or key is None else None, key=key, value=value)
        roll = rng.random()
        if roll < 0.90:
            self.pending.append((invoke, partition, len(self.logs[partition])))
            self.logs[partition].append(value)
            if len(self.pending) > rng.randrange(1, 4):
                self.flush_pipelined()
        elif roll < 0.94:
            if rng.random() < 0.5:
                self.logs[partition].append(value)
            self.r.info(invoke, "TIMEOUT")
        elif roll < 0.98:
            self.r.fail(invoke, "NOT_ENOUGH_REPLICAS")
        elif rng.random() < 0.5:  # never completes (the producer crashed); maybe appended
            self.logs[partition].append(value)

    def acked_send(self, process: str, partition: int, value: str) -> None:
        """One send that is appended and acknowledged at once (to give a run a known prefix)."""
        invoke = self._invoke(process, "send", topic=self.c.topic, partition=partition, key=None, value=value)
        self.logs[partition].append(value)
        self.r.ok(invoke, topic=self.c.topic, partition=partition, offset=len(self.logs[partition]) - 1)

    def flush_pipelined(self) -> None:
        """Complete in-flight sends, in a random order (their offsets follow the invoke order)."""
        self.rng.shuffle(self.pending)
        for invoke, partition, offset in self.pending:
            self.r.ok(invoke, topic=self.c.topic, partition=partition, offset=offset)
        self.pending.clear()

    # --- consumers ---------------------------------------------------------------------------

    def _records(self, consumer: str, partitions: list[int], limit: int) -> list[list[Any]]:
        out: list[list[Any]] = []
        for p in partitions:
            pos = self.position.get((consumer, p), 0)
            chunk = self.logs[p][pos: pos + limit]
            out.extend([self.c.topic, p, pos + i, None, v] for i, v in enumerate(chunk))
            self.position[(consumer, p)] = pos + len(chunk)
        return out

    def poll(self) -> None:
        consumer = self.rng.choice(self.consumers)
        invoke = self._invoke(consumer, "poll")
        records = self._records(consumer, self.owned[consumer], self.rng.randrange(1, self.c.max_poll + 1))
        if self.c.failed_polls and self.rng.random() < 0.02:
            self.r.info(invoke, "TIMEOUT")  # the client consumed them, the history never saw them
            return
        hws = [[self.c.topic, p, len(self.logs[p])] for p in self.owned[consumer]]
        self.r.ok(invoke, records=records, high_watermarks=hws)

    def commit(self) -> None:
        consumer = self.rng.choice(self.consumers)
        positions = {p: self.position.get((consumer, p), 0) for p in self.owned[consumer]}
        invoke = self._invoke(consumer, "commit", group=self.c.group, generation=self.generation,
                              member=self.members[consumer],
                              offsets=[[self.c.topic, p, o] for p, o in positions.items()])
        self.committed.update(positions)
        self.r.ok(invoke)

    def committed_read(self) -> None:
        consumer = self.rng.choice(self.consumers)
        parts = [[self.c.topic, p] for p in range(self.c.partitions)]
        invoke = self._invoke(consumer, "committed", group=self.c.group, partitions=parts)
        self.r.ok(invoke, offsets=[[self.c.topic, p, self.committed.get(p, -1)] for p in range(self.c.partitions)])

    def seek(self) -> None:
        consumer = self.rng.choice(self.consumers)
        if not self.owned[consumer]:
            return
        p = self.rng.choice(self.owned[consumer])
        target = self.rng.randrange(len(self.logs[p]) + 1)
        invoke = self._invoke(consumer, "seek", topic=self.c.topic, partition=p, offset=target)
        self.position[(consumer, p)] = target
        self.r.ok(invoke)

    def rebalance(self) -> None:
        self.generation += 1
        order = self.consumers[self.generation % len(self.consumers):] + self.consumers[: self.generation % len(self.consumers)]
        self.owned = {c: [] for c in self.consumers}
        for p in range(self.c.partitions):
            self.owned[order[p % len(order)]].append(p)
        self.ops += len(self.consumers)
        for consumer in self.consumers:
            for p in self.owned[consumer]:
                self.position[(consumer, p)] = max(self.committed.get(p, 0), 0)
            self.r.observe(consumer, "rebalance", group=self.c.group, generation=self.generation,
                           member=self.members[consumer], partitions=[[self.c.topic, p] for p in self.owned[consumer]])

    # --- nemesis and admin -------------------------------------------------------------------

    def fault(self) -> None:
        if self.fault_open is None:
            self.fault_open = self._invoke("nemesis", "fault", action="start", fault="partition",
                                           targets=["n1"], params={"seconds": 5})
            self.r.ok(self.fault_open)
        else:
            self.r.ok(self._invoke("nemesis", "fault", action="stop", fault="partition", targets=["n1"]))
            self.fault_open = None

    def list_offsets(self) -> None:
        p = self.rng.randrange(self.c.partitions)
        invoke = self._invoke("admin", "list-offsets", topic=self.c.topic, partition=p, spec="latest")
        self.r.ok(invoke, offset=len(self.logs[p]))

    def final_drain(self) -> None:
        drainer, t = "drainer", self.c.topic
        self.r.ok(self._invoke(drainer, "assign", partitions=[[t, p] for p in range(self.c.partitions)]))
        for p in range(self.c.partitions):
            self.r.ok(self._invoke(drainer, "seek", topic=t, partition=p, offset="earliest"))
        drain = self._invoke(drainer, "drain", topics=[t])
        parts = list(range(self.c.partitions))
        while any(self.position.get((drainer, p), 0) < len(self.logs[p]) for p in parts):
            invoke = self._invoke(drainer, "poll")
            records = self._records(drainer, parts, max(2, self.c.max_poll))
            self.r.ok(invoke, records=records, high_watermarks=[[t, p, len(self.logs[p])] for p in parts])
        self.r.ok(drain)


def simulate(recorder: Recorder, rng: random.Random, config: SimConfig = SimConfig()) -> None:
    """Record one simulated correct run (see the module docstring) to `recorder`."""
    Simulation(recorder, rng, config).run()
