"""A chaos campaign: target + proxies + workload + nemesis -> heal -> recover -> drain -> check -> report.

Theory of operation. :class:`CampaignSession` owns the long-lived pieces: a Toxiproxy server
(started on a free port, or ``$KCONFORM_TOXIPROXY_URL``), the proxy :class:`Topology` and the
started :class:`Environment` (the target behind its proxies). :meth:`CampaignSession.run` plays
one campaign on them, on a fresh topic (:meth:`CampaignSession.use` changes the workload and
topic settings between campaigns, so several share one started cluster):

1. the schedule is saved (``schedule.json``, replayable with ``kconform chaos --replay``);
2. the topic is created with the settings the campaign claims guarantees for (replication
   factor, ``min.insync.replicas``, ``unclean.leader.election.enable``);
3. producers and consumers run for the schedule's duration while the nemesis injects its
   faults and an observer samples each partition's leader, ISR and high watermark
   (``chaos/observer.py``), everything recorded in ``history.jsonl``;
4. every fault is ended and every proxy healed; producers stop and flush; the cluster is
   waited for (every node back, every partition led with a full ISR where visible);
5. a fresh consumer drains every partition from offset 0 to its end (with a Kafka Streams
   application, ``--streams``: the application first catches up and closes, and its output
   topic is drained too, read_committed);
6. the checkers run on the history; each anomaly is judged against the :class:`Claims` of the
   configuration: a claimed guarantee that broke is a violation (``valid`` false, exit 1), an
   unclaimed hazard is reported as found, or as *not provoked* (never as "safe").

Everything random comes from the seed (schedule, partitions the producers pick, Toxiproxy's
jitter) and the history header records the seed and the command that replays the campaign.
Every process, port, directory and proxy is released on success, failure and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import itertools
import shlex
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from chaos.environment import ENVIRONMENTS, Environment, make_environment
from chaos.faults import (
    CLIENT_LINKS,
    CONTROLLER_NODE,
    FAULTS,
    GROUP_CONSUMERS,
    PEER_LINKS,
    PROCESS,
    PROCESSORS,
    REPLICATED,
    STREAMS,
    TRANSACTIONAL_PRODUCERS,
)
from chaos.nemesis import Nemesis, NemesisRunner
from chaos.observer import PartitionObserver
from chaos.schedule import Context, Schedule, ScheduleError, named_schedule, random_schedule
from chaos.streams_workload import OUTPUT_DRAIN, output_topic
from chaos.topology import Topology
from chaos.toxiproxy import ToxiproxyControl
from chaos.workload import Workload, WorkloadSettings, processed_topic, workload_clients
from harness.checkers import Report, check
from harness.checkers.judgement import HELD, NOT_EXERCISED, VIOLATED_BY_BROKER, VIOLATED_BY_CLIENT, judge
from harness.clients.base import ClientUnavailable
from harness.history import HistoryWriter, load_history
from harness.history.load import History
from harness.precise_read import read_to_end
from harness.run_configuration import RESTARTING_FAULTS, configuration
from harness.targets.base import TargetOptions
from harness.targets.proxied import CLIENTS
from launch.toxiproxy import ToxiproxyError, toxiproxy
from specs.claims import Claims, Configuration
from specs.claims import claims_for as specs_claims_for

if TYPE_CHECKING:  # chaos.results holds these settings, so it imports this module
    from chaos.results import CampaignResults


class CampaignError(RuntimeError):
    """The campaign could not be set up or run (not a finding about the broker): exit 2."""


@attrs.frozen
class CampaignSettings:
    """Everything that decides a campaign besides its faults (saved in ``schedule.json``)."""

    target: str = "reference"
    brokers: int = 3
    duration: float = 30.0
    seed: int = 0
    workload: WorkloadSettings = attrs.field(factory=WorkloadSettings)
    overrides: dict[str, str] = attrs.field(factory=dict)
    faults: tuple[str, ...] | None = None  # None: every safe fault the target supports
    campaign: str | None = None  # a named campaign instead of drawn faults
    overlap: bool = False
    replication_factor: int | None = None  # None: min(3, brokers)
    proxies: tuple[tuple[str, str], ...] = ()  # external: (listen, upstream)
    bootstrap: str | None = None  # external without proxies (no network faults)
    capabilities: tuple[str, ...] = ()
    kafka_version: str | None = None  # kafka: the Apache Kafka release (None: the default)

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self, recurse=False)
        out["workload"] = self.workload.to_json()
        out["faults"] = None if self.faults is None else list(self.faults)
        out["proxies"] = [list(p) for p in self.proxies]
        out["capabilities"] = list(self.capabilities)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CampaignSettings:
        """Settings saved by :meth:`to_json`; :class:`ScheduleError` names what is wrong."""
        if not isinstance(obj, Mapping) or not obj:
            raise ScheduleError("field 'settings': expected the campaign's settings (an object); "
                                "replay a schedule.json written by kconform chaos")
        try:
            fields = {f.name for f in attrs.fields(cls)}
            values = {k: v for k, v in obj.items() if k in fields}
            values["workload"] = WorkloadSettings.from_json(values.get("workload", {}))
            if values.get("faults") is not None:
                values["faults"] = tuple(values["faults"])
            values["proxies"] = tuple((str(a), str(b)) for a, b in values.get("proxies", ()))
            values["capabilities"] = tuple(values.get("capabilities", ()))
            values["overrides"] = {str(k): str(v) for k, v in dict(values.get("overrides", {})).items()}
            settings = cls(**values)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ScheduleError(f"field 'settings': {exc}") from exc
        checks = [(settings.target in ENVIRONMENTS, "target"),
                  (isinstance(settings.brokers, int) and settings.brokers >= 1, "brokers"),
                  (isinstance(settings.duration, (int, float)) and settings.duration > 0, "duration"),
                  (isinstance(settings.seed, int), "seed"),
                  (settings.workload.acks in ("0", "1", "all"), "workload.acks")]
        for ok, name in checks:
            if not ok:
                raise ScheduleError(f"field 'settings.{name}': unusable value")
        return settings

    def topic_configs(self, rf: int, configures_brokers: bool) -> dict[str, str]:
        """The topic's configs: the safe defaults, then the overrides that are topic keys (or
        every override, when the harness does not configure the brokers: ``configures_brokers``
        False)."""
        configs = {"min.insync.replicas": str(min(2, rf)), "unclean.leader.election.enable": "false"}
        for key, value in self.overrides.items():
            if key in configs or not configures_brokers:
                configs[key] = value
        return configs


def replay_command(schedule_path: Path, report_dir: Path) -> str:
    """The command that runs this campaign again (into a sibling folder, keeping this one)."""
    again = report_dir.with_name(report_dir.name + "-replay")
    return shlex.join(["kconform", "chaos", "--replay", str(schedule_path), "--report", str(again)])


# --- claims ----------------------------------------------------------------------------------------


def configuration_of(settings: CampaignSettings, rf: int, topic_configs: Mapping[str, str], schedule: Schedule,
                     durable_target: bool, groups: Mapping[str, str]) -> Configuration:
    """The settings a campaign's promises depend on (``groups``: consumer group -> workload mode)."""
    w = settings.workload
    stated = {"acks": w.acks, "enable.idempotence": str(w.idempotence and w.acks == "all").lower(),
              "replication.factor": str(rf),
              **{k: v for k, v in topic_configs.items() if k in ("min.insync.replicas", "unclean.leader.election.enable")}}
    return configuration(stated, {"groups": groups, "durable_target": durable_target, "transactions": w.transactional,
                                  "streams": {"processing.guarantee": w.streams_guarantee} if w.streams else None},
                         [f.fault for f in schedule.faults])


