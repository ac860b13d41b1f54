"""``kconform report``: work with campaign report folders after the fact.

``kconform report diff A B`` lays two runs side by side (chaos/report_diff.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from chaos.report_diff import ReportError, compare, render_text

EXIT_BAD_INPUT = 2


@click.group("report")
def report_command() -> None:
    """Work with chaos campaign reports (the folders `kconform chaos --report DIR` writes)."""


@report_command.command("diff")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--changes-only", is_flag=True, help="Show only the figures that differ.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of a table.")
def diff_command(a: Path, b: Path, changes_only: bool, as_json: bool) -> None:
    """Compare two campaign reports A and B (report folders or their results.json).

    Side by side: the verdict, each property's count and verdict, operations, faults, send
    latency, unavailability and the partitions' leader changes, ISR shrinks and high watermark
    steps back; changed figures are marked `*`. Settings that differ are listed, since results
    can differ for those reasons too. Exit code 0 when compared, 2 when a report cannot be read.

    \b
    Examples:
      kconform report diff reports/before reports/after
      kconform report diff reports/reference reports/kafka --changes-only
      kconform report diff reports/a/results.json reports/b/results.json --json
    """
    try:
        comparison = compare(a, b)
    except ReportError as exc:
        click.echo(f"kconform report diff: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(json.dumps(comparison.to_json(), indent=2) if as_json else render_text(comparison, changes_only))
