"""The client x broker matrix: the conformance suite per broker, and a short chaos campaign per
(client, broker) cell, written as docs/conformance.md by ``kconform matrix``.

A verdict on a broker is made through a client, so the client is one dimension of the matrix:
the suite's client checks already run once per client library (``client-roundtrip[java]``,
``client-interop[java>kcat]``); this module adds, for every client and every broker, one short
chaos campaign in the safe configuration (faults drawn from the seed among those the broker
supports), so a reader sees per cell whether the claimed guarantees held, and when they did
not, whose fault it was (a client bug the log proves, like librdkafka #4953, is not a broker's).

Brokers are named like ``kafka:3.9.2`` for a Kafka release other than the default.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from chaos.campaign import CampaignError, CampaignSession, CampaignSettings
from chaos.environment import ENVIRONMENTS
from chaos.workload import WorkloadSettings
from harness.targets import TARGETS
from launch.kafka_jars import DEFAULT_VERSION, KafkaJarsError, parse_version

LAUNCHABLE = tuple(name for name, kind in TARGETS.items() if kind.launched)
CHAOS_TARGETS = tuple(name for name, kind in ENVIRONMENTS.items() if kind.launched)
"""The targets a chaos campaign can launch (the deliberately wrong ones are suite-only)."""


@attrs.frozen
class TargetSpec:
    """A launchable broker of the matrix: its target name and, for Kafka, the release."""

    name: str
    kafka_version: str | None = None

    @property
    def label(self) -> str:
        """The matrix column: ``kafka 3.9.2`` for Kafka, else the target's name."""
        return f"kafka {self.kafka_version or DEFAULT_VERSION}" if TARGETS[self.name].takes_version else self.name

    @property
    def key(self) -> str:
        """How the CLI names it (``kafka:3.9.2``)."""
        return f"kafka:{self.kafka_version}" if self.kafka_version else self.name

    @property
    def chaos(self) -> bool:
        """Whether a chaos campaign can run against it."""
        return self.name in CHAOS_TARGETS


def parse_targets(text: str) -> list[TargetSpec]:
    """``reference,kafka,kafka:3.9.2,tansu`` -> specs; ValueError naming what is wrong."""
    out: list[TargetSpec] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, version = item.partition(":")
        if name not in LAUNCHABLE:
            raise ValueError(f"unknown or unlaunchable target {name!r}; the matrix launches {', '.join(LAUNCHABLE)} "
                             "(a Kafka release as kafka:3.9.2)")
        if version and not TARGETS[name].takes_version:
            raise ValueError(f"{item!r}: only kafka takes a release (kafka:3.9.2)")
        if version:
            try:
                parse_version(version)
            except KafkaJarsError as exc:
                raise ValueError(str(exc)) from exc
        spec = TargetSpec(name, version or None)
        if spec.label in {s.label for s in out}:
            raise ValueError(f"{item!r} is named twice")
        out.append(spec)
    if not out:
        raise ValueError("no target given")
    return out


@attrs.frozen
class CellResult:
    """One chaos campaign of the matrix: a client against a broker."""

    client: str
    target: str  # TargetSpec.label
    outcome: str  # chaos.campaign.OUTCOMES, or "error"
    violations: dict[str, int] = attrs.field(factory=dict)  # claimed property -> anomalies found
    violated_by: dict[str, str] = attrs.field(factory=dict)  # claimed property -> broker / client / unattributed
    hazards: dict[str, int] = attrs.field(factory=dict)  # found, but not claimed by the configuration
    sends_ok: int = 0
    faults: int = 0
    seconds: float = 0.0
    error: str | None = None
    replay: str | None = None
    note: str | None = None  # why nothing was exercised (the sends, the campaign's first warning)

    def cell(self) -> str:
        """The table cell: the verdict, what was violated and by whom, what was found unclaimed."""
        if self.outcome == "error":
            return f"could not run: {self.error}"
        verdict = {"held": "held", "violated-by-client": "**client fault**",
                   "violated-by-broker": "**BROKER VIOLATION**",
                   "violated-unattributed": "**violated (unattributed)**",
                   "not-exercised": "**not exercised** (no write acknowledged)"}.get(self.outcome, self.outcome)
        parts = [verdict]
        if self.violations:
            parts.append("violated: " + ", ".join(f"{p} {n} ({self.violated_by.get(p, 'unattributed')})"
                                                  for p, n in sorted(self.violations.items())))
        allowed = ", ".join(f"{name} {n}" for name, n in sorted(self.hazards.items()) if n)
        if allowed:
            parts.append(f"not claimed, found: {allowed}")
        if self.note:
            parts.append(self.note)
        parts.append(f"{self.sends_ok} acked, {self.faults} fault(s)")
        return "; ".join(parts)


