"""Which broker the state machines drive when they run as plain pytest (or HypoFuzz) tests.

`kconform conform` binds each machine to its target explicitly. Run as ordinary test classes
(``TestLogMachine``), the machines ask this module instead: the pytest plugin configures it
from ``--kconform-target`` / ``--kconform-bootstrap``; without the plugin the environment
variables ``KCONFORM_TARGET`` and ``KCONFORM_BOOTSTRAP`` do (HypoFuzz runs). The target is
started lazily, once per process (so each pytest-xdist worker gets its own broker, ports and
directories), and stopped by :func:`shutdown`, which the plugin calls at the end of the session
and ``atexit`` calls otherwise.
"""

from __future__ import annotations

import atexit
import os
import threading

from harness.targets import Target, make_target

TARGET_ENV = "KCONFORM_TARGET"
BOOTSTRAP_ENV = "KCONFORM_BOOTSTRAP"

_lock = threading.Lock()
_choice: tuple[str, str | None] | None = None
_target: Target | None = None
_borrowed: set[int] = set()  # targets handed in with use(): their owner stops them


def configure(name: str, bootstrap: str | None = None) -> None:
    """Choose the target (before first use; a running one of another kind is stopped)."""
    global _choice
    with _lock:
        if _target is not None and (name, bootstrap) != _choice:
            _stop_locked()
        _choice = (name, bootstrap)


def _default_choice() -> tuple[str, str | None]:
    bootstrap = os.environ.get(BOOTSTRAP_ENV) or None
    name = os.environ.get(TARGET_ENV) or ("external" if bootstrap else "reference")
    return name, bootstrap


def current() -> Target:
    """The started target for the machines of this process."""
    global _target
    with _lock:
        if _target is None:
            name, bootstrap = _choice or _default_choice()
            target = make_target(name, bootstrap=bootstrap)
            target.start()
            _target = target
        return _target


def use(target: Target) -> None:
    """Use an already started target (the caller stops it)."""
    global _target, _choice
    with _lock:
        _stop_locked()
        _target = target
        _choice = (target.name, None)
        _borrowed.add(id(target))



def _stop_locked() -> None:
    global _target
    if _target is not None and id(_target) not in _borrowed:
        _target.stop()
    if _target is not None:
        _borrowed.discard(id(_target))
    _target = None


def shutdown() -> None:
    """Stop the target this module started (no-op when none)."""
    with _lock:
        _stop_locked()


atexit.register(shutdown)
