"""What a chaos campaign found, as typed values: the schema of a campaign's ``results.json``.

A campaign's results are built once (``chaos/report.py``, :func:`chaos.report.build_results`)
and then read by many: the closing summary, report.html, junit.xml, ``kconform report merge``
and ``kconform report diff``, the client x broker matrix. Each reads them through the frozen
classes below, so a misspelt field is a type error rather than a ``KeyError`` at the end of a
long campaign, and the file's layout is written down in one place. They are turned into JSON
only at the edges: :func:`results_json` writes ``results.json`` (and ``kconform chaos --json``),
:func:`load_results` reads one back, with a message naming the file when it is not one.

The file's format does not depend on these classes: each class lists its keys in the order
the file has them, and what a reader of the file sees (``docs/chaos.md``, "The report
folder") stays as it was, so reports written before the classes existed still load, merge and
compare. Fields added after the first campaign reports (``latency``, ``unavailability``,
``partitions``) have defaults that say "not in this report". The judgement's own classes are
reused rather than described again: :class:`specs.claims.Claims` is ``claims``,
:class:`harness.checkers.attribution.Blame` each ``violated_by`` value and
:class:`harness.checkers.attribution.Attribution` each witness's ``attribution``; a
:class:`Witness` is an :class:`harness.checkers.result.Anomaly` with the time it became
visible. Open-ended JSON (the history header's metadata, the target's description, a fault's
parameters) stays a mapping of ``object``: kconform does not decide its shape here.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from pathlib import Path

import attrs
import msgspec

from chaos.campaign import CampaignSettings
from harness.checkers.attribution import Attribution, Blame
from harness.checkers.result import Anomaly
from specs.claims import Claims

OMIT_NONE = "kconform.omit_none"
"""Field metadata: the key is left out of results.json when the value is None (as the file has
always done for a witness's ``attribution`` and ``group`` and a fault's ``stop_error``)."""


class ReportError(ValueError):
    """A report folder or results.json that cannot be used; says which and why."""


# --- what the clients did -----------------------------------------------------------------------


@attrs.frozen
class Operations:
    """Client operations (the final drain excepted) by kind and outcome; ``pending``: never
    completed (counted as unknown). Kinds and outcomes are open-ended (``send``, ``poll``,
    ``commit``, ...; ``ok``, ``info``, ``fail``, ``pending``)."""

    total: int
    by_operation: Mapping[str, Mapping[str, int]]

    def count(self, operation: str, outcome: str) -> int:
        """How many ``operation`` ended with ``outcome`` (0 when none did)."""
        return self.by_operation.get(operation, {}).get(outcome, 0)


@attrs.frozen
class LatencyStats:
    """Percentiles of the operations of one kind that completed ``ok`` (None: none did)."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@attrs.frozen
class FaultLatency:
    """Latency of the operations invoked while one applied fault was in force."""

    id: int
    fault: str
    start: float
    end: float | None
    operations: Mapping[str, LatencyStats]


@attrs.frozen
class Latency:
    """Latency per kind of operation: over the whole run, and inside each fault window."""

    overall: Mapping[str, LatencyStats]
    by_fault: tuple[FaultLatency, ...]


@attrs.frozen
class Outage:
    """A stretch of the workload in which no write was acknowledged (seconds)."""

    start: float
    end: float
    length_s: float


@attrs.frozen
class Unavailability:
    """Every outage longer than ``threshold_s``, the longest and their total (seconds)."""

    threshold_s: float
    windows: tuple[Outage, ...]
    longest_s: float
    total_s: float


# --- what the brokers said -----------------------------------------------------------------------


@attrs.frozen
class PartitionObservation:
    """One ``partition-state`` observation: from ``t`` on, the partition looked like this."""

    t: float
    leader: str | None
    leader_epoch: int
    isr: tuple[str, ...]
    high_watermark: int | None


class HighWatermarkRegression(msgspec.Struct, frozen=True, rename={"from_": "from"}):
    """A high watermark lower than the one before it, at ``t``, under ``leader``.

    A msgspec Struct rather than an attrs class only because its key ``from`` is a Python
    keyword, and a Struct is the one kind of class msgspec reads a renamed field into."""

    t: float
    from_: int
    to: int
    leader: str | None
    leader_epoch: int


@attrs.frozen
class PartitionTimeline:
    """One partition's states in order, and the figures a reader looks for first."""

    states: tuple[PartitionObservation, ...]
    leader_changes: int
    leaderless_s: float
    isr_shrinks: int
    min_isr: int | None
    high_watermark_regressions: tuple[HighWatermarkRegression, ...]


# --- what the nemesis did ------------------------------------------------------------------------


@attrs.frozen
class FaultWindow:
    """One fault the nemesis started: what, on what, from when to when (seconds; ``end`` None
    when it never took effect), its outcome (``ok``: applied) and error, and the history events
    of its start and stop."""

    id: int
    fault: str
    targets: tuple[str, ...]
    params: Mapping[str, object]
    start: float
    end: float | None
    outcome: str
    error: str | None
    events: tuple[int, ...]
    stop_error: str | None = attrs.field(default=None, metadata={OMIT_NONE: True})

    @property
    def applied(self) -> bool:
        return self.outcome == "ok"


