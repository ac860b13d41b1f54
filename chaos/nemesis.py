"""Nemeses: inject the faults of ``chaos.faults`` and record each start and end in the history.

One small class per family (:class:`PartitionFault`, :class:`ToxicFault`, :class:`ProcessFault`,
:class:`ClientCrash`, :class:`ZombieProducer`, :class:`StreamsKill`) turns a
:class:`~chaos.schedule.FaultSpec` into an action and its undo. :class:`Nemesis` records both
in the history as ``fault`` operations of process ``nemesis`` (docs/history-format.md)::

    invoke fault {"action": "start", "fault": "isolate-leader", "targets": ["b2"],
                  "params": {"partition": 0, "id": 3}}
    ok     fault {}
    ...
    invoke fault {"action": "stop", ...same fault, targets and params...}
    ok     fault {}

``targets`` are resolved when the fault starts: "the leader of partition 0" becomes the broker
that Metadata names at that moment, "followers" the other replicas, so the history says which
node was hit. A fault that cannot be applied (no leader, a node already under a process fault,
no proxied path for that shape on this target) is completed ``fail`` with the reason and has no
stop. A Toxiproxy control call that does not come back (upstream issue #558) is completed
``info`` and raises :class:`~chaos.toxiproxy.ToxiproxyWedged`: the campaign stops loudly.

:class:`NemesisRunner` plays a schedule on a thread, in real time from the workload's start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from chaos.environment import Environment
from chaos.schedule import FaultSpec, Schedule
from chaos.topology import ProxyLink, Topology
from chaos.toxiproxy import ToxiproxyWedged
from harness.history.write import Recorder
from harness.targets.proxied import CLIENTS, ChaosEnvironmentError
from launch.toxiproxy import ToxiproxyError
from reference_broker.transactions import TRANSACTION_STATE_TOPIC
from reference_broker.transactions import partition_for as transaction_partition

PROCESS = "nemesis"
RESOLVE_WAIT_S = 3.0
TXN_COORDINATOR = "txn-coordinator"
# Campaigns give __transaction_state this many partitions (chaos.environment.CAMPAIGN_TIMING).
TRANSACTION_STATE_PARTITIONS = 3
CONDITION_WAIT_S = 10.0  # the longest a fault waits for its start_when / stop_when condition
# Observable states of partition ``params["partition"]`` a fault can wait for before it starts
# (``params["start_when"]``) or ends (``params["stop_when"]``), judged on the views at the
# newest leader epoch (a cut-off broker's stale view is older): its ISR is the leader alone;
# it has no leader (the controller fenced the leader); it is led by a running node.
CONDITIONS = ("isr-is-leader", "leaderless", "led")


class FaultNotApplied(Exception):
    """The fault could not be applied; the message is the history's error."""


@attrs.define
class ActiveFault:
    """A started fault and how to end it."""

    fault_id: int
    spec: FaultSpec
    targets: list[str]
    params: dict[str, Any]
    undo: Callable[[], None]
    started: float = attrs.field(factory=time.monotonic)


Applied = tuple[list[str], dict[str, Any], Callable[[], None]]


class _Family:
    def __init__(self, nemesis: Nemesis) -> None:
        self.n = nemesis

    def apply(self, spec: FaultSpec, fault_id: int) -> Applied:
        raise NotImplementedError


