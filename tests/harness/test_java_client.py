"""The ``java`` workload client: Apache Kafka's own Java client in a JVM, behind the same interface
as the Python libraries, against a real reference broker.

Everything here is real: the bridge program is compiled with javac, every client is a JVM
running KafkaProducer / KafkaConsumer, and the broker is a reference broker on loopback. The
tests are skipped (with the reason) only when Java, javac or Kafka's jars are missing.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.checkers import check
from harness.clients import (
    ClientError,
    ClientUnavailable,
    ConsumedRecord,
    ConsumerSettings,
    ProducerSettings,
    describe_client,
    java_client,
    make_consumer,
    make_producer,
)
from harness.clients.java_client import JavaConsumer, JavaProducer
from harness.history import HistoryBuilder
from harness.session import WireSession
from harness.targets import ReferenceTarget
from launch import kafka_jars
from specs.produce import Outcome
from tests.helpers import gone_within, pid_exists, skip_unless

pytestmark = pytest.mark.clients

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def java_runtime() -> java_client.JavaRuntime:
    """The compiled bridge (compiled now if needed); a visible skip when Java, javac or the jars are missing."""
    return skip_unless(java_client.runtime, ClientUnavailable)


@pytest.fixture(scope="module")
def target() -> Iterator[ReferenceTarget]:
    with ReferenceTarget() as t:
        yield t


def bridge_children() -> list[int]:
    """This process's child processes running the bridge program."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and java_client.MAIN_CLASS.encode() in cmdline:
            found.append(int(entry.name))
    return found


def java_producer(target: ReferenceTarget, history: HistoryBuilder | None = None,
                  settings: ProducerSettings | None = None, process: str = "p0") -> JavaProducer:
    producer = make_producer("java", target.bootstrap, settings or ProducerSettings(), history, process)
    assert isinstance(producer, JavaProducer)
    return producer


def java_consumer(target: ReferenceTarget, group: str | None, history: HistoryBuilder | None = None,
                  process: str = "c0", settings: ConsumerSettings | None = None) -> JavaConsumer:
    consumer = make_consumer("java", target.bootstrap, group, settings or ConsumerSettings(), history, process)
    assert isinstance(consumer, JavaConsumer)
    return consumer


# --- records ----------------------------------------------------------------------------------------

def test_round_trip_acknowledges_and_reads_back_in_offset_order(target: ReferenceTarget) -> None:
    """Sends to one partition are acknowledged at offsets 0, 1, 2, ... in send order; an
    assigned consumer reads the same keys and values back at those offsets; the history is valid."""
    topic = "java-rt"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic(topic, 1) == "NONE"
    history = HistoryBuilder({"client": "java"})
    producer = java_producer(target, history)
    try:
        awaited = [producer.send(topic, f"k-é-{i}", producer.next_value(), partition=0).result(30)
                   for i in range(10)]
        handles = [producer.send(topic, None if i % 2 else f"k{i}", producer.next_value(), partition=0)
                   for i in range(300)]
        assert producer.flush(30) == 0
        pipelined = [h.result(1) for h in handles]
    finally:
        producer.close()
    deliveries = awaited + pipelined
    assert all(d.outcome is Outcome.SUCCESS for d in deliveries), \
        [d for d in deliveries if d.outcome is not Outcome.SUCCESS][:3]
    assert [d.offset for d in deliveries] == list(range(310))
    assert {d.partition for d in deliveries} == {0}

    consumer = java_consumer(target, None, history)
    try:
        consumer.assign([(topic, 0)], {(topic, 0): 0})
        assert consumer.drain({(topic, 0): 310}, 30)
    finally:
        consumer.close()
    h = history.history()
    reads = [r for e in h.raw if e["f"] == "poll" and e["type"] == "ok" for r in e["value"]["records"]]
    assert [r[2] for r in reads] == list(range(310))
    assert [r[4] for r in reads] == [f"p0-{i}" for i in range(310)]
    assert [r[3] for r in reads[:10]] == [f"k-é-{i}" for i in range(10)]  # non-ASCII keys survive the bridge
    assert reads[11][3] is None and reads[12][3] == "k2"  # a null key stays null
    report = check(h)
    assert report.valid, report.anomalies


