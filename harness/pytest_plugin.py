"""kconform's pytest plugin: run your own tests, and kconform's, against a chosen broker.

Registered through the ``pytest11`` entry point ``kconform`` (disable with ``-p no:kconform``).

Options:

- ``--kconform-target reference|kafka|tansu|external|...`` (default ``$KCONFORM_TARGET``, else
  ``reference``: the harness launches a reference broker);
- ``--kconform-bootstrap HOST:PORT[,...]`` for ``external`` (default ``$KCONFORM_BOOTSTRAP``);
- ``--kconform-client`` the client library the ``kconform_client`` fixture names.

Fixtures:

- ``kconform_target`` (session): the started target; everything it launched is removed at the
  end of the session. The state machines (``harness.stateful.TestLogMachine``, ...) use it too.
- ``reference_cluster``: a fresh reference broker (a cluster with
  ``@pytest.mark.kconform_cluster(brokers=3)``) per test, in the test's temporary directory.
- ``kconform_session``: a wire session (`harness.session.WireSession`) to the target.
- ``kconform_name``: a function giving names unique across runs and xdist workers.
- ``kconform_check``: run one conformance check by name against the target; a failure fails
  the test with its witness, a skip skips it.

Markers: ``slow``, ``chaos``, ``kconform_requires(*capabilities)`` (skip, with the reason,
unless the target has them), ``kconform_cluster(brokers=N, overrides={...})``.

``HYPOTHESIS_PROFILE=dev|ci|nightly`` loads that Hypothesis profile (registered here unless the
project registers its own); the state machines take their budgets from it.

Under pytest-xdist every worker starts its own target (free ports, its own temporary
directories), so nothing collides; with ``external`` they share one broker and unique names.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.session import WireSession
    from harness.targets import ReferenceTarget, Target

TARGET_ENV = "KCONFORM_TARGET"
BOOTSTRAP_ENV = "KCONFORM_BOOTSTRAP"
_TARGETS = ("reference", "kafka", "tansu", "external", "faulty-drop", "faulty-reorder", "faulty-aborted")
# harness.clients.CLIENTS, spelled out: importing it here would load kio into every pytest run
# (a test keeps the two equal).
_CLIENTS = ("confluent-kafka", "kafka-python", "aiokafka", "java")
_MARKERS = (
    "slow: long-running test (deselect with -m 'not slow')",
    "chaos: injects network or process faults",
    "kconform_requires(*capabilities): skip unless the kconform target has these capabilities",
    "kconform_cluster(brokers=1, overrides=None): how the reference_cluster fixture launches its brokers",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kconform", "kconform: the broker under test")
    group.addoption("--kconform-target", choices=_TARGETS, default=None,
                    help=f"broker to test (default ${TARGET_ENV}, else reference: launched by the harness)")
    group.addoption("--kconform-bootstrap", default=None, metavar="HOST:PORT[,...]",
                    help=f"bootstrap servers of an external target (default ${BOOTSTRAP_ENV})")
    group.addoption("--kconform-client", choices=_CLIENTS, default="confluent-kafka",
                    help="client library named by the kconform_client fixture")


def _choice(config: pytest.Config) -> tuple[str, str | None]:
    bootstrap = config.getoption("--kconform-bootstrap") or os.environ.get(BOOTSTRAP_ENV) or None
    name = config.getoption("--kconform-target") or os.environ.get(TARGET_ENV) or (
        "external" if bootstrap else "reference")
    return name, bootstrap


def pytest_configure(config: pytest.Config) -> None:
    for line in _MARKERS:
        config.addinivalue_line("markers", line)
    profile = os.environ.get("HYPOTHESIS_PROFILE")
    if profile in ("dev", "ci", "nightly"):
        from hypothesis import settings

        from harness.stateful.settings import register_profiles

        register_profiles()  # only those a conftest has not registered already
        settings.load_profile(profile)
    if config.getoption("--kconform-target") or config.getoption("--kconform-bootstrap"):
        from harness.stateful import target as machine_target

        machine_target.configure(*_choice(config))


def pytest_sessionfinish(session: pytest.Session) -> None:
    import sys

    module = sys.modules.get("harness.stateful.target")
    if module is not None:
        module.shutdown()


@pytest.fixture(scope="session")
def kconform_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The broker under test, started once per session (per xdist worker) and stopped after."""
    from harness.stateful import target as machine_target
    from harness.targets import make_target

    name, bootstrap = _choice(request.config)
    target = make_target(name, bootstrap=bootstrap)
    with target:
        machine_target.use(target)
        yield target
        machine_target.shutdown()


@pytest.fixture(autouse=True)
def _kconform_requires(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("kconform_requires")
    if marker is None:
        return
    target = request.getfixturevalue("kconform_target")
    missing = target.missing(marker.args)
    if missing:
        pytest.skip(f"the {target.name} target lacks {', '.join(missing)}")


@pytest.fixture
def reference_cluster(request: pytest.FixtureRequest) -> Iterator[ReferenceTarget]:
    """A fresh reference broker (or cluster) for this test: its processes and its temporary
    data directory are removed afterwards."""
    from harness.targets import ReferenceTarget

    marker = request.node.get_closest_marker("kconform_cluster")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    with ReferenceTarget(brokers=int(kwargs.get("brokers", 1)), overrides=kwargs.get("overrides")) as target:
        yield target


@pytest.fixture
def kconform_session(kconform_target: Target) -> Iterator[WireSession]:
    """A blocking wire session to the target (exact requests, raw answers)."""
    from harness.session import WireSession

    with WireSession(kconform_target.bootstrap) as session:
        yield session


@pytest.fixture
def kconform_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``kconform_name("topic")``: a name no other test, run or xdist worker uses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    run = uuid.uuid4().hex[:8]
    counter = iter(range(1_000_000))

    def make(kind: str = "t") -> str:
        return f"{kind}-{worker}-{run}-{next(counter)}"

    return make


@pytest.fixture
def kconform_client(request: pytest.FixtureRequest) -> str:
    """The client library chosen with ``--kconform-client``."""
    return str(request.config.getoption("--kconform-client"))


@pytest.fixture
def kconform_check(kconform_target: Target, kconform_client: str) -> Callable[[str], None]:
    """``kconform_check("produce-offsets-contiguous")`` runs one conformance check."""
    from harness.conformance import CHECKS, FAIL, SKIP
    from harness.conformance.registry import split_instance
    from harness.conformance.runner import run_check

    def run(name: str, seed: int = 0) -> None:
        base, client = split_instance(name)
        if base not in CHECKS:
            pytest.fail(f"kconform_check({name!r}): no such check; the checks are {', '.join(sorted(CHECKS))} "
                        "(`kconform conform --list` says what each checks)", pytrace=False)
        check_ = CHECKS[base]
        if client is None and check_.per_pair:
            client = f"{kconform_client}>kcat"
        client = client or (kconform_client if check_.per_client else None)
        outcome = run_check(kconform_target, check_, client, name, seed=seed, examples=10, steps=20,
                            shrink_seconds=30, report_dir=None)
        if outcome.status == SKIP:
            pytest.skip(outcome.reason or "skipped")
        if outcome.status == FAIL:
            pytest.fail(f"{name} failed: {outcome.witness}\nrule: {outcome.rule}\n"
                        f"anomalies: {outcome.anomalies}\nreproduce: {outcome.reproduce}", pytrace=False)

    return run
