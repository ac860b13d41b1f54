"""Consumer groups with real clients (confluent-kafka, kafka-python, aiokafka) against a broker
process: the seed's scenarios, assignment strategies, offset reset, durability and admin tools.

Timeouts are shortened for speed (session 3 s, heartbeats every 300 ms, initial rebalance delay
300 ms); the broker's view of the group (DescribeGroups) is checked alongside the clients'.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from launch.broker_process import BrokerProcess
from reference_broker.groups.testing import decode_assignment
from tests.kafka_helpers import create_topic, produce, wire

pytestmark = pytest.mark.clients

SESSION_MS = 3000
HEARTBEAT_MS = 300
SETTINGS = {"group.initial.rebalance.delay.ms": "300", "group.min.session.timeout.ms": "1000"}
TIMEOUT_S = 40.0
Owned = dict[str, set[tuple[str, int]]]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    with BrokerProcess(overrides=SETTINGS, data_dir=tmp_path) as process:
        yield process


def until(condition: Callable[[], Any], what: str, timeout_s: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def describe(bootstrap: str, group: str) -> tuple[str, Owned]:
    """The broker's view: group state and each member's assignment, by client id."""
    response = wire(bootstrap, 15, 5, {"groups": [group], "include_authorized_operations": False})
    described = response.groups[0]
    return described.group_state, {
        m.client_id: decode_assignment(m.member_assignment) for m in described.members
    }


def confluent_consumer(bootstrap: str, group: str, client_id: str, **extra: Any) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "client.id": client_id,
        "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": HEARTBEAT_MS,
        "auto.offset.reset": "earliest", "enable.auto.commit": False, **extra,
    })


def subscribed(bootstrap: str, topic: str, group: str, client_id: str, **extra: Any) -> Consumer:
    """A confluent consumer of ``group`` (as :func:`confluent_consumer`) subscribed to ``topic``."""
    consumer = confluent_consumer(bootstrap, group, client_id, **extra)
    consumer.subscribe([topic])
    return consumer


class Pump:
    """Polls several confluent consumers in turn, keeping what each received."""

    def __init__(self, consumers: dict[str, Consumer]) -> None:
        self.consumers = consumers
        self.received: dict[str, list[Message]] = {name: [] for name in consumers}

    def poll(self) -> None:
        for name, consumer in self.consumers.items():
            for message in consumer.consume(200, 0.02):
                if message.error() is None:
                    self.received[name].append(message)
                elif message.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"{name}: {message.error()}")

    def owned(self) -> Owned:
        return {name: {(tp.topic, tp.partition) for tp in c.assignment()}
                for name, c in self.consumers.items()}

    def close(self, name: str) -> None:
        self.consumers.pop(name).close()

    def close_all(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()
        self.consumers.clear()


def settled(pump: Pump, bootstrap: str, group: str, members: int) -> Owned | None:
    """The broker's assignment once the group is Stable with ``members`` members, every
    partition owned once, and the in-process clients agree with the broker."""
    pump.poll()
    state, owned = describe(bootstrap, group)
    if state != "Stable" or len(owned) != members:
        return None
    everything = [tp for tps in owned.values() for tp in tps]
    if len(everything) != len(set(everything)):
        raise AssertionError(f"a partition is owned twice in one generation: {owned}")
    clients = pump.owned()
    if any(clients[name] != owned.get(name) for name in clients):
        return None
    return owned


def produce_everywhere(bootstrap: str, topic: str, partitions: int, per_partition: int,
                       tag: str) -> None:
    for partition in range(partitions):
        produce(bootstrap, topic, [(None, f"{tag}-{partition}-{i}".encode())
                                   for i in range(per_partition)], partition=partition)


# --- the seed: an extra consumer sits idle, and takes over ---------------------------------------


def test_four_consumers_on_three_partitions_one_idles_and_takes_over_when_an_owner_leaves(
    broker: BrokerProcess,
) -> None:
    """3 partitions, 4 consumers in one group: three own a partition each and read only it, the
    fourth idles; when an owner closes (LeaveGroup) the idle one takes a partition over."""
    bs = broker.bootstrap
    create_topic(bs, "seed-idle", 3)
    pump = Pump({f"c{i}": confluent_consumer(bs, "seed-idle-g", f"c{i}") for i in range(4)})
    try:
        for consumer in pump.consumers.values():
            consumer.subscribe(["seed-idle"])
        owned = until(lambda: settled(pump, bs, "seed-idle-g", 4), "4 members, stable")
        assert sorted(len(tps) for tps in owned.values()) == [0, 1, 1, 1]
        assert owned["c3"] == set(), "range gives the last member (by member id) nothing"
        produce_everywhere(bs, "seed-idle", 3, 5, "first")
        until(lambda: (pump.poll(), sum(map(len, pump.received.values())) == 15)[1], "15 records")
        for name, messages in pump.received.items():
            assert {(m.topic(), m.partition()) for m in messages} == owned[name]

        pump.close("c0")
        owned = until(lambda: settled(pump, bs, "seed-idle-g", 3), "3 members after c0 left")
        assert len(owned["c3"]) == 1, owned
        produce_everywhere(bs, "seed-idle", 3, 5, "second")
        until(lambda: (pump.poll(), any(m.value().startswith(b"second")
                                        for m in pump.received["c3"]))[1],
              "the former idle consumer reading its partition")
    finally:
        pump.close_all()


SUBPROCESS_CONSUMER = """
import json, sys
from confluent_kafka import Consumer
config, topic = json.loads(sys.argv[1]), sys.argv[2]
consumer = Consumer(config)
consumer.subscribe([topic])
print("started", flush=True)
while True:
    consumer.poll(0.2)
