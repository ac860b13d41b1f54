"""A campaign's report: results.json, junit.xml, summary.txt and a self-contained report.html.

``report.html`` needs nothing but a browser (no script, no external style sheet): inline SVG
plots of sends and reads per second and of latency over time (acknowledgement latency of
sends, and end-to-end latency from a send to the first read of its record), every fault window
shaded on both plots and labelled on a timeline between them, a marker where each anomaly
became visible, then the verdict per claimed guarantee, the faults, and every anomaly with its
witnessing events as recorded in ``history.jsonl``.

Times are seconds since the first event of the history.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from chaos.availability import latency, unavailability
from chaos.faults import FAULTS
from chaos.leadership import partition_timelines
from chaos.results import (
    CampaignResults,
    Faults,
    FaultWindow,
    Figures,
    LatencyStats,
    Operations,
    PartitionObservation,
    PartitionTimeline,
    Witness,
    results_json,
)
from chaos.schedule import Schedule
from harness.checkers import Report
from harness.checkers.judgement import HELD
from harness.history.load import History
from harness.junit import Case, Failure, Suite
from harness.junit import junit_xml as write_junit
from specs.claims import Claims

if TYPE_CHECKING:
    from chaos.campaign import CampaignSettings
    from harness.checkers.judgement import Verdict

MAX_WITNESSED = 8  # anomalies shown in full per property
# Which anomalies a reader wants to see first (data loss before bookkeeping).
IMPORTANCE = ("lost-write", "at-least-once", "duplicate", "at-most-once", "inconsistent-offsets", "unseen",
              "aborted-read", "torn-transaction", "exactly-once-processing", "streams-exactly-once", "G1b", "read-uncommitted",
              "lso-past-open-transaction", "lso-above-hw", "hanging-transaction", "poll-skip", "nonmonotonic-poll",
              "nonmonotonic-send", "committed-offset-regression", "group-split-brain", "G1c", "G-single", "G0")


def _importance(prop: str) -> int:
    name = prop.split("[", 1)[0]
    return IMPORTANCE.index(name) if name in IMPORTANCE else len(IMPORTANCE)
FAMILY_COLOURS = {"partition": "#e4572e", "link": "#f3a712", "process": "#7a4eab", "client": "#2e86ab"}


# --- facts from the history ---------------------------------------------------------------------


NOT_CLIENT = ("fault", "partition-state")  # what the nemesis and the observer record


def _rel(history: History) -> tuple[int, float]:
    t0 = history.raw[0]["time"] if history.raw else 0
    end = (history.raw[-1]["time"] - t0) / 1e9 if history.raw else 0.0
    return t0, end


def operations(history: History) -> Operations:
    """Client operations by kind and outcome (``pending``: never completed, counted unknown)."""
    by: dict[str, dict[str, int]] = {}
    open_: dict[int, str] = {}
    for e in history.raw:
        if e["f"] in NOT_CLIENT or e["process"] == "drain":
            continue
        if e["type"] == "invoke":
            open_[e["index"]] = e["f"]
            continue
        if "invoke" in e:
            open_.pop(e["invoke"], None)
        counts = by.setdefault(e["f"], {})
        counts[e["type"]] = counts.get(e["type"], 0) + 1
    for f in open_.values():
        counts = by.setdefault(f, {})
        counts["pending"] = counts.get("pending", 0) + 1
    total = sum(sum(c.values()) for c in by.values())
    return Operations(total, by)


def fault_windows(history: History) -> list[FaultWindow]:
    """Every fault the nemesis started: what, on what, from when to when (or why it failed)."""
    t0, end = _rel(history)
    invokes: dict[int, dict[str, Any]] = {}
    windows: dict[int, int] = {}  # fault id -> where in ``out`` its window, applied and not yet stopped, is
    out: list[FaultWindow] = []
    for e in history.raw:
        if e["f"] != "fault":
            continue
        if e["type"] == "invoke":
            invokes[e["index"]] = e
            continue
        inv = invokes.pop(e["invoke"], None)
        if inv is None:
            continue
        v = inv["value"]
        fid = v.get("params", {}).get("id", inv["index"])
        when = (e["time"] - t0) / 1e9
        if v["action"] == "start":
            if e["type"] == "ok":
                windows[fid] = len(out)
            out.append(FaultWindow(fid, v["fault"], tuple(v.get("targets", [])),
                                   {k: x for k, x in v.get("params", {}).items() if k != "id"}, round(when, 3),
                                   None, e["type"], e["value"].get("error"), (inv["index"], e["index"])))
        else:
            stopped = windows.pop(fid, None)
            if stopped is not None:
                window = out[stopped]
                out[stopped] = attrs.evolve(window, end=round(when, 3), events=(*window.events, inv["index"], e["index"]),
                                            stop_error=e["value"].get("error") if e["type"] != "ok" else None)
    for k in windows.values():
        out[k] = attrs.evolve(out[k], end=round(end, 3))
    return out


def series(history: History, bucket_s: float) -> dict[str, list[float]]:
    """Per bucket: sends ok/info/fail per second, records read per second, and latencies (ms):
    acknowledgement p50/p99 of the sends invoked in it, end-to-end p50 of its sends' records."""
    t0, end = _rel(history)
    n = max(1, int(math.ceil(end / bucket_s)) + 1)
    ok, info, fail, read = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    ack: list[list[float]] = [[] for _ in range(n)]
    e2e: list[list[float]] = [[] for _ in range(n)]
    invoked: dict[int, int] = {}
    sent_at: dict[str, int] = {}
    first_read: set[str] = set()

    def b(t: int) -> int:
        return min(n - 1, int((t - t0) / 1e9 / bucket_s))

    for e in history.raw:
        f, typ = e["f"], e["type"]
        if f == "send":
            if typ == "invoke":
                invoked[e["index"]] = e["time"]
                sent_at[e["value"]["value"]] = e["time"]
                continue
            i = b(e["time"])
            if typ == "ok":
                ok[i] += 1
                start = invoked.get(e["invoke"])
                if start is not None:
                    ack[b(start)].append((e["time"] - start) / 1e6)
            elif typ == "info":
                info[i] += 1
            else:
                fail[i] += 1
        elif f == "poll" and typ == "ok" and e["process"] != "drain":
            records = e["value"]["records"]
            read[b(e["time"])] += len(records)
            for r in records:
                value = r[4]
                if value in first_read:
                    continue
                first_read.add(value)
                start = sent_at.get(value)
                if start is not None:
                    e2e[b(start)].append((e["time"] - start) / 1e6)

    def pct(values: list[float], q: float) -> float:
        if not values:
            return math.nan
        values.sort()
        return values[min(len(values) - 1, int(q * len(values)))]

    scale = 1.0 / bucket_s
    return {
        "t": [i * bucket_s for i in range(n)],
        "send_ok": [x * scale for x in ok], "send_info": [x * scale for x in info],
        "send_fail": [x * scale for x in fail], "read": [x * scale for x in read],
        "ack_p50": [pct(v, 0.5) for v in ack], "ack_p99": [pct(v, 0.99) for v in ack],
        "e2e_p50": [pct(v, 0.5) for v in e2e],
    }


