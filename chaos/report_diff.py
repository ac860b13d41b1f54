"""Two campaign reports side by side: what changed between run A and run B.

A user compares runs to answer "did my broker change get better or worse?" (same seed and
schedule before and after a fix), or "how does broker X fare against broker Y?" (same
campaign, two targets). :func:`compare` lines up what a reader looks at in each
``results.json``: the verdict, every property's count and verdict, operations and
throughput, faults, send latency, unavailability and each partition's leadership figures, and
names every setting that differs (a difference in results means little when the runs differed
in more than the thing being compared). :func:`render_text` prints it as a table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from chaos.results import CampaignResults, LatencyStats, PartitionTimeline, load_results


@attrs.frozen
class Row:
    """One compared figure: its section, its name, its value in A and in B."""

    section: str
    name: str
    a: object
    b: object

    @property
    def changed(self) -> bool:
        return bool(self.a != self.b)


@attrs.frozen
class Comparison:
    a_label: str
    b_label: str
    rows: tuple[Row, ...]
    settings: tuple[Row, ...]  # only the settings that differ

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a_label, "b": self.b_label,
                "rows": [attrs.asdict(r) | {"changed": r.changed} for r in self.rows],
                "settings_differ": [attrs.asdict(r) for r in self.settings]}


def _label(path: Path, r: CampaignResults) -> str:
    return f"{path} ({r.target}, {r.schedule}, seed {r.seed})"


def _verdict(r: CampaignResults, prop: str) -> str:
    if prop in r.violations:
        return f"VIOLATED {r.blame(prop)}"
    if prop in r.claims.claimed:
        return "held"
    return "hazard found" if r.hazards.get(prop) else "not provoked"


def _send_latency(r: CampaignResults, figure: Callable[[LatencyStats], float | None]) -> float | None:
    """One figure of the sends' latency (None: no send completed, or a report from before latency)."""
    send = r.latency.overall.get("send") if r.latency is not None else None
    return None if send is None else figure(send)


def _flatten(prefix: str, value: object) -> dict[str, object]:
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: value}


def compare(a_path: Path, b_path: Path) -> Comparison:
    a, b = load_results(a_path), load_results(b_path)
    rows: list[Row] = []

    def add(section: str, name: str, get: Callable[[CampaignResults], object]) -> None:
        rows.append(Row(section, name, get(a), get(b)))

    add("verdict", "outcome", lambda r: r.outcome)
    pa, pb = _properties(a), _properties(b)
    for prop in sorted({*pa, *pb}):
        rows.append(Row("properties", prop, pa.get(prop), pb.get(prop)))
    add("workload", "operations", lambda r: r.operations.total)
    add("workload", "sends acknowledged", lambda r: r.operations.count("send", "ok"))
    add("workload", "sends unknown (info)", lambda r: r.operations.count("send", "info"))
    add("workload", "operations/s", lambda r: round(r.figures.operations_per_second, 1))
    add("faults", "injected", lambda r: r.faults.injected)
    add("faults", "not applied", lambda r: r.faults.not_applied)
    add("faults", "first fault to first anomaly (s)", lambda r: r.figures.first_fault_to_first_anomaly_s)
    add("send latency", "p50 (ms)", lambda r: _send_latency(r, lambda s: s.p50_ms))
    add("send latency", "p99 (ms)", lambda r: _send_latency(r, lambda s: s.p99_ms))
    add("send latency", "max (ms)", lambda r: _send_latency(r, lambda s: s.max_ms))
    add("availability", "unavailable (s)", lambda r: r.unavailability.total_s if r.unavailability else None)
    add("availability", "longest outage (s)", lambda r: r.unavailability.longest_s if r.unavailability else None)
    add("partitions", "leader changes", lambda r: _partition_sum(r, lambda t: t.leader_changes))
    add("partitions", "isr shrinks", lambda r: _partition_sum(r, lambda t: t.isr_shrinks))
    add("partitions", "high watermark regressions",
        lambda r: _partition_sum(r, lambda t: len(t.high_watermark_regressions)))
    fa, fb = _flatten("", a.settings.to_json()), _flatten("", b.settings.to_json())
    settings = tuple(Row("settings", k, fa.get(k), fb.get(k)) for k in sorted({*fa, *fb}) if fa.get(k) != fb.get(k))
    return Comparison(_label(a_path, a), _label(b_path, b), tuple(rows), settings)


def _properties(r: CampaignResults) -> dict[str, str]:
    """Each property's count and verdict, e.g. ``"3 VIOLATED broker"``. A group's property is
    named after the group's mode (``at-least-once[commit-after]``): group names carry the seed
    and run, so two runs' names never match."""
    groups = r.history_meta.get("groups")
    modes: Mapping[str, object] = groups if isinstance(groups, Mapping) else {}
    out = {}
    for prop in (*r.claims.claimed, *r.claims.not_claimed):
        name, _, group = prop.partition("[")
        shown = f"{name}[{modes.get(group.rstrip(']'), group.rstrip(']'))}]" if group else name
        count = int(r.violations.get(prop, r.hazards.get(prop, 0)))
        out[shown] = f"{count} {_verdict(r, prop)}"
    return out


def _partition_sum(r: CampaignResults, figure: Callable[[PartitionTimeline], int]) -> int | None:
    if not r.partitions:
        return None  # not observed (a report from before the observer, or an unobservable target)
    return sum(figure(t) for t in r.partitions.values())


def render_text(c: Comparison, only_changes: bool = False) -> str:
    """The comparison as an aligned table; changed rows marked ``*``."""
    def show(v: object) -> str:
        return "-" if v is None else str(v)

    rows = [r for r in c.rows if r.changed or not only_changes]
    width = max([len(r.name) for r in (*rows, *c.settings)] + [20]) + 2
    col = max([len(show(r.a)) for r in (*rows, *c.settings)] + [12]) + 2
    lines = [f"A: {c.a_label}", f"B: {c.b_label}", "", f"  {'':{width}}{'A':{col}}B"]
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            lines.append(section)
        lines.append(f"{'*' if r.changed else ' '} {r.name:{width}}{show(r.a):{col}}{show(r.b)}")
    if c.settings:
        lines += ["", "settings that differ (results may differ for these reasons too)"]
        lines += [f"* {r.name:{width}}{show(r.a):{col}}{show(r.b)}" for r in c.settings]
    else:
        lines += ["", "same settings"]
    changed = sum(r.changed for r in c.rows)
    lines.append(f"{changed} of {len(c.rows)} figures differ" + ("" if changed else ": the runs agree"))
    return "\n".join(lines)