"""


@pytest.mark.parametrize("failure", ["killed", "frozen"])
def test_an_owner_that_dies_or_stops_heartbeating_is_replaced_after_the_session_timeout(
    broker: BrokerProcess, failure: str
) -> None:
    """An owner killed (SIGKILL) or frozen (SIGSTOP) sends no LeaveGroup: it stays in the group
    until session.timeout.ms passes without a heartbeat, then the idle consumer takes over."""
    bs = broker.bootstrap
    create_topic(bs, "seed-dies", 3)
    config = {"bootstrap.servers": bs, "group.id": "seed-dies-g", "client.id": "c0",
              "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": HEARTBEAT_MS}
    owner = subprocess.Popen(
        [sys.executable, "-c", SUBPROCESS_CONSUMER, json.dumps(config), "seed-dies"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    pump = Pump({f"c{i}": confluent_consumer(bs, "seed-dies-g", f"c{i}") for i in (1, 2, 3)})
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "started"
        for consumer in pump.consumers.values():
            consumer.subscribe(["seed-dies"])
        owned = until(lambda: settled(pump, bs, "seed-dies-g", 4), "4 members, stable")
        assert len(owned["c0"]) == 1 and owned["c3"] == set()

        os.kill(owner.pid, signal.SIGKILL if failure == "killed" else signal.SIGSTOP)
        failed_at = time.monotonic()
        # Its last heartbeat was at most a heartbeat interval (or a slow scheduler) ago, so for
        # half a session it must certainly still be a member.
        while time.monotonic() - failed_at < SESSION_MS / 2000:
            pump.poll()
            state, owned_now = describe(bs, "seed-dies-g")
            assert "c0" in owned_now, "the silent member was removed before its session timeout"
        owned = until(lambda: settled(pump, bs, "seed-dies-g", 3), "3 members after c0 went silent")
        elapsed = time.monotonic() - failed_at
        assert SESSION_MS / 2000 <= elapsed <= SESSION_MS / 1000 + 10
        assert len(owned["c3"]) == 1 and "c0" not in owned
    finally:
        pump.close_all()
        os.kill(owner.pid, signal.SIGCONT)
        owner.kill()
        owner.wait()


# --- separate groups, and client ids within one group ---------------------------------------------


def _kafka_python_read_all(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             client_id="kp-reader", auto_offset_reset="earliest",
                             session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                             enable_auto_commit=False)
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(values) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                values += [r.value for r in records]
    finally:
        consumer.close()
    return values


def _aiokafka_read(bootstrap: str, topic: str, group: str, count: int, reset: str = "earliest",
                   client_id: str = "aio-reader") -> list[Any]:
    """Up to ``count`` records (aiokafka's ConsumerRecord) read by a member of ``group`` subscribed
    to ``topic``, within TIMEOUT_S; nothing is committed."""
    from aiokafka import AIOKafkaConsumer

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                    client_id=client_id, auto_offset_reset=reset,
                                    session_timeout_ms=SESSION_MS,
                                    heartbeat_interval_ms=HEARTBEAT_MS, enable_auto_commit=False)
        await consumer.start()
        got: list[Any] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + TIMEOUT_S
            while len(got) < count and loop.time() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    got += records
        finally:
            await consumer.stop()
        return got

    return asyncio.run(run())


def _aiokafka_read_all(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    return [r.value for r in _aiokafka_read(bootstrap, topic, group, count)]


def _confluent_read_all(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    consumer = subscribed(bootstrap, topic, group, "ck-reader")
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(values) < count and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(100, 0.2) if m.error() is None]
    finally:
        consumer.close()
    return values


def test_consumers_in_separate_groups_each_receive_every_record(broker: BrokerProcess) -> None:
    """A confluent-kafka, a kafka-python and an aiokafka consumer, each in its own group, each
    read all 30 records of a 3-partition topic (a group is a separate subscription)."""
    bs = broker.bootstrap
    create_topic(bs, "everyone", 3)
    produce_everywhere(bs, "everyone", 3, 10, "rec")
    expected = sorted(f"rec-{p}-{i}".encode() for p in range(3) for i in range(10))
    readers = {"confluent": _confluent_read_all, "kafka-python": _kafka_python_read_all,
               "aiokafka": _aiokafka_read_all}
    for name, read in readers.items():
        assert sorted(read(bs, "everyone", f"group-{name}", 30)) == expected, name
    state, _ = describe(bs, "group-aiokafka")
    assert state == "Empty"  # the reader left when it stopped


class KafkaPythonMember:
    """A kafka-python consumer polling in its own thread, as an application would.

    One consumer per thread with a long poll timeout: kafka-python 3.0.12 re-sends JoinGroup
    when a join completes between two poll() calls (join_group_async starts a new task when
    the previous one ``is_done``), and a leader's repeated JoinGroup makes every rebalance start
    another one. Polling several consumers in turn with short timeouts hits that constantly.
    """

    def __init__(self, **config: Any) -> None:
        import threading

        self.config = config
        self.records: list[Any] = []
        self.assignment: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(TIMEOUT_S), "kafka-python consumer did not start"

    def _run(self) -> None:
        from kafka import KafkaConsumer

        try:
            topics = self.config.pop("topics")
            consumer = KafkaConsumer(*topics, **self.config)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=1000).values():
                    self.records += records
                self.assignment = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        except BaseException as exc:
            self._error = exc
        finally:
            consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_S)
        if self._error is not None:
            raise self._error


def kafka_python_member(bootstrap: str, group: str, client_id: str, topics: list[str],
                        **extra: Any) -> KafkaPythonMember:
    return KafkaPythonMember(
        topics=topics, bootstrap_servers=bootstrap, group_id=group, client_id=client_id,
        auto_offset_reset="earliest", session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS, enable_auto_commit=False, **extra,
    )


def test_consumers_with_different_client_ids_in_one_group_split_the_partitions(
    broker: BrokerProcess,
) -> None:
    """Two kafka-python consumers with different client.id in one group divide a 4-partition
    topic: disjoint assignments covering all partitions, each record read exactly once."""
    bs = broker.bootstrap
    create_topic(bs, "split", 4)
    members = {name: kafka_python_member(bs, "split-g", name, ["split"])
               for name in ("alpha", "beta")}

    def split() -> Owned | None:
        state, owned = describe(bs, "split-g")
        mine = {name: member.assignment for name, member in members.items()}
        if state == "Stable" and len(owned) == 2 and all(mine[n] == owned.get(n) for n in mine):
            return owned
        return None

    try:
        owned = until(split, "two members sharing the topic")
        assert owned["alpha"] and owned["beta"] and not owned["alpha"] & owned["beta"]
        assert owned["alpha"] | owned["beta"] == {("split", p) for p in range(4)}
        produce_everywhere(bs, "split", 4, 10, "s")
        until(lambda: sum(len(m.records) for m in members.values()) >= 40, "40 records")
        values = [r.value for m in members.values() for r in m.records]
        assert sorted(values) == sorted(f"s-{p}-{i}".encode() for p in range(4) for i in range(10))
        for name, member in members.items():
            assert {(r.topic, r.partition) for r in member.records} == owned[name]
    finally:
        for member in members.values():
            member.close()


# --- assignment strategies ------------------------------------------------------------------------

# Two members ("a-member" < "b-member" by member id, which starts with the client id) over
# topics x (3 partitions), y (2) and z (1).
EXPECTED = {
    # range: per topic, consecutive blocks, the first members taking the remainder
    "range": {"a-member": {("x", 0), ("x", 1), ("y", 0), ("z", 0)},
              "b-member": {("x", 2), ("y", 1)}},
    # round robin: all partitions sorted by topic then partition, dealt out in turn
    "roundrobin": {"a-member": {("x", 0), ("x", 2), ("y", 1)},
                   "b-member": {("x", 1), ("y", 0), ("z", 0)}},
}


Members = tuple[Callable[[], None], Callable[[], None]]  # (poll all, close all)


def _confluent_members(bs: str, group: str, topics: list[str], strategy: str) -> Members:
    pump = Pump({
        name: confluent_consumer(bs, group, name, **{"partition.assignment.strategy": strategy})
        for name in ("a-member", "b-member")
    })
    for consumer in pump.consumers.values():
        consumer.subscribe(topics)
    return pump.poll, pump.close_all


def _kafka_python_members(bs: str, group: str, topics: list[str], strategy: str) -> Members:
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[strategy]
    members = [kafka_python_member(bs, group, name, topics, partition_assignment_strategy=[assignor])
               for name in ("a-member", "b-member")]

    def close() -> None:
        for member in members:
            member.close()

    return (lambda: None), close


@pytest.mark.parametrize("strategy", ["range", "roundrobin"])
@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_assignment_strategies_over_several_topics_follow_their_definitions(
    broker: BrokerProcess, client: str, strategy: str
) -> None:
    """The range and round-robin assignors, run by the group leader client-side, give over three
    topics exactly the assignment their definitions say, and the coordinator hands it out."""
    bs = broker.bootstrap
    prefix = f"{client[:2]}-{strategy}"
    topics = {short: f"{prefix}-{short}" for short in ("x", "y", "z")}
    for short, count in (("x", 3), ("y", 2), ("z", 1)):
        create_topic(bs, topics[short], count)
    group = f"{prefix}-g"
    start = _confluent_members if client == "confluent-kafka" else _kafka_python_members
    poll, close = start(bs, group, list(topics.values()), strategy)
    try:
        def stable() -> Owned | None:
            poll()
            state, owned = describe(bs, group)
            return owned if state == "Stable" and len(owned) == 2 and all(owned.values()) else None

        owned = until(stable, "two members with partitions")
        full = {name: {(topics[t], p) for t, p in tps} for name, tps in EXPECTED[strategy].items()}
        assert owned == full
        protocol = wire(bs, 15, 5, {"groups": [group], "include_authorized_operations": False})
        assert protocol.groups[0].protocol_data == strategy
    finally:
        close()


# --- where a consumer starts: auto.offset.reset and committed offsets -----------------------------


def _first_offsets(consumer: Consumer, count: int) -> list[int]:
    offsets: list[int] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(offsets) < count and time.monotonic() < deadline:
        offsets += [m.offset() for m in consumer.consume(100, 0.2) if m.error() is None]
    return offsets


def test_auto_offset_reset_earliest_reads_from_zero_and_latest_only_what_comes_after(
    broker: BrokerProcess,
) -> None:
    """A new group with auto.offset.reset=earliest starts at offset 0; with latest it never sees
    the records produced before it joined, only those produced after."""
    bs = broker.bootstrap
    create_topic(bs, "reset", 1)
    produce(bs, "reset", [(None, f"before-{i}".encode()) for i in range(5)])
    earliest = subscribed(bs, "reset", "reset-earliest", "e")
    try:
        assert _first_offsets(earliest, 5) == [0, 1, 2, 3, 4]
    finally:
        earliest.close()

    latest = subscribed(bs, "reset", "reset-latest", "l", **{"auto.offset.reset": "latest"})
    try:
        until(lambda: (latest.consume(10, 0.05), latest.assignment())[1], "an assignment")
        # The reset to the end happens a moment after the assignment: produce markers until the
        # consumer sees one, which proves its position was fixed before that marker.
        seen: list[Message] = []
        for marker in range(50):
            produce(bs, "reset", [(None, f"marker-{marker}".encode())])
            seen = [m for m in latest.consume(10, 0.3) if m.error() is None]
            if seen:
                break
        assert seen and all(m.offset() >= 5 for m in seen)
        assert not seen[0].value().startswith(b"before")
        first = seen[0].offset()
        produce(bs, "reset", [(None, f"after-{i}".encode()) for i in range(3)])
        rest = [m for m in seen[1:]]
        deadline = time.monotonic() + TIMEOUT_S
        while not any(m.value() == b"after-2" for m in rest) and time.monotonic() < deadline:
            rest += [m for m in latest.consume(10, 0.2) if m.error() is None]
        offsets = [first] + [m.offset() for m in rest]
        assert offsets == list(range(first, first + len(offsets))), "a gap or a repeat"
        assert not any(m.value().startswith(b"before") for m in rest)
    finally:
        latest.close()


@pytest.mark.parametrize(("client", "reset"), [("confluent-kafka", "earliest"),
                                               ("aiokafka", "latest")])
def test_a_committed_offset_wins_over_auto_offset_reset(
    broker: BrokerProcess, client: str, reset: str
) -> None:
    """A group with a committed offset starts there, whatever auto.offset.reset says (the admin
    client commits it for the group while it has no members)."""
    bs = broker.bootstrap
    create_topic(bs, "resume", 1)
    produce(bs, "resume", [(None, f"r-{i}".encode()) for i in range(8)])
    group = f"resume-{client}"
    admin = AdminClient({"bootstrap.servers": bs})
    futures = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition("resume", 0, 3)])])
    futures[group].result(TIMEOUT_S)
    if client == "confluent-kafka":
        consumer = subscribed(bs, "resume", group, "resumer", **{"auto.offset.reset": reset})
        try:
            assert _first_offsets(consumer, 5) == [3, 4, 5, 6, 7]
        finally:
            consumer.close()
        return
    assert [r.offset for r in _aiokafka_read(bs, "resume", group, 5, reset, "resumer")] == [3, 4, 5, 6, 7]


@pytest.mark.parametrize("how", ["clean restart", "kill -9"])
def test_committed_offsets_survive_a_broker_restart(broker: BrokerProcess, how: str) -> None:
    """Offsets a consumer committed are read back after the broker restarts (cleanly or after
    SIGKILL: they are in __consumer_offsets), and the group's next consumer resumes there."""
    bs = broker.bootstrap
    create_topic(bs, "survive", 1)
    produce(bs, "survive", [(None, f"v-{i}".encode()) for i in range(10)])
    consumer = subscribed(bs, "survive", "survivors", "first")
    try:
        messages: list[Message] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(messages) < 7 and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(7 - len(messages), 0.2) if m.error() is None]
        consumer.commit(message=messages[6], asynchronous=False)  # commits offset 7
    finally:
        consumer.close()
    if how == "kill -9":
        broker.kill()
        broker.start()
    else:
        broker.restart()
    admin = AdminClient({"bootstrap.servers": bs})
    listed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("survivors", [TopicPartition("survive", 0)])])
    partitions = listed["survivors"].result(TIMEOUT_S).topic_partitions
    assert [(tp.partition, tp.offset) for tp in partitions] == [(0, 7)]
    resumed = subscribed(bs, "survive", "survivors", "second")
    try:
        assert _first_offsets(resumed, 3) == [7, 8, 9]
    finally:
        resumed.close()