def detection_time(history: History, events: Sequence[int]) -> float:
    """When an anomaly became visible: the time of its last witnessing event (seconds)."""
    t0, _ = _rel(history)
    return max((history.raw[i]["time"] - t0) / 1e9 for i in events) if events else 0.0


# --- results.json ---------------------------------------------------------------------------------


def build_results(history: History, report: Report, verdict: Verdict, claims: Claims, schedule: Schedule,
                  *, settings: CampaignSettings, environment: Mapping[str, object], warnings: Sequence[str],
                  replay: str, started: float, injected: int) -> CampaignResults:
    """What the campaign found, from its history and its verdict (results.json, as values)."""
    ops = operations(history)
    faults = fault_windows(history)
    applied = [f for f in faults if f.applied]
    _, end = _rel(history)
    client_times = [e["time"] for e in history.raw if e["f"] not in (*NOT_CLIENT, "drain") and e["process"] != "drain"]
    t0 = history.raw[0]["time"] if history.raw else 0
    window = (max(client_times) - min(client_times)) / 1e9 if len(client_times) > 1 else 0.0
    completed = sum(c for f in ops.by_operation.values() for k, c in f.items() if k != "pending")
    found = verdict.found
    detections = sorted(detection_time(history, a.events) for anomalies in found.values() for a in anomalies)
    first_fault = min((f.start for f in applied), default=None)
    first_anomaly = detections[0] if detections else None
    return CampaignResults(
        valid=verdict.outcome == HELD,
        outcome=verdict.outcome,
        anomalies=dict(report.anomalies),
        violations=dict(verdict.violations),
        violated_by=dict(verdict.violated_by),
        hazards=dict(verdict.hazards),
        not_provoked=tuple(sorted(p for p, n in verdict.hazards.items() if n == 0)),
        unjudged=dict(verdict.unjudged),
        operations=ops,
        latency=latency(history, faults),
        unavailability=unavailability(history, schedule.duration),
        partitions=partition_timelines(history),
        faults=Faults(len(applied), len(faults) - len(applied), len(schedule.faults), tuple(faults)),
        figures=Figures(
            duration_s=round(end, 3),
            workload_s=round(window, 3),
            operations_per_second=completed / window if window else 0.0,
            sends_acknowledged_per_second=ops.count("send", "ok") / window if window else 0.0,
            faults_per_minute=len(applied) / (schedule.duration / 60) if schedule.duration else 0.0,
            first_fault_s=first_fault,
            first_anomaly_s=first_anomaly,
            first_fault_to_first_anomaly_s=(round(first_anomaly - first_fault, 3)
                                            if first_fault is not None and first_anomaly is not None else None),
        ),
        claims=Claims(dict(claims.claimed), dict(claims.not_claimed)),
        checks_skipped=dict(report.skipped),
        witnesses={prop: tuple(Witness.of(a, round(detection_time(history, a.events), 3)) for a in lst)
                   for prop, lst in found.items()},
        seed=schedule.seed,
        schedule=schedule.name,
        target=settings.target,
        settings=settings,
        environment=dict(environment),
        history_meta=dict(history.meta),
        warnings=tuple(warnings),
        replay=replay,
        started=datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        history_start_ns=t0,
        schedule_duration_s=schedule.duration,
    )


# --- JUnit ----------------------------------------------------------------------------------------


