"""``kconform conform`` (run the suite against a target) and ``kconform matrix`` (the doc)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from harness.clients import CLIENTS
from harness.conformance.parallel import run_parts
from harness.conformance.registry import CHECKS, split_instance
from harness.conformance.runner import (
    FAIL,
    INTERRUPT,
    ORDER,
    CheckOutcome,
    failures,
    preflight_notes,
    run_suite,
    select,
    table,
    write_reports,
)
from harness.conformance.sweep import (
    SeedRun,
    SeedsError,
    ShardError,
    drawn,
    parse_seeds,
    parse_shard,
    run_sweep,
    seed_line,
    shard_of,
    sweep_failures,
    sweep_json,
    sweep_table,
)
from harness.targets import ALL_CAPABILITIES, TARGET_NAMES, TARGETS, TargetError, make_target
from harness.verdicts import colour_verdict
from launch.kafka_jars import VERSION_HELP
from launch.reference_cluster import MAX_BROKERS

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_EXAMPLES, DEFAULT_STEPS = 30, 30
DEFAULT_SHRINK_SECONDS = 60.0


def quiet_client_logs() -> None:
    """kafka-python and aiokafka log every rebalance and retry at WARNING; the suite reports
    what matters itself."""
    for name in ("kafka", "aiokafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def split_list(value: str | None) -> list[str] | None:
    """``--checks a,b``: the check names (None: all); BadParameter naming unknown ones."""
    if value is None or value.strip() in ("", "all"):
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if split_instance(n)[0] not in CHECKS]
    if unknown:
        raise click.BadParameter(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    return names


def print_waiting(name: str, seconds: float) -> None:
    """A line on stderr while a long check runs (state machines run for minutes)."""
    click.echo(f"  ...  {name} still running ({seconds:.0f} s)", err=True)


def print_progress(outcome: CheckOutcome) -> None:
    """One line on stderr per finished check."""
    mark = {"pass": "ok", "fail": "FAIL", "skip": "skip"}[outcome.status]
    click.echo(f"  {mark:<4} {outcome.name} ({outcome.seconds:.1f} s)", err=True)


@click.command("conform")
@click.option("--target", "target_name", type=click.Choice(TARGET_NAMES), default="reference", show_default=True,
              envvar="KCONFORM_TARGET", show_envvar=True,
              help="The broker to test: launched by the harness (reference, kafka, tansu), or external (--bootstrap). "
                   "faulty-drop / faulty-reorder / faulty-aborted are deliberately wrong brokers for trying the "
                   "suite out.")
@click.option("--differential", metavar="TARGET_A,TARGET_B", default=None,
              help="Run the state machines against two launched targets at once (instead of --target): every "
                   "request goes to both, and the first step where their answers differ fails, with both answers.")
@click.option("--bootstrap", metavar="HOST:PORT[,...]", envvar="KCONFORM_BOOTSTRAP", show_envvar=True,
              help="Bootstrap servers of an external target.")
@click.option("--brokers", type=click.IntRange(1, MAX_BROKERS), default=1, show_default=True,
              help="Reference target: how many brokers (more than one adds a controller process and replication).")
@click.option("--kafka-version", metavar="VERSION", default=None, help=VERSION_HELP)
@click.option("--capability", "capabilities", multiple=True, type=click.Choice(ALL_CAPABILITIES),
              help="Declare a capability an external target has that the harness cannot see (repeatable).")
@click.option("--client", "clients", multiple=True, type=click.Choice(CLIENTS),
              help="Client library for the workload checks (repeatable; default: every one, confluent-kafka, kafka-python, aiokafka and java).")
@click.option("--checks", "checks", callback=lambda _c, _p, v: split_list(v), metavar="NAME,NAME",
              help="Run only these checks (names from --list; 'client-roundtrip[aiokafka]' picks one client).")
@click.option("--list", "list_checks", is_flag=True, help="List the checks with the rule each checks, and exit.")
@click.option("--seed", type=int, default=None,
              help="Seed for the state machines (default: random, printed); with --seeds N, the seed the N seeds "
                   "are drawn from.")
@click.option("--seeds", "seeds_spec", metavar="N|A-B", default=None,
              help="Sweep: run the suite once per seed, N seeds drawn from --seed (or a printed random one), or the "
                   "seeds A to B; a line per seed, a table, exit 1 if any seed failed.")
@click.option("--shard", metavar="K/N", default=None,
              help="With --seeds: run only shard K of N (every N-th seed from the K-th), e.g. --shard 3/20 on CI "
                   "runner 3 of 20.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --seeds: split the seeds over N processes, each with its own target (its own broker "
                   "processes and ports), e.g. -j 2 on two cores.")
@click.option("--examples", type=click.IntRange(min=1), default=DEFAULT_EXAMPLES, show_default=True,
              help="State machine examples (fresh topics/groups each).")
@click.option("--steps", type=click.IntRange(min=1), default=DEFAULT_STEPS, show_default=True,
              help="Steps per state machine example.")
@click.option("--shrink-seconds", type=click.FloatRange(min=1), default=DEFAULT_SHRINK_SECONDS, show_default=True,
              help="How long a state machine may shrink a failure to its fewest steps.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write results.json, junit.xml, summary.txt and the recorded histories here (per seed in "
                   "seed-<seed>/ with --seeds, plus sweep.json).")
@click.option("--json", "as_json", is_flag=True,
              help="Print results.json (with --seeds: sweep.json) on stdout instead of the table.")
@click.pass_context
def conform_command(ctx: click.Context, target_name: str, differential: str | None, bootstrap: str | None,
                    brokers: int, kafka_version: str | None, capabilities: tuple[str, ...],
                    clients: tuple[str, ...], checks: list[str] | None, list_checks: bool, seed: int | None,
                    seeds_spec: str | None, shard: str | None, jobs: int, examples: int, steps: int,
                    shrink_seconds: float, report_dir: Path | None, as_json: bool) -> None:
    """Run the conformance suite against a broker and report every check.

    Deterministic protocol checks (exact error codes and offsets through a precise wire
    client), workloads through real client libraries judged by the history checkers, and the
    Hypothesis state machines for a bounded budget. Prints a table (check, pass / FAIL / skip,
    the witness or the reason), then each failure with the Kafka rule it breaks and the command
    that reruns it. A check the target cannot support is skipped with the reason.

    Exit status: 0 when nothing failed, 1 when a check failed, 2 for bad arguments or a target
    that could not be started or reached.

    \b
    Examples:
      kconform conform                                  # a launched reference broker
      kconform conform --target tansu --report out/
      kconform conform --target kafka --kafka-version 3.9.2
      kconform conform --target external --bootstrap kafka1:9092 --client aiokafka
      kconform conform --checks produce-offsets-contiguous,stateful-log --seed 7
      kconform conform --differential reference,kafka --seed 7     # where do they answer differently?
      kconform conform --checks stateful-log --seeds 50             # 50 seeds, a line each, a table
    """
    if list_checks:
        for c in sorted(CHECKS.values(), key=lambda c: ORDER[c.kind]):
            needs = f"  [needs {', '.join(sorted(c.requires))}]" if c.requires else ""
            per = "[WRITER>READER]" if c.per_pair else "[CLIENT]" if c.per_client else ""
            both = " (also --differential)" if c.differential else ""
            click.echo(f"{c.name}{per} ({c.kind}){both}: {c.summary}{needs}\n    rule: {c.rule}")
        return
    quiet_client_logs()
    names = [target_name]
    if differential is not None:
        names = _differential_pair(ctx, differential, bootstrap)
        try:
            select(checks, clients or CLIENTS, differential=True)
        except KeyError as exc:
            _usage(str(exc.args[0]))
    master = seed if seed is not None else random.randrange(1 << 31)
    seeds: list[int] | None = None
    if (shard is not None or jobs > 1) and seeds_spec is None:
        _usage("--shard and --jobs go with --seeds")
    if seeds_spec is not None:
        try:
            seeds = parse_seeds(seeds_spec, master)
            if shard is not None:
                seeds = shard_of(seeds, *parse_shard(shard))
        except (SeedsError, ShardError) as exc:
            _usage(str(exc))
        if not seeds:
            _usage(f"shard {shard} of --seeds {seeds_spec} is empty: use fewer shards")
    chosen = clients or CLIENTS
    try:
        targets = [make_target(name, bootstrap=bootstrap, brokers=brokers, capabilities=capabilities,
                               kafka_version=kafka_version) for name in names]
    except TargetError as exc:
        _usage(str(exc))
    what = f"target {names[0]}" if len(names) == 1 else f"differential {names[0]} vs {names[1]}"
    if seeds is not None and jobs > 1:
        part_args = ([f"--differential={differential}"] if differential is not None else [f"--target={target_name}"]) + [
            *([f"--bootstrap={bootstrap}"] if bootstrap else []), f"--brokers={brokers}",
            *([f"--kafka-version={kafka_version}"] if kafka_version else []),
            *(f"--capability={c}" for c in capabilities), *(f"--client={c}" for c in chosen),
            *([f"--checks={','.join(checks)}"] if checks else []),
            f"--examples={examples}", f"--steps={steps}", f"--shrink-seconds={shrink_seconds}"]
        click.echo(f"kconform conform: {what}, {len(seeds)} seeds in {min(jobs, len(seeds))} parallel parts, clients "
                   f"{', '.join(chosen)}", err=True)
        started = time.perf_counter()
        rows, problems, interrupted = run_parts(part_args, seeds, jobs, report_dir)
        _parallel_summary(rows, problems, interrupted, time.perf_counter() - started, what, seeds_spec or "",
                          master, report_dir, as_json)
    if seeds is None:
        click.echo(f"kconform conform: {what}, seed {master}, clients {', '.join(chosen)}", err=True)
    else:
        origin = f"drawn from seed {master}" if drawn(seeds_spec or "") else "a range"
        click.echo(f"kconform conform: {what}, {len(seeds)} seeds ({origin}), clients {', '.join(chosen)}", err=True)
    suite: dict[str, Any] = {"checks": checks, "clients": chosen, "examples": examples, "steps": steps,
                             "shrink_seconds": shrink_seconds, "progress": print_progress,
                             "waiting": print_waiting}
    finished: list[SeedRun] = []

    def seed_done(run: SeedRun) -> None:
        finished.append(run)
        click.echo(seed_line(run, len(finished), len(seeds or ())), err=as_json)

    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_ctrl_c_stops_the_suite())
            for target in targets:
                stack.enter_context(target)
                click.echo(f"target {target.name} ready at {target.bootstrap}; capabilities: "
                           f"{', '.join(sorted(target.capabilities))}", err=True)
                for note in preflight_notes(target):
                    click.echo(f"note: {note}", err=True)
            against = targets[1] if len(targets) > 1 else None
            if seeds is None:
                result = run_suite(targets[0], seed=master, report_dir=report_dir, against=against, **suite)
            else:
                started = time.perf_counter()
                runs = run_sweep(targets[0], seeds, report_dir=report_dir, against=against, on_seed=seed_done,
                                 **suite)
    except KeyboardInterrupt:
        click.echo("kconform conform: interrupted before any check ran; everything it started is stopped", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except TargetError as exc:
        _usage(str(exc))
    except Exception as exc:  # noqa: BLE001 - a target that cannot start is a usage problem, with its reason
        if type(exc).__name__ in ("BrokerStartError", "TansuStartError", "TansuNotInstalled"):
            _usage(f"a target could not start: {exc}")
        raise
    against_text = f"{names[0]} and {names[1]} (differential)" if len(names) > 1 else names[0]
    if seeds is not None:
        _sweep_summary(runs, time.perf_counter() - started, against_text, seeds_spec or "", master, report_dir,
                       as_json)
        return
    say = functools.partial(click.echo, err=as_json)  # with --json, stdout carries only the JSON
    say(table(result))
    text = failures(result)
    if text:
        say(text)
    counts = result.counts()
    verdict = "INTERRUPTED (partial)" if result.interrupted else "VALID" if result.valid else "INVALID"
    say("\n" + colour_verdict(f"{verdict}: {counts['pass']} passed, {counts[FAIL]} failed, "
                              f"{counts['skip']} skipped against {against_text} in {result.seconds:.1f} s "
                              f"(seed {master})"
                              + (f"; anomalies: {', '.join(f'{k}: {v}' for k, v in result.anomalies.items())}"
                                 if result.anomalies else "")))
    if report_dir is not None:
        write_reports(result, report_dir)
        say(f"report written to {report_dir}/ (results.json, junit.xml, summary.txt, histories/)")
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, default=str))
    sys.exit(EXIT_INTERRUPTED if result.interrupted else EXIT_PASS if result.valid else EXIT_FAIL)


@contextlib.contextmanager
def _ctrl_c_stops_the_suite() -> Iterator[None]:
    """The first Ctrl-C stops the running check and the suite (the checks that finished are
    reported, exit 130); a second one quits at once. Either way the targets are stopped."""
    def interrupt(_signum: int, _frame: object) -> None:
        if not INTERRUPT.is_set():
            INTERRUPT.set()
            click.echo("\ninterrupted: stopping the running check, then reporting what finished "
                       "(Ctrl-C again to quit at once)", err=True)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    INTERRUPT.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _usage(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _differential_pair(ctx: click.Context, value: str, bootstrap: str | None) -> list[str]:
    """The two targets of --differential A,B (launched ones: each needs its own address)."""
    if ctx.get_parameter_source("target_name") in (click.core.ParameterSource.COMMANDLINE,
                                                   click.core.ParameterSource.ENVIRONMENT):
        _usage("--differential names both targets; leave out --target")
    names = [n.strip() for n in value.split(",") if n.strip()]
    launchable = [name for name, kind in TARGETS.items() if kind.launched]
    if len(names) != 2 or any(n not in launchable for n in names):
        _usage(f"--differential takes two launched targets, e.g. reference,kafka; choose from {', '.join(launchable)}")
    if bootstrap:
        _usage("--bootstrap is for --target external; --differential launches both targets")
    return names


def _parallel_summary(rows: list[dict[str, Any]], problems: list[str], interrupted: bool, seconds: float,
                      what: str, spec: str, master: int, report_dir: Path | None, as_json: bool) -> NoReturn:
    """The combined table of a ``--jobs`` sweep, each failure's rerun commands, sweep.json."""
    say = functools.partial(click.echo, err=as_json)
    failed = [r for r in rows if not r["valid"]]
    if rows:
        say("\n" + sweep_table(rows))
    for r in failed:
        say(f"seed {r['seed']}: FAIL {', '.join(r['failed'])} (report {r['report']})"
            + "".join(f"\n  reproduce: {command}" for command in r["reproduce"]))
    for problem in problems:
        say(f"error: {problem}")
    origin = master if drawn(spec) else None
    verdict = "INTERRUPTED (partial)" if interrupted else "INVALID" if failed else (
        "NOT JUDGED" if problems else "VALID")
    say("\n" + colour_verdict(f"{verdict}: {len(rows) - len(failed)} of {len(rows)} seeds passed, {what}, in "
                              f"{seconds:.1f} s (--seeds {spec}" + (f" --seed {origin}" if origin is not None else "")
                              + ")"))
    body = {"valid": not failed and not problems and not interrupted, "interrupted": interrupted, "seeds": spec,
            "master_seed": origin, "seconds": round(seconds, 1), "runs": rows, "problems": problems}
    if report_dir is not None:
        (report_dir / "sweep.json").write_text(json.dumps(body, indent=2) + "\n")
        say(f"report written to {report_dir}/ (sweep.json, part-<k>/seed-<seed>/)")
    if as_json:
        click.echo(json.dumps(body, indent=2))
    sys.exit(EXIT_INTERRUPTED if interrupted else EXIT_FAIL if failed else EXIT_USAGE if problems else EXIT_PASS)