# --- admin tools ----------------------------------------------------------------------------------


def test_admin_client_lists_describes_alters_and_deletes_groups(broker: BrokerProcess) -> None:
    """confluent-kafka's AdminClient sees a live group (list, describe with its member and
    assignment), cannot alter or delete it while it has members, and can once it is empty."""
    from confluent_kafka import ConsumerGroupState

    bs = broker.bootstrap
    create_topic(bs, "admin-t", 2)
    admin = AdminClient({"bootstrap.servers": bs})
    consumer = subscribed(bs, "admin-t", "admin-g", "admin-member")
    try:
        until(lambda: (consumer.consume(10, 0.05), len(consumer.assignment()) == 2)[1],
              "the member's assignment")
        listed = admin.list_consumer_groups().result(TIMEOUT_S)
        states = {g.group_id: g.state for g in listed.valid}
        assert states["admin-g"] == ConsumerGroupState.STABLE
        description = admin.describe_consumer_groups(["admin-g"])["admin-g"].result(TIMEOUT_S)
        assert description.state == ConsumerGroupState.STABLE
        assert description.partition_assignor == "range"
        (member,) = description.members
        assert member.client_id == "admin-member"
        assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]
        busy = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions("admin-g", [TopicPartition("admin-t", 0, 1)])])
        try:
            outcome = busy["admin-g"].result(TIMEOUT_S)
        except Exception as exc:  # librdkafka may raise the partition error instead
            error = str(exc)
        else:
            error = str([tp.error for tp in outcome.topic_partitions])
        assert "UNKNOWN_MEMBER_ID" in error or "nknown member" in error, error
        refused = admin.delete_consumer_groups(["admin-g"])["admin-g"]
        with pytest.raises(Exception, match="NON_EMPTY_GROUP|not empty"):
            refused.result(TIMEOUT_S)
    finally:
        consumer.close()
    altered = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("admin-g", [TopicPartition("admin-t", 0, 1),
                                                  TopicPartition("admin-t", 1, 2)])])
    altered["admin-g"].result(TIMEOUT_S)
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("admin-g")])["admin-g"].result(TIMEOUT_S)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 1), (1, 2)]
    assert describe(bs, "admin-g")[0] == "Empty"
    admin.delete_consumer_groups(["admin-g"])["admin-g"].result(TIMEOUT_S)
    remaining = admin.list_consumer_groups().result(TIMEOUT_S)
    assert "admin-g" not in {g.group_id for g in remaining.valid}
