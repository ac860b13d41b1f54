"""``kconform matrix``: the conformance suite per broker and a chaos campaign per (client, broker),
written as one generated page (docs/conformance.md).

It lives in chaos/ because its second half runs chaos campaigns; the suite half is the
harness's (`harness.conformance`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from chaos.matrix import CellResult, TargetSpec, parse_targets, render_chaos_section, run_chaos_cells
from harness.clients import CLIENTS
from harness.conformance.cli import (
    DEFAULT_EXAMPLES,
    DEFAULT_STEPS,
    EXIT_USAGE,
    print_progress,
    print_waiting,
    quiet_client_logs,
    split_list,
)
from harness.conformance.matrix import render_matrix
from harness.conformance.runner import SuiteResult, run_suite, write_reports
from harness.targets import TargetError, make_target

DEFAULT_TARGETS = "reference,kafka,kafka:3.9.2,tansu"
DEFAULT_CHAOS_SECONDS = 20.0


def _clients(value: str | None) -> list[str]:
    if value is None:
        return list(CLIENTS)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in CLIENTS]
    if unknown or not names:
        raise click.BadParameter(f"unknown client(s) {', '.join(unknown) or '(none given)'}; choose from "
                                 f"{', '.join(CLIENTS)}")
    return names


@click.command("matrix")
@click.option("--targets", default=DEFAULT_TARGETS, show_default=True,
              help="Comma-separated brokers, launched by the harness; a Kafka release as kafka:3.9.2.")
@click.option("--clients", "clients_text", metavar="NAME,NAME", default=None,
              help=f"Client libraries for the client checks and the campaigns (default: {','.join(CLIENTS)}); "
                   "kcat joins as a reader in client-interop.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the Markdown matrix (default: docs/conformance.md of the kconform checkout this "
                   "runs from; required for an installed kconform).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also keep each target's suite report under DIR/<target>/ and each campaign's under "
                   "DIR/chaos/<target>-<client>/ (default: campaigns in a temporary folder).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the state machines and campaigns.")
@click.option("--examples", type=click.IntRange(min=1), default=DEFAULT_EXAMPLES, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=DEFAULT_STEPS, show_default=True)
@click.option("--checks", "checks", callback=lambda _c, _p, v: split_list(v), metavar="NAME,NAME",
              help="Only these checks (default: all; a partial matrix says so).")
@click.option("--chaos-duration", type=click.FloatRange(min=0), default=DEFAULT_CHAOS_SECONDS, show_default=True,
              help="Seconds of each (client, broker) chaos campaign; 0 leaves the campaigns out.")
def matrix_command(targets: str, clients_text: str | None, output: Path | None, report_dir: Path | None, seed: int,
                   examples: int, steps: int, checks: list[str] | None, chaos_duration: float) -> None:
    """Run the suite against several brokers, a chaos campaign per client and broker, and write
    the conformance matrix (Markdown).

    The page (docs/conformance.md of this checkout by default) is generated from these real runs:
    brokers against checks (client checks once per client library, client-interop once per
    writer>reader pair), every failure with the Kafka rule it breaks and the witness, then the
    clients x brokers table of campaigns with whose fault each violation was. It names the date,
    the kconform commit and the command that regenerates it. The full default matrix takes about
    20 minutes.

    \b
    Examples:
      kconform matrix                                    # every broker, every client
      kconform matrix --targets reference,kafka:3.9.2 --clients java,aiokafka --output /tmp/m.md
      kconform matrix --chaos-duration 0                 # the suite only
    """
    try:
        specs = parse_targets(targets)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--targets") from exc
    clients = _clients(clients_text)
    output = output or _checkout_page()
    quiet_client_logs()
    results = _suites(specs, clients, seed, examples, steps, checks, report_dir)
    cells: list[CellResult] = []
    if chaos_duration > 0 and any(s.chaos for s in specs):
        cells = _campaigns(specs, clients, seed, chaos_duration, report_dir)
    command = _command(targets, clients_text, seed, checks, examples, steps, chaos_duration)
    sections = render_chaos_section(cells, [s.label for s in specs if s.chaos], clients, seed=seed,
                                    duration=chaos_duration) if cells else []
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_matrix(results, command=command, sections=sections))
    for label, result in results.items():
        c = result.counts()
        click.echo(f"{label}: {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped ({result.seconds:.0f} s)")
    for cell in cells:
        click.echo(f"chaos {cell.client} x {cell.target}: {cell.cell()} ({cell.seconds:.0f} s)")
    click.echo(f"wrote {output}")


def _checkout_page() -> Path:
    """docs/conformance.md of the checkout kconform runs from; UsageError for an installed one
    (the page belongs to the project, not to whatever directory the user stands in)."""
    page = Path(__file__).resolve().parents[1] / "docs" / "conformance.md"
    if not page.parent.is_dir():
        raise click.UsageError("give --output FILE: this kconform is not a checkout with a docs/ folder")
    return page


def _suites(specs: list[TargetSpec], clients: list[str], seed: int, examples: int, steps: int,
            checks: list[str] | None, report_dir: Path | None) -> dict[str, SuiteResult]:
    """The whole suite (or ``checks``) against each broker, launched in turn."""
    results: dict[str, SuiteResult] = {}
    for spec in specs:
        click.echo(f"== suite: {spec.label}", err=True)
        folder = report_dir / spec.key if report_dir else None
        try:
            with make_target(spec.name, kafka_version=spec.kafka_version) as target:
                results[spec.label] = run_suite(target, checks=checks, clients=clients, seed=seed, examples=examples,
                                                steps=steps, report_dir=folder, progress=print_progress,
                                                waiting=print_waiting)
        except TargetError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        if folder is not None:
            write_reports(results[spec.label], folder)
    return results


def _campaigns(specs: list[TargetSpec], clients: list[str], seed: int, duration: float,
               report_dir: Path | None) -> list[CellResult]:
    def say(text: str) -> None:
        click.echo(f"== {text}", err=True)

    if report_dir is not None:
        return run_chaos_cells(specs, clients, seed=seed, duration=duration, report_dir=report_dir / "chaos",
                               progress=say)
    with tempfile.TemporaryDirectory(prefix="kconform-matrix-") as tmp:
        return run_chaos_cells(specs, clients, seed=seed, duration=duration, report_dir=Path(tmp), progress=say)


def _command(targets: str, clients_text: str | None, seed: int, checks: list[str] | None, examples: int, steps: int,
             chaos_duration: float) -> str:
    """The command that regenerates the page (defaults left out)."""
    parts = ["kconform matrix"]
    if targets != DEFAULT_TARGETS:
        parts.append(f"--targets {targets}")
    if clients_text is not None:
        parts.append(f"--clients {clients_text}")
    if seed != 1:
        parts.append(f"--seed {seed}")
    if checks is not None:
        parts.append(f"--checks {','.join(checks)}")
    if (examples, steps) != (DEFAULT_EXAMPLES, DEFAULT_STEPS):
        parts.append(f"--examples {examples} --steps {steps}")
    if chaos_duration != DEFAULT_CHAOS_SECONDS:
        parts.append(f"--chaos-duration {chaos_duration:g}")
    return " ".join(parts)
