"""A run's verdict: the anomalies the checkers found, judged against what its configuration claims.

The checkers say what happened; :mod:`specs.claims` says what the configuration promises;
:func:`judge` puts them together: each found anomaly is a *violation* (its property is claimed),
a *hazard* (not claimed, with the reason) or *unjudged* (no claim names it), and each violated
property carries whose fault the evidence says it is (harness/checkers/attribution.py). The
outcome of a whole run (:data:`OUTCOMES`) follows. A chaos campaign and ``kconform check`` judge
the same way.
"""

from __future__ import annotations

import attrs

from harness.checkers.attribution import Blame, worst
from harness.checkers.result import Anomaly, Report
from specs.claims import Claims

HELD = "held"
VIOLATED_BY_CLIENT = "violated-by-client"
VIOLATED_BY_BROKER = "violated-by-broker"
VIOLATED_UNATTRIBUTED = "violated-unattributed"
NOT_EXERCISED = "not-exercised"
OUTCOMES = (HELD, VIOLATED_BY_CLIENT, VIOLATED_BY_BROKER, VIOLATED_UNATTRIBUTED, NOT_EXERCISED)
"""A campaign's outcome, from best to worst, then not-exercised: no write was acknowledged, so
nothing held or broke (docs/chaos.md, "Verdicts")."""
EXIT_CODES = {HELD: 0, VIOLATED_BY_CLIENT: 3, VIOLATED_BY_BROKER: 1, VIOLATED_UNATTRIBUTED: 1, NOT_EXERCISED: 2}
"""The exit code of a run with each outcome (docs/commands.md)."""


@attrs.frozen
class Verdict:
    """Found anomalies by property, split into violations (claimed) and hazards (not claimed),
    each violated property with whose fault the evidence says it is (the worst of its anomalies:
    broker, then unattributed, then client)."""

    found: dict[str, list[Anomaly]]
    violations: dict[str, int]
    violated_by: dict[str, Blame]
    hazards: dict[str, int]
    unjudged: dict[str, int]
    exercised: bool = True  # some write was acknowledged

    @property
    def outcome(self) -> str:
        """held, or violated by the client only, or by the broker, or unattributed (the evidence
        does not clear the broker); not-exercised when nothing broke because nothing was written
        (a client that cannot talk to the broker must not read as a broker that kept its promises)."""
        blame = worst(self.violated_by.values())
        if blame is None:
            return HELD if self.exercised else NOT_EXERCISED
        return {Blame.CLIENT: VIOLATED_BY_CLIENT, Blame.BROKER: VIOLATED_BY_BROKER,
                Blame.UNATTRIBUTED: VIOLATED_UNATTRIBUTED}[blame]


def judge(report: Report, claims: Claims, exercised: bool = True) -> Verdict:
    """Found anomalies by property (a delivery guarantee's per group: ``at-least-once[GROUP]``),
    judged against the claims, with their attribution; ``exercised``: whether any write was
    acknowledged."""
    found: dict[str, list[Anomaly]] = {}
    for result in report.results:
        for anomaly in result.anomalies:
            prop = anomaly.name if anomaly.group is None else f"{anomaly.name}[{anomaly.group}]"
            found.setdefault(prop, []).append(anomaly)
    violations = {p: len(a) for p, a in found.items() if p in claims.claimed}
    violated_by = {p: worst(blame_of(a) for a in found[p]) or Blame.UNATTRIBUTED for p in violations}
    hazards = {p: len(found.get(p, [])) for p in claims.not_claimed}
    unjudged = {p: len(a) for p, a in found.items() if p not in claims.claimed and p not in claims.not_claimed}
    return Verdict(found, violations, violated_by, hazards, unjudged, exercised)


def blame_of(anomaly: Anomaly) -> Blame:
    return anomaly.attribution.blame if anomaly.attribution is not None else Blame.UNATTRIBUTED