def _sweep_summary(runs: list[SeedRun], seconds: float, against: str, spec: str, master: int,
                   report_dir: Path | None, as_json: bool) -> None:
    say = functools.partial(click.echo, err=as_json)
    failed = [r for r in runs if not r.result.valid]
    interrupted = bool(runs) and runs[-1].result.interrupted
    body = sweep_json(runs, seconds=seconds, spec=spec, master=master if drawn(spec) else None)
    say("\n" + sweep_table(body["runs"]))
    if failed:
        say("\n" + sweep_failures(runs))
    origin = master if drawn(spec) else None
    verdict = "INTERRUPTED (partial)" if interrupted else "INVALID" if failed else "VALID"
    say("\n" + colour_verdict(f"{verdict}: {len(runs) - len(failed)} of {len(runs)} seeds passed against {against} "
                              f"in {seconds:.1f} s (--seeds {spec}"
                              + (f" --seed {origin}" if origin is not None else "") + ")"))
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "sweep.json").write_text(json.dumps(body, indent=2) + "\n")
        say(f"report written to {report_dir}/ (sweep.json, seed-<seed>/)")
    if as_json:
        click.echo(json.dumps(body, indent=2))
    sys.exit(EXIT_INTERRUPTED if interrupted else EXIT_FAIL if failed else EXIT_PASS)
