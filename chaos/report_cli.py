"""``kconform report``: work with campaign report folders after the fact.

``kconform report diff A B`` lays two runs side by side (chaos/report_diff.py);
``kconform report merge DIR... --out DIR`` makes one verdict of many (chaos/report_merge.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from chaos.report_diff import compare, render_text
from chaos.report_merge import merge, summary_lines
from chaos.results import ReportError, results_json
from harness.verdicts import colour_verdict

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


@report_command.command("merge")
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Where to write the merged results.json, junit.xml and index.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the merged results.json instead of the summary.")
def merge_command(folders: tuple[Path, ...], out: Path, as_json: bool) -> None:
    """Merge campaign report folders (searched recursively) into one verdict.

    Writes OUT/results.json (totals, every campaign with its outcome and replay command,
    failing ones first), OUT/junit.xml (a test case per campaign and property) and
    OUT/index.html (links to every campaign's report). Exit code as for one campaign, from the
    worst: 0 every campaign held, 1 a broker violation, 3 only client faults, 2 a campaign
    that tested nothing or a folder that cannot be read.

    \b
    Examples:
      kconform report merge shard-*/ --out merged
      kconform report merge reports/nightly --out reports/nightly --json
    """
    try:
        merged = merge(list(folders), out)
    except ReportError as exc:
        click.echo(f"kconform report merge: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if as_json:
        click.echo(results_json(merged), nl=False)
    else:
        click.echo(colour_verdict("\n".join(summary_lines(merged))))
        click.echo(f"index: {out / 'index.html'}")
    sys.exit(merged.exit_code)
