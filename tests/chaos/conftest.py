"""Fixtures for chaos tests: skip without Toxiproxy, and fail any test that leaks a process.

Every test here is checked for leftovers after it ends: no child process of the test process
may still be alive (brokers, the controller, the Toxiproxy server), whether the test passed or
failed. That is docs/architecture.md, principle 9 checked on every campaign the suite runs, not once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.campaign import CampaignResult
from harness.clients import ClientUnavailable
from launch.toxiproxy import ToxiproxyError, find_toxiproxy_binary
from tests.helpers import skip_unless

# The verdicts both campaign suites share are plain asserts: keep pytest's explanation of a failing one.
pytest.register_assert_rewrite("tests.chaos.verdicts")


def live_children(pid: int | None = None) -> list[tuple[int, str]]:
    """Living (not zombie) descendants of ``pid`` (default: this process): (pid, command)."""
    root = os.getpid() if pid is None else pid
    parents: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state == "Z":
            continue
        parents.setdefault(int(ppid), []).append(int(entry.name))
        names[int(entry.name)] = cmdline.strip()[:200]
    out: list[tuple[int, str]] = []
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append((child, names[child]))
            todo.append(child)
    return out


def require_toxiproxy() -> None:
    skip_unless(find_toxiproxy_binary, ToxiproxyError)


def require_java_client() -> None:
    """Skip, with the reason, where Java or the Kafka jars are missing."""
    from harness.clients import java_client

    try:
        java_client.runtime()
    except ClientUnavailable as exc:
        pytest.skip(f"the Java client cannot run here: {exc}")


def require_streams() -> None:
    """Skip, with the reason, where Java, Maven or Kafka Streams' jars are missing."""
    from harness.clients import java_streams

    try:
        java_streams.runtime()
    except ClientUnavailable as exc:
        pytest.skip(f"the Kafka Streams workload cannot run here: {exc}")


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Fail the test if it leaves a child process running (checked after a short grace period)."""
    before = {pid for pid, _ in live_children()}
    yield
    deadline = time.monotonic() + 5.0
    while True:
        left = [(pid, cmd) for pid, cmd in live_children() if pid not in before]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, f"processes left running: {left}"


def not_the_clients(result: CampaignResult) -> dict[str, int]:
    """Anomaly name -> how many of its anomalies the evidence does not pin on the client (the
    broker's, or unattributed). A test of a broker through a third-party client asserts on
    these: a client bug the log proves (librdkafka #4953) is a finding, not a broker failure."""
    counts: dict[str, int] = {}
    for result_ in result.report.results:
        for anomaly in result_.anomalies:
            if anomaly.attribution is None or anomaly.attribution.blame.value != "client":
                counts[anomaly.name] = counts.get(anomaly.name, 0) + 1
    return counts
