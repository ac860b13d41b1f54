"""Fault schedules: which fault, on which node or path, when, for how long.

A :class:`Schedule` is a list of :class:`FaultSpec` (fault name from ``chaos.faults``, target,
parameters, start time and duration in seconds from the start of the workload) plus the seed
and the campaign settings it was run with. It is printed before a campaign starts, saved as
``schedule.json`` in the report, and a campaign replays exactly from that file
(``kconform chaos --replay FILE``).

Schedules come from three places, all reproducible:

* a **seed** (``random_schedule``): the CLI's ``--seed``;
* **Hypothesis** (``schedules()``, a strategy): under pytest, a failing schedule shrinks
  towards the fewest and shortest faults that still break the property (fewer list elements,
  smaller start offsets, shorter durations, the first targets);
* a **named campaign** (``NAMED``): a fixed design that provokes one hazard reliably.

The seed and Hypothesis paths share one drawing function per fault (``draw_fault``), written
against a tiny :class:`Chooser` interface with a ``random.Random`` and a Hypothesis
implementation, so both draw the same distribution.

Targets: a node name (``b1``, ``controller``), a comma-separated list of nodes, ``leader`` or
``followers`` (of partition ``params["partition"]``, resolved from Metadata when the fault
starts), a consumer name (``c1``) for ``consumer-crash``, a processor name (``x0``) for
``processor-crash``, a producer name (``p0``) for ``zombie-producer``, or a Streams instance
(``s0``) for ``streams-kill``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from chaos.faults import FAULTS
from harness.history.format import HEADER_KEY

FORMAT_VERSION = 1
HEADER = "kconform-schedule"
TICK_S = 0.5  # start times and durations are drawn in half seconds
MIN_FAULT_S = 1.0
MAX_FAULT_S = 8.0
T = TypeVar("T")


class ScheduleError(ValueError):
    """A schedule file or schedule is unusable (the message names the file and field)."""


def _params(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class FaultSpec:
    """One fault: ``fault`` on ``target`` from ``at`` for ``duration`` seconds."""

    fault: str
    at: float
    duration: float
    target: str | None = None
    params: dict[str, Any] = attrs.field(factory=dict, converter=_params)

    @property
    def end(self) -> float:
        return self.at + self.duration

    def label(self) -> str:
        what = self.fault + (f" {self.target}" if self.target else "")
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return what + (f" ({extra})" if extra else "")

    def to_json(self) -> dict[str, Any]:
        return {"fault": self.fault, "target": self.target, "at": self.at, "duration": self.duration,
                "params": dict(self.params)}


@attrs.frozen
class Schedule:
    """A whole campaign's faults, with the seed and settings that make it replayable."""

    faults: tuple[FaultSpec, ...]
    duration: float
    seed: int
    name: str = "random"
    settings: dict[str, Any] = attrs.field(factory=dict, converter=_params)

    def to_json(self) -> dict[str, Any]:
        return {HEADER: FORMAT_VERSION, "name": self.name, "seed": self.seed, "duration": self.duration,
                "settings": dict(self.settings), "faults": [f.to_json() for f in self.faults]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def save(self, path: Path) -> None:
        path.write_text(self.dumps())

    @classmethod
    def from_json(cls, obj: Any, source: str = "<schedule>") -> Schedule:
        def bad(field: str, why: str) -> ScheduleError:
            return ScheduleError(f"{source}: field {field!r}: {why}")

        if not isinstance(obj, dict):
            raise ScheduleError(f"{source}: a schedule is a JSON object")
        if obj.get(HEADER) != FORMAT_VERSION:
            raise bad(HEADER, f"expected {FORMAT_VERSION} (this is not a kconform schedule, or a newer one)")
        duration = obj.get("duration")
        if not isinstance(duration, (int, float)) or duration <= 0:
            raise bad("duration", "expected a number of seconds > 0")
        seed = obj.get("seed")
        if not isinstance(seed, int):
            raise bad("seed", "expected an integer")
        faults = []
        for i, f in enumerate(obj.get("faults", [])):
            where = f"faults[{i}]"
            if not isinstance(f, dict):
                raise bad(where, "expected an object")
            if f.get("fault") not in FAULTS:
                raise bad(f"{where}.fault", f"unknown fault {f.get('fault')!r}; known: {', '.join(FAULTS)}")
            for key in ("at", "duration"):
                if not isinstance(f.get(key), (int, float)) or f[key] < 0:
                    raise bad(f"{where}.{key}", "expected a number of seconds >= 0")
            if f.get("target") is not None and not isinstance(f["target"], str):
                raise bad(f"{where}.target", "expected a string or null")
            if not isinstance(f.get("params", {}), dict):
                raise bad(f"{where}.params", "expected an object")
            faults.append(FaultSpec(f["fault"], float(f["at"]), float(f["duration"]), f.get("target"),
                                    f.get("params", {})))
        settings = obj.get("settings", {})
        if not isinstance(settings, dict):
            raise bad("settings", "expected an object")
        return cls(tuple(faults), float(duration), seed, str(obj.get("name", "replay")), settings)

    @classmethod
    def load(cls, path: Path) -> Schedule:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ScheduleError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except UnicodeDecodeError:
            raise ScheduleError(f"{path}: not a schedule: not text (--replay takes a report folder's "
                                "schedule.json)") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScheduleError(f"{path}:{exc.lineno}: {_not_a_schedule(path, text, exc.msg)}") from exc
        return cls.from_json(obj, str(path))

    def describe(self) -> str:
        """The schedule as a table, as the CLI prints it."""
        lines = [f"schedule {self.name!r}, seed {self.seed}, {self.duration:g} s, {len(self.faults)} fault(s):"]
        for f in sorted(self.faults, key=lambda f: f.at):
            lines.append(f"  {f.at:6.1f}s - {f.end:6.1f}s  {f.label()}")
        if not self.faults:
            lines.append("  (none)")
        return "\n".join(lines)


def _not_a_schedule(path: Path, text: str, why: str) -> str:
    """Why a file that is not JSON cannot be replayed: a history (JSON lines) is named as one."""
    try:
        first = json.loads(text.partition("\n")[0])
    except json.JSONDecodeError:
        first = None
    if isinstance(first, dict) and HEADER_KEY in first:
        sibling = path.with_name("schedule.json")
        hint = f"; its schedule is {sibling}" if sibling.exists() else ""
        return (f"this is a recorded history (JSON lines), not a schedule: --replay takes the schedule.json of a "
                f"report folder{hint} (`kconform check` reads histories)")
    return f"not JSON: {why} (--replay takes the schedule.json of a report folder)"


# --- drawing ------------------------------------------------------------------------------------


class Chooser:
    """The few random choices a schedule needs; subclasses provide :meth:`integer`."""

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]

    def sample(self, options: Sequence[T], k: int) -> list[T]:
        pool = list(options)
        return [pool.pop(self.integer(0, len(pool) - 1)) for _ in range(k)]


