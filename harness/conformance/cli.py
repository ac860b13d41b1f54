"""``kconform conform`` (run the suite against a target) and ``kconform matrix`` (the doc)."""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import click

from harness.clients import CLIENTS
from harness.kafka_jars import DEFAULT_VERSION as DEFAULT_KAFKA_VERSION
from harness.conformance.registry import CHECKS, split_instance
from harness.conformance.runner import FAIL, ORDER, CheckOutcome, failures, run_suite, table, write_reports
from harness.targets import ALL_CAPABILITIES, TARGET_NAMES, TargetError, make_target

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
DEFAULT_MATRIX = "reference,kafka,tansu"
DEFAULT_EXAMPLES, DEFAULT_STEPS = 30, 30


def quiet_client_logs() -> None:
    """kafka-python and aiokafka log every rebalance and retry at WARNING; the suite reports
    what matters itself."""
    for name in ("kafka", "aiokafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _split(value: str | None) -> list[str] | None:
    if value is None or value.strip() in ("", "all"):
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if split_instance(n)[0] not in CHECKS]
    if unknown:
        raise click.BadParameter(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    return names


def _progress(outcome: CheckOutcome) -> None:
    mark = {"pass": "ok", "fail": "FAIL", "skip": "skip"}[outcome.status]
    click.echo(f"  {mark:<4} {outcome.name} ({outcome.seconds:.1f} s)", err=True)


@click.command("conform")
@click.option("--target", "target_name", type=click.Choice(TARGET_NAMES), default="reference", show_default=True,
              help="The broker to test: launched by the harness (reference, kafka, tansu), or external (--bootstrap). "
                   "faulty-drop / faulty-reorder are deliberately wrong brokers for trying the suite out.")
@click.option("--bootstrap", metavar="HOST:PORT[,...]", help="Bootstrap servers of an external target.")
@click.option("--brokers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Brokers of a reference target (more than one needs the multi-broker launcher).")
@click.option("--kafka-version", metavar="VERSION", default=None,
              help="Apache Kafka release of the kafka target (default $KCONFORM_KAFKA_VERSION, else "
                   f"{DEFAULT_KAFKA_VERSION}; 3.9.2 is the 3.x line). Fetched once from Maven Central.")
@click.option("--capability", "capabilities", multiple=True, type=click.Choice(ALL_CAPABILITIES),
              help="Declare a capability an external target has that the harness cannot see (repeatable).")
@click.option("--client", "clients", multiple=True, type=click.Choice(CLIENTS),
              help="Client library for the workload checks (repeatable; default: all three).")
@click.option("--checks", "checks", callback=lambda _c, _p, v: _split(v), metavar="NAME,NAME",
              help="Run only these checks (names from --list; 'client-roundtrip[aiokafka]' picks one client).")
@click.option("--list", "list_checks", is_flag=True, help="List the checks with the rule each checks, and exit.")
@click.option("--seed", type=int, default=None, help="Seed for the state machines (default: random, printed).")
@click.option("--examples", type=click.IntRange(min=1), default=DEFAULT_EXAMPLES, show_default=True,
              help="State machine examples (fresh topics/groups each).")
@click.option("--steps", type=click.IntRange(min=1), default=DEFAULT_STEPS, show_default=True,
              help="Steps per state machine example.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write results.json, junit.xml, summary.txt and the recorded histories here.")
def conform_command(target_name: str, bootstrap: str | None, brokers: int, kafka_version: str | None,
                    capabilities: tuple[str, ...],
                    clients: tuple[str, ...], checks: list[str] | None, list_checks: bool, seed: int | None,
                    examples: int, steps: int, report_dir: Path | None) -> None:
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
    """
    if list_checks:
        for c in sorted(CHECKS.values(), key=lambda c: ORDER[c.kind]):
            needs = f"  [needs {', '.join(sorted(c.requires))}]" if c.requires else ""
            per = "[CLIENT]" if c.per_client else ""
            click.echo(f"{c.name}{per} ({c.kind}): {c.summary}{needs}\n    rule: {c.rule}")
        return
    quiet_client_logs()
    seed = seed if seed is not None else random.randrange(1 << 31)
    chosen = clients or CLIENTS
    try:
        target = make_target(target_name, bootstrap=bootstrap, brokers=brokers, capabilities=capabilities,
                             kafka_version=kafka_version)
    except TargetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"kconform conform: target {target_name}, seed {seed}, clients {', '.join(chosen)}", err=True)
    try:
        with target:
            click.echo(f"target ready at {target.bootstrap}; capabilities: {', '.join(sorted(target.capabilities))}",
                       err=True)
            result = run_suite(target, checks=checks, clients=chosen, seed=seed, examples=examples, steps=steps,
                               report_dir=report_dir, progress=_progress)
    except TargetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - a target that cannot start is a usage problem, with its reason
        if type(exc).__name__ in ("BrokerStartError", "TansuStartError", "TansuNotInstalled"):
            click.echo(f"error: the {target_name} target could not start: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        raise
    click.echo(table(result))
    text = failures(result)
    if text:
        click.echo(text)
    counts = result.counts()
    click.echo(f"\n{'VALID' if result.valid else 'INVALID'}: {counts['pass']} passed, {counts[FAIL]} failed, "
               f"{counts['skip']} skipped against {target_name} in {result.seconds:.1f} s (seed {seed})"
               + (f"; anomalies: {', '.join(f'{k}: {v}' for k, v in result.anomalies.items())}"
                  if result.anomalies else ""))
    if report_dir is not None:
        write_reports(result, report_dir)
        click.echo(f"report written to {report_dir}/ (results.json, junit.xml, summary.txt, histories/)")
    sys.exit(EXIT_PASS if result.valid else EXIT_FAIL)


@click.command("matrix")
@click.option("--targets", default=DEFAULT_MATRIX, show_default=True,
              help="Comma-separated targets to run the suite against (launched by the harness).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/conformance.md"),
              show_default=True, help="Where to write the Markdown matrix.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also keep each target's full report under DIR/<target>/.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed for the state machines.")
@click.option("--examples", type=click.IntRange(min=1), default=DEFAULT_EXAMPLES, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=DEFAULT_STEPS, show_default=True)
@click.option("--checks", "checks", callback=lambda _c, _p, v: _split(v), metavar="NAME,NAME",
              help="Only these checks (default: all; a partial matrix says so).")
@click.option("--kafka-version", metavar="VERSION", default=None,
              help=f"Apache Kafka release of the kafka target (default {DEFAULT_KAFKA_VERSION}).")
def matrix_command(targets: str, output: Path, report_dir: Path | None, seed: int, examples: int, steps: int,
                   checks: list[str] | None, kafka_version: str | None) -> None:
    """Run the suite against several targets and write the conformance matrix (Markdown).

    The page (docs/conformance.md by default) is generated from these real runs, never typed:
    targets against checks, and for every failure the Kafka rule the target breaks and the
    witness. It names the date, the kconform commit and this command.
    """
    from harness.conformance.matrix import render_matrix

    quiet_client_logs()
    names = [t.strip() for t in targets.split(",") if t.strip()]
    bad = [n for n in names if n not in TARGET_NAMES or n == "external"]
    if bad:
        click.echo(f"error: unknown or unlaunchable target(s) {bad}; choose from "
                   f"{[n for n in TARGET_NAMES if n != 'external']}", err=True)
        sys.exit(EXIT_USAGE)
    results = {}
    for name in names:
        click.echo(f"== {name}", err=True)
        try:
            with make_target(name, kafka_version=kafka_version) as target:
                results[name] = run_suite(target, checks=checks, clients=CLIENTS, seed=seed, examples=examples,
                                          steps=steps,
                                          report_dir=report_dir / name if report_dir else None, progress=_progress)
        except TargetError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        if report_dir is not None:
            write_reports(results[name], report_dir / name)
    command = "kconform matrix" + ("" if targets == DEFAULT_MATRIX else f" --targets {targets}") + \
        ("" if kafka_version is None else f" --kafka-version {kafka_version}") + \
        ("" if seed == 1 else f" --seed {seed}") + ("" if checks is None else f" --checks {','.join(checks)}") + \
        ("" if (examples, steps) == (DEFAULT_EXAMPLES, DEFAULT_STEPS) else f" --examples {examples} --steps {steps}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_matrix(results, command=command))
    for name, result in results.items():
        c = result.counts()
        click.echo(f"{name}: {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped ({result.seconds:.0f} s)")
    click.echo(f"wrote {output}")