def junit_xml(results: CampaignResults) -> bytes:
    """One testcase per property: claimed ones pass or fail, unclaimed ones are skipped."""
    return write_junit(Suite(f"kconform chaos {results.target}", results.started, results.figures.duration_s,
                             {"seed": str(results.seed), "schedule": results.schedule, "replay": results.replay},
                             junit_cases(results, f"kconform.chaos.{results.target}")))


def junit_cases(results: CampaignResults, classname: str) -> list[Case]:
    """A campaign's properties as test cases of ``classname``."""
    violations = results.violations
    cases = []
    for prop, why in results.claims.claimed.items():
        failure = None
        if prop in violations:
            witnesses = results.witnesses.get(prop, ())
            first = witnesses[0].explanation if witnesses else ""
            blame = results.blame(prop)
            failure = Failure(f"violated-by-{blame}" if blame != "unattributed" else "violated-unattributed",
                              f"{violations[prop]} x {prop} ({BY[blame]}): {first}"[:300],
                              "\n".join([f"claimed because: {why}"]
                                        + [f"{w.explanation} (events {list(w.events)}); {attribution_line(w)}"
                                           for w in witnesses[:20]]
                                        + [f"replay: {results.replay}"]))
        cases.append(Case(classname, prop, failure=failure))
    for prop, why in results.claims.not_claimed.items():
        found = results.hazards.get(prop, 0)
        state = f"found {found}" if found else "not provoked in this run (not shown safe)"
        cases.append(Case(classname, prop, skipped=f"not claimed ({why}); {state}"[:500]))
    return cases


# --- HTML -----------------------------------------------------------------------------------------

W, LEFT, RIGHT = 1100, 64, 16
PLOT_W = W - LEFT - RIGHT


def _x(t: float, end: float) -> float:
    return LEFT + PLOT_W * (t / end if end > 0 else 0)


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


BY = {"broker": "by the broker", "client": "by the client", "unattributed": "(unattributed)"}
"""How a violated property's attribution reads after "VIOLATED"."""


def attribution_line(witness: Witness) -> str:
    """Whose fault one anomaly is, in one line."""
    a = witness.attribution
    if a is None:
        return "whose fault: unattributed (no rule for this anomaly)"
    text = f"whose fault: {a.blame.value} ({a.cause}): {a.detail}"
    return text + (f"; known: {a.known}" if a.known else "")


def fault_label(f: FaultWindow) -> str:
    """How a fault window is labelled on the plots: the fault and the nodes it hit."""
    return f"{f.fault} {','.join(f.targets)}".strip()


def _colour(f: FaultWindow) -> str:
    """A fault's colour on the plots: its family's."""
    return FAMILY_COLOURS.get(FAULTS[f.fault].family if f.fault in FAULTS else "", "#999")


def _shade(faults: Sequence[FaultWindow], end: float, top: float, height: float,
           workload_end: float | None = None, annotate: bool = True) -> list[str]:
    """Fault windows as translucent bands (each with its label as a tooltip), and the phase
    after the workload (heal, recover, drain) in grey."""
    out = []
    if workload_end is not None and workload_end < end:
        x = _x(workload_end, end)
        out.append(f'<g class="after-workload"><rect x="{x:.1f}" y="{top}" width="{W - RIGHT - x:.1f}" '
                   f'height="{height}" fill="#888" fill-opacity="0.08"/>'
                   f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + height}" stroke="#888" '
                   'stroke-dasharray="3 3"/>' + (f'<text x="{x - 4:.1f}" y="{top + 12}" font-size="10" fill="#666" '
                                                 'text-anchor="end">workload ends (then heal, recover, drain)</text>'
                                                 if annotate else "") + '</g>')
    for f in faults:
        if not f.applied:
            continue
        x0, x1 = _x(f.start, end), _x(f.end if f.end is not None else end, end)
        label = html.escape(fault_label(f))
        out.append(f'<rect class="fault-window" data-fault="{html.escape(f.fault)}" x="{x0:.1f}" y="{top}" '
                   f'width="{max(1.0, x1 - x0):.1f}" height="{height}" fill="{_colour(f)}" fill-opacity="0.13">'
                   f'<title>{label}</title></rect>')
    return out


def _axis_x(end: float, y: float) -> list[str]:
    step = _nice_max(end / 10) if end > 0 else 1
    out = [f'<line x1="{LEFT}" y1="{y}" x2="{W - RIGHT}" y2="{y}" stroke="#444"/>']
    t = 0.0
    while t <= end + 1e-9:
        x = _x(t, end)
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#444"/>'
                   f'<text x="{x:.1f}" y="{y + 16}" font-size="11" text-anchor="middle">{t:g}s</text>')
        t += step
    return out


def _polyline(ts: Sequence[float], ys: Sequence[float], end: float, ymap: Any, colour: str, dash: str = "") -> str:
    segments: list[list[str]] = [[]]
    for t, y in zip(ts, ys):
        if y is None or (isinstance(y, float) and math.isnan(y)):
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{_x(t, end):.1f},{ymap(y):.1f}")
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return "".join(f'<polyline points="{" ".join(s)}" fill="none" stroke="{colour}" stroke-width="1.6"{dashed}/>'
                   for s in segments if len(s) > 1) + "".join(
        f'<circle cx="{s[0].split(",")[0]}" cy="{s[0].split(",")[1]}" r="1.8" fill="{colour}"/>'
        for s in segments if len(s) == 1)