@pytest.mark.parametrize("idempotence", [True, False])
def test_idempotence_setting_reaches_the_wire(target: ReferenceTarget, idempotence: bool) -> None:
    """An idempotent Java producer writes batches with its producer id and contiguous sequence
    numbers; a non-idempotent one writes none (producer id -1)."""
    topic = f"java-idem-{idempotence}"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic(topic, 1) == "NONE"
        settings = ProducerSettings(idempotence=idempotence, acks="all" if idempotence else "1")
        producer = java_producer(target, settings=settings)
        try:
            handles = [producer.send(topic, None, producer.next_value(), partition=0) for _ in range(50)]
            assert producer.flush(30) == 0
        finally:
            producer.close()
        assert all(h.result(1).outcome is Outcome.SUCCESS for h in handles)
        fetched = s.fetch(topic, 0, 0)
    assert fetched.error == "NONE" and len(fetched.records) == 50
    ids = {b.producer_id for b in fetched.batches}
    if idempotence:
        assert len(ids) == 1 and min(ids) >= 0, ids
        expected = 0
        for batch in fetched.batches:
            assert batch.base_sequence == expected  # sequences continue batch after batch
            expected += batch.record_count
    else:
        assert ids == {-1}, ids


# --- errors -----------------------------------------------------------------------------------------

def test_send_to_a_missing_partition_fails_definitely_within_the_delivery_timeout(target: ReferenceTarget) -> None:
    """The Java producer waits (max.block.ms = the delivery timeout) for a partition that does not
    exist, then refuses the record before buffering it: a definite failure, TIMEOUT."""
    topic = "java-missing-partition"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic(topic, 1) == "NONE"
    history = HistoryBuilder()
    producer = java_producer(target, history, ProducerSettings(delivery_timeout_ms=3000, request_timeout_ms=1000))
    try:
        started = time.monotonic()
        delivery = producer.send(topic, None, producer.next_value(), partition=7).result(30)
        took = time.monotonic() - started
        ok = producer.send(topic, None, producer.next_value(), partition=0).result(30)
    finally:
        producer.close()
    assert (delivery.outcome, delivery.error, delivery.offset) == (Outcome.FAILURE, "TIMEOUT", None)
    assert 2.5 < took < 15, took
    assert ok.outcome is Outcome.SUCCESS  # the producer is still usable
    completions = [e["type"] for e in history.history().raw if e["f"] == "send" and e["type"] != "invoke"]
    assert completions == ["fail", "ok"]


def test_broker_and_client_errors_have_kafka_names(target: ReferenceTarget) -> None:
    """A broker's rejection arrives as Kafka's error name (INVALID_RECORD: a compacted topic takes
    no null key), and so does a metadata error (INVALID_TOPIC_EXCEPTION); both definite."""
    topic = "java-compacted"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic(topic, 1, configs={"cleanup.policy": "compact"}) == "NONE"
    producer = java_producer(target, settings=ProducerSettings(delivery_timeout_ms=10_000, request_timeout_ms=2000))
    try:
        no_key = producer.send(topic, None, producer.next_value()).result(30)
        keyed = producer.send(topic, "k", producer.next_value()).result(30)
        bad_topic = producer.send("not a valid topic!", None, producer.next_value()).result(30)
    finally:
        producer.close()
    assert (no_key.outcome, no_key.error, no_key.partition) == (Outcome.FAILURE, "INVALID_RECORD", 0)
    assert (keyed.outcome, keyed.offset) == (Outcome.SUCCESS, 0)
    assert (bad_topic.outcome, bad_topic.error) == (Outcome.FAILURE, "INVALID_TOPIC_EXCEPTION")