@attrs.frozen
class Faults:
    """How many faults took effect during the workload (``injected``), how many did not, how
    many the schedule had, and every window."""

    injected: int
    not_applied: int
    scheduled: int
    windows: tuple[FaultWindow, ...]


@attrs.frozen
class Figures:
    """The run's headline numbers (seconds, rates per second or minute)."""

    duration_s: float
    workload_s: float
    operations_per_second: float
    sends_acknowledged_per_second: float
    faults_per_minute: float
    first_fault_s: float | None
    first_anomaly_s: float | None
    first_fault_to_first_anomaly_s: float | None


# --- what the checkers found ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Witness:
    """One anomaly as results.json has it: an :class:`Anomaly` and when it became visible (the
    time of its last witnessing event, seconds)."""

    name: str
    explanation: str
    events: tuple[int, ...]
    attribution: Attribution | None = attrs.field(default=None, metadata={OMIT_NONE: True})
    group: str | None = attrs.field(default=None, metadata={OMIT_NONE: True})
    detected: float

    @classmethod
    def of(cls, anomaly: Anomaly, detected: float) -> Witness:
        return cls(name=anomaly.name, explanation=anomaly.explanation, events=anomaly.events,
                   attribution=anomaly.attribution, group=anomaly.group, detected=detected)


@attrs.frozen(kw_only=True)
class CampaignResults:
    """Everything results.json holds about one campaign, in the file's order.

    The verdict (``outcome``, ``violations``, ``violated_by``, ``hazards``, ``unjudged``) is
    :class:`harness.checkers.judgement.Verdict`'s, ``valid`` is ``outcome == "held"`` and
    ``not_provoked`` the unclaimed properties not found; ``witnesses`` are the verdict's found
    anomalies by property."""

    valid: bool
    outcome: str
    anomalies: Mapping[str, int]
    violations: Mapping[str, int]
    violated_by: Mapping[str, Blame]
    hazards: Mapping[str, int]
    not_provoked: tuple[str, ...]
    unjudged: Mapping[str, int]
    operations: Operations
    latency: Latency | None = None  # None: a report from before latency was measured
    unavailability: Unavailability | None = None  # None: likewise
    partitions: Mapping[str, PartitionTimeline] = attrs.field(factory=dict)  # empty: not observed
    faults: Faults
    figures: Figures
    claims: Claims
    checks_skipped: Mapping[str, str]
    witnesses: Mapping[str, tuple[Witness, ...]]
    seed: int
    schedule: str
    target: str
    settings: CampaignSettings
    environment: Mapping[str, object]
    history_meta: Mapping[str, object]
    warnings: tuple[str, ...]
    replay: str
    started: str  # ISO 8601, UTC, to the second
    history_start_ns: int
    schedule_duration_s: float

    def blame(self, prop: str) -> str:
        """Whose fault the violation of ``prop`` is (``broker``, ``client``, ``unattributed``)."""
        blame = self.violated_by.get(prop)
        return blame.value if blame is not None else Blame.UNATTRIBUTED.value

    @property
    def found_hazards(self) -> list[str]:
        """The unclaimed properties found at least once."""
        return [prop for prop, n in self.hazards.items() if n]


# --- JSON, at the edges --------------------------------------------------------------------------


def _plain(value: object) -> object:
    """``value`` as JSON-ready builtins: an attrs instance by its own ``to_json`` when it has
    one (the harness's classes and the campaign settings decide their JSON), else its fields in
    order (less those :data:`OMIT_NONE` and None); enums by their value; tuples as lists."""
    cls = type(value)
    if attrs.has(cls):
        to_json = getattr(value, "to_json", None)
        if callable(to_json):
            return _plain(to_json())
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(cls)
                if not (f.metadata.get(OMIT_NONE) and getattr(value, f.name) is None)}
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def results_json(results: object) -> str:
    """``results`` (a campaign's, or a merge's) as the text of results.json (indented; a value
    JSON has no form for, such as a path in the target's description, as its string)."""
    return json.dumps(_plain(results), indent=2, default=str) + "\n"


REQUIRED = ("outcome", "anomalies", "claims", "operations", "faults", "figures", "settings", "seed")
"""Keys without which a file is not a campaign's results.json at all (named in the error)."""


def load_results(path: Path) -> CampaignResults:
    """A report folder's results.json (or the file itself); :class:`ReportError` names the file
    and what is wrong when it is missing, not JSON, or not a campaign's results."""
    file = path / "results.json" if path.is_dir() else path
    if not file.exists():
        raise ReportError(f"{path}: no such report" + (" (no results.json in it)" if path.is_dir() else ""))
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{file}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ReportError(f"{file}: not a kconform campaign's results.json (not an object)")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ReportError(f"{file}: not a kconform campaign's results.json (no {', '.join(missing)})")
    try:
        return msgspec.convert(raw, type=CampaignResults)
    except msgspec.ValidationError as exc:
        raise ReportError(f"{file}: not a kconform campaign's results.json ({exc})") from None