def _legend(items: Sequence[tuple[str, str, str]], y: float) -> list[str]:
    out = []
    x = LEFT + 8
    for label, colour, dash in items:
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{colour}" stroke-width="2"{dashed}/>'
                   f'<text x="{x + 22}" y="{y + 4}" font-size="11">{html.escape(label)}</text>')
        x += 30 + 7 * len(label)
    return out


def throughput_svg(s: Mapping[str, list[float]], faults: Sequence[FaultWindow], end: float,
                   workload_end: float | None = None) -> str:
    h, top, bottom = 230, 24, 200
    ymax = _nice_max(max([*s["send_ok"], *s["read"], *s["send_info"], *s["send_fail"], 1.0]))

    def ymap(v: float) -> float:
        return bottom - (bottom - top) * min(v, ymax) / ymax

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" role="img" '
             f'aria-label="operations per second">']
    parts += _shade(faults, end, top, bottom - top, workload_end)
    for i in range(5):
        v = ymax * i / 4
        y = ymap(v)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{v:g}</text>')
    parts.append(f'<text x="12" y="{(top + bottom) / 2}" font-size="11" transform="rotate(-90 12 {(top + bottom) / 2})" '
                 f'text-anchor="middle">per second</text>')
    parts.append(_polyline(s["t"], s["send_ok"], end, ymap, "#1b7f3b"))
    parts.append(_polyline(s["t"], s["read"], end, ymap, "#1f5fbf"))
    parts.append(_polyline(s["t"], s["send_info"], end, ymap, "#d98c00", "4 3"))
    parts.append(_polyline(s["t"], s["send_fail"], end, ymap, "#c0392b", "2 2"))
    parts += _axis_x(end, bottom)
    parts += _legend([("sends acknowledged", "#1b7f3b", ""), ("records read", "#1f5fbf", ""),
                      ("sends unknown (info)", "#d98c00", "4 3"), ("sends failed", "#c0392b", "2 2")], 12)
    parts.append("</svg>")
    return "".join(parts)


def latency_svg(s: Mapping[str, list[float]], faults: Sequence[FaultWindow], end: float,
                workload_end: float | None = None) -> str:
    h, top, bottom = 230, 24, 200
    values = [v for k in ("ack_p50", "ack_p99", "e2e_p50") for v in s[k] if not math.isnan(v) and v > 0]
    lo, hi = 1.0, max([10.0, *values])
    hi = 10 ** math.ceil(math.log10(hi))

    def ymap(v: float) -> float:
        v = min(max(v, lo), hi)
        return bottom - (bottom - top) * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" role="img" aria-label="latency">']
    parts += _shade(faults, end, top, bottom - top, workload_end)
    decade = lo
    while decade <= hi:
        y = ymap(decade)
        label = f"{decade:g} ms" if decade < 1000 else f"{decade / 1000:g} s"
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{label}</text>')
        decade *= 10
    parts.append(_polyline(s["t"], s["ack_p50"], end, ymap, "#1b7f3b"))
    parts.append(_polyline(s["t"], s["ack_p99"], end, ymap, "#8e44ad", "4 3"))
    parts.append(_polyline(s["t"], s["e2e_p50"], end, ymap, "#1f5fbf"))
    parts += _axis_x(end, bottom)
    parts += _legend([("send ack p50", "#1b7f3b", ""), ("send ack p99", "#8e44ad", "4 3"),
                      ("send to first read p50", "#1f5fbf", "")], 12)
    parts.append("</svg>")
    return "".join(parts)