def test_consumer_errors_are_recorded_with_their_names(target: ReferenceTarget) -> None:
    """Seeking a partition the consumer does not own is the Java client's IllegalStateException:
    ClientError ILLEGAL_STATE, recorded as a failed seek."""
    history = HistoryBuilder()
    consumer = java_consumer(target, None, history)
    try:
        with pytest.raises(ClientError) as raised:
            consumer.seek("java-nowhere", 0, 5)
    finally:
        consumer.close()
    assert raised.value.error == "ILLEGAL_STATE"
    assert [(e["type"], e["value"].get("error")) for e in history.history().raw if e["f"] == "seek"] == \
        [("invoke", None), ("fail", "ILLEGAL_STATE")]


# --- groups -----------------------------------------------------------------------------------------

def test_group_rebalances_record_the_full_assignment_generation_and_member(target: ReferenceTarget) -> None:
    """Two members of a group: each rebalance is recorded with the member's full assignment, the
    group generation and the member id, and those are the broker's own (a heartbeat with them is
    accepted, one with an older generation is ILLEGAL_GENERATION)."""
    topic, group = "java-grp-rebalance", "java-g-rebalance"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic(topic, 4) == "NONE"
    history = HistoryBuilder()
    first = java_consumer(target, group, history, "c0")
    second = java_consumer(target, group, history, "c1")
    try:
        first.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(first.assignment) < 4 and time.monotonic() < deadline:
            first.poll(0.2)
        assert len(first.assignment) == 4
        second.subscribe([topic])
        while time.monotonic() < deadline:
            first.poll(0.2)
            second.poll(0.2)
            # The steady state: both members hold partitions, none twice (under the cooperative
            # protocol the first member gives partitions up in one rebalance and the second gets
            # them in the next, so an overlap is a moment between the two, not the end).
            if (first.assignment and second.assignment and not first.assignment & second.assignment
                    and len(first.assignment | second.assignment) == 4):
                break
        rebalances = [e for e in history.history().raw if e["f"] == "rebalance"]
        last = {e["process"]: e["value"] for e in rebalances}
        assert set(last) == {"c0", "c1"}, rebalances
        parts = [{tuple(tp) for tp in last[c]["partitions"]} for c in ("c0", "c1")]
        assert not parts[0] & parts[1] and parts[0] | parts[1] == {(topic, p) for p in range(4)}
        assert parts == [set(first.assignment), set(second.assignment)]
        generations = {last[c]["generation"] for c in ("c0", "c1")}
        assert len(generations) == 1  # one generation for the whole group
        generation = generations.pop()
        first_generation = rebalances[0]["value"]["generation"]
        assert isinstance(generation, int) and generation > first_generation >= 1
        members = [last[c]["member"] for c in ("c0", "c1")]
        assert all(isinstance(m, str) and m for m in members) and members[0] != members[1]
        with WireSession(target.bootstrap) as s:
            assert s.heartbeat(group, generation, members[0]) == "NONE"
            assert s.heartbeat(group, generation - 1, members[1]) == "ILLEGAL_GENERATION"
    finally:
        first.close()
        second.close()
    assert check(history.history()).valid


def test_commit_and_committed_round_trip(target: ReferenceTarget) -> None:
    """Committed offsets read back through the Java client are what the broker holds; a
    partition never committed is -1."""
    topic, group = "java-commit", "java-g-commit"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic(topic, 3) == "NONE"
        history = HistoryBuilder()
        consumer = java_consumer(target, group, history)
        try:
            consumer.assign([(topic, 0), (topic, 1), (topic, 2)])
            consumer.commit({(topic, 0): 3, (topic, 1): 7})
            got = consumer.committed([(topic, 0), (topic, 1), (topic, 2)])
            consumer.commit({(topic, 0): 4})
            again = consumer.committed([(topic, 0)])
        finally:
            consumer.close()
        broker = s.offset_fetch(group, [(topic, 0), (topic, 1), (topic, 2)])
    assert got == {(topic, 0): 3, (topic, 1): 7, (topic, 2): -1}
    assert again == {(topic, 0): 4}
    assert {tp: o for tp, (o, _, _) in broker.items()} == {(topic, 0): 4, (topic, 1): 7, (topic, 2): -1}
    raw = history.history().raw
    assert [e["type"] for e in raw if e["f"] == "commit"] == ["invoke", "ok", "invoke", "ok"]
    assert check(history.history()).valid


