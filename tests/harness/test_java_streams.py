"""The Kafka Streams application's JVM (harness/clients/java_streams.py) against a real
reference broker: it processes every input record into an output naming it, records its
assignment, and leaves no process or directory behind, whether closed or killed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.clients import java_streams
from harness.clients.base import ClientUnavailable
from harness.clients.java_client import JavaRuntime, find_java
from harness.history import HistoryBuilder
from harness.session import WireSession, make_batch
from harness.targets import ReferenceTarget
from launch import kafka_jars

pytestmark = [pytest.mark.slow, pytest.mark.clients]


@pytest.fixture(scope="module")
def streams_runtime() -> JavaRuntime:
    try:
        return java_streams.runtime()
    except ClientUnavailable as exc:
        pytest.skip(f"the Kafka Streams workload cannot run here: {exc}")


def test_without_maven_and_jars_the_workload_is_unavailable_saying_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        find_java()  # found once (cached) before `which` stops finding anything
    except ClientUnavailable as exc:
        pytest.skip(f"no Java here: {exc}")
    monkeypatch.setenv(kafka_jars.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr("launch.kafka_jars.shutil.which", lambda name: None)
    with pytest.raises(ClientUnavailable, match="Kafka Streams 4.4.0's jars: Maven"):
        java_streams.runtime("4.4.0")


def test_an_instance_tags_each_input_with_its_position_and_count_and_cleans_up(
        reference_cluster: ReferenceTarget, streams_runtime: JavaRuntime) -> None:
    with WireSession(reference_cluster.bootstrap) as session:
        assert session.create_topic("in", 2, 1, {}) == "NONE"
        assert session.create_topic("out", 2, 1, {}) == "NONE"
        for i in range(6):
            produced = session.produce("in", i % 2, make_batch([f"v{i}".encode()]))
            assert produced is not None and produced.error == "NONE"
    history = HistoryBuilder()
    settings = java_streams.StreamsSettings("app-test", reference_cluster.bootstrap, "in", "out")
    instance = java_streams.StreamsInstance(streams_runtime, settings, "s0", history)
    try:
        assert instance.wait_running(90), instance.why()
        outputs: set[str] = set()
        with WireSession(reference_cluster.bootstrap) as session:
            # The outputs become readable when the instance commits (every commit.interval.ms),
            # later on a busy machine: read until all are there, for at most a minute.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                outputs = {(r.value or b"").decode() for p in range(2)
                           for r in session.fetch("out", p, 0, isolation=1).records}
                if len(outputs) == 6:
                    break
                time.sleep(0.2)
    finally:
        directory, pid = instance.directory, instance.pid
        instance.close()
    assert outputs == {"v0@0:0#1", "v2@0:1#2", "v4@0:2#3", "v1@1:0#1", "v3@1:1#2", "v5@1:2#3"}
    assert [e["value"]["partitions"] for e in history.history().raw] == [[["in", 0], ["in", 1]], []]
    assert {"event": "stopped"} in instance.events
    assert not directory.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_killed_instance_is_gone_with_its_directory(
        reference_cluster: ReferenceTarget, streams_runtime: JavaRuntime) -> None:
    with WireSession(reference_cluster.bootstrap) as session:
        assert session.create_topic("in", 1, 1, {}) == "NONE"
    settings = java_streams.StreamsSettings("app-kill", reference_cluster.bootstrap, "in", "out")
    instance = java_streams.StreamsInstance(streams_runtime, settings, "s0", HistoryBuilder())
    pid = instance.pid
    instance.kill()
    assert not instance.alive and not instance.directory.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_late_instance_takes_an_active_task_even_far_behind_the_changelog(
        reference_cluster: ReferenceTarget, streams_runtime: JavaRuntime) -> None:
    """KIP-441: by default a client whose copy of a store lags its changelog by more than
    acceptable.recovery.lag (10,000) gets only a warm-up replica, and active tasks after a
    probing rebalance minutes later; a replacement started late in a campaign then processes
    nothing. The workload's settings count every instance as caught up: the late instance
    runs with one of the two tasks at the next rebalance, 12,000 records behind."""
    per_partition = 12_000
    with WireSession(reference_cluster.bootstrap) as session:
        assert session.create_topic("in", 2, 1, {}) == "NONE"
        assert session.create_topic("out", 2, 1, {}) == "NONE"
        for p in range(2):
            for start in range(0, per_partition, 1000):
                produced = session.produce("in", p, make_batch([f"v{i}".encode() for i in range(start, start + 1000)]))
                assert produced is not None and produced.error == "NONE"
    settings = java_streams.StreamsSettings("app-late", reference_cluster.bootstrap, "in", "out")
    first = java_streams.StreamsInstance(streams_runtime, settings, "s0", HistoryBuilder())
    late: java_streams.StreamsInstance | None = None
    try:
        assert first.wait_running(90), first.why()
        # s0 processes every input (its changelog then holds 12,000 updates a partition).
        deadline = time.monotonic() + 90
        committed: dict[tuple[str, int], tuple[int, str | None, str]] = {}
        while time.monotonic() < deadline:
            with WireSession(reference_cluster.bootstrap) as session:
                committed = session.offset_fetch("app-late", [("in", 0), ("in", 1)])
            if all(offset == per_partition for offset, _m, _e in committed.values()):
                break
            time.sleep(0.5)
        assert all(offset == per_partition for offset, _m, _e in committed.values()), committed
        late = java_streams.StreamsInstance(streams_runtime, settings, "s1", HistoryBuilder())
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (first.processing() and late.processing()):
            time.sleep(0.2)
        owned = (first.processing(), late.processing())
        assert owned[0] and owned[1] and sorted(owned[0] + owned[1]) == [["in", 0], ["in", 1]], (owned, late.why())
    finally:
        for instance in (first, late):
            if instance is not None:
                instance.close()
    assert first.processing() is None  # closed: processing nothing