Progress = Callable[[str], None]


def run_chaos_cells(targets: Sequence[TargetSpec], clients: Sequence[str], *, seed: int, duration: float,
                    report_dir: Path, progress: Progress | None = None) -> list[CellResult]:
    """A short safe-configuration campaign per (target, client): one started cluster and
    Toxiproxy per target, a fresh topic per campaign."""
    say = progress or (lambda _text: None)
    cells: list[CellResult] = []
    for spec in (t for t in targets if t.chaos):
        base = CampaignSettings(target=spec.name, brokers=1 if ENVIRONMENTS[spec.name].single_node else 3, duration=duration,
                                seed=seed, kafka_version=spec.kafka_version)
        try:
            with CampaignSession(base) as session:
                for client in clients:
                    say(f"chaos: {client} against {spec.label}")
                    cells.append(_cell(session, base, spec, client, report_dir / f"{spec.key}-{client}"))
        except CampaignError as exc:
            done = {c.client for c in cells if c.target == spec.label}
            cells += [CellResult(client, spec.label, "error", error=str(exc)[:300]) for client in clients
                      if client not in done]
    return cells


def _cell(session: CampaignSession, base: CampaignSettings, spec: TargetSpec, client: str,
          report_dir: Path) -> CellResult:
    started = time.monotonic()
    session.use(attrs.evolve(base, workload=WorkloadSettings(client=client)))
    try:
        result = session.run(session.schedule(), report_dir)
    except CampaignError as exc:
        return CellResult(client, spec.label, "error", error=str(exc)[:300],
                          seconds=time.monotonic() - started)
    r = result.results
    note = None
    if result.outcome == "not-exercised":
        sends = r.operations.by_operation.get("send", {})
        why = r.warnings[0].strip().splitlines()[-1] if r.warnings else ""
        note = f"sends: {', '.join(f'{k} {v}' for k, v in sorted(sends.items())) or 'none'}" + (f"; {why}"[:200] if why else "")
    return CellResult(client, spec.label, result.outcome, dict(r.violations), {p: r.blame(p) for p in r.violated_by},
                      dict(r.hazards), r.operations.count("send", "ok"), r.faults.injected,
                      time.monotonic() - started, replay=r.replay, note=note)


def render_chaos_section(cells: Iterable[CellResult], targets: Sequence[str], clients: Sequence[str], *,
                         seed: int, duration: float) -> list[str]:
    """The matrix page's section on the campaigns: clients down, brokers across."""
    by: Mapping[tuple[str, str], CellResult] = {(c.client, c.target): c for c in cells}
    lines = [
        "## Clients x brokers under faults",
        "",
        f"One {duration:g} s chaos campaign per cell (`kconform chaos --client CLIENT --target TARGET "
        f"--duration {duration:g} --seed {seed}`), in the safe configuration (replication factor min(3, "
        "brokers), `min.insync.replicas` 2, `acks=all`, idempotent producers, clean elections), with faults "
        "drawn from the seed among those the broker supports. *held*: every claimed guarantee held. "
        "*client fault*: a claimed guarantee broke and the log pins it on the client (each duplicate's "
        "producer id, epoch and sequence: [anomalies.md](anomalies.md#whose-fault-is-it)), not on the broker. "
        "*not exercised*: no write was acknowledged (the client and the broker could not work together), so "
        "nothing was tested; the client checks above say why. "
        "A bounded run that holds shows no bug was provoked, not that none exists.",
        "",
        "| client | " + " | ".join(targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    for client in clients:
        row = [by[(client, t)].cell() if (client, t) in by else "-" for t in targets]
        lines.append(f"| `{client}` | " + " | ".join(row) + " |")
    return lines