# --- processes --------------------------------------------------------------------------------------

def test_close_ends_every_jvm(target: ReferenceTarget) -> None:
    """After close, the producer's and the consumer's JVMs are gone (reaped, no child left)."""
    producer = java_producer(target)
    consumer = java_consumer(target, "java-g-close")
    pids = [producer.pid, consumer.pid]
    assert all(pid_exists(pid) for pid in pids)
    assert set(pids) <= set(bridge_children())
    producer.close()
    consumer.close()
    assert not any(pid_exists(pid) for pid in pids)
    assert bridge_children() == []
    producer.close()  # closing twice is harmless
    assert producer.send("java-closed", None, producer.next_value()).result(5).outcome is Outcome.FAILURE


def test_an_abandoned_client_does_not_leave_its_jvm(target: ReferenceTarget) -> None:
    """A client dropped without close is killed when it is garbage collected."""
    producer = java_producer(target)
    pid = producer.pid
    del producer
    gc.collect()
    assert gone_within(pid, 10, pid_exists)
    assert pid not in bridge_children()


def test_a_dead_jvm_fails_fast_instead_of_hanging(target: ReferenceTarget) -> None:
    """When the JVM dies, a send still in the client's buffer completes as indeterminate
    (DISCONNECTED), later sends fail at once, and consumer calls raise DISCONNECTED."""
    history = HistoryBuilder()
    producer = java_producer(target, history, ProducerSettings(linger_ms=20_000, delivery_timeout_ms=60_000,
                                                               request_timeout_ms=10_000))
    consumer = java_consumer(target, None, history)
    try:
        lingering = producer.send("java-dead", None, producer.next_value())
        assert not lingering.done  # linger.ms holds it in the client
        os.kill(producer.pid, signal.SIGKILL)
        os.kill(consumer.pid, signal.SIGKILL)
        started = time.monotonic()
        delivery = lingering.result(10)
        assert (delivery.outcome, delivery.error) == (Outcome.INDETERMINATE, "DISCONNECTED")
        after = producer.send("java-dead", None, producer.next_value()).result(5)
        assert (after.outcome, after.error) == (Outcome.FAILURE, "DISCONNECTED")
        assert producer.flush(5) == 0
        with pytest.raises(ClientError) as raised:
            consumer.poll(1.0)
        assert raised.value.error == "DISCONNECTED"
        assert time.monotonic() - started < 10
    finally:
        producer.close()
        consumer.close()
    assert bridge_children() == []


