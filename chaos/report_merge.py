"""``kconform report merge``: many campaign report folders, one verdict.

Campaigns spread over CI runners (``kconform chaos --seeds ... --shard K/N``) or run by a sweep
each leave a report folder. :func:`merge` finds every campaign's results.json under the folders
it is given and writes, into one output folder:

- ``results.json``: ``"merged": true``, the worst outcome (and its exit code), the totals
  (campaigns by outcome, operations, faults injected, anomalies, violations and hazards by
  name) and one entry per campaign, failing campaigns first, each with its replay command and
  the path of its report;
- ``junit.xml``: one test case per campaign and property (``classname``
  ``kconform.chaos.<target>.seed-<seed>``);
- ``index.html``: the totals and a table linking every campaign's report.html (relative
  links), failing campaigns first with the command that replays each.

A folder is searched recursively; a results.json that is itself a merge is skipped, so merging
twice or into one of the inputs is safe.
"""

from __future__ import annotations

import datetime
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from chaos.report import junit_cases
from chaos.results import CampaignResults, ReportError, load_results, results_json
from harness.checkers.judgement import EXIT_CODES, HELD, NOT_EXERCISED
from harness.junit import Suite, junit_xml

SEVERITY = ("violated-by-broker", "violated-unattributed", "violated-by-client", NOT_EXERCISED, HELD)
"""Outcomes from the one a reader must see first to the one they need not."""


def find_results(paths: Sequence[Path]) -> list[Path]:
    """Every campaign results.json under ``paths`` (files or folders), merges excepted."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ReportError(f"{path}: no such file or folder")
        candidates = [path] if path.is_file() else sorted(path.rglob("results.json"))
        for candidate in candidates:
            try:
                merged = json.loads(candidate.read_text()).get("merged") is True
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                merged = False  # load_results says what is wrong with it
            if not merged:
                found.append(candidate)
    if not found:
        raise ReportError(f"no campaign results.json under {', '.join(str(p) for p in paths)}")
    return sorted(set(found))


@attrs.frozen
class MergedCampaign:
    """One campaign of a merge: where its report is, what it found, how to replay it."""

    report: str  # its folder, relative to the merge's
    seed: int
    target: str
    schedule: str
    outcome: str
    violations: Mapping[str, int]
    violated_by: Mapping[str, str]
    hazards: Mapping[str, int]  # those found (non-zero)
    anomalies: Mapping[str, int]
    operations: int
    faults_injected: int
    duration_s: float | None
    replay: str

    @classmethod
    def of(cls, results: CampaignResults, folder: str) -> MergedCampaign:
        return cls(folder, results.seed, results.target, results.schedule, results.outcome,
                   dict(results.violations), {p: results.blame(p) for p in results.violated_by},
                   {k: v for k, v in results.hazards.items() if v}, dict(results.anomalies),
                   results.operations.total, results.faults.injected, results.figures.duration_s, results.replay)


def _summed(counts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for each in counts:
        for name, n in each.items():
            totals[name] = totals.get(name, 0) + int(n)
    return totals


@attrs.frozen
class MergeTotals:
    """What all the campaigns of a merge add up to."""

    campaigns: int
    by_outcome: Mapping[str, int]
    operations: int
    faults_injected: int
    anomalies: Mapping[str, int]
    violations: Mapping[str, int]
    hazards: Mapping[str, int]

    @classmethod
    def of(cls, campaigns: Sequence[MergedCampaign]) -> MergeTotals:
        return cls(len(campaigns), _summed([{c.outcome: 1} for c in campaigns]),
                   sum(c.operations for c in campaigns), sum(c.faults_injected for c in campaigns),
                   _summed([c.anomalies for c in campaigns]), _summed([c.violations for c in campaigns]),
                   _summed([c.hazards for c in campaigns]))


@attrs.frozen
class MergedResults:
    """A merge's results.json: the worst outcome, the totals, every campaign failing-first."""

    outcome: str
    valid: bool
    exit_code: int
    totals: MergeTotals
    campaigns: Sequence[MergedCampaign]
    merged_at: str

    def to_json(self) -> dict[str, object]:
        # "merged": true tells a merge from a campaign's results.json (find_results skips merges).
        return {"merged": True, **{f.name: getattr(self, f.name) for f in attrs.fields(MergedResults)}}