class PartitionFault(_Family):
    """Network partitions: disable the proxies of every path between the sides."""

    def _cut(self, links: list[ProxyLink], fault_id: int) -> Callable[[], None]:
        if not links:
            raise FaultNotApplied("NOT_APPLICABLE: no proxied path between those nodes on this target")
        key = f"fault-{fault_id}"
        self.n.topology.hold_down(links, key)
        return lambda: self.n.topology.release(links, key)

    def _isolate(self, node: str, fault_id: int) -> Callable[[], None]:
        others = [n for n in self.n.env.target.nodes if n != node]
        t = self.n.topology
        return self._cut(t.between([node], others) + t.between(others, [node]), fault_id)

    def apply(self, spec: FaultSpec, fault_id: int) -> Applied:
        t = self.n.topology
        nodes = self.n.env.target.nodes
        kind = spec.fault
        params = dict(spec.params)
        if kind in ("isolate-node", "isolate-leader", "isolate-controller"):
            if kind == "isolate-controller":
                found = self.n.env.target.controller_node()
                if found is None:
                    raise FaultNotApplied("NO_CONTROLLER: no controller node can be named now on this target")
                node = found
            else:
                node = self.n.resolve(spec)[0]
            if node not in nodes:
                raise FaultNotApplied(f"NOT_APPLICABLE: no node {node} on this target")
            return [node], params, self._isolate(node, fault_id)
        if kind == "cut-client-leader":
            leader = self.n.resolve(spec)[0]
            return [f"{CLIENTS}->{leader}"], params, self._cut(t.between([CLIENTS], [leader]), fault_id)
        if kind == "split":
            minority = [n for n in params.get("minority", []) if n in nodes]
            majority = [n for n in nodes if n not in minority]
            links = t.between(minority, majority) + t.between(majority, minority)
            return minority, {**params, "majority": majority}, self._cut(links, fault_id)
        if kind == "bridge":
            left = [n for n in params.get("left", []) if n in nodes]
            right = [n for n in params.get("right", []) if n in nodes]
            links = t.between(left, right) + t.between(right, left)
            return [str(params.get("bridge"))], params, self._cut(links, fault_id)
        if kind == "one-way":
            sources = [n for n in params.get("from", []) if n in nodes]
            dests = [n for n in params.get("to", []) if n in nodes]
            return sources, params, self._cut(t.between(sources, dests), fault_id)
        raise FaultNotApplied(f"UNKNOWN_FAULT: {kind}")


# Toxiproxy toxic, attributes (from the schedule's params, with defaults) and streams per fault.
_TOXICS: dict[str, tuple[str, dict[str, int], tuple[str, ...]]] = {
    "latency": ("latency", {"latency": 500, "jitter": 100}, ("downstream",)),
    "bandwidth": ("bandwidth", {"rate": 16}, ("downstream", "upstream")),
    "slicer": ("slicer", {"average_size": 16, "size_variation": 8, "delay": 500}, ("downstream", "upstream")),
    "black-hole": ("timeout", {"timeout": 0}, ("downstream", "upstream")),
    "reset-peer": ("reset_peer", {"timeout": 500}, ("downstream",)),
    "limit-data": ("limit_data", {"bytes": 20_000}, ("downstream",)),
}


_STREAMS = {"downstream": ("downstream",), "upstream": ("upstream",), "both": ("downstream", "upstream")}


class ToxicFault(_Family):
    """A toxic on every path into and out of a node (``params["paths"]``: ``all``, ``clients``
    for the client path only, ``peers`` for the others; ``params["streams"]``: ``downstream``
    for answers only, ``upstream`` for requests only, ``both``; default per toxic;
    ``params["toxicity"]``: the share of connections it applies to, each drawn by Toxiproxy
    when the connection opens or the toxic is added; default 1)."""

    def apply(self, spec: FaultSpec, fault_id: int) -> Applied:
        toxic, defaults, streams = _TOXICS[spec.fault]
        if "streams" in spec.params:
            chosen = _STREAMS.get(str(spec.params["streams"]))
            if chosen is None:
                raise FaultNotApplied(f"NOT_APPLICABLE: streams {spec.params['streams']!r} (give "
                                      f"{', '.join(_STREAMS)})")
            streams = chosen
        node = self.n.resolve(spec)[0]
        paths = str(spec.params.get("paths", "all"))
        links = self.n.topology.touching(node)
        if paths == "clients":
            links = [link for link in links if link.source == CLIENTS]
        elif paths == "peers":
            links = [link for link in links if link.source != CLIENTS]
        if not links:
            raise FaultNotApplied(f"NOT_APPLICABLE: no proxied path to or from {node} on this target")
        attributes = {key: int(spec.params.get(key, value)) for key, value in defaults.items()}
        toxicity = float(spec.params.get("toxicity", 1.0))
        if not 0.0 < toxicity <= 1.0:
            raise FaultNotApplied(f"NOT_APPLICABLE: toxicity {toxicity} (give a share of connections in (0, 1])")
        added: list[tuple[ProxyLink, str]] = []

        def undo() -> None:
            for link, name in reversed(added):
                self.n.topology.remove_toxic(link, name)

        try:
            for link in links:
                for stream in streams:
                    name = f"kconform-{fault_id}-{spec.fault}-{stream}"
                    self.n.topology.add_toxic(link, toxic, dict(attributes), stream, name, toxicity)
                    added.append((link, name))
        except ToxiproxyWedged:
            raise
        except ToxiproxyError:
            undo()
            raise
        return [node], {**dict(spec.params), **attributes, "paths": paths}, undo