def claims_for(settings: CampaignSettings, rf: int, topic_configs: Mapping[str, str],
               schedule: Schedule, durable_target: bool, groups: Mapping[str, str]) -> Claims:
    """Kafka's promises for this producer, topic and fault mix (specs/claims.py; docs/chaos.md,
    "Verdicts")."""
    return specs_claims_for(configuration_of(settings, rf, topic_configs, schedule, durable_target, groups))


@attrs.frozen
class Progress:
    """A snapshot of a running campaign, for progress displays (about four a second)."""

    elapsed: float
    duration: float
    sent: int
    acknowledged: int
    read: int
    faults: int  # injected so far
    active: tuple[str, ...]  # labels of the faults in force


ProgressCallback = Callable[[Progress], None]


# --- results -------------------------------------------------------------------------------------


@attrs.frozen
class CampaignResult:
    """What a campaign found, and where its report is.

    ``valid``: every claimed guarantee held. ``broker_valid``: none was violated by the broker
    or without attribution (a violation the evidence pins on the client leaves the broker's
    record clean). ``outcome`` says which (``harness.checkers.judgement.OUTCOMES``).
    """

    valid: bool
    results: CampaignResults
    report_dir: Path
    history: History
    report: Report

    @property
    def outcome(self) -> str:
        return self.results.outcome

    @property
    def broker_valid(self) -> bool:
        return self.outcome in (HELD, VIOLATED_BY_CLIENT)

    @property
    def anomalies(self) -> dict[str, int]:
        return dict(self.results.anomalies)

    @property
    def violations(self) -> dict[str, int]:
        return dict(self.results.violations)

    @property
    def replay(self) -> str:
        return self.results.replay


