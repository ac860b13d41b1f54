"""``kconform chaos``: run one chaos campaign from the command line and report on it.

This is the user's way into ``chaos.campaign``: it turns options into
:class:`~chaos.campaign.CampaignSettings` (or reads them back from a saved schedule with
``--replay``), shows progress while the workload runs (a bar redrawn in place on a terminal,
a line every few seconds otherwise, so CI logs stay readable), prints the closing summary and
exits with the verdict: 0 when every guarantee the configuration claims held, 1 when a claimed
guarantee was violated by the broker (or with no evidence that clears it), 3 when claimed
guarantees were violated and the log shows the client did it (the broker kept its promises),
2 when the campaign could not run (bad arguments, no Toxiproxy, a target that does not start,
an unreadable schedule), 130 when interrupted. ``harness/cli.py`` registers the command.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import IO, Any

import click
from click.core import ParameterSource

from chaos.campaign import CampaignError, CampaignSettings, Progress, run_campaign, summary_text
from chaos.environment import ENVIRONMENTS
from chaos.faults import FAMILIES, FAULTS
from chaos.matrix_cli import matrix_command
from chaos.report_cli import report_command
from chaos.results import results_json
from chaos.schedule import CAMPAIGN_WORKLOADS, NAMED, Schedule, ScheduleError
from chaos.workload import CONSUMER_MODES, PROCESSOR_CLIENTS, TRANSACTIONAL_CLIENTS, WorkloadSettings
from harness.checkers.judgement import EXIT_CODES as OUTCOME_EXIT_CODES
from harness.cli import main as harness_main
from harness.clients import CLIENTS
from harness.clients.java_streams import GUARANTEES
from harness.targets import ALL_CAPABILITIES
from harness.verdicts import colour_verdict
from launch.kafka_jars import VERSION_HELP
from launch.reference_cluster import MAX_BROKERS

EXIT_SETUP, EXIT_INTERRUPTED = 2, 130
EXIT_CODES = OUTCOME_EXIT_CODES
"""Exit status by campaign outcome."""
TARGETS = tuple(ENVIRONMENTS)
# Options that a replayed schedule brings with it: giving them with --replay is an error.
_FROM_SCHEDULE = ("target", "brokers", "duration", "faults", "campaign", "acks", "idempotence",
                  "overrides", "seed", "consumers", "client", "producers", "rate", "partitions", "overlap",
                  "kafka_version", "replication_factor", "delivery_timeout", "request_timeout")


def _faults(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    """``--faults``: fault names and family names, comma-separated (``all``: every safe one)."""
    if value is None or value.strip() in ("", "all"):
        return None
    out: list[str] = []
    for name in (n.strip() for n in value.split(",") if n.strip()):
        if name in FAMILIES:
            out += [k.name for k in FAULTS.values() if k.family == name and not k.unsafe]
        elif name in FAULTS:
            out.append(name)
        else:
            raise click.BadParameter(
                f"unknown fault {name!r}; faults: {', '.join(FAULTS)}; families: {', '.join(FAMILIES)} "
                "(see `kconform chaos --list` and docs/faults.md)")
    return tuple(dict.fromkeys(out))


def _overrides(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in value:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected key=value, e.g. unclean.leader.election.enable=true")
        out[key.strip()] = val.strip()
    return out


def _consumers(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in value.split(",") if m.strip())
    bad = [m for m in modes if m not in CONSUMER_MODES]
    if bad:
        raise click.BadParameter(f"unknown consumer mode(s) {', '.join(bad)}; modes: {', '.join(CONSUMER_MODES)}")
    return modes


def _fault_list() -> str:
    lines = ["Faults (--faults NAME,... or a family: " + ", ".join(FAMILIES) + "):"]
    for kind in FAULTS.values():
        unsafe = " [unsafe: only when named]" if kind.unsafe else ""
        lines.append(f"  {kind.name:<18} {kind.family:<9} {kind.summary}{unsafe}")
    lines.append("")
    lines.append("Named campaigns (--campaign NAME):")
    for name, (text, _make) in NAMED.items():
        lines.append(f"  {name:<18} {text}")
    return "\n".join(lines)


class ProgressDisplay:
    """A bar redrawn in place on a terminal; elsewhere a plain line every ``every_s`` seconds."""

    def __init__(self, stream: IO[str], tty: bool | None = None, every_s: float = 5.0,
                 width: int | None = None) -> None:
        self.stream = stream
        self.width = width  # None: the terminal's, at each redraw
        self.tty = stream.isatty() if tty is None else tty
        self.every_s = every_s
        self._last = -1e9
        self._drawn = False

    def line(self, p: Progress) -> str:
        faults = "; ".join(p.active) if p.active else "no fault active"
        return (f"{p.elapsed:5.1f}/{p.duration:g} s  sent {p.sent}  acked {p.acknowledged}  read {p.read}  "
                f"faults {p.faults}  [{faults}]")

    def __call__(self, p: Progress) -> None:
        if self.tty:
            width = self.width or shutil.get_terminal_size((100, 20)).columns
            filled = int(20 * p.elapsed / p.duration) if p.duration else 20
            text = f"[{'#' * filled}{'.' * (20 - filled)}] {self.line(p)}"
            self.stream.write("\r" + text[: width - 1].ljust(width - 1))
            self.stream.flush()
            self._drawn = True
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or p.elapsed >= p.duration:
            self._last = now
            self.stream.write(f"chaos: {self.line(p)}\n")
            self.stream.flush()

    def done(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _settings_from_options(o: dict[str, Any], given: frozenset[str] = frozenset()) -> CampaignSettings:
    """The campaign settings the options ask for. A named campaign's workload settings
    (``CAMPAIGN_WORKLOADS``) replace the defaults of options not ``given`` on the command line."""
    acks: str = o["acks"]
    idempotence: bool | None = o["idempotence"]
    if idempotence is None:
        idempotence = acks == "all"
    elif idempotence and acks != "all":
        raise click.UsageError(f"--idempotence needs --acks all (Kafka refuses enable.idempotence with acks={acks}); "
                               "add --no-idempotence")
    kind = ENVIRONMENTS[o["target"]]
    if not kind.launched and not (o["bootstrap"] or o["proxies"]):
        raise click.UsageError(f"--target {o['target']} needs --proxy LISTEN=UPSTREAM for each broker (network "
                               "faults) or --bootstrap HOST:PORT (no network faults); see docs/chaos.md")
    if kind.launched and (o["bootstrap"] or o["proxies"]):
        raise click.UsageError(f"--bootstrap and --proxy are for --target external; the {o['target']} target is "
                               "launched by kconform")
    if o["campaign"] not in (None, "mixed") and o["faults"] is not None:
        raise click.UsageError(f"--campaign {o['campaign']} has its own faults; --faults goes with --campaign mixed "
                               "or no campaign")
    reserved = sorted(kind.reserved_keys & o["overrides"].keys())
    if reserved:
        raise click.UsageError(f"--override {', '.join(reserved)}: set by the cluster launcher for each node")
    if o["kafka_version"] is not None and not kind.takes_version:
        raise click.UsageError(f"--kafka-version goes with --target {', '.join(n for n, k in ENVIRONMENTS.items() if k.takes_version)}")
    proxies: list[tuple[str, str]] = []
    if o["proxies"]:
        from harness.targets.external import parse_proxies
        from harness.targets.proxied import ChaosEnvironmentError

        try:
            proxies = parse_proxies(o["proxies"])
        except ChaosEnvironmentError as exc:
            raise click.UsageError(str(exc)) from exc
    if o["bootstrap"]:
        from harness.targets import TargetError
        from harness.targets.external import parse_bootstrap

        try:
            parse_bootstrap(o["bootstrap"])
        except TargetError as exc:
            raise click.UsageError(str(exc)) from exc
    seed = o["seed"] if o["seed"] is not None else secrets.randbelow(2**31)
    chosen = {"client": o["client"], "producers": o["producers"], "rate": o["rate"], "consumers": o["consumers"],
              "partitions": o["partitions"], "delivery_timeout_ms": o["delivery_timeout"],
              "request_timeout_ms": o["request_timeout"], "transactions": o["transactions"],
              "txn_size": o["txn_size"], "abort_ratio": o["abort_ratio"], "txn_send_gap_ms": o["txn_send_gap"],
              "streams": o["streams"], "streams_commit_interval_ms": o["streams_commit_interval"],
              "streams_guarantee": o["streams_guarantee"],
              "processors": o["processors"]}
    option = {"delivery_timeout_ms": "delivery_timeout", "request_timeout_ms": "request_timeout",
              "txn_send_gap_ms": "txn_send_gap", "streams_commit_interval_ms": "streams_commit_interval"}
    for key, value in CAMPAIGN_WORKLOADS.get(o["campaign"] or "", {}).items():
        if option.get(key, key) not in given:
            chosen[key] = value
    if chosen["transactions"] and chosen["client"] not in TRANSACTIONAL_CLIENTS:
        raise click.UsageError(f"--transactions: kconform drives transactions with {', '.join(TRANSACTIONAL_CLIENTS)} "
                               f"only, not --client {chosen['client']} yet")
    if chosen["processors"] and chosen["client"] not in PROCESSOR_CLIENTS:
        raise click.UsageError(f"--processors: with {', '.join(PROCESSOR_CLIENTS)} only: --client {chosen['client']} "
                               "does not implement KIP-447 (group metadata in TxnOffsetCommit, stable offset fetches), "
                               "so its processors duplicate input on every rebalance")
    if (chosen["transactions"] or chosen["processors"]) and not idempotence:
        raise click.UsageError("--transactions and --processors need idempotent producers (--acks all, KIP-98)")
    if chosen["delivery_timeout_ms"] < chosen["request_timeout_ms"]:
        raise click.UsageError(f"--delivery-timeout {chosen['delivery_timeout_ms']} is shorter than --request-timeout "
                               f"{chosen['request_timeout_ms']}: a send could expire before its first answer is due")
    workload = WorkloadSettings(acks=acks, idempotence=idempotence, **chosen)
    brokers = 1 if kind.single_node else o["brokers"]
    return CampaignSettings(target=o["target"], brokers=brokers, duration=o["duration"], seed=seed,
                            workload=workload, overrides=o["overrides"], faults=o["faults"],
                            campaign=o["campaign"], overlap=o["overlap"], proxies=tuple(proxies),
                            bootstrap=o["bootstrap"], capabilities=tuple(o["capabilities"]),
                            replication_factor=o["replication_factor"], kafka_version=o["kafka_version"])


EXAMPLES = """
\b
Examples:
  kconform chaos --duration 60 --report reports/chaos
      safe settings (RF 3, min.insync.replicas 2, acks=all, idempotence): exits 0 on a correct broker
  kconform chaos --faults kill,pause,isolate-leader --seed 42
      only these faults, drawn from seed 42
  kconform chaos --campaign acks1-loss --acks 1 --duration 20
      a named campaign that shows acks=1 losing acknowledged writes (reported as a hazard)
  kconform chaos --override unclean.leader.election.enable=true --campaign unclean-loss
  kconform chaos --target kafka --campaign epoch-bump-duplicates --duration 28
      provoke librdkafka #4953 (duplicates under idempotence), reported as the client's fault (exit 3);
      add --client java to see the Java client write no duplicate under the same faults
  kconform chaos --replay reports/chaos/schedule.json --report reports/chaos-replay
  kconform chaos --seeds 1-40 --shard 3/8 --jobs 2 --report shard-3
      CI runner 3 of 8: its share of 40 campaigns, two at a time, merged in shard-3 (docs/ci.md)
  kconform chaos --target external --proxy 127.0.0.1:19092=127.0.0.1:9092 --faults link
      a broker you run, advertising 127.0.0.1:19092 (docs/chaos.md)
