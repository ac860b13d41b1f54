"""The pytest plugin under pytest-xdist: every worker gets its own broker, ports and directories,
capability markers skip with a reason, and nothing is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import pid_exists

pytest_plugins = ["pytester"]

TESTS = '''
import json, os, pathlib
import pytest

OUT = pathlib.Path(os.environ["KCONFORM_PLUGIN_OUT"])

def record(kind, target):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    proc = getattr(target, "process", None)
    data = {"bootstrap": target.bootstrap, "pid": proc.pid if proc else None,
            "dir": str(proc.data_dir) if proc else None}
    (OUT / f"{kind}-{worker}-{os.getpid()}.json").write_text(json.dumps(data))

@pytest.mark.parametrize("n", range(4))
def test_target(kconform_target, kconform_session, kconform_name, n):
    assert kconform_session.create_topic(kconform_name("t"), 2) == "NONE"
    record("target", kconform_target)

def test_names_are_unique(kconform_name):
    assert kconform_name("t") != kconform_name("t")

@pytest.mark.kconform_requires("replication")
def test_needs_a_cluster(kconform_target):
    raise AssertionError("must be skipped")

def test_a_conformance_check(kconform_check):
    kconform_check("produce-offsets-contiguous")

def test_reference_cluster(reference_cluster):
    record("cluster", reference_cluster)

@pytest.mark.slow
def test_marked_slow():
    pass
'''


def test_plugin_under_xdist(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers each launch their own reference broker; markers and fixtures work; all is removed."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("KCONFORM_PLUGIN_OUT", str(out))
    monkeypatch.delenv("KCONFORM_TARGET", raising=False)
    monkeypatch.delenv("KCONFORM_BOOTSTRAP", raising=False)
    pytester.makepyfile(test_kconform=TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-rs", "--strict-markers",
                                           "--kconform-target", "reference")
    result.assert_outcomes(passed=8, skipped=1)
    result.stdout.fnmatch_lines(["*the reference target lacks replication*"])
    records = {p.stem: json.loads(p.read_text()) for p in out.iterdir()}
    # One session target per worker process (rewritten by each test on that worker), one broker
    # per reference_cluster test: no two share a port.
    bootstraps = [r["bootstrap"] for r in records.values()]
    assert len(bootstraps) == len(set(bootstraps)) >= 2, records
    for r in records.values():
        assert r["pid"] is not None and not pid_exists(r["pid"]), r
        assert not Path(r["dir"]).exists(), r


def test_plugin_options_are_listed(pytester: pytest.Pytester) -> None:
    """--help documents the kconform options."""
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--kconform-target*", "*--kconform-bootstrap*"])


def test_the_plugin_offers_every_workload_client() -> None:
    """--kconform-client accepts exactly the clients harness.clients can build."""
    from harness import pytest_plugin
    from harness.clients import CLIENTS

    assert pytest_plugin._CLIENTS == CLIENTS


def test_an_unknown_check_name_is_a_clear_failure(pytester: pytest.Pytester) -> None:
    """kconform_check with a name that is no check fails the test naming the known checks, not
    with a bare KeyError."""
    pytester.makepyfile(test_typo="def test_typo(kconform_check):\n    kconform_check('no-such-check')\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--kconform-target", "reference")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*kconform_check('no-such-check'): no such check; the checks are *api-versions*"])
    result.stdout.no_fnmatch_line("*KeyError*")