class ProcessFault(_Family):
    """SIGKILL / SIGSTOP / clean stop / wiped data, undone by starting or resuming."""

    def apply(self, spec: FaultSpec, fault_id: int) -> Applied:
        env = self.n.env
        if not env.target.process_control:
            raise FaultNotApplied(f"NOT_APPLICABLE: the {env.target.name} target has no process control")
        nodes = self.n.resolve(spec)
        busy = [node for node in nodes if node in self.n.busy]
        if busy:
            raise FaultNotApplied(f"BUSY: {', '.join(busy)} already under a process fault")
        kind = spec.fault
        action: Callable[[str], None] = {"kill": env.kill, "pause": env.pause, "restart": env.stop,
                                         "wipe": env.wipe}[kind]
        back: Callable[[str], None] = env.resume if kind == "pause" else env.start_node
        done: list[str] = []

        def undo() -> None:
            try:
                for node in done:
                    back(node)
            finally:
                for node in done:
                    self.n.busy.discard(node)

        try:
            for node in nodes:
                self.n.busy.add(node)
                done.append(node)
                action(node)
        except BaseException:
            undo()
            raise
        return nodes, dict(spec.params), undo


class _ClientFault(_Family):
    """A fault the workload plays on one of its clients: ``start`` when it begins (returns the
    process it hit), ``end`` when it ends; both are the workload's methods taking the name."""

    start: ClassVar[str]
    end: ClassVar[str]

    def apply(self, spec: FaultSpec, fault_id: int) -> Applied:
        workload = self.n.workload
        if workload is None or spec.target is None:
            raise FaultNotApplied(f"NOT_APPLICABLE: no workload client for {spec.fault}")
        name = spec.target
        try:
            process = getattr(workload, self.start)(name)
        except KeyError as exc:
            raise FaultNotApplied(f"NOT_APPLICABLE: {exc.args[0]}") from exc
        except TimeoutError as exc:
            raise FaultNotApplied(f"TIMEOUT: {exc}") from exc
        hit_at = time.monotonic()

        def undo() -> None:
            # The fault lasts its duration from when it took effect, however long the client
            # took to reach the point where it could (the stop may be due already).
            time.sleep(max(0.0, hit_at + spec.duration - time.monotonic()))
            getattr(workload, self.end)(name)

        return [process], dict(spec.params), undo


class ClientCrash(_ClientFault):
    """A group consumer or a processor crashes at its worst moment; a new incarnation starts at
    the end."""

    start, end = "crash", "restart"


class ZombieProducer(_ClientFault):
    """A transactional producer freezes mid-transaction and is replaced; it wakes at the end."""

    start, end = "make_zombie", "wake_zombie"


class StreamsKill(_ClientFault):
    """A Kafka Streams instance's JVM is SIGKILLed; a new instance starts at the end."""

    start, end = "kill_streams", "restart_streams"


FAMILY_OF = {
    "isolate-node": PartitionFault, "isolate-leader": PartitionFault, "isolate-controller": PartitionFault,
    "split": PartitionFault, "bridge": PartitionFault, "one-way": PartitionFault,
    "cut-client-leader": PartitionFault,
    "latency": ToxicFault, "bandwidth": ToxicFault, "slicer": ToxicFault, "black-hole": ToxicFault,
    "reset-peer": ToxicFault, "limit-data": ToxicFault,
    "kill": ProcessFault, "pause": ProcessFault, "restart": ProcessFault, "wipe": ProcessFault,
    "consumer-crash": ClientCrash, "processor-crash": ClientCrash, "zombie-producer": ZombieProducer,
    "streams-kill": StreamsKill,
}