# --- the session -----------------------------------------------------------------------------------

_RUNS = itertools.count(1)


class CampaignSession:
    """Toxiproxy, proxies and a started target, for one or more campaigns. A context manager."""

    def __init__(self, settings: CampaignSettings) -> None:
        self.settings = settings
        self._stack = contextlib.ExitStack()
        self.env: Environment | None = None
        self.topology: Topology | None = None

    # What the started target and its proxies were built from: fixed for the session's life.
    TARGET_FIELDS = ("target", "brokers", "kafka_version", "proxies", "bootstrap", "capabilities")

    def use(self, settings: CampaignSettings) -> None:
        """Run the next campaigns with ``settings`` on the target already started (a shared
        cluster): the workload, seed, duration, faults, replication factor and topic configs
        may differ; the fields in :data:`TARGET_FIELDS` must not. Overrides that are not topic
        keys stay as the brokers were started with them."""
        changed = [f for f in self.TARGET_FIELDS if getattr(settings, f) != getattr(self.settings, f)]
        if changed:
            raise CampaignError(f"a started session cannot change {', '.join(changed)}: start another session")
        self.settings = settings

    def __enter__(self) -> CampaignSession:
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def _open(self) -> None:
        s = self.settings
        from harness.targets import TargetError

        try:
            url = self._stack.enter_context(toxiproxy(seed=s.seed % (1 << 31)))
        except ToxiproxyError as exc:
            raise CampaignError(str(exc)) from exc
        import os

        from launch.toxiproxy import URL_ENV

        control = ToxiproxyControl(url)
        try:
            control.version()
        except ToxiproxyError as exc:
            raise CampaignError(f"Toxiproxy at {url} does not answer: {exc}") from exc
        self.topology = self._stack.enter_context(Topology(control, owns_server=not os.environ.get(URL_ENV)))
        try:
            env = make_environment(s.target, self.topology, TargetOptions(
                brokers=s.brokers, overrides=s.overrides, proxies=s.proxies, bootstrap=s.bootstrap,
                capabilities=s.capabilities, version=s.kafka_version))
            self.env = self._stack.enter_context(env)
        except (TargetError, ToxiproxyError) as exc:
            raise CampaignError(f"the {s.target} target could not be set up: {exc}") from exc
        except Exception as exc:
            if type(exc).__name__ in ("BrokerStartError", "TansuStartError", "TansuNotInstalled", "ClusterError"):
                raise CampaignError(f"the {s.target} target could not start: {exc}") from exc
            raise

    # --- what the target supports -----------------------------------------------------------

    def features(self) -> set[str]:
        assert self.env is not None and self.topology is not None
        have = set()
        links = self.topology.links
        if any(source == CLIENTS for source, _, _ in links):
            have.add(CLIENT_LINKS)
        if any(source != CLIENTS for source, _, _ in links):
            have.add(PEER_LINKS)
        if self.env.target.names_controller:
            have.add(CONTROLLER_NODE)
        if self.env.target.process_control:
            have.add(PROCESS)
        if len(self.env.target.broker_nodes) > 1:
            have.add(REPLICATED)
        if any(mode != "assigned" for mode in self.settings.workload.consumers):
            have.add(GROUP_CONSUMERS)
        if self.settings.workload.transactions and self.settings.workload.producers:
            have.add(TRANSACTIONAL_PRODUCERS)
        if self.settings.workload.streams:
            have.add(STREAMS)
        if self.settings.workload.processors:
            have.add(PROCESSORS)
        return have

    def supported_faults(self, include_unsafe: bool = False) -> list[str]:
        have = self.features()
        durable = self.env is not None and self.env.target.durable
        out = []
        for name, kind in FAULTS.items():
            unsafe = kind.unsafe or (not durable and name in RESTARTING_FAULTS)
            if kind.needs <= have and (include_unsafe or not unsafe):
                out.append(name)
        return out

    def context(self) -> Context:
        assert self.env is not None
        w = self.settings.workload
        consumers = tuple(f"c{i}" for i, mode in enumerate(w.consumers) if mode != "assigned")
        return Context(tuple(self.env.target.nodes), tuple(self.env.target.broker_nodes), w.partitions, consumers,
                       producers=tuple(f"p{i}" for i in range(w.producers)) if w.transactions else (),
                       streams=tuple(f"s{i}" for i in range(w.streams)),
                       processors=tuple(f"x{i}" for i in range(w.processors)))

    def schedule(self) -> Schedule:
        """The schedule the settings ask for (named campaign, or drawn from the seed)."""
        s = self.settings
        supported = self.supported_faults(include_unsafe=True)
        if s.faults is not None:
            unsupported = [f for f in s.faults if f not in supported]
            if unsupported:
                raise CampaignError(f"the {s.target} target does not support fault(s) {', '.join(unsupported)} "
                                    f"(supported here: {', '.join(supported)})")
            kinds = list(s.faults)
        else:
            kinds = self.supported_faults()
        try:
            if s.campaign is not None:
                schedule = named_schedule(s.campaign, s.seed, self.context(), s.duration, kinds)
            else:
                schedule = random_schedule(s.seed, kinds, self.context(), s.duration, overlap=s.overlap)
        except ScheduleError as exc:
            raise CampaignError(str(exc)) from exc
        if s.campaign not in (None, "mixed") and not schedule.faults:
            raise CampaignError(f"campaign {s.campaign} has no fault that fits in {s.duration:g} s: "
                                "give a longer --duration (e.g. --duration 20)")
        return attrs.evolve(schedule, settings=s.to_json())

    # --- one campaign ------------------------------------------------------------------------

    def run(self, schedule: Schedule, report_dir: Path, *, progress: ProgressCallback | None = None,
            echo: Callable[[str], None] | None = None) -> CampaignResult:
        """Play ``schedule`` on a fresh topic; write the report into ``report_dir``."""
        assert self.env is not None and self.topology is not None
        env, topology, s = self.env, self.topology, self.settings
        say = echo or (lambda _text: None)
        w = s.workload
        run_id = next(_RUNS)
        topic = f"chaos-{s.seed}-{run_id}-{uuid.uuid4().hex[:6]}"
        rf = s.replication_factor or min(3, len(env.target.broker_nodes))
        configs = s.topic_configs(rf, env.target.configures_brokers)
        report_dir.mkdir(parents=True, exist_ok=True)
        schedule = attrs.evolve(schedule, settings=schedule.settings or s.to_json())
        schedule_path = report_dir / "schedule.json"
        schedule.save(schedule_path)
        replay = replay_command(schedule_path, report_dir)
        group_prefix = f"chaos-{s.seed}-{run_id}"
        meta = {"seed": s.seed, "target": s.target, "workload": "chaos", "topic": topic,
                "schedule": schedule.name, "settings": s.to_json(), "topic_configs": configs,
                "replication_factor": rf, "replay": replay, "durable_target": env.target.durable,
                "groups": {f"{group_prefix}-{mode}": mode for mode in w.consumers if mode != "assigned"},
                "clients": workload_clients(w)}
        if w.transactional:
            # What the transactional checks need (docs/history-format.md): that they apply, and
            # how long a transaction may stay open before the coordinator must abort it.
            meta.update({"transactions": True, "transaction.timeout.ms": w.transaction_timeout_ms})
        if w.streams:
            # What streams-exactly-once judges (docs/history-format.md): the application and its topics.
            meta["streams"] = {"application_id": f"{group_prefix}-streams", "input": topic,
                               "output": output_topic(topic), "instances": w.streams,
                               "commit.interval.ms": w.streams_commit_interval_ms,
                               "processing.guarantee": w.streams_guarantee}
        history_path = report_dir / "history.jsonl"
        topics = [topic, processed_topic(topic)] if w.processors else [topic]
        if w.streams:
            topics.append(output_topic(topic))  # drained read_committed on its own (below)
        for name in topics:  # the output topics like the input
            self._create_topic(name, w.partitions, rf, configs)
        drained = [name for name in topics if name != output_topic(topic)]
        workload: Workload | None = None
        runner: NemesisRunner | None = None
        observer: PartitionObserver | None = None
        warnings: list[str] = []
        started_wall = time.time()
        with HistoryWriter(history_path, meta) as history:
            nemesis = Nemesis(env, topology, history, topic)
            try:
                try:
                    workload = Workload(w, env.target.bootstrap, topic, history, s.seed, group_prefix, rf)
                except ClientUnavailable as exc:
                    raise CampaignError(f"--streams: {exc}") from exc
                nemesis.workload = workload
                observer = PartitionObserver(env, history, topic, w.partitions)
                observer.start()
                workload.start()
                t0 = time.monotonic()
                runner = NemesisRunner(nemesis, schedule, t0)
                runner.start()
                self._wait(schedule.duration, t0, workload, nemesis, runner, progress)
                runner.abort.set()
                runner.join(60)
                if runner.fatal is not None:
                    raise runner.fatal
                say("healing every fault")
                nemesis.stop_all()
                topology.heal()
                unflushed = workload.stop_producers()
                if unflushed:
                    warnings.append(f"{unflushed} send(s) still unacknowledged after the flush (recorded as unknown)")
                say("waiting for the cluster to recover")
                warnings += env.target.wait_recovered(topic, w.partitions)
                if workload.streams is not None:
                    say("letting the Streams application catch up, then closing it")
                    warnings += workload.streams.finish(self._ends([topic], w.partitions))
                time.sleep(1.0)  # let the consumers read what arrived last
                observer.stop()
                workload.stop_consumers()
                say("draining every partition")
                ends = self._ends(drained, w.partitions)
                if not read_to_end(env.target.bootstrap, ends, history):
                    warnings.append("the final drain did not reach the end of every partition (unseen not checked)")
                if workload.streams is not None:
                    output = self._ends([output_topic(topic)], w.partitions)
                    if not read_to_end(env.target.bootstrap, output, history, process=OUTPUT_DRAIN, read_committed=True):
                        warnings.append("the read_committed drain of the Streams output did not reach its end (lost "
                                        "output not checked)")
                    warnings += [f"a Streams thread died (replaced): {e}" for e in workload.streams.errors]
                warnings += workload.warnings
                if workload.producers_replaced:
                    warnings.append(f"{workload.producers_replaced} producer(s) declared dead by the client "
                                    "library (fatal error) were replaced by new ones; their unanswered sends "
                                    "count as unknown")
                errors = workload.errors
                if errors:
                    warnings.append(f"{len(errors)} unexpected workload error(s); first: {errors[0].strip()}")
            except ToxiproxyError as exc:
                raise CampaignError(f"Toxiproxy failed during the campaign: {exc}") from exc
            finally:
                if runner is not None:
                    runner.abort.set()
                if observer is not None:
                    observer.stop()
                if workload is not None:
                    workload.stop()
                with contextlib.suppress(Exception):
                    nemesis.stop_all()
                with contextlib.suppress(Exception):
                    topology.heal()
        from chaos.report import write_report

        loaded = load_history(history_path)
        groups = workload.groups() if workload is not None else {}
        report = check(loaded, guarantees=["at-least-once", "at-most-once"] if groups else [])
        claims = claims_for(s, rf, configs, schedule, env.target.durable, groups)
        acknowledged = any(e["type"] == "ok" and (e["f"] == "send" or (
            e["f"] == "txn" and e["value"].get("outcome") == "commit")) for e in loaded.raw)
        verdict = judge(report, claims, exercised=acknowledged)
        results = write_report(report_dir, loaded, report, verdict, claims, schedule, settings=s,
                               environment=env.describe(), warnings=warnings, replay=replay,
                               started=started_wall, injected=nemesis.injected)
        return CampaignResult(verdict.outcome == HELD, results, report_dir, loaded, report)

    def _create_topic(self, topic: str, partitions: int, rf: int, configs: Mapping[str, str]) -> None:
        from harness.session import SessionError, WireSession

        assert self.env is not None
        try:
            placement = self.env.target.replica_placement(partitions, rf)
            with WireSession(self.env.target.bootstrap, timeout_s=30.0) as session:
                error = session.create_topic(topic, partitions, rf, configs, assignments=placement)
        except (SessionError, OSError) as exc:
            raise CampaignError(f"could not create the campaign topic {topic}: {exc}") from exc
        if error != "NONE":
            raise CampaignError(f"CreateTopics {topic} (partitions {partitions}, replication factor {rf}, "
                                f"configs {dict(configs)}) failed: {error}")

    def _ends(self, topics: list[str], partitions: int) -> dict[tuple[str, int], int]:
        """Every partition's end offset, read twice a second apart (the larger wins)."""
        from harness.session import SessionError, WireSession

        assert self.env is not None
        tps = [(topic, p) for topic in topics for p in range(partitions)]
        ends: dict[tuple[str, int], int] = {}
        for attempt in range(2):
            try:
                with WireSession(self.env.target.bootstrap, timeout_s=15.0) as session:
                    got = session.list_offsets_many(tps, -1)
            except (SessionError, OSError) as exc:
                raise CampaignError(f"could not read the end offsets of {', '.join(topics)} after recovery: "
                                    f"{exc}") from exc
            for tp, r in got.items():
                if r.error == "NONE":
                    ends[tp] = max(ends.get(tp, 0), r.offset)
            if attempt == 0:
                time.sleep(1.0)
        return {tp: ends.get(tp, 0) for tp in tps}

    @staticmethod
    def _wait(duration: float, t0: float, workload: Workload, nemesis: Nemesis, runner: NemesisRunner,
              progress: ProgressCallback | None) -> None:
        end = t0 + duration
        while time.monotonic() < end and runner.fatal is None:
            time.sleep(0.25)
            if progress is not None:
                progress(Progress(min(duration, time.monotonic() - t0), duration, workload.sent,
                                  workload.acknowledged, workload.read, nemesis.injected,
                                  tuple(runner.current)))


