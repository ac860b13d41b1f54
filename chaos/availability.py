"""What a campaign's clients lived through, as numbers: latency percentiles and outages.

A verdict says whether the broker kept its promises; an operator reading the report of an
outage also wants to know what it cost: how slow operations were (p50, p99 and the worst, per
kind of operation, over the whole run and within each fault window) and for how long writes
got no acknowledgement at all. Both are computed from the history alone, so any campaign's
history (or a replay's) gives the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from chaos.results import FaultLatency, FaultWindow, Latency, LatencyStats, Outage, Unavailability
from harness.history.load import History

UNAVAILABLE_AFTER_S = 1.0
"""A stretch without any acknowledged write longer than this is an unavailability window."""


def _stats(values: list[float]) -> LatencyStats:
    if not values:
        return LatencyStats(0, None, None, None)
    values = sorted(values)

    def q(p: float) -> float:
        return round(values[min(len(values) - 1, math.ceil(p * len(values)) - 1)], 3)

    return LatencyStats(len(values), q(0.5), q(0.99), round(values[-1], 3))


def _completed(history: History) -> list[tuple[str, float, float]]:
    """(operation, invoked at (s from the start), took (ms)) of every client operation that
    completed ``ok`` (the final drain and the nemesis excepted)."""
    t0 = history.raw[0]["time"] if history.raw else 0
    invoked: dict[int, int] = {}
    out = []
    for e in history.raw:
        if e["f"] == "fault" or e["process"] == "drain":
            continue
        if e["type"] == "invoke":
            invoked[e["index"]] = e["time"]
        elif e["type"] == "ok" and e.get("invoke") in invoked:
            start = invoked.pop(e["invoke"])
            out.append((e["f"], (start - t0) / 1e9, (e["time"] - start) / 1e6))
    return out


def latency(history: History, windows: Sequence[FaultWindow]) -> Latency:
    """Latency percentiles per operation: ``overall``, and ``by_fault`` for the operations
    invoked while each applied fault was in force."""
    done = _completed(history)
    by_op: dict[str, list[float]] = {}
    for op, _, took in done:
        by_op.setdefault(op, []).append(took)
    by_fault = []
    for w in windows:
        if not w.applied:
            continue
        end = w.end if w.end is not None else math.inf
        inside: dict[str, list[float]] = {}
        for op, at, took in done:
            if w.start <= at < end:
                inside.setdefault(op, []).append(took)
        by_fault.append(FaultLatency(w.id, w.fault, w.start, w.end,
                                     {op: _stats(v) for op, v in sorted(inside.items())}))
    return Latency({op: _stats(v) for op, v in sorted(by_op.items())}, tuple(by_fault))


def unavailability(history: History, workload_end_s: float,
                   threshold_s: float = UNAVAILABLE_AFTER_S) -> Unavailability:
    """Stretches of the workload (from its first send to ``workload_end_s``) longer than
    ``threshold_s`` in which no write was acknowledged, with their lengths."""
    t0 = history.raw[0]["time"] if history.raw else 0
    sends = [(e["time"] - t0) / 1e9 for e in history.raw if e["f"] == "send" and e["type"] == "invoke"]
    acks = sorted((e["time"] - t0) / 1e9 for e in history.raw if e["f"] == "send" and e["type"] == "ok")
    windows: list[Outage] = []
    if sends:
        last = min(sends)
        for t in [*acks, workload_end_s]:
            if t > workload_end_s:
                t = workload_end_s
            if t - last > threshold_s:
                windows.append(Outage(round(last, 3), round(t, 3), round(t - last, 3)))
            last = max(last, t)
    return Unavailability(threshold_s, tuple(windows), max((w.length_s for w in windows), default=0.0),
                          round(sum(w.length_s for w in windows), 3))