BROKER_COLOURS = ("#4e79a7", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f", "#bab0ac", "#f28e2b")


def partition_svg(name: str, timeline: PartitionTimeline, faults: Sequence[FaultWindow], end: float,
                  workload_end: float | None = None) -> str:
    """One partition's leader (a band coloured per broker, labelled with the leader epoch),
    ISR (a band coloured by how many replicas are in it) and high watermark (a step line)."""
    states = timeline.states
    h, lead_y, isr_y, band, top, bottom = 170, 8, 34, 20, 62, 140
    widest = max((len(s.isr) for s in states), default=1)
    hw_max = _nice_max(max((s.high_watermark or 0 for s in states), default=1))
    e = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="partition" data-partition="{e(name)}" width="{W}" '
             f'height="{h}" role="img" aria-label="partition {e(name)}: leader, ISR, high watermark">']
    parts += _shade(faults, end, lead_y, bottom - lead_y, workload_end, annotate=False)
    parts.append(f'<text x="{LEFT - 6}" y="{lead_y + 14}" font-size="11" text-anchor="end">leader</text>'
                 f'<text x="{LEFT - 6}" y="{isr_y + 14}" font-size="11" text-anchor="end">ISR</text>')
    for t0, t1, s in _segments(states, lambda s: (s.leader, s.leader_epoch), end):
        x0, width = _x(t0, end), max(1.0, _x(t1, end) - _x(t0, end))
        leader = s.leader
        tip = e(f"{t0:.2f}-{t1:.2f}s: leader {leader or 'none'}, epoch {s.leader_epoch}")
        if leader is None:
            fill, label = "#ffffff", "no leader"
        else:
            digits = "".join(c for c in leader if c.isdigit())
            fill, label = BROKER_COLOURS[int(digits or 0) % len(BROKER_COLOURS)], f"{leader} e{s.leader_epoch}"
        parts.append(f'<g class="leader-segment" data-leader="{e(leader or "")}"><title>{tip}</title>'
                     f'<rect x="{x0:.1f}" y="{lead_y}" width="{width:.1f}" height="{band}" fill="{fill}" '
                     f'fill-opacity="0.55" stroke="{"#c0392b" if leader is None else "#fff"}"/>'
                     + (f'<text x="{x0 + 3:.1f}" y="{lead_y + 14}" font-size="11">{e(label)}</text>'
                        if width > 6.5 * len(label) else "") + "</g>")
    for t0, t1, s in _segments(states, lambda s: s.isr, end):
        x0, width = _x(t0, end), max(1.0, _x(t1, end) - _x(t0, end))
        size = len(s.isr)
        isr_fill = "#9bd3a8" if size >= widest else "#f4b4a8" if size <= 1 else "#f7d9a8"
        isr_label = ",".join(s.isr) or "empty"
        parts.append(f'<g class="isr-segment" data-isr="{e(isr_label)}"><title>{e(f"{t0:.2f}-{t1:.2f}s: ISR {isr_label}")}'
                     f'</title><rect x="{x0:.1f}" y="{isr_y}" width="{width:.1f}" height="{band}" fill="{isr_fill}" '
                     f'stroke="#fff"/>' + (f'<text x="{x0 + 3:.1f}" y="{isr_y + 14}" font-size="11">'
                                           f'{e(isr_label)}</text>' if width > 6.5 * len(isr_label) else "")
                     + "</g>")

    def ymap(v: float) -> float:
        return bottom - (bottom - top) * min(v, hw_max) / hw_max

    points = []
    for k, s in enumerate(states):
        if s.high_watermark is None:
            continue
        y = ymap(s.high_watermark)
        x1 = _x(states[k + 1].t if k + 1 < len(states) else end, end)
        points += [f"{_x(s.t, end):.1f},{y:.1f}", f"{x1:.1f},{y:.1f}"]
    parts.append(f'<text x="{LEFT - 6}" y="{top + 4}" font-size="11" text-anchor="end">{hw_max:g}</text>'
                 f'<text x="{LEFT - 6}" y="{(top + bottom) / 2 + 4}" font-size="11" text-anchor="end">HW</text>')
    if points:
        parts.append(f'<polyline class="high-watermark" points="{" ".join(points)}" fill="none" stroke="#1f5fbf" '
                     'stroke-width="1.6"/>')
    for r in timeline.high_watermark_regressions:
        x = _x(r.t, end)
        tip = e(f"high watermark back from {r.from_} to {r.to} at {r.t:.2f}s")
        parts.append(f'<g class="hw-regression"><title>{tip}</title><circle cx="{x:.1f}" cy="{ymap(r.to):.1f}" '
                     'r="4" fill="#c0392b"/></g>')
    parts += _axis_x(end, bottom)
    parts.append("</svg>")
    return "".join(parts)


def _segments(states: Sequence[PartitionObservation], key: Callable[[PartitionObservation], object], end: float
              ) -> list[tuple[float, float, PartitionObservation]]:
    """(from, to, first state) of each run of consecutive states that agree on ``key``."""
    out: list[tuple[float, float, PartitionObservation]] = []
    for k, s in enumerate(states):
        until = states[k + 1].t if k + 1 < len(states) else end
        if out and key(out[-1][2]) == key(s):
            out[-1] = (out[-1][0], until, out[-1][2])
        else:
            out.append((s.t, until, s))
    return out


def _partition_section(results: CampaignResults, end: float) -> list[str]:
    """The leader, ISR and high watermark of each partition over the run, with its figures."""
    e = html.escape
    timelines = results.partitions
    out = ["<h2>Partitions: leader, ISR and high watermark</h2>"]
    if not timelines:
        return out + ["<p>Not observed: this target does not give the brokers' own addresses, so nothing could "
                      "ask them around the proxies.</p>"]
    out.append("<p class='small'>Sampled from the brokers at their own addresses (around every proxy) four times a "
               "second: Metadata at every running broker (the view with the newest leader epoch) and ListOffsets "
               "at the leader. Leader band: one colour per broker, labelled with the leader epoch; ISR band: green "
               "when every replica is in it, orange when one or more are out, red when only one is left.</p>")
    for name, t in timelines.items():
        regressions = t.high_watermark_regressions
        out.append(f"<h3>{e(name)}</h3><p class='small'>leader changes: <b>{t.leader_changes}</b>; without a "
                   f"leader: <b>{t.leaderless_s:.1f} s</b>; ISR shrinks: <b>{t.isr_shrinks}</b> (smallest ISR: "
                   f"{t.min_isr}); high watermark went back: <b>{len(regressions)}</b> time(s)"
                   + "".join(f"; {r.from_} to {r.to} at {r.t:.2f} s" for r in regressions[:3]) + "</p>")
        out.append("<div class='chart'>" + partition_svg(name, t, results.faults.windows, end,
                                                         results.schedule_duration_s) + "</div>")
    return out


def _witness_id(prop: str, k: int) -> str:
    """The HTML id of the ``k``-th witness of ``prop`` (what an anomaly marker links to)."""
    return "w-" + "".join(c if c.isalnum() else "-" for c in prop) + f"-{k}"