class Nemesis:
    """Starts and stops faults against one environment, recording them in ``history``."""

    def __init__(self, env: Environment, topology: Topology, history: Recorder, topic: str,
                 workload: Any | None = None) -> None:
        self.env = env
        self.topology = topology
        self.history = history
        self.topic = topic
        self.workload = workload
        self.busy: set[str] = set()
        self.active: dict[int, ActiveFault] = {}
        self.injected = 0
        self._lock = threading.Lock()

    def resolve(self, spec: FaultSpec) -> list[str]:
        """The nodes a spec names, now: ``leader`` / ``followers`` of ``params["partition"]``
        from Metadata, ``txn-coordinator``: the transaction coordinator of workload producer
        ``params["producer"]`` (the leader of its transactional id's ``__transaction_state``
        partition), or a node list."""
        target = spec.target or ""
        if target == TXN_COORDINATOR:
            prefix = getattr(self.workload, "group_prefix", None)
            if prefix is None or not getattr(getattr(self.workload, "settings", None), "transactions", False):
                raise FaultNotApplied("NOT_APPLICABLE: txn-coordinator needs a transactional workload (--transactions)")
            transactional_id = f"{prefix}-{spec.params.get('producer', 'p0')}"
            state_partitions = int(spec.params.get("state_partitions", TRANSACTION_STATE_PARTITIONS))
            return [self._leader(TRANSACTION_STATE_TOPIC, transaction_partition(transactional_id, state_partitions))]
        if target in ("leader", "followers"):
            partition = int(spec.params.get("partition", 0))
            leader = self._leader(self.topic, partition)
            state = self.env.partition_state(self.topic, partition)
            assert state is not None
            if target == "leader":
                return [leader]
            followers = [r for r in state.replicas if r != leader]
            if not followers:
                raise FaultNotApplied(f"NO_FOLLOWER: {self.topic}-{partition} has no follower")
            return followers
        nodes = [n.strip() for n in target.split(",") if n.strip()]
        unknown = [n for n in nodes if n not in self.env.target.nodes]
        if not nodes or unknown:
            raise FaultNotApplied(f"NOT_APPLICABLE: no node {', '.join(unknown) or repr(target)} on this target "
                                  f"(nodes: {', '.join(self.env.target.nodes)})")
        return nodes

    def _leader(self, topic: str, partition: int) -> str:
        """The partition's leader; right after another fault ends leadership may be moving, so
        Metadata is asked again for a while."""
        deadline = time.monotonic() + RESOLVE_WAIT_S
        state = self.env.partition_state(topic, partition)
        while (state is None or state.leader is None) and time.monotonic() < deadline:
            time.sleep(0.1)
            state = self.env.partition_state(topic, partition)
        if state is None or state.leader is None:
            raise FaultNotApplied(f"NO_LEADER: {topic}-{partition} has no leader now")
        return state.leader

    def holds(self, condition: str, partition: int) -> bool:
        """Whether ``condition`` (one of :data:`CONDITIONS`) holds for the partition now."""
        views = self.env.target.partition_views(self.topic, partition)
        if not views:
            return False
        newest = max(v.leader_epoch for v in views)
        top = [v for v in views if v.leader_epoch == newest]
        if condition == "isr-is-leader":
            return any(v.leader is not None and v.isr == (v.leader,) for v in top)
        if condition == "leaderless":
            return any(v.leader is None for v in top)
        if condition == "led":
            return any(v.leader is not None and self.env.running(v.leader) for v in top)
        raise ValueError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")

    def wait_for(self, spec: FaultSpec, key: str) -> bool:
        """Wait (at most ``params["wait_s"]``, default :data:`CONDITION_WAIT_S`) until the
        condition ``params[key]`` holds; True at once when the spec names none. A condition
        that never holds does not stop the fault: the history's times show what happened."""
        condition = spec.params.get(key)
        if not condition:
            return True
        partition = int(spec.params.get("partition", 0))
        deadline = time.monotonic() + float(spec.params.get("wait_s", CONDITION_WAIT_S))
        while True:
            try:
                if self.holds(str(condition), partition):
                    return True
            except ChaosEnvironmentError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def start(self, spec: FaultSpec, fault_id: int, until: float | None = None) -> ActiveFault | None:
        """Apply ``spec`` (once its ``start_when`` condition holds, if it names one); None when
        it could not be applied (recorded as ``fail``). ``until``: when the workload ends (a
        ``time.monotonic()`` reading); a fault that only takes effect after that stresses nothing
        the history judges, so it is undone and recorded as ``fail`` (LATE), not injected."""
        self.wait_for(spec, "start_when")
        family = FAMILY_OF[spec.fault](self)
        try:
            targets, params, undo = family.apply(spec, fault_id)
        except FaultNotApplied as exc:
            i = self._invoke("start", spec, [], dict(spec.params), fault_id)
            self.history.fail(i, str(exc))
            return None
        except ChaosEnvironmentError as exc:
            i = self._invoke("start", spec, [], dict(spec.params), fault_id)
            self.history.fail(i, f"NOT_APPLICABLE: {exc}")
            return None
        except ToxiproxyWedged as exc:
            i = self._invoke("start", spec, [], dict(spec.params), fault_id)
            self.history.info(i, f"TOXIPROXY_WEDGED: {exc}")
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as unknown; the campaign goes on
            i = self._invoke("start", spec, [], dict(spec.params), fault_id)
            self.history.info(i, f"{type(exc).__name__}: {exc}"[:300])
            return None
        # Recorded once applied, so the start event's time is when the fault is in force.
        i = self._invoke("start", spec, targets, params, fault_id)
        late = time.monotonic() - until if until is not None else 0.0
        if late > 0:
            self.history.fail(i, f"LATE: it took effect {late:.2f} s after the workload ended (waiting for its "
                                 "condition or its targets), so it is not counted as injected")
            try:
                undo()
            except Exception:  # noqa: BLE001 - the workload is over; the recovery phase heals the rest
                pass
            return None
        self.history.ok(i)
        active = ActiveFault(fault_id, spec, targets, params, undo)
        with self._lock:
            self.active[fault_id] = active
            self.injected += 1
        return active

    def stop(self, active: ActiveFault, *, when: bool = True) -> None:
        """End ``active`` (with ``when``: once its ``stop_when`` condition holds, if it names one)."""
        if when:
            self.wait_for(active.spec, "stop_when")
        with self._lock:
            if self.active.pop(active.fault_id, None) is None:
                return
        i = self._invoke("stop", active.spec, active.targets, active.params, active.fault_id)
        try:
            active.undo()
        except ToxiproxyWedged as exc:
            self.history.info(i, f"TOXIPROXY_WEDGED: {exc}")
            raise
        except Exception as exc:  # noqa: BLE001 - the final heal and recovery try again
            self.history.info(i, f"{type(exc).__name__}: {exc}"[:300])
            return
        self.history.ok(i)

    def stop_all(self) -> None:
        """End every active fault, latest first, without waiting for conditions."""
        for active in sorted(self.active.values(), key=lambda a: -a.started):
            self.stop(active, when=False)

    def _invoke(self, action: str, spec: FaultSpec, targets: list[str], params: dict[str, Any],
                fault_id: int) -> int:
        return self.history.invoke(PROCESS, "fault", action=action, fault=spec.fault, targets=list(targets),
                                   params={**params, "id": fault_id})