def test_the_jvm_exits_when_its_stdin_closes(java_runtime: java_client.JavaRuntime) -> None:
    """A JVM whose harness went away (stdin closed, no close command) closes its client and exits
    by itself."""
    process = subprocess.Popen(java_runtime.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert process.stdin is not None and process.stdout is not None
        # A consumer of a broker that is not there (a closed loopback port): nothing is sent.
        process.stdin.write(json.dumps({"id": 0, "op": "open", "role": "consumer",
                                        "config": {"bootstrap.servers": "127.0.0.1:9"}}).encode() + b"\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline())["re"] == 0
        process.stdin.close()
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# --- build, versions, configuration -----------------------------------------------------------------

def test_the_compiled_bridge_is_cached_and_needs_no_javac_once_built(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, java_runtime: java_client.JavaRuntime) -> None:
    """The first use compiles into the cache; later uses reuse those very classes, and need no
    javac; without the cache and without javac the client is unavailable, saying so."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(java_client.CACHE_ENV, str(cache))
    built = java_client.runtime()
    stamp = built.jar.stat().st_mtime_ns
    assert built.build.parent == cache and built.build.name.startswith(f"{built.version}-")
    version = re.search(r'version "(\d+)', java_client.find_java().version)
    assert (built.archive is not None) == (version is not None and int(version[1]) >= 13)  # JDK 13+ make one
    assert java_client.runtime().build == built.build
    assert built.jar.stat().st_mtime_ns == stamp
    # Only java on PATH (no javac, no JAVA_HOME): the cached classes are enough.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(java_runtime.java)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert java_client.runtime().build == built.build
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == [built.build.name]
    monkeypatch.setenv(java_client.CACHE_ENV, str(tmp_path / "empty"))
    with pytest.raises(ClientUnavailable, match="javac"):
        java_client.runtime()


def test_parallel_first_uses_compile_once(tmp_path: Path) -> None:
    """Two processes (pytest workers) wanting the bridge at once both get the same complete
    build, and no partial directory is left."""
    env = {**os.environ, java_client.CACHE_ENV: str(tmp_path)}
    code = "from harness.clients.java_client import runtime; print(runtime().build)"
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    entries = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert entries == [Path(paths.pop()).name]


def test_describe_client_names_the_library_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each client's library and version, the Java one from its jar's name, without a JVM."""
    version = java_client.client_version()
    assert describe_client("java") == f"java (Apache Kafka kafka-clients {version})"
    monkeypatch.setenv(java_client.VERSION_ENV, "3.9.2")
    expected = "3.9.2" if kafka_jars.is_installed("3.9.2") else "3.9.2, not fetched yet"
    assert describe_client("java") == f"java (Apache Kafka kafka-clients {expected})"
    assert describe_client("confluent-kafka").startswith("confluent-kafka 2.") and "(librdkafka 2." in \
        describe_client("confluent-kafka")
    assert describe_client("kafka-python").startswith("kafka-python ")
    assert describe_client("aiokafka").startswith("aiokafka ")
    with pytest.raises(ValueError):
        describe_client("rdkafka-go")
    assert bridge_children() == []


def test_kafka_3_clients_work_too(target: ReferenceTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    """$KCONFORM_JAVA_CLIENT_VERSION picks the kafka-clients release: 3.9.2 (reload4j logging)
    round-trips a record like 4.x."""
    if not kafka_jars.is_installed("3.9.2") and not shutil.which("mvn"):
        pytest.skip("Kafka 3.9.2's jars are not in the cache and Maven is not installed to fetch them")
    monkeypatch.setenv(java_client.VERSION_ENV, "3.9.2")
    topic = "java-kafka3"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic(topic, 1) == "NONE"
    producer = java_producer(target)
    try:
        assert producer._bridge.kafka_version == "3.9.2"
        delivery = producer.send(topic, "k", producer.next_value(), partition=0).result(30)
    finally:
        producer.close()
    assert (delivery.outcome, delivery.offset) == (Outcome.SUCCESS, 0)
    consumer = java_consumer(target, None)
    try:
        consumer.assign([(topic, 0)], {(topic, 0): 0})
        records: list[ConsumedRecord] = []
        deadline = time.monotonic() + 30
        while not records and time.monotonic() < deadline:
            records = consumer.poll(0.5)
    finally:
        consumer.close()
    assert [(r.offset, r.key, r.value) for r in records] == [(0, b"k", b"p0-0")]
    # reload4j found our configuration (it complains on stderr when it has none).
    assert not any(line.startswith("log4j:") for line in consumer._bridge.stderr_tail)


def test_producer_timeouts_are_fitted_to_what_the_java_producer_accepts(target: ReferenceTarget) -> None:
    """The Java producer refuses delivery.timeout.ms < linger.ms + request.timeout.ms: the request
    timeout is cut (with a warning when it was asked for), and such a producer works."""
    default = java_client.producer_config("h:1", ProducerSettings(delivery_timeout_ms=30_000, linger_ms=5))
    assert (default["request.timeout.ms"], default["max.block.ms"]) == ("29995", "30000")
    settings = ProducerSettings(delivery_timeout_ms=2000, linger_ms=5, request_timeout_ms=5000)
    with pytest.warns(UserWarning, match="request.timeout.ms 5000 cut to 1995"):
        assert java_client.producer_config("h:1", settings)["request.timeout.ms"] == "1995"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic("java-fitted", 1) == "NONE"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        producer = java_producer(target, settings=settings)
    try:
        assert producer.send("java-fitted", None, producer.next_value()).result(30).outcome is Outcome.SUCCESS
    finally:
        producer.close()