MARK_GAP_PX = 24  # anomaly marks closer than this share one mark (each must stay clickable)


def _clusters(detections: Sequence[tuple[float, str, str]], end: float) -> list[list[tuple[float, str, str]]]:
    """Detections (sorted by time) grouped into runs whose marks would overlap on the page."""
    out: list[list[tuple[float, str, str]]] = []
    for d in detections:
        if out and _x(d[0], end) - _x(out[-1][0][0], end) < MARK_GAP_PX:
            out[-1].append(d)
        else:
            out.append([d])
    return out


def timeline_svg(faults: Sequence[FaultWindow], detections: Sequence[tuple[float, str, str]],
                 end: float) -> str:
    """Fault windows as labelled bars in lanes (no two overlapping in a lane), and anomaly
    markers below them, each a link to its witness (when the page shows it)."""
    lanes: list[float] = []  # right edge (px, label included) of each lane
    bars = []
    for f in sorted((f for f in faults if f.applied), key=lambda f: f.start):
        x0 = _x(f.start, end)
        x1 = _x(f.end if f.end is not None else end, end)
        label = fault_label(f)
        right = max(x1, x0 + 6.2 * len(label) + 6)
        lane = next((i for i, edge in enumerate(lanes) if edge + 4 <= x0), None)
        if lane is None:
            lanes.append(right)
            lane = len(lanes) - 1
        else:
            lanes[lane] = right
        bars.append((lane, x0, x1, label, f))
    lane_h = 20
    marks_y = 10 + lane_h * max(1, len(lanes)) + 8
    h = marks_y + 34
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" role="img" aria-label="faults">']
    parts.append(f'<text x="{LEFT - 6}" y="24" font-size="11" text-anchor="end">faults</text>')
    for lane, x0, x1, label, f in bars:
        y = 10 + lane * lane_h
        colour = _colour(f)
        title = html.escape(f"{f.fault} on {', '.join(f.targets)} from {f.start:.1f}s to "
                            f"{f.end:.1f}s {json.dumps(f.params)}")
        parts.append(f'<g class="fault-bar" data-fault="{html.escape(f.fault)}"><title>{title}</title>'
                     f'<rect x="{x0:.1f}" y="{y}" width="{max(2.0, x1 - x0):.1f}" '
                     f'height="{lane_h - 5}" fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>'
                     f'<text x="{x0 + 3:.1f}" y="{y + 11}" font-size="11">{html.escape(label)}</text></g>')
    parts.append(f'<text x="{LEFT - 6}" y="{marks_y + 4}" font-size="11" text-anchor="end">anomalies</text>')
    parts.append(f'<line x1="{LEFT}" y1="{marks_y}" x2="{W - RIGHT}" y2="{marks_y}" stroke="#bbb"/>')
    for cluster in _clusters(detections, end):
        x = _x(cluster[0][0], end)
        title = "\n".join(f"{name} visible at {t:.2f}s" for t, name, _a in cluster[:MAX_WITNESSED])
        if len(cluster) > MAX_WITNESSED:
            title += f"\n... and {len(cluster) - MAX_WITNESSED} more"
        count = (f'<text x="{x + 6:.1f}" y="{marks_y + 3}" font-size="10" fill="#c0392b">{len(cluster)}</text>'
                 if len(cluster) > 1 else "")
        mark = (f'<g class="anomaly-mark" data-count="{len(cluster)}"><title>{html.escape(title)}</title>'
                f'<path d="M{x:.1f},{marks_y - 6} l5,9 l-10,0 z" fill="#c0392b"/>{count}</g>')
        anchor = next((a for _t, _n, a in cluster if a), "")
        parts.append(f'<a href="#{anchor}">{mark}</a>' if anchor else mark)
    parts += _axis_x(end, marks_y + 14)
    parts.append("</svg>")
    return "".join(parts)