class RandomChooser(Chooser):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class HypothesisChooser(Chooser):
    """Draws through Hypothesis (``st.composite``'s ``draw``), so every choice shrinks."""

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        from hypothesis import strategies as st

        value: int = self.draw(st.integers(lo, hi))
        return value


@attrs.frozen
class Context:
    """What a schedule can aim at."""

    nodes: tuple[str, ...]  # server nodes faults may name (brokers, controller)
    brokers: tuple[str, ...]
    partitions: int = 3
    consumers: tuple[str, ...] = ()  # group consumers that may crash
    producers: tuple[str, ...] = ()  # transactional producers that may turn zombie
    streams: tuple[str, ...] = ()  # Kafka Streams instances that may be killed
    processors: tuple[str, ...] = ()  # consume-transform-produce processors that may crash
    max_fault_s: float = MAX_FAULT_S


def draw_fault(c: Chooser, kind: str, ctx: Context) -> tuple[str | None, dict[str, Any]]:
    """A target and parameters for one fault of ``kind``."""
    nodes = list(ctx.nodes)
    partition = {"partition": c.integer(0, max(0, ctx.partitions - 1))}
    if kind == "isolate-node":
        return c.choice(nodes), {}
    if kind == "isolate-controller":
        return None, {}
    if kind in ("isolate-leader", "cut-client-leader"):
        return "leader", partition
    if kind == "split":
        minority = c.sample(nodes, c.integer(1, max(1, (len(nodes) - 1) // 2)))
        return None, {"minority": sorted(minority)}
    if kind == "bridge":
        order = c.sample(nodes, len(nodes))
        half = len(order) // 2
        return None, {"bridge": order[half], "left": sorted(order[:half]), "right": sorted(order[half + 1:])}
    if kind == "one-way":
        sources = c.sample(nodes, c.integer(1, max(1, len(nodes) - 1)))
        return None, {"from": sorted(sources), "to": sorted(n for n in nodes if n not in sources)}
    if kind in ("latency", "bandwidth", "slicer", "black-hole", "reset-peer", "limit-data"):
        target = c.choice([*ctx.brokers, *(n for n in nodes if n not in ctx.brokers)])
        params: dict[str, Any] = {}
        if kind == "latency":
            latency = 50 * c.integer(1, 20)
            params = {"latency": latency, "jitter": 10 * c.integer(0, latency // 20)}
        elif kind == "bandwidth":
            params = {"rate": 8 * c.integer(1, 16)}
        elif kind == "slicer":
            size = c.integer(1, 64)
            params = {"average_size": size, "size_variation": c.integer(0, size - 1) if size > 1 else 0,
                      "delay": 100 * c.integer(0, 10)}
        elif kind == "reset-peer":
            params = {"timeout": 100 * c.integer(0, 20)}
        elif kind == "limit-data":
            params = {"bytes": 1000 * c.integer(1, 100)}
        return target, params
    if kind in ("kill", "pause", "restart", "wipe"):
        options = ["leader", *ctx.brokers] + ([n for n in nodes if n not in ctx.brokers] if kind != "wipe" else [])
        if kind != "wipe" and len(ctx.brokers) > 1:
            options.append("followers")  # last: shrinking prefers the leader and single nodes
        target = c.choice(options)
        return target, (partition if target in ("leader", "followers") else {})
    if kind == "consumer-crash":
        return c.choice(list(ctx.consumers)), {}
    if kind == "zombie-producer":
        return c.choice(list(ctx.producers)), {}
    if kind == "streams-kill":
        return c.choice(list(ctx.streams)), {}
    if kind == "processor-crash":
        return c.choice(list(ctx.processors)), {}
    raise ScheduleError(f"unknown fault {kind!r}")


@attrs.frozen
class Drawn:
    """A fault before it is placed in time: a start offset and a length, in ticks."""

    fault: str
    target: str | None
    params: dict[str, Any]
    offset: int
    length: int


def draw_one(c: Chooser, kinds: Sequence[str], ctx: Context, overlap: bool, duration: float) -> Drawn:
    kind = c.choice(list(kinds))
    target, params = draw_fault(c, kind, ctx)
    max_len = max(int(MIN_FAULT_S / TICK_S), int(ctx.max_fault_s / TICK_S))
    length = c.integer(int(MIN_FAULT_S / TICK_S), max_len)
    offset = c.integer(0, int(duration / TICK_S) - 1) if overlap else c.integer(0, int(4 / TICK_S))
    return Drawn(kind, target, params, offset, length)


def layout(drawn: Sequence[Drawn], duration: float, overlap: bool, lead_in: float = 2.0,
           tail: float = 2.0) -> tuple[FaultSpec, ...]:
    """Place drawn faults in time: one after another (``overlap`` False: the first at the end
    of the lead-in, each next one its offset after the previous one ended) or each at its own
    offset; the first ``lead_in`` seconds stay quiet (the workload gets going) and every fault
    ends ``tail`` seconds before the end."""
    out: list[FaultSpec] = []
    cursor = lead_in
    last = duration - tail
    for d in drawn:
        # One after another, the first fault starts right after the lead-in: even a short
        # campaign gets a fault.
        gap = d.offset * TICK_S if (overlap or out) else 0.0
        at = (cursor if not overlap else lead_in) + gap
        if at + MIN_FAULT_S > last:
            if overlap:
                continue
            break
        length = min(d.length * TICK_S, last - at)
        out.append(FaultSpec(d.fault, at, length, d.target, d.params))
        if not overlap:
            cursor = at + length
    return tuple(out)


def random_schedule(seed: int, kinds: Sequence[str], ctx: Context, duration: float, *,
                    overlap: bool = False, name: str = "random") -> Schedule:
    """A schedule drawn from ``seed``: faults one after another until ``duration`` (with
    ``overlap``, about one fault per 4 s at independent times)."""
    if not kinds:
        return Schedule((), duration, seed, name)
    c = RandomChooser(random.Random(seed))
    count = max(1, int(duration / 4)) if overlap else int(duration / TICK_S)
    drawn = [draw_one(c, kinds, ctx, overlap, duration) for _ in range(count)]
    return Schedule(layout(drawn, duration, overlap), duration, seed, name)


def schedules(kinds: Sequence[str], ctx: Context, duration: float, *, min_faults: int = 1,
              max_faults: int = 6, overlap: bool | None = None, seed: int = 0) -> Any:
    """A Hypothesis strategy of schedules (``overlap`` None: drawn too)."""
    from hypothesis import strategies as st

    @st.composite
    def one(draw: Callable[[Any], Any], both: bool) -> Drawn:
        return draw_one(HypothesisChooser(draw), kinds, ctx, both, duration)

    @st.composite
    def strategy(draw: Callable[[Any], Any]) -> Schedule:
        both = draw(st.booleans()) if overlap is None else overlap
        drawn = draw(st.lists(one(both), min_size=min_faults, max_size=max_faults))
        return Schedule(layout(drawn, duration, both), duration, seed, "hypothesis")

    return strategy()


# --- named campaigns ---------------------------------------------------------------------------

Named = Callable[[int, Context, float], Schedule]


def _mixed(seed: int, ctx: Context, duration: float, kinds: Sequence[str]) -> Schedule:
    return random_schedule(seed, kinds, ctx, duration, name="mixed")


def _kinds_schedule(name: str, kinds: Sequence[str]) -> Named:
    def make(seed: int, ctx: Context, duration: float) -> Schedule:
        return attrs.evolve(random_schedule(seed, kinds, ctx, duration), name=name)

    return make


def _acks1_loss(seed: int, ctx: Context, duration: float) -> Schedule:
    """acks=1 loses acknowledged writes: the leader of partition 0 is cut off from the other
    brokers and the controller (clients still reach it and it acknowledges acks=1 writes alone
    while a new leader is elected), then its followers are frozen and it is killed before they
    fetch what it acknowledged. Repeated while time allows."""
    faults = []
    at = 2.0
    while at + 9.0 <= duration - 2.0:
        faults.append(FaultSpec("isolate-leader", at, 4.0, "leader", {"partition": 0}))
        faults.append(FaultSpec("pause", at + 6.0, 1.0, "followers", {"partition": 0}))
        faults.append(FaultSpec("kill", at + 6.5, 2.0, "leader", {"partition": 0}))
        at += 11.0
    return Schedule(tuple(faults), duration, seed, "acks1-loss")


def _unclean_loss(seed: int, ctx: Context, duration: float) -> Schedule:
    """unclean.leader.election.enable=true loses committed writes: the last broker is cut off
    (it falls out of every ISR while writes go on without it), then every other broker is
    killed and the lagging one comes back alone: it is elected uncleanly, without what it
    missed; the others truncate to it when they return."""
    lagging = ctx.brokers[-1]
    others = ",".join(ctx.brokers[:-1])
    start = 2.0
    return Schedule((
        FaultSpec("isolate-node", start, 5.0, lagging),
        FaultSpec("kill", start + 4.0, 5.0, others),
    ), duration, seed, "unclean-loss")


def _unclean_leader_loss(seed: int, ctx: Context, duration: float) -> Schedule:
    """unclean.leader.election.enable=true loses acknowledged writes with replication factor 2
    and min.insync.replicas=1, killing one node only: the follower of partition 0 is cut off
    (it is fenced and leaves the ISR; the leader acknowledges alone), then the leader is killed
    while the follower is still cut off, and the follower comes back to a partition without a
    leader: it is elected uncleanly, without what it missed; the old leader truncates to it
    when it returns. For clusters whose controllers run in the broker nodes (Kafka in KRaft
    combined mode), where killing every other replica of a replication-factor-3 partition
    would take the controller quorum with it and no election could happen."""
    # Each step waits (bounded) for the state the next one needs, observed in Metadata, rather
    # than trusting the timings under load: the leader is killed only once the ISR is the
    # leader alone (it has acknowledged alone since); the follower is healed only once the
    # controller has fenced the dead leader (the partition is leaderless, so the follower's
    # return is an unclean election); the leader is started again only once the partition is
    # led again (by the follower, uncleanly), not before, when it would be elected cleanly.
    # Early enough that the producers (idempotent ones die of the lost sequence numbers and are
    # replaced) write for several seconds after the unclean election: the checkers see the loss
    # only where new records take the offsets of the lost ones.
    return Schedule((
        FaultSpec("isolate-node", 2.0, 6.0, "followers", {"partition": 0, "stop_when": "leaderless"}),
        FaultSpec("kill", 6.0, 4.0, "leader", {"partition": 0, "start_when": "isr-is-leader", "stop_when": "led"}),
    ), duration, seed, "unclean-leader-loss") if duration >= 16.0 else Schedule((), duration, seed,
                                                                               "unclean-leader-loss")


def _duplicates(seed: int, ctx: Context, duration: float) -> Schedule:
    """Non-idempotent retries write twice: answers from the leader of each partition are
    delayed past the producers' request timeout (so they resend what was appended), and the
    leader of partition 0 is killed with requests in flight."""
    faults = []
    at = 2.0
    p = 0
    while at + 5.0 <= duration - 2.0:
        faults.append(FaultSpec("latency", at, 3.0, "leader", {"partition": p % max(1, ctx.partitions),
                                                                "latency": 2500, "jitter": 0}))
        faults.append(FaultSpec("kill", at + 3.5, 1.5, "leader", {"partition": 0}))
        at += 6.0
        p += 1
    return Schedule(tuple(faults), duration, seed, "duplicates")


def _epoch_bump_duplicates(seed: int, ctx: Context, duration: float) -> Schedule:
    """An idempotent client that bumps its epoch and renumbers what it resends writes records
    twice (librdkafka #4953). In each round of 14 s, clients are cut from the leader of one
    partition for 10 s, longer than the campaign's 8 s delivery timeout
    (``CAMPAIGN_WORKLOADS``): its sends expire, and librdkafka then drains every partition and
    bumps its producer epoch. From 4 s to 10 s the answers of the leader of the next partition
    are swallowed (a black hole on the answers only): the requests in flight there are
    appended but unanswered, and when the hole closes their connections (about 2 s after the
    bump began, 2 s before those sends would expire) they are retried as "possibly persisted":
    under the new epoch, renumbered from sequence 0, which no broker can recognise as resends.
    A client that never renumbers a possibly persisted batch (the Java client) writes no
    duplicate under the same schedule. (A black hole, not a long latency: a latency toxic whose
    client gives up and closes its connection wedges Toxiproxy's control API, upstream issue
    #558.)"""
    faults = []
    at = 2.0
    n = max(1, ctx.partitions)
    round_ = 0
    while at + 10.0 <= duration - 2.0:
        expire, late = round_ % n, (round_ + 1) % n
        faults.append(FaultSpec("cut-client-leader", at, 10.0, "leader", {"partition": expire}))
        faults.append(FaultSpec("black-hole", at + 4.0, 6.0, "leader",
                                {"partition": late, "paths": "clients", "streams": "downstream"}))
        at += 14.0
        round_ += 1
    return Schedule(tuple(faults), duration, seed, "epoch-bump-duplicates")


def _in_turn(fault: str, targets: Sequence[str], duration: float, first: float, length: float,
             every: float) -> tuple[FaultSpec, ...]:
    """``fault`` on each of ``targets`` in turn, ``length`` seconds long, the first at ``first``,
    then one every ``every`` seconds, the last ending 2 s before the end."""
    faults: list[FaultSpec] = []
    at = first
    while targets and at + length <= duration - 2.0:
        faults.append(FaultSpec(fault, at, length, targets[len(faults) % len(targets)]))
        at += every
    return tuple(faults)


def _zombie_producers(seed: int, ctx: Context, duration: float) -> Schedule:
    """Every transactional producer turns zombie in turn: frozen for 4 s in the middle of a
    transaction while its replacement fences it, then woken to finish and commit it."""
    faults = _in_turn("zombie-producer", ctx.producers, duration, first=2.0, length=4.0, every=5.0)
    return Schedule(faults, duration, seed, "zombie-producers")


def _consumer_crashes(seed: int, ctx: Context, duration: float) -> Schedule:
    """Every group consumer crashes in turn, at its worst moment, and is replaced 1 s later."""
    faults = _in_turn("consumer-crash", ctx.consumers, duration, first=2.0, length=1.0, every=2.5)
    return Schedule(faults, duration, seed, "consumer-crashes")


def _streams_kills(seed: int, ctx: Context, duration: float) -> Schedule:
    """Every Kafka Streams instance in turn is SIGKILLed, 3 s after the last fault ended, and
    replaced 5 s later (past the group's session timeout of 6 s, counted from the kill, so the
    group moves its tasks first, or the new instance joins the rebalance)."""
    faults = _in_turn("streams-kill", ctx.streams, duration, first=3.0, length=5.0, every=8.0)
    return Schedule(faults, duration, seed, "streams-kills")


def _processor_crashes(seed: int, ctx: Context, duration: float) -> Schedule:
    """Every consume-transform-produce processor (``CAMPAIGN_WORKLOADS`` starts three) crashes in
    turn in the middle of a transaction, after its sends and offsets and before the commit, and
    is replaced 1 s later by a new instance with the same transactional id: its InitProducerId
    fences the old one and makes the coordinator abort the open transaction (KIP-98), and the
    group's rebalance hands the partitions on with the committed positions (KIP-447). 8 s apart:
    a member that crashed without leaving (a SIGKILLed Java consumer) holds the group's
    rebalance until its session times out (``session.timeout.ms`` 6000 in campaigns), and the
    group needs time to process after that."""
    faults = _in_turn("processor-crash", ctx.processors, duration, first=2.0, length=1.0, every=8.0)
    return Schedule(faults, duration, seed, "processor-crashes")


def _txn_coordinator_failures(seed: int, ctx: Context, duration: float) -> Schedule:
    """The transaction coordinator of producer p0 (the leader of its transactional id's
    ``__transaction_state`` partition, found when each fault starts) is killed, paused, cut off
    and slowed in turn, 3 s each with 2 s between, while the workload commits and aborts
    transactions (``CAMPAIGN_WORKLOADS`` turns transactions on): the coordinator's state must
    survive its fail-over, decided transactions must get their markers from the next
    coordinator, and open ones must be aborted or committed whole. The slowing is latency
    (2 s, jitter 0.5 s) on its links to the other brokers only: its ``__transaction_state``
    appends and its WriteTxnMarkers to the partition leaders arrive late, so read_committed
    readers wait at the last stable offset while clients see the coordinator answer."""
    faults = []
    at = 2.0
    round_ = 0
    kinds: tuple[tuple[str, dict[str, Any]], ...] = (
        ("kill", {}), ("pause", {}), ("isolate-node", {}),
        ("latency", {"latency": 2000, "jitter": 500, "paths": "peers"}))
    while at + 3.0 <= duration - 2.0:
        kind, params = kinds[round_ % len(kinds)]
        faults.append(FaultSpec(kind, at, 3.0, "txn-coordinator", {"producer": "p0", **params}))
        at += 5.0
        round_ += 1
    return Schedule(tuple(faults), duration, seed, "txn-coordinator-failures")


def _delayed_end_txn(seed: int, ctx: Context, duration: float) -> Schedule:
    """The shape of KAFKA-17754: a delayed EndTxn lands on the producer's next transaction.
    In windows of 1.5 s every 2 s, requests from clients to every broker (so to every
    transaction coordinator) are held on a random 30 % of connections (latency 3 s, toxicity
    0.3, drawn per connection by Toxiproxy; what is held goes through when the window closes),
    while the workload (``CAMPAIGN_WORKLOADS``) sends short transactions whose sends are spread
    out, half of them aborted, with a 0.6 s request timeout. A client whose EndTxn is held
    times out, closes the connection and sends it again on a new one, most likely fast: that
    copy ends the transaction, the client begins the next one under the same producer epoch
    (transaction protocol version 1: no epoch bump per transaction), and the held copy, arriving
    when the window closes, ends that one early: the partitions it adds afterwards form a
    transaction of their own. Visible as aborted reads and G1b (the early commit of a
    transaction the client then aborts or gives up) and torn transactions (the early abort of
    one it then commits). Transaction protocol version 2 (KIP-890 part 2: a new epoch for
    every transaction) fences the held copy."""
    faults = []
    at = 2.0
    while at + 1.5 <= duration - 2.0:
        faults += [FaultSpec("latency", at, 1.5, broker, {"latency": 3000, "jitter": 0, "toxicity": 0.3,
                                                          "paths": "clients", "streams": "upstream"})
                   for broker in ctx.brokers]
        at += 2.0
    return Schedule(tuple(faults), duration, seed, "delayed-end-txn")


NAMED: Mapping[str, tuple[str, Named | None]] = {
    "mixed": ("faults of every safe kind the target supports, one after another", None),
    "kills": ("SIGKILL the leader or a node, again and again", _kinds_schedule("kills", ["kill"])),
    "pauses": ("SIGSTOP the leader or a node, again and again", _kinds_schedule("pauses", ["pause"])),
    "partitions": ("network partitions of every shape", _kinds_schedule(
        "partitions", ["isolate-node", "isolate-leader", "isolate-controller", "split", "bridge", "one-way"])),
    "links": ("slow, lossy and broken connections (toxics)", _kinds_schedule(
        "links", ["latency", "bandwidth", "slicer", "black-hole", "reset-peer", "limit-data"])),
    "acks1-loss": ("isolate, then freeze the followers and kill the leader (acks=1 loses writes)", _acks1_loss),
    "unclean-loss": ("isolate a replica, kill the others, elect it uncleanly", _unclean_loss),
    "unclean-leader-loss": ("replication factor 2: isolate the follower, kill the leader, elect the follower "
                            "uncleanly (controllers inside the brokers, e.g. Kafka)", _unclean_leader_loss),
    "duplicates": ("delay answers past the request timeout and kill leaders (non-idempotent retries)",
                   _duplicates),
    "consumer-crashes": ("group consumers crash at their worst moment", _consumer_crashes),
    "zombie-producers": ("transactional producers freeze mid-transaction, are replaced (fenced) and wake "
                         "to commit", _zombie_producers),
    "streams-kills": ("SIGKILL each Kafka Streams instance in turn, replaced 5 s later (needs --streams)",
                      _streams_kills),
    "processor-crashes": ("consume-transform-produce processors crash in the middle of a transaction and are "
                          "replaced under the same transactional id (KIP-447; turns --processors 3 on)",
                          _processor_crashes),
    "txn-coordinator-failures": ("kill, pause and isolate the transaction coordinator of a transactional "
                                 "producer, in turn (turns --transactions on)", _txn_coordinator_failures),
    "delayed-end-txn": ("delay clients' requests past their request timeout, some more than others: a "
                        "resent EndTxn ends the transaction, the late first copy ends the next one (KAFKA-17754; "
                        "turns --transactions on)", _delayed_end_txn),
    "epoch-bump-duplicates": ("expire one partition's sends while another's answers are late: a client that "
                              "bumps its epoch and renumbers resends duplicates (librdkafka #4953)",
                              _epoch_bump_duplicates),
}

CAMPAIGN_WORKLOADS: Mapping[str, Mapping[str, Any]] = {
    "epoch-bump-duplicates": {"delivery_timeout_ms": 8000, "rate": 200.0},
    "txn-coordinator-failures": {"transactions": True},
    "zombie-producers": {"transactions": True},
    "streams-kills": {"streams": 2},
    # The assigned reader reads the output; no other group (fewer clients: Java's are JVMs).
    "processor-crashes": {"processors": 3, "consumers": ("assigned",)},
    # aiokafka, like the Java client, closes a connection whose request timed out and sends the
    # request again on a new one (kafka-python gives the producer up instead; librdkafka waits
    # 60 s, its socket.timeout.ms, on the same connection).
    "delayed-end-txn": {"transactions": True, "client": "aiokafka", "producers": 6, "request_timeout_ms": 600,
                        "delivery_timeout_ms": 20_000, "txn_size": 3, "txn_send_gap_ms": 100, "abort_ratio": 0.5},
}
"""Workload settings a named campaign needs (its faults are timed against them); the CLI uses
them unless the user gives the option."""


def named_schedule(name: str, seed: int, ctx: Context, duration: float, kinds: Sequence[str]) -> Schedule:
    """The named campaign ``name`` (``mixed`` draws from ``kinds``)."""
    if name not in NAMED:
        raise ScheduleError(f"unknown campaign {name!r}; known: {', '.join(NAMED)}")
    make = NAMED[name][1]
    if make is None:
        return _mixed(seed, ctx, duration, kinds)
    return make(seed, ctx, duration)