def merge(paths: Sequence[Path], out: Path) -> MergedResults:
    """Merge the campaigns under ``paths`` into ``out``; the merged results (as written)."""
    files = find_results(paths)
    out.mkdir(parents=True, exist_ok=True)
    campaigns: list[MergedCampaign] = []
    cases = []
    for file in files:
        results = load_results(file)
        campaigns.append(MergedCampaign.of(results, os.path.relpath(file.parent, out)))
        cases += junit_cases(results, f"kconform.chaos.{results.target}.seed-{results.seed}")
    campaigns.sort(key=lambda c: (SEVERITY.index(c.outcome) if c.outcome in SEVERITY else 0, c.seed))
    worst = campaigns[0].outcome
    merged = MergedResults(worst, worst == HELD, EXIT_CODES.get(worst, 2), MergeTotals.of(campaigns), campaigns,
                           datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    (out / "results.json").write_text(results_json(merged))
    seconds = sum(c.duration_s or 0.0 for c in campaigns)
    (out / "junit.xml").write_bytes(junit_xml(Suite("kconform chaos campaigns", merged.merged_at, seconds,
                                                    {"campaigns": str(len(campaigns))}, cases)))
    (out / "index.html").write_text(render_index(merged))
    return merged


def summary_lines(merged: MergedResults) -> list[str]:
    """The totals and every failing campaign's replay command, as the CLI prints them."""
    t = merged.totals
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(t.by_outcome.items(), key=lambda kv: SEVERITY.index(kv[0])
                                                        if kv[0] in SEVERITY else 0))
    lines = [f"campaigns: {t.campaigns} ({outcomes}); operations: {t.operations}; "
             f"faults injected: {t.faults_injected}",
             "anomalies: " + (", ".join(f"{k} {v}" for k, v in sorted(t.anomalies.items())) or "none")]
    failing = [c for c in merged.campaigns if c.outcome != HELD]
    for c in failing:
        lines.append(f"  seed {c.seed}: {c.outcome} "
                     + (", ".join(f"{k} {v}" for k, v in c.violations.items()) or "")
                     + f"; replay: {c.replay}")
    worst = merged.outcome
    word = "VALID" if worst == HELD else "CLIENT FAULT" if worst == "violated-by-client" else (
        "NOT EXERCISED" if worst == NOT_EXERCISED else "INVALID")
    lines.append(f"{word}: {len(failing)} of {t.campaigns} campaign(s) did not hold" if failing
                 else f"{word}: every claimed guarantee held in all {t.campaigns} campaign(s)")
    return lines


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}.held{color:#1b7f3b}.bad{color:#c0392b;font-weight:600}.client{color:#6c5ce7;font-weight:600}
.quiet{color:#777}code{font-size:12px}
"""


def render_index(merged: MergedResults) -> str:
    """A self-contained page: the totals, then every campaign with a link to its report."""
    e = html.escape
    t = merged.totals
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>kconform campaigns</title>",
           f"<style>{CSS}</style></head><body><h1>kconform chaos campaigns</h1>"]
    out += [f"<p>{e(line)}</p>" for line in summary_lines(merged)[:2]]
    if t.violations:
        out.append("<p class='bad'>Violated: " + e(", ".join(f"{k} {v}" for k, v in t.violations.items())) + "</p>")
    if t.hazards:
        out.append("<p>Hazards found (not claimed): " + e(", ".join(f"{k} {v}" for k, v in t.hazards.items()))
                   + "</p>")
    out.append("<table><tr><th>seed</th><th>target</th><th>schedule</th><th>outcome</th><th>anomalies</th>"
               "<th>operations</th><th>faults</th><th>report</th><th>replay</th></tr>")
    for c in merged.campaigns:
        cls = {"held": "held", "violated-by-client": "client", NOT_EXERCISED: "quiet"}.get(c.outcome, "bad")
        anomalies = ", ".join(f"{k} {v}" for k, v in c.anomalies.items()) or "none"
        link = f"{c.report}/report.html"
        replay = f"<code>{e(c.replay or '')}</code>" if c.outcome != HELD else ""
        out.append(f"<tr><td>{c.seed}</td><td>{e(str(c.target))}</td><td>{e(str(c.schedule))}</td>"
                   f"<td class='{cls}'>{e(c.outcome)}</td><td>{e(anomalies)}</td><td>{c.operations}</td>"
                   f"<td>{c.faults_injected}</td><td><a href='{e(link)}'>{e(c.report)}</a></td>"
                   f"<td>{replay}</td></tr>")
    out.append("</table></body></html>\n")
    return "".join(out)
