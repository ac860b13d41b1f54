"""Run a state machine against a target for a budget and say what happened.

`run_machine` binds a machine class to a started target, seeds Hypothesis (so the run can be
replayed with the same seed, DESIGN principle 4), runs it for ``examples`` examples of
``steps`` steps, and returns a :class:`MachineRun`: steps executed and their rate, and on
failure the message, Hypothesis's minimal reproduction (the ``state = ...`` program it prints),
whether the failure did not replay (*flaky*, reported with its seed, never hidden: DESIGN
principle 11), and the anomalies the offline checkers find in the failing example's history.

Shrinking replays examples over real I/O; it is capped at ``shrink_seconds``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import attrs
import hypothesis
from hypothesis.errors import Flaky
from hypothesis.internal.conjecture import engine as hypothesis_engine
from hypothesis.reporting import with_reporter
from hypothesis.stateful import run_state_machine_as_test

from harness.checkers import check
from harness.stateful.base import KafkaMachine
from harness.stateful.settings import machine_settings
from harness.targets.base import Target


@attrs.frozen
class MachineRun:
    """The outcome of running one machine for a budget."""

    machine: str
    seed: int
    examples: int
    steps_per_example: int
    steps: int
    seconds: float
    passed: bool
    flaky: bool = False
    failure: str | None = None
    reproduction: str | None = None
    anomalies: dict[str, int] = attrs.field(factory=dict)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def bind(machine: type[KafkaMachine], target: Target) -> type[KafkaMachine]:
    """A subclass of ``machine`` that drives ``target`` (same name, so printouts read well)."""
    return type(machine.__name__, (machine,), {
        "bootstrap": target.bootstrap, "capabilities": target.capabilities, "target_name": target.name,
        "steps_run": 0, "last_history": None, "__module__": machine.__module__,
        "__qualname__": machine.__qualname__,
    })


@contextlib.contextmanager
def _shrink_limit(seconds: float) -> Iterator[None]:
    saved = hypothesis_engine.MAX_SHRINKING_SECONDS
    hypothesis_engine.MAX_SHRINKING_SECONDS = int(seconds)
    try:
        yield
    finally:
        hypothesis_engine.MAX_SHRINKING_SECONDS = saved


def run_machine(machine: type[KafkaMachine], target: Target, *, seed: int, examples: int, steps: int,
                shrink_seconds: float = 60.0) -> MachineRun:
    """Run ``machine`` against the started ``target``; never raises for a failing target."""
    bound = hypothesis.seed(seed)(bind(machine, target))
    lines: list[str] = []
    started = time.perf_counter()
    failure: str | None = None
    flaky = False
    try:
        with _shrink_limit(shrink_seconds), with_reporter(lambda text: lines.append(str(text))):
            run_state_machine_as_test(bound, settings=machine_settings(examples, steps, database=False))
    except Flaky as exc:
        flaky = True
        first = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) and exc.exceptions else None
        seen = f"; first seen: {_message(first)}" if first is not None else ""
        failure = f"flaky: the failure did not replay with the same steps ({_first_line(exc)}){seen}"
        lines.extend(_notes(exc) + (_notes(first) if first is not None else []))
    except Exception as exc:  # noqa: BLE001 - any failure of the target is a result, not a crash
        first = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) and exc.exceptions else exc
        failure = _message(first)
        lines.extend(_notes(first) or _notes(exc))
    seconds = time.perf_counter() - started
    steps_run = bound.steps_run
    anomalies: dict[str, int] = {}
    if failure is not None and bound.last_history is not None:
        anomalies = dict(check(bound.last_history.history()).anomalies)
    reproduction = "\n".join(line for line in lines if line.strip()) or None
    return MachineRun(machine.__name__, seed, examples, steps, steps_run, seconds, failure is None,
                      flaky, failure, reproduction, anomalies)


def _notes(exc: BaseException) -> list[str]:
    """Hypothesis's reproduction: the ``state = ...`` steps it attaches to the exception."""
    return [str(n) for n in getattr(exc, "__notes__", ())]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _message(exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return str(exc) or "assertion failed"
    return f"{type(exc).__name__}: {exc}"