\b
Exit status: 0 every claimed guarantee held; 1 a claimed guarantee was violated by the
broker (or the evidence does not clear it); 3 claimed guarantees were violated and the log
shows the client did it, not the broker; 2 the campaign could not run (bad arguments, setup
error, unreadable --replay file); 130 interrupted.
"""


@click.command("chaos", epilog=EXAMPLES, context_settings={"max_content_width": 110})
@click.option("--target", type=click.Choice(TARGETS), default="reference", show_default=True,
              envvar="KCONFORM_TARGET", show_envvar=True,
              help="reference: a controller and --brokers reference brokers launched here, every link "
                   "proxied; kafka: Apache Kafka, --brokers KRaft nodes (broker+controller) launched here, "
                   "every link proxied; tansu: one Tansu process; external: brokers you run (--proxy or "
                   "--bootstrap).")
@click.option("--kafka-version", metavar="VERSION", default=None, help=VERSION_HELP)
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]", envvar="KCONFORM_BOOTSTRAP", show_envvar=True,
              help="External target without proxies (no network faults), e.g. --bootstrap 127.0.0.1:9092.")
@click.option("--proxy", "proxies", multiple=True, metavar="LISTEN=UPSTREAM",
              help="External target: a client proxy per broker, e.g. --proxy 127.0.0.1:19092=127.0.0.1:9092; "
                   "the broker must advertise LISTEN (repeatable).")
@click.option("--capability", "capabilities", multiple=True, type=click.Choice(ALL_CAPABILITIES), metavar="NAME",
              help="External target: a capability kconform cannot see, e.g. --capability replication.")
@click.option("--brokers", type=click.IntRange(1, MAX_BROKERS), default=3, show_default=True,
              help="Reference target: how many brokers (plus one controller); kafka target: how many "
                   "broker+controller nodes, e.g. --brokers 5.")
@click.option("--replication-factor", type=click.IntRange(1, 9), default=None, metavar="N",
              help="Replication factor of the campaign topic (default min(3, brokers)), e.g. "
                   "--replication-factor 2.")
@click.option("--duration", type=click.FloatRange(min=4, max=24 * 3600), default=60.0, show_default=True,
              metavar="SECONDS", help="How long the workload runs under faults, e.g. --duration 300.")
@click.option("--faults", callback=_faults, default=None, metavar="LIST",
              help="Faults to draw from, comma-separated names or families, e.g. --faults kill,pause,partition "
                   "(default: every safe fault the target supports; `--list` shows them).")
@click.option("--campaign", type=click.Choice(list(NAMED)), default=None,
              help="A named campaign instead of drawn faults, e.g. --campaign acks1-loss (`--list`).")
@click.option("--overlap", is_flag=True, help="Let drawn faults overlap (default: one after another).")
@click.option("--acks", type=click.Choice(["0", "1", "all"]), default="all", show_default=True,
              help="Producer acks, e.g. --acks 1 (not durable: lost writes are reported as a hazard).")
@click.option("--idempotence/--no-idempotence", default=None,
              help="Idempotent producers (default: on with --acks all, else off), e.g. --no-idempotence.")
@click.option("--override", "overrides", multiple=True, callback=_overrides, metavar="KEY=VALUE",
              help="Broker/topic config (repeatable), e.g. --override unclean.leader.election.enable=true "
                   "--override min.insync.replicas=1.")
@click.option("--consumers", callback=_consumers, default="assigned,commit-after,commit-after",
              show_default=True, metavar="MODES",
              help=f"One consumer per mode ({', '.join(CONSUMER_MODES)}), e.g. --consumers "
                   "assigned,commit-before,commit-after.")
@click.option("--client", type=click.Choice(CLIENTS), default="confluent-kafka", show_default=True,
              help="Client library of the workload, e.g. --client kafka-python.")
@click.option("--transactions", is_flag=True,
              help="Transactional producers (KIP-98): each sends transactions of --txn-size records to random "
                   "partitions and aborts --abort-ratio of them; consumers read read_committed. The checkers add "
                   "aborted-read, torn-transaction, hanging-transaction and the dependency cycles (docs/anomalies.md).")
@click.option("--txn-size", type=click.IntRange(1, 1000), default=4, show_default=True, metavar="N",
              help="With --transactions: records per transaction, e.g. --txn-size 10.")
@click.option("--abort-ratio", type=click.FloatRange(0, 1), default=0.2, show_default=True, metavar="R",
              help="With --transactions or --processors: the share of transactions the workload aborts, e.g. "
                   "--abort-ratio 0.5.")
@click.option("--txn-send-gap", type=click.IntRange(0, 10_000), default=0, show_default=True, metavar="MS",
              help="With --transactions: milliseconds between a transaction's sends, so that each new partition "
                   "joins the transaction by a request of its own, e.g. --txn-send-gap 100.")
@click.option("--streams", type=click.IntRange(0, 16), default=0, show_default=True, metavar="N",
              help="N instances of a Kafka Streams application (processing.guarantee=exactly_once_v2, KIP-447) "
                   "processing the campaign topic into <topic>-streams-out, read read_committed; checked by "
                   "streams-exactly-once (docs/anomalies.md). Needs Java 11+ and Maven, e.g. --streams 2.")
@click.option("--streams-commit-interval", type=click.IntRange(1, 600_000), default=100, show_default=True,
              metavar="MS", help="With --streams: the application's commit.interval.ms, e.g. "
                                 "--streams-commit-interval 1000.")
@click.option("--streams-guarantee", type=click.Choice(GUARANTEES), default=GUARANTEES[0], show_default=True,
              help="With --streams: the application's processing.guarantee; at_least_once is the control, whose "
                   "crashes duplicate output (streams-exactly-once then a hazard, not claimed).")
@click.option("--processors", type=click.IntRange(0, 16), default=0, show_default=True, metavar="N",
              help="Consume-transform-produce processors (KIP-447) in one group: each turns what it polls from the "
                   "topic into one record each on the output topic <topic>-out and commits its positions in the "
                   "same transaction, aborting --abort-ratio of them; consumers read read_committed. The checkers "
                   "add exactly-once-processing, e.g. --processors 3.")
@click.option("--producers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Producer threads, e.g. --producers 4.")
@click.option("--rate", type=click.FloatRange(min=1, max=100_000), default=100.0, show_default=True,
              help="Records per second per producer, e.g. --rate 500.")
@click.option("--partitions", type=click.IntRange(1, 64), default=3, show_default=True,
              help="Partitions of the campaign topic, e.g. --partitions 6.")
@click.option("--delivery-timeout", type=click.IntRange(1000, 3_600_000), default=20_000, show_default=True,
              metavar="MS", help="Producers' delivery.timeout.ms (librdkafka: message.timeout.ms): how long a send "
                                 "may take, retries included, e.g. --delivery-timeout 5000.")
@click.option("--request-timeout", type=click.IntRange(100, 600_000), default=3000, show_default=True,
              metavar="MS", help="Producers' request.timeout.ms: how long one produce request waits for its "
                                 "answer, e.g. --request-timeout 10000.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of every random choice (default: a random one, always printed), e.g. --seed 42.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("reports/chaos"), show_default=True,
              help="Report folder (history.jsonl, schedule.json, results.json, junit.xml, report.html).")
@click.option("--replay", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="Run the schedule and settings saved in FILE again, e.g. --replay reports/chaos/schedule.json.")
@click.option("--seeds", "seeds_spec", metavar="N|A-B", default=None,
              help="Many campaigns, one per seed: N seeds drawn from --seed (or a printed random one), or the "
                   "seeds A to B; each campaign's report in --report/seed-<seed>/, merged into --report "
                   "(results.json, junit.xml, index.html). Exit code from the worst campaign.")
@click.option("--shard", default=None, metavar="K/N",
              help="With --seeds: run only shard K of N (every N-th seed from the K-th), e.g. --shard 3/20 on "
                   "CI runner 3 of 20 (docs/ci.md).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --seeds: how many campaigns run at once, each with its own cluster, proxies and ports "
                   "(a 3-broker campaign keeps about one core busy).")
@click.option("--settings", "settings_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              hidden=True, help="Run the campaign settings saved in FILE (what --seeds runs each campaign with).")
@click.option("--list", "list_only", is_flag=True, help="List the faults and named campaigns, then exit.")
@click.option("--json", "as_json", is_flag=True,
              help="Print results.json on stdout when the campaign ends (everything else goes to stderr).")
@click.pass_context
def chaos_command(ctx: click.Context, /, **options: Any) -> None:
    """Run a chaos campaign: real brokers, real Toxiproxy proxies on every link, real clients.

    Producers and consumers run for --duration seconds while faults (network partitions, link
    toxics, process kills and pauses, consumer crashes) are injected on a schedule drawn from
    --seed or named by --campaign. Then every fault is healed, the cluster recovers, every
    partition is drained, and the history is checked against the guarantees the configuration
    claims. Hazards the configuration does not claim away (acks=1 loss, duplicates without
    idempotence) are reported as found or as not provoked, never as safe.
    """
    if options["list_only"]:
        click.echo(_fault_list())
        return
    err = sys.stderr
    schedule: Schedule | None = None
    sweep_given = [f"--{name}" for name in ("seeds", "shard", "jobs") if ctx.get_parameter_source(
        "seeds_spec" if name == "seeds" else name) is ParameterSource.COMMANDLINE]
    if options["seeds_spec"] is None and sweep_given and sweep_given != ["--seeds"]:
        raise click.UsageError(f"{', '.join(sweep_given)} go with --seeds (many campaigns)")
    if options["seeds_spec"] is not None and (options["replay"] is not None or options["settings_file"] is not None):
        raise click.UsageError("--seeds runs new campaigns; --replay runs one again (drop one of them)")
    if options["seeds_spec"] is not None:
        _sweep(ctx, options)
        return
    if options["settings_file"] is not None:
        try:
            settings = CampaignSettings.from_json(json.loads(Path(options["settings_file"]).read_text()))
        except (OSError, ValueError, ScheduleError) as exc:
            click.echo(f"kconform chaos: cannot read --settings {options['settings_file']}: {exc}", err=True)
            sys.exit(EXIT_SETUP)
    elif options["replay"] is not None:
        given = [name for name in _FROM_SCHEDULE
                 if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--replay takes its settings from the file; drop {', '.join('--' + g for g in given)}")
        try:
            schedule = Schedule.load(options["replay"])
        except ScheduleError as exc:
            click.echo(f"kconform chaos: cannot replay: {exc}", err=True)
            sys.exit(EXIT_SETUP)
        try:
            settings = CampaignSettings.from_json(schedule.settings)
        except ScheduleError as exc:
            click.echo(f"kconform chaos: cannot replay: {options['replay']}: {exc}", err=True)
            sys.exit(EXIT_SETUP)
        if options["bootstrap"] or options["proxies"]:
            settings = _with_addresses(settings, options)
    else:
        explicit = frozenset(name for name in options
                             if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE)
        settings = _settings_from_options(options, explicit)
    report_dir: Path = options["report_dir"]
    as_json = bool(options["as_json"])
    click.echo(f"kconform chaos: target {settings.target}, seed {settings.seed}, {settings.duration:g} s, "
               f"acks={settings.workload.acks}, idempotence={'on' if settings.workload.idempotence else 'off'}"
               + (f", overrides {settings.overrides}" if settings.overrides else ""), err=as_json)
    display = ProgressDisplay(err, every_s=max(5.0, settings.duration / 12))

    def echo(text: str) -> None:
        display.done()
        click.echo(text, err=as_json or not text.startswith("schedule"))

    started = time.monotonic()
    try:
        result = run_campaign(settings, report_dir, schedule=schedule, progress=display, echo=echo)
    except CampaignError as exc:
        display.done()
        click.echo(f"kconform chaos: setup error: {exc}", err=True)
        click.echo(f"(seed {settings.seed}; nothing was left running)", err=True)
        sys.exit(EXIT_SETUP)
    except KeyboardInterrupt:
        display.done()
        click.echo(f"kconform chaos: interrupted (seed {settings.seed}); every process and proxy was stopped",
                   err=True)
        sys.exit(EXIT_INTERRUPTED)
    display.done()
    click.echo("", err=as_json)
    click.echo(colour_verdict(summary_text(result)), err=as_json)
    click.echo(f"took {time.monotonic() - started:.0f} s", err=as_json)
    if as_json:
        click.echo(results_json(result.results), nl=False)
    sys.exit(EXIT_CODES[result.outcome])


def _sweep(ctx: click.Context, options: dict[str, Any]) -> None:
    """``--seeds``: one campaign per seed (this shard's share), ``--jobs`` at a time, merged."""
    from chaos.report_merge import merge, summary_lines
    from chaos.results import ReportError
    from chaos.sweep import run_sweep, worst_exit
    from harness.conformance.sweep import SeedsError, ShardError, drawn, parse_seeds, parse_shard, shard_of

    master = options["seed"] if options["seed"] is not None else secrets.randbelow(2**31)
    try:
        seeds = parse_seeds(options["seeds_spec"], master)
        shard = parse_shard(options["shard"]) if options["shard"] is not None else (1, 1)
    except (SeedsError, ShardError) as exc:
        raise click.UsageError(str(exc)) from exc
    mine = shard_of(seeds, *shard)
    if not mine:
        raise click.UsageError(f"shard {shard[0]}/{shard[1]} of {len(seeds)} seed(s) is empty: use fewer shards")
    explicit = frozenset(name for name in options if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE)
    settings = _settings_from_options(options, explicit)
    report_dir: Path = options["report_dir"]
    as_json = bool(options["as_json"])
    origin = f"drawn from seed {master}" if drawn(options["seeds_spec"]) else "a range"
    click.echo(f"kconform chaos: {len(mine)} campaign(s) on target {settings.target}, seeds {origin}"
               + (f", shard {shard[0]}/{shard[1]} of {len(seeds)}" if shard != (1, 1) else "")
               + f", {options['jobs']} at a time, {settings.duration:g} s each; reports in {report_dir}/seed-<seed>/",
               err=as_json)
    words = {0: "VALID", 1: "INVALID", 2: "NOT RUN or NOT EXERCISED", 3: "CLIENT FAULT", 130: "INTERRUPTED"}

    def done(outcome: Any, finished: int, total: int) -> None:
        word = words.get(outcome.exit_code, f"exit {outcome.exit_code}")
        click.echo(colour_verdict(f"{word}") + f" seed {outcome.seed} in {outcome.seconds:.0f} s "
                   f"[{finished}/{total}]: {outcome.folder}/report.html", err=as_json)

    started = time.monotonic()
    outcomes, interrupted = run_sweep(settings, mine, report_dir, options["jobs"], done)
    codes = [o.exit_code for o in outcomes]
    try:
        merged = merge([report_dir / f"seed-{o.seed}" for o in outcomes], report_dir)
    except ReportError as exc:
        click.echo(f"kconform chaos: nothing to merge: {exc}; each campaign's output is in its "
                   "seed-<seed>/output.txt", err=True)
        sys.exit(EXIT_INTERRUPTED if interrupted else worst_exit(codes) or EXIT_SETUP)
    click.echo("", err=as_json)
    click.echo(colour_verdict("\n".join(summary_lines(merged))), err=as_json)
    failed_to_run = [o.seed for o in outcomes if o.exit_code == EXIT_SETUP
                     and not (o.folder / "results.json").exists()]
    if failed_to_run:
        click.echo(f"could not run: seed(s) {', '.join(map(str, failed_to_run))} (see their output.txt)", err=as_json)
    click.echo(f"index: {report_dir / 'index.html'}; took {time.monotonic() - started:.0f} s"
               + ("; INTERRUPTED: campaigns not started were not run" if interrupted else ""), err=as_json)
    if as_json:
        click.echo(results_json(merged), nl=False)
    sys.exit(EXIT_INTERRUPTED if interrupted else worst_exit(codes))


def _with_addresses(settings: CampaignSettings, options: dict[str, Any]) -> CampaignSettings:
    """A replayed external campaign, pointed at new addresses."""
    import attrs

    from harness.targets.external import parse_proxies
    from harness.targets.proxied import ChaosEnvironmentError

    try:
        proxies = tuple(parse_proxies(options["proxies"]))
    except ChaosEnvironmentError as exc:
        raise click.UsageError(str(exc)) from exc
    return attrs.evolve(settings, proxies=proxies or settings.proxies,
                        bootstrap=options["bootstrap"] or settings.bootstrap)


# The `kconform` program (the entry point in pyproject.toml): the harness's command group, which
# cannot name these commands itself (chaos sits above the harness), plus `kconform chaos`,
# `kconform matrix` and `kconform report`.
main = harness_main
main.add_command(chaos_command)
main.add_command(matrix_command)
main.add_command(report_command)