def _event_line(history: History, index: int, t0: int, whole: bool = False) -> str:
    """One event as a line; its value cut at 220 characters unless ``whole`` (a witness is shown
    whole: the record that proves a lost write may be the last of a long poll)."""
    e = history.raw[index]
    value = json.dumps(e["value"], separators=(",", ":"))
    if len(value) > 220 and not whole:
        value = value[:217] + "..."
    return (f"#{index} {(e['time'] - t0) / 1e9:8.3f}s {e['process']} {e['type']} {e['f']}"
            + (f" (of #{e['invoke']})" if "invoke" in e else "") + f" {value}")


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1140px}
h1{font-size:20px;margin:0 0 4px;line-height:1.6}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}h3{font-size:14px;margin:16px 0 2px}
.verdict{display:inline-block;padding:2px 8px;border-radius:4px;color:#fff;font-weight:600;font-size:14px;vertical-align:middle}
.valid{background:#1b7f3b}.invalid{background:#c0392b}.hazards{background:#b86e00}.client{background:#6c5ce7}
details{margin:6px 0}summary{cursor:pointer;font-size:15px;margin:10px 0 4px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.bad{color:#c0392b;font-weight:600}.hazard{color:#a05a00}.quiet{color:#777}
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow-x:auto;white-space:pre}
pre.witness{white-space:pre-wrap;word-break:break-all}
code{background:#f2f2f2;padding:1px 4px}.small{font-size:12px;color:#555}
.chart{margin:4px 0}
"""


def render_html(history: History, results: CampaignResults) -> str:
    t0, end = _rel(history)
    end = max(end, 1.0)
    bucket = max(1.0, end / 300)
    s = series(history, bucket)
    faults = results.faults.windows
    workload_end = results.schedule_duration_s
    detections = sorted((w.detected, f"{prop}: {w.explanation}", _witness_id(prop, k) if k < MAX_WITNESSED
                         else "") for prop, ws in results.witnesses.items() for k, w in enumerate(ws))
    fig = results.figures
    ops = results.operations
    e = html.escape
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>kconform chaos: {e(results.target)}, seed {results.seed}</title>",
           f"<style>{CSS}</style></head><body>"]
    found_hazards = results.found_hazards
    if results.valid:
        badge = "<span class='verdict valid'>VALID: claimed guarantees held</span>"
    elif results.outcome == "violated-by-client":
        badge = (f"<span class='verdict client'>CLIENT FAULT: {len(results.violations)} claimed guarantee(s) "
                 "violated by the client, none by the broker</span>")
    else:
        by = "by the broker" if results.outcome == "violated-by-broker" else "(unattributed)"
        badge = (f"<span class='verdict invalid'>INVALID: {len(results.violations)} claimed guarantee(s) "
                 f"violated {by}</span>")
    if found_hazards:
        badge += (f" <span class='verdict hazards' title='{e(', '.join(found_hazards))}'>"
                  f"{len(found_hazards)} unclaimed hazard(s) found</span>")
    out.append(f"<h1>kconform chaos campaign: {e(results.target)} {badge}</h1>")
    settings = results.settings
    w = settings.workload
    out.append(f"<p class='small'>schedule <b>{e(str(results.schedule))}</b>, seed <b>{results.seed}</b>, "
               f"{fig.duration_s:.0f} s, started {e(results.started)}; {settings.brokers} broker(s); "
               f"producers: {w.producers} x {w.rate:g}/s, acks={e(str(w.acks))}, "
               f"idempotence={'on' if w.idempotence else 'off'}, client {e(w.client)}; consumers: "
               f"{e(', '.join(w.consumers))}; topic configs: "
               f"{e(json.dumps(results.history_meta.get('topic_configs', {})))}</p>")
    out.append(f"<p>Operations: <b>{ops.total}</b> ({fig.operations_per_second:.0f}/s); faults injected: "
               f"<b>{results.faults.injected}</b> ({fig.faults_per_minute:.1f}/min), not applied: "
               f"{results.faults.not_applied}; anomalies: <b>"
               + (e(", ".join(f"{k}: {v}" for k, v in results.anomalies.items())) or "none") + "</b>"
               + (f"; first anomaly visible {fig.first_fault_to_first_anomaly_s:.1f} s after the first fault"
                  if fig.first_fault_to_first_anomaly_s is not None else "") + "</p>")
    out.append(f"<p class='small'>Replay: <code>{e(results.replay)}</code></p>")
    for warning in results.warnings:
        out.append(f"<p class='hazard'>warning: {e(warning)}</p>")
    out.append("<h2>Throughput</h2><div class='chart'>" + throughput_svg(s, faults, end, workload_end) + "</div>")
    out.append("<div class='chart'>" + timeline_svg(faults, detections, end) + "</div>")
    out.append("<h2>Latency</h2><div class='chart'>" + latency_svg(s, faults, end, workload_end) + "</div>")
    out += _latency_tables(results)
    out.append(f"<p class='small'>Buckets of {bucket:g} s. Shaded: fault windows (red: partitions, orange: "
               "link toxics, purple: processes, blue: clients). Triangles: the moment each anomaly became "
               "visible (its last witnessing event).</p>")
    out += _partition_section(results, end)
    # verdicts
    out.append("<h2>Guarantees</h2><table><tr><th>property</th><th>claimed?</th><th>why</th><th>found</th>"
               "<th>verdict</th></tr>")
    claims = results.claims
    for prop, why in claims.claimed.items():
        n = results.violations.get(prop, 0)
        by = BY[results.blame(prop)]
        verdict = f"<span class='bad'>VIOLATED {by}</span>" if n else "held"
        out.append(f"<tr><td>{e(prop)}</td><td>yes</td><td>{e(why)}</td><td>{n}</td><td>{verdict}</td></tr>")
    for prop, why in claims.not_claimed.items():
        n = results.hazards.get(prop, 0)
        verdict = ("<span class='hazard'>hazard found</span>" if n
                   else "<span class='quiet'>not provoked (not shown safe)</span>")
        out.append(f"<tr><td>{e(prop)}</td><td>no</td><td>{e(why)}</td><td>{n}</td><td>{verdict}</td></tr>")
    out.append("</table>")
    if results.checks_skipped:
        out.append("<p class='small'>Checks skipped: " + e("; ".join(f"{k}: {v}" for k, v in
                                                                      results.checks_skipped.items())) + "</p>")
    # faults
    out.append("<h2>Faults</h2><table><tr><th>#</th><th>fault</th><th>targets</th><th>parameters</th>"
               "<th>start</th><th>end</th><th>outcome</th></tr>")
    for f in faults:
        outcome = "applied" if f.applied else f"{f.outcome}: {f.error}"
        end_text = f"{f.end:.2f}s" if f.end is not None else ""
        out.append(f"<tr><td>{f.id}</td><td>{e(f.fault)}</td><td>{e(', '.join(f.targets))}</td>"
                   f"<td>{e(json.dumps(f.params))}</td><td>{f.start:.2f}s</td><td>{end_text}</td>"
                   f"<td>{e(outcome)}</td></tr>")
    out.append("</table>")
    # operations
    out.append("<h2>Operations</h2><table><tr><th>operation</th>"
               + "".join(f"<th>{k}</th>" for k in ("ok", "info", "fail", "pending")) + "</tr>")
    for op in ops.by_operation:
        out.append(f"<tr><td>{e(op)}</td>" + "".join(f"<td>{ops.count(op, k)}</td>"
                                                    for k in ("ok", "info", "fail", "pending")) + "</tr>")
    out.append("</table>")
    # anomalies
    out.append("<h2>Anomalies and their witnesses</h2>")
    if not results.witnesses:
        out.append("<p>None found.</p>")
    else:
        out.append("<p class='small'>Violations of claimed guarantees first, then hazards; each anomaly with "
                   "the history events (index, seconds, process, type, operation, value) that witness it.</p>")
    order = sorted(results.witnesses.items(),
                   key=lambda item: (item[0] not in results.violations, _importance(item[0]), item[0]))
    for n, (prop, witnesses) in enumerate(order):
        status = "VIOLATION of a claimed guarantee" if prop in results.violations else "hazard (not claimed)"
        cls = "bad" if prop in results.violations else "hazard"
        out.append(f"<details class='anomaly' data-property='{e(prop)}'{' open' if n == 0 else ''}>"
                   f"<summary><span class='{cls}'>{e(prop)}</span>: {len(witnesses)} ({status})</summary>")
        for k, wit in enumerate(witnesses[:MAX_WITNESSED]):
            lines = "\n".join(e(_event_line(history, i, t0, whole=True)) for i in wit.events)
            out.append(f"<p id='{_witness_id(prop, k)}'>{e(wit.explanation)} <span class='small'>(visible at "
                       f"{wit.detected:.2f} s)</span></p><p class='attribution small'>{e(attribution_line(wit))}"
                       f"</p><pre class='witness'>{lines}</pre>")
        if len(witnesses) > MAX_WITNESSED:
            out.append(f"<p class='small'>... and {len(witnesses) - MAX_WITNESSED} more in results.json.</p>")
        out.append("</details>")
    out.append("<h2>Environment</h2><pre>" + e(json.dumps(results.environment, indent=2, default=str))
               + "</pre>")
    out.append("</body></html>\n")
    return "".join(out)


def _latency_tables(results: CampaignResults) -> list[str]:
    """Latency percentiles per operation (overall, then within each fault window) and the
    stretches in which no write was acknowledged."""
    e = html.escape

    def row(label: str, ops: Mapping[str, LatencyStats]) -> list[str]:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        return [f"<tr><td>{e(label)}</td><td>{e(op)}</td><td>{s.count}</td><td>{ms(s.p50_ms)}</td>"
                f"<td>{ms(s.p99_ms)}</td><td>{ms(s.max_ms)}</td></tr>" for op, s in ops.items()]

    lat, gone = results.latency, results.unavailability
    assert lat is not None and gone is not None, "a campaign's own results carry its latency and unavailability"
    out = ["<table class='latency'><tr><th>when</th><th>operation</th><th>completed</th><th>p50 ms</th>"
           "<th>p99 ms</th><th>max ms</th></tr>", *row("whole run", lat.overall)]
    for w in lat.by_fault:
        end = f"{w.end:.1f}" if w.end is not None else "end"
        out += row(f"during #{w.id} {w.fault} ({w.start:.1f}-{end} s)", w.operations)
    out.append("</table>")
    if gone.windows:
        out.append(f"<p>Unavailable (no write acknowledged for over {gone.threshold_s:g} s): "
                   f"{len(gone.windows)} window(s), {gone.total_s:.1f} s in all, the longest "
                   f"{gone.longest_s:.1f} s.</p><table class='unavailability'><tr><th>from</th><th>to</th>"
                   "<th>length</th></tr>" + "".join(f"<tr><td>{w.start:.2f} s</td><td>{w.end:.2f} s</td>"
                                                   f"<td>{w.length_s:.2f} s</td></tr>" for w in gone.windows)
                   + "</table>")
    else:
        out.append(f"<p>Writes were acknowledged throughout: no gap over {gone.threshold_s:g} s.</p>")
    return out


def write_report(report_dir: Path, history: History, report: Report, verdict: Verdict, claims: Claims,
                 schedule: Schedule, *, settings: CampaignSettings, environment: Mapping[str, object],
                 warnings: Sequence[str], replay: str, started: float, injected: int) -> CampaignResults:
    """results.json, junit.xml and report.html into ``report_dir``; the results."""
    results = build_results(history, report, verdict, claims, schedule, settings=settings, environment=environment,
                            warnings=warnings, replay=replay, started=started, injected=injected)
    (report_dir / "results.json").write_text(results_json(results))
    (report_dir / "junit.xml").write_bytes(junit_xml(results))
    (report_dir / "report.html").write_text(render_html(history, results))
    return results