class NemesisRunner(threading.Thread):
    """Plays a schedule in real time from ``t0`` (a ``time.monotonic()`` reading)."""

    def __init__(self, nemesis: Nemesis, schedule: Schedule, t0: float) -> None:
        super().__init__(name="kconform-nemesis", daemon=True)
        self.nemesis = nemesis
        self.schedule = schedule
        self.t0 = t0
        self.abort = threading.Event()
        self.fatal: BaseException | None = None
        self.current: list[str] = []  # labels of the faults in force (for the progress bar)

    def run(self) -> None:
        events: list[tuple[float, int, int]] = []
        for i, f in enumerate(self.schedule.faults):
            events.append((f.at, 1, i))
            events.append((f.end, 0, i))  # at equal times, stops come before starts
        events.sort()
        started: dict[int, ActiveFault] = {}
        try:
            for when, is_start, i in events:
                delay = self.t0 + when - time.monotonic()
                if delay > 0 and self.abort.wait(delay):
                    return
                if self.abort.is_set():
                    return
                spec = self.schedule.faults[i]
                if is_start:
                    active = self.nemesis.start(spec, i, until=self.t0 + self.schedule.duration)
                    if active is not None:
                        started[i] = active
                else:
                    active = started.pop(i, None)
                    if active is not None:
                        self.nemesis.stop(active)
                self.current = [a.spec.label() for a in self.nemesis.active.values()]
        except BaseException as exc:  # noqa: BLE001 - handed to the campaign, which fails loudly
            self.fatal = exc
