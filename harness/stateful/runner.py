"""Run a state machine against a target for a budget and say what happened.

`run_machine` binds a machine class to a started target, seeds Hypothesis (so the run can be
replayed with the same seed: docs/architecture.md, principle 4), runs it for ``examples``
examples of ``steps`` steps, and returns a :class:`MachineRun`: steps executed and their rate, and on
failure the message, Hypothesis's minimal reproduction (the ``state = ...`` program it prints),
whether the failure did not replay (*flaky*, reported with its seed, never hidden:
docs/architecture.md, principle 11), and the anomalies the offline checkers find in the failing example's history.

The topics a run created are deleted when it is over (a sweep runs many against one broker).

Shrinking replays examples over real I/O, hundreds of them, so each must be cheap and few
must be wasted: every example of a run shares one wire session and a topic pool
(`harness.stateful.base`), and Hypothesis stops at the first failure and shrinks that one
(``report_multiple_bugs=False``: the runner reports one failure, and hunting for others
doubled the examples run). Shrinking is capped at ``shrink_seconds``; when the cap stops it,
the report says so, instead of Hypothesis's own warning, which always claims "five minutes".

With ``against`` (a second started target), every request of the drawn steps goes to both
targets through a :class:`~harness.stateful.differential.MirroredSession`, the machine checks
the first target's answers against the model, and the first answer on which the two targets
differ fails the example with both answers (:class:`~harness.stateful.differential.Divergence`).
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
from harness.session import WireSession
from harness.stateful.base import KafkaMachine
from harness.stateful.differential import MirroredSession
from harness.stateful.settings import machine_settings
from harness.stateful.topics import TopicPool
from harness.targets.base import Target

SESSION_TIMEOUT_S = 20.0
HYPOTHESIS_SLOW_SHRINK = "WARNING: Hypothesis has spent more than five minutes"


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
    shrink_stopped: bool = False  # the shrink_seconds cap stopped shrinking: the steps may not be minimal
    topics_created: int = 0
    topics_left: int = 0  # topics the run could not delete when it was over

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def bind(machine: type[KafkaMachine], target: Target, session: WireSession | None = None,
         capabilities: frozenset[str] | None = None) -> type[KafkaMachine]:
    """A subclass of ``machine`` that drives ``target`` (same name, so printouts read well),
    every example through ``session`` when given, with topics from a pool of its own."""
    return type(machine.__name__, (machine,), {
        "bootstrap": target.bootstrap,
        "capabilities": target.capabilities if capabilities is None else capabilities,
        "target_name": target.name, "steps_run": 0, "last_history": None, "shared_session": session,
        "topic_pool": TopicPool(), "__module__": machine.__module__, "__qualname__": machine.__qualname__,
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
                shrink_seconds: float = 60.0, against: Target | None = None) -> MachineRun:
    """Run ``machine`` against the started ``target`` (and, differentially, ``against``);
    never raises for a failing target."""
    session: WireSession
    capabilities = None
    if against is None:
        session = WireSession(target.bootstrap, timeout_s=SESSION_TIMEOUT_S, client_id=f"kconform-{machine.__name__}")
    else:
        session = MirroredSession(target, against, timeout_s=SESSION_TIMEOUT_S,
                                  client_id=f"kconform-{machine.__name__}")
        capabilities = target.capabilities & against.capabilities
    bound = hypothesis.seed(seed)(bind(machine, target, session, capabilities))
    lines: list[str] = []
    started = time.perf_counter()
    failure: str | None = None
    flaky = False
    settings = hypothesis.settings(machine_settings(examples, steps, database=False), report_multiple_bugs=False)
    try:
        with _shrink_limit(shrink_seconds), with_reporter(lambda text: lines.append(str(text))):
            run_state_machine_as_test(bound, settings=settings)
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
    finally:
        pool = bound.topic_pool
        left = pool.delete_all(session) if pool is not None else 0
        session.close()
    seconds = time.perf_counter() - started
    steps_run = bound.steps_run
    anomalies: dict[str, int] = {}
    if failure is not None and bound.last_history is not None:
        anomalies = dict(check(bound.last_history.history()).anomalies)
    stopped = any(line.startswith(HYPOTHESIS_SLOW_SHRINK) for line in lines)
    if stopped:
        # Hypothesis's warning names five minutes whatever the cap is, and asks for a bug report.
        lines = [f"shrinking stopped after its {shrink_seconds:.0f} s budget (--shrink-seconds); the steps "
                 "below fail but may not be the fewest that do"] + \
                [line for line in lines if not line.startswith(HYPOTHESIS_SLOW_SHRINK)]
    reproduction = "\n".join(line for line in lines if line.strip()) or None
    return MachineRun(machine.__name__, seed, examples, steps, steps_run, seconds, failure is None,
                      flaky, failure, reproduction, anomalies, stopped, pool.created if pool is not None else 0, left)


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
