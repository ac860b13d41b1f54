"""Run the conformance suite against a target and report: table, results.json, JUnit XML.

`run_suite` runs the selected checks in registry order (protocol checks, client workloads,
state machines, then checks that restart the target) and returns a :class:`SuiteResult`. With
``against`` (a differential run) it runs only the checks that can compare two targets, each
against both at once.
Every check ends as ``pass``, ``fail`` (with its witness and the Kafka rule it breaks) or
``skip`` (with the reason: the capabilities the target lacks, or a missing client library).
Nothing is silently passed (docs/architecture.md, principle 5). Each failure carries the command that reruns
exactly that check with the same seed (principle 4).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shlex
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from harness.conformance.context import CheckContext, CheckFailed, CheckSkipped
from harness.conformance.registry import CHECKS, Check, instances, split_instance
from harness.junit import Case, Failure, Suite
from harness.junit import junit_xml as write_junit
from harness.session import SessionError, UnsupportedApi, WireSession
from harness.targets.base import Target

PASS, FAIL, SKIP = "pass", "fail", "skip"
ORDER = {"protocol": 0, "client": 1, "stateful": 2, "process": 3}


@attrs.frozen
class CheckOutcome:
    """How one check (instance) ended."""

    name: str
    status: str
    kind: str
    rule: str
    summary: str
    seconds: float
    reason: str | None = None  # skip
    witness: str | None = None  # fail
    anomalies: dict[str, int] = attrs.field(factory=dict)
    details: dict[str, Any] = attrs.field(factory=dict)
    reproduce: str | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class SuiteResult:
    target: dict[str, Any]
    seed: int
    clients: tuple[str, ...]
    outcomes: tuple[CheckOutcome, ...]
    started: str
    seconds: float
    interrupted: bool = False  # stopped by Ctrl-C: the outcomes are those of the checks that finished

    @property
    def valid(self) -> bool:
        """Nothing failed (skips are reported, not failures)."""
        return all(o.status != FAIL for o in self.outcomes)

    @property
    def anomalies(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            for name, n in o.anomalies.items():
                counts[name] = counts.get(name, 0) + n
        return counts

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, SKIP: 0}
        for o in self.outcomes:
            out[o.status] += 1
        return out

    def outcome(self, name: str) -> CheckOutcome:
        for o in self.outcomes:
            if o.name == name:
                return o
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "target": self.target,
            "seed": self.seed,
            "clients": list(self.clients),
            "started": self.started,
            "seconds": round(self.seconds, 2),
            "interrupted": self.interrupted,
            "summary": self.counts(),
            "checks": {o.name: o.status for o in self.outcomes},
            "anomalies": self.anomalies,
            "results": [o.to_json() for o in self.outcomes],
        }


def select(names: Iterable[str] | None, clients: Sequence[str],
           differential: bool = False) -> list[tuple[Check, str | None, str]]:
    """The (check, client, instance name) to run; ``names`` may be base names or instances;
    ``differential``: only checks that compare two targets.

    Raises KeyError naming unknown checks, or checks a differential run cannot make.
    """
    ordered = sorted((c for c in CHECKS.values() if c.differential or not differential), key=lambda c: ORDER[c.kind])
    if differential and names is not None:
        single = [n for n in names if split_instance(n)[0] in CHECKS and not CHECKS[split_instance(n)[0]].differential]
        if single:
            raise KeyError(f"check(s) {', '.join(single)} cannot run differentially; those that can: "
                           f"{', '.join(c.name for c in ordered)}")
    everything = [(c, client, name) for c in ordered for client, name in instances(c, clients)]
    if names is None:
        return everything
    wanted = list(dict.fromkeys(names))
    known = {name for _, _, name in everything} | set(CHECKS)
    unknown = [n for n in wanted if n not in known and split_instance(n)[0] not in CHECKS]
    if unknown:
        raise KeyError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    picked = []
    for c in ordered:
        if c.name in wanted:
            picked += [(c, client, name) for client, name in instances(c, clients)]
        else:
            for n in wanted:
                base, client = split_instance(n)
                if base == c.name and client is not None:
                    picked.append((c, client, n))
    return picked


def reproduce_command(target: Target, name: str, seed: int, examples: int, steps: int,
                      against: Target | None = None) -> str:
    base, client = split_instance(name)
    args = ["kconform", "conform"]
    if against is None:
        args += ["--target", target.name]
    else:
        args += ["--differential", f"{target.name},{against.name}"]
    if not target.launched:
        args += ["--bootstrap", target.bootstrap]
    versions = [getattr(t, "version", None) for t in (target, against) if t is not None and t.takes_version]
    if versions and isinstance(versions[0], str):
        args += ["--kafka-version", versions[0]]
    if CHECKS[base].per_pair:
        args += ["--checks", name, "--seed", str(seed)]  # the instance names its writer and reader
    else:
        args += ["--checks", base, "--seed", str(seed)] + (["--client", client] if client else [])
    if CHECKS[base].kind == "stateful":
        args += ["--examples", str(examples), "--steps", str(steps)]
    return shlex.join(args)


def run_check(target: Target, check_: Check, client: str | None, name: str, *, seed: int, examples: int,
              steps: int, shrink_seconds: float, report_dir: Path | None,
              against: Target | None = None) -> CheckOutcome:
    """Run one check instance (against both targets when ``against``) and classify how it ended."""
    for t in (target,) if against is None else (target, against):
        missing = t.missing(check_.requires)
        if missing:
            return CheckOutcome(name, SKIP, check_.kind, check_.rule, check_.summary, 0.0,
                                reason=f"the {t.name} target lacks {', '.join(missing)}")
    ctx = CheckContext(target, seed=seed, check_name=name, client=client, examples=examples, steps=steps,
                       shrink_seconds=shrink_seconds, report_dir=report_dir, against=against)
    started = time.perf_counter()
    status, reason, witness = PASS, None, None
    try:
        check_.function(ctx)
    except CheckSkipped as exc:
        status, reason = SKIP, str(exc)
    except UnsupportedApi as exc:
        status, reason = SKIP, f"the target does not offer what the check needs: {exc}"
    except CheckFailed as exc:
        status, witness = FAIL, exc.witness
        ctx.anomalies.update(exc.anomalies)
    except (AssertionError, SessionError, OSError) as exc:
        status, witness = FAIL, f"{type(exc).__name__}: {exc}" if not isinstance(exc, AssertionError) else str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken target must not stop the suite
        status, witness = FAIL, f"{type(exc).__name__}: {exc}"
        ctx.details["traceback"] = traceback.format_exc(limit=8)
    finally:
        ctx.close()
    seconds = time.perf_counter() - started
    return CheckOutcome(name, status, check_.kind, check_.rule, check_.summary, round(seconds, 3), reason=reason,
                        witness=witness, anomalies=dict(ctx.anomalies), details=dict(ctx.details),
                        reproduce=reproduce_command(target, name, seed, examples, steps, against)
                        if status == FAIL else None)


REBALANCE_DELAY = "group.initial.rebalance.delay.ms"


def preflight_notes(target: Target) -> list[str]:
    """What the user should know before a run that is not a verdict: today, a broker whose
    first rebalance of every group waits (Kafka's default ``group.initial.rebalance.delay.ms``
    is 3000), which makes the group checks and ``stateful-groups`` slow, not wrong."""
    try:
        with WireSession(target.bootstrap, timeout_s=10.0) as session:
            delay = session.broker_config(REBALANCE_DELAY)
    except (SessionError, OSError):
        return []
    if delay is None or not delay.lstrip("-").isdigit() or int(delay) <= 0:
        return []
    return [f"the target has {REBALANCE_DELAY}={delay}: every new group's first rebalance waits {int(delay) / 1000:g} s, "
            "so the group checks and stateful-groups run many times slower (each example rebalances several "
            f"times); set {REBALANCE_DELAY}=0 on the broker for conformance runs (the launched targets do)"]


STILL_RUNNING_EVERY_S = 15.0


@contextlib.contextmanager
def _heartbeat(name: str, waiting: Callable[[str, float], None] | None) -> Iterator[None]:
    """Call ``waiting(name, elapsed)`` every STILL_RUNNING_EVERY_S until the block ends."""
    if waiting is None:
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(STILL_RUNNING_EVERY_S):
            waiting(name, time.monotonic() - started)

    thread = threading.Thread(target=beat, name="kconform-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


INTERRUPT = threading.Event()
"""Set (by the command line's Ctrl-C handler) to stop a suite after the running check."""


def run_suite(target: Target, *, checks: Iterable[str] | None = None, clients: Sequence[str] = ("confluent-kafka",),
              seed: int = 0, examples: int = 10, steps: int = 25, shrink_seconds: float = 30.0,
              report_dir: Path | None = None,
              progress: Callable[[CheckOutcome], None] | None = None,
              against: Target | None = None,
              waiting: Callable[[str, float], None] | None = None) -> SuiteResult:
    """Run the suite against a started target (differentially with ``against``, started too).
    ``progress`` hears of each finished check; ``waiting`` (name, seconds so far) every
    :data:`STILL_RUNNING_EVERY_S` while a check runs, so a long one is never silent."""
    plan = select(checks, clients, differential=against is not None)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    outcomes = []
    interrupted = False
    for check_, client, name in plan:
        try:
            with _heartbeat(name, waiting):
                outcome = run_check(target, check_, client, name, seed=seed, examples=examples, steps=steps,
                                    shrink_seconds=shrink_seconds, report_dir=report_dir, against=against)
        except KeyboardInterrupt:
            interrupted = True
        # A check cut short by Ctrl-C is no verdict, even when a client library turned the
        # interruption into an error the check reported as a failure.
        if interrupted or INTERRUPT.is_set():
            interrupted = True
            break
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    info = {**target.describe(), "capabilities": sorted(target.capabilities)}
    if against is not None:
        info["against"] = {**against.describe(), "capabilities": sorted(against.capabilities)}
    return SuiteResult(info, seed, tuple(clients), tuple(outcomes), started_at, time.perf_counter() - started,
                       interrupted)


# --- reports -----------------------------------------------------------------------------------

def first_line(text: str | None, width: int = 100) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def table(result: SuiteResult) -> str:
    """The per-check table: check, result, and the skip reason or failure witness."""
    width = max([len(o.name) for o in result.outcomes] + [5])
    lines = [f"{'check':<{width}}  {'result':<6}  detail"]
    for o in result.outcomes:
        detail = o.reason if o.status == SKIP else o.witness if o.status == FAIL else _pass_detail(o)
        lines.append(f"{o.name:<{width}}  {o.status.upper() if o.status == FAIL else o.status:<6}  "
                     f"{first_line(detail)}")
    return "\n".join(lines)


def _pass_detail(o: CheckOutcome) -> str:
    if "steps_per_second" in o.details:
        return f"{o.details['steps']} steps, {o.details['steps_per_second']:.0f} steps/s"
    return f"{o.seconds:.2f} s"


def failures(result: SuiteResult) -> str:
    """Every failure in full: witness, rule, anomalies, reproduction."""
    out = []
    for o in result.outcomes:
        if o.status != FAIL:
            continue
        out.append(f"\nFAIL {o.name}: {o.summary}")
        out.append(f"  rule: {o.rule}")
        out.append("  witness: " + (o.witness or "").replace("\n", "\n    "))
        if o.anomalies:
            out.append("  anomalies: " + ", ".join(f"{k}: {v}" for k, v in o.anomalies.items()))
        if o.details.get("reproduction"):
            out.append("  minimal steps (Hypothesis):\n    " + str(o.details["reproduction"]).replace("\n", "\n    "))
        out.append(f"  reproduce: {o.reproduce}")
    return "\n".join(out)


def junit_xml(result: SuiteResult) -> bytes:
    """JUnit XML: one testsuite, one testcase per check (failure / skipped elements)."""
    kind = result.target.get("name")
    cases = [Case(f"kconform.{kind}.{o.kind}", o.name, o.seconds,
                  failure=Failure("conformance", first_line(o.witness, 300), "\n".join(filter(None, [
                      o.witness, f"rule: {o.rule}", ("anomalies: " + json.dumps(o.anomalies)) if o.anomalies else None,
                      str(o.details.get("reproduction") or "") or None, f"reproduce: {o.reproduce}"])))
                  if o.status == FAIL else None,
                  skipped=(o.reason or "") if o.status == SKIP else None)
             for o in result.outcomes]
    return write_junit(Suite(f"kconform conform {kind}", result.started, result.seconds,
                             {"seed": str(result.seed), "target": json.dumps(result.target),
                              "clients": ",".join(result.clients)}, cases))


def write_reports(result: SuiteResult, report_dir: Path) -> None:
    """results.json, junit.xml and summary.txt into ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "results.json").write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    (report_dir / "junit.xml").write_bytes(junit_xml(result))
    (report_dir / "summary.txt").write_text(table(result) + "\n" + failures(result) + "\n")