def run_campaign(settings: CampaignSettings, report_dir: Path, *, schedule: Schedule | None = None,
                 progress: ProgressCallback | None = None,
                 echo: Callable[[str], None] | None = None) -> CampaignResult:
    """Set up, run one campaign (``schedule``, or the one the settings ask for), tear down."""
    with CampaignSession(settings) as session:
        chosen = schedule if schedule is not None else session.schedule()
        if echo is not None:
            echo(chosen.describe())
        return session.run(chosen, report_dir, progress=progress, echo=echo)


def summary_text(result: CampaignResult) -> str:
    """The closing summary the CLI prints: operations, faults, anomalies, a verdict per
    property, and the command that replays the campaign."""
    from chaos.report import BY, attribution_line

    r = result.results
    ops = r.operations
    fig = r.figures
    by = ops.by_operation

    def counts(f: str) -> str:
        c = by.get(f, {})
        return f"{f} {sum(c.values())}" + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + ")"
                                           if set(c) - {"ok"} else "")

    lines = [
        f"operations: {ops.total} in {fig.workload_s:.0f} s ({fig.operations_per_second:.0f}/s): "
        + ", ".join(counts(f) for f in by),
        f"faults injected: {r.faults.injected} ({fig.faults_per_minute:.1f}/min)"
        + (f"; {r.faults.not_applied} of {r.faults.scheduled} scheduled did not take effect during the "
           "workload (not applicable, or too late: see the report)" if r.faults.not_applied else ""),
        "anomalies: " + (", ".join(f"{k} {v}" for k, v in r.anomalies.items()) or "none"),
    ]
    send = r.latency.overall.get("send") if r.latency is not None else None
    gone = r.unavailability
    if send and send.count and gone is not None:
        lines.append(f"send latency p50 {send.p50_ms:.0f} ms, p99 {send.p99_ms:.0f} ms, max {send.max_ms:.0f} ms; "
                     + (f"no write acknowledged for {gone.total_s:.1f} s in {len(gone.windows)} window(s), the "
                        f"longest {gone.longest_s:.1f} s" if gone.windows else "writes acknowledged throughout"))
    if fig.first_fault_to_first_anomaly_s is not None:
        lines.append(f"first anomaly visible {fig.first_fault_to_first_anomaly_s:.1f} s after the first fault")
    lines.append("guarantees:")
    claimed, not_claimed = r.claims.claimed, r.claims.not_claimed
    width = max((len(p) for p in [*claimed, *not_claimed]), default=10)
    for prop in claimed:
        n = r.violations.get(prop, 0)
        state = f"VIOLATED {BY[r.blame(prop)]} ({n})" if n else "held"
        lines.append(f"  {prop:<{width}}  {state}  [claimed]")
        if n:
            lines.append(f"  {'':<{width}}  {attribution_line(r.witnesses[prop][0])}")
    for prop, why in not_claimed.items():
        n = r.hazards.get(prop, 0)
        state = f"hazard found ({n})" if n else "not provoked in this run (NOT shown safe)"
        lines.append(f"  {prop:<{width}}  {state}  [not claimed: {why}]")
    for warning in r.warnings:
        lines.append(f"warning: {warning}")
    found = r.found_hazards
    violated = ", ".join(f"{k} ({v})" for k, v in r.violations.items())
    if r.outcome == HELD:
        verdict = "VALID: every guarantee this configuration claims held"
        if found:
            verdict += "; hazards it does not claim away were found: " + ", ".join(found)
    elif r.outcome == NOT_EXERCISED:
        verdict = ("NOT EXERCISED: no write was acknowledged during the workload, so no guarantee was tested "
                   "(the warnings above, or the sends in the report, say why)")
    elif r.outcome == VIOLATED_BY_CLIENT:
        verdict = ("CLIENT FAULT: claimed guarantees were violated, and the log shows the client did it, not the "
                   f"broker: {violated}")
    elif r.outcome == VIOLATED_BY_BROKER:
        verdict = f"INVALID: the broker violated claimed guarantees: {violated}"
    else:
        verdict = ("INVALID: claimed guarantees were violated and the evidence does not clear the broker "
                   f"(unattributed): {violated}")
    lines.append(verdict)
    lines.append(f"report: {result.report_dir}/report.html")
    lines.append(f"replay: {r.replay}")
    return "\n".join(lines)
