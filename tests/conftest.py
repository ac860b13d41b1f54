"""Shared fixtures: Hypothesis profiles and real broker processes on free ports."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings
from hypothesis.internal.conjecture import engine as hypothesis_engine

from harness.stateful.settings import DEFAULT_PROFILE, PROFILE_ENV, register_profiles
from launch.broker_process import BrokerProcess

# One set of profiles and one default for the tests, the pytest plugin and `kconform conform`.
register_profiles(override=True)
settings.load_profile(os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE)

# Hypothesis shrinks a failure for up to five minutes by default, as long as pytest-timeout
# gives a whole test: a state machine whose examples touch the disk (the partition log's) could
# spend all of it shrinking, and the timeout then ended the worker, so CI reported a crash
# instead of the failure. A minute of shrinking, then the (maybe not minimal) failure is shown.
hypothesis_engine.MAX_SHRINKING_SECONDS = 60


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A fresh reference broker process with its own data directory and port."""
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("broker")) as process:
        yield process



# --- a crashed xdist worker says why ------------------------------------------------------------
#
# pytest-xdist drops what its workers write to stderr, so a worker that dies (pytest-timeout's
# watchdog printing every stack and ending the process, a native abort, a fatal signal) is
# reported only as "crashed", with no reason. Each worker's stderr goes to a file instead, and
# the report of the test it crashed in carries the end of that file.

WORKER_STDERR_ENV = "KCONFORM_WORKER_STDERR_DIR"


def pytest_configure(config: pytest.Config) -> None:
    worker = getattr(config, "workerinput", None)
    if worker is None:
        if config.pluginmanager.hasplugin("xdist") and WORKER_STDERR_ENV not in os.environ:
            import tempfile

            os.environ[WORKER_STDERR_ENV] = tempfile.mkdtemp(prefix="kconform-worker-stderr-")
        return
    folder = os.environ.get(WORKER_STDERR_ENV)
    if folder:
        import faulthandler

        global _WORKER_STDERR
        _WORKER_STDERR = open(os.path.join(folder, f"{worker['workerid']}.stderr"), "a", buffering=1)
        os.dup2(_WORKER_STDERR.fileno(), 2)  # what child processes and native code write
        faulthandler.enable(file=_WORKER_STDERR)  # fatal signals: every thread's stack


_WORKER_STDERR = None
"""The file this worker's stderr goes to (None outside an xdist worker)."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    """In a worker, every thread's stack goes to the stderr file shortly before pytest-timeout
    would end the worker for a test that runs too long (its own dump goes nowhere under xdist)."""
    if _WORKER_STDERR is None:
        return (yield)
    import faulthandler

    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout") or 0)
    if limit > 2:
        faulthandler.dump_traceback_later(limit - 1, file=_WORKER_STDERR)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = os.environ.get(WORKER_STDERR_ENV)
    if folder and getattr(config, "workerinput", None) is None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        del os.environ[WORKER_STDERR_ENV]


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: object) -> None:
    folder = os.environ.get(WORKER_STDERR_ENV)
    node = getattr(report, "node", None)
    worker = getattr(node, "gateway", None)
    name = getattr(worker, "id", None)
    if not folder or name is None:
        return
    path = os.path.join(folder, f"{name}.stderr")
    try:
        with open(path, errors="replace") as f:
            tail = f.read()[-20_000:]
    except OSError:
        return
    report.sections.append(("stderr of the crashed worker (last 20,000 characters)", tail or "(empty)"))
