"""What a checker returns: anomalies with their minimal witnessing events, per check and combined."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from harness.checkers.attribution import Attribution


def _event_tuple(events: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(events)))


@attrs.frozen
class Anomaly:
    """One anomaly: its (Jepsen) name, a one-line explanation, the events that show it, whose
    fault the evidence says it is (None: the checker has no rule for it, unattributed), and the
    consumer group it is about, for a delivery guarantee (judged per group)."""

    name: str
    explanation: str
    events: tuple[int, ...] = attrs.field(converter=_event_tuple)
    attribution: Attribution | None = None
    group: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "explanation": self.explanation, "events": list(self.events)}
        if self.attribution is not None:
            out["attribution"] = self.attribution.to_json()
        if self.group is not None:
            out["group"] = self.group
        return out


@attrs.frozen
class CheckResult:
    """The result of one check: its anomalies, or why it could not be run on this history."""

    check: str
    anomalies: tuple[Anomaly, ...] = ()
    skipped: str | None = None

    @property
    def valid(self) -> bool:
        """No anomaly found (a skipped check is valid but says why it was skipped)."""
        return not self.anomalies

    @property
    def count(self) -> int:
        return len(self.anomalies)

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "valid": self.valid, "count": self.count,
                "skipped": self.skipped, "anomalies": [a.to_json() for a in self.anomalies]}


@attrs.frozen
class Report:
    """The combined result of several checks on one history."""

    results: tuple[CheckResult, ...]

    @property
    def valid(self) -> bool:
        return all(r.valid for r in self.results)

    @property
    def anomalies(self) -> Mapping[str, int]:
        """Anomaly name -> how many were found (only names with at least one)."""
        counts: dict[str, int] = {}
        for r in self.results:
            for a in r.anomalies:
                counts[a.name] = counts.get(a.name, 0) + 1
        return counts

    @property
    def skipped(self) -> Mapping[str, str]:
        return {r.check: r.skipped for r in self.results if r.skipped is not None}

    def result(self, check: str) -> CheckResult:
        for r in self.results:
            if r.check == check:
                return r
        raise KeyError(check)

    def witnesses(self, name: str) -> tuple[tuple[int, ...], ...]:
        """The witnessing events of every anomaly called `name`."""
        return tuple(a.events for r in self.results for a in r.anomalies if a.name == name)

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "anomalies": dict(self.anomalies), "skipped": dict(self.skipped),
                "results": [r.to_json() for r in self.results]}
