"""A whole replicated partition in one process: replicas, controller, network and clock simulated.

This is the FoundationDB-style simulation the sans-I/O core allows (docs/architecture.md, principle 1): three (or more)
:class:`~reference_broker.replication.Partition` replicas over real partition logs, the real
:class:`~reference_broker.controller.core.ControllerCore`, a fake network that delivers, delays
or drops each message when the test says so, and a clock that moves only when told. Every
outcome is a function of the steps taken, so Hypothesis can draw the steps (which message
arrives, who crashes, who is paused, when time passes) and shrink a failure to a short story.

What is simulated, and how it maps to the real system:

* **Messages** are the real exchanges: a follower's fetch (:class:`FetchPosition` → the leader's
  :meth:`Partition.read_for_follower` → :meth:`Partition.on_fetch_response`), its
  OffsetForLeaderEpoch (:class:`EpochQuery`), a leader's AlterPartition and the controller's
  answer. Each is processed by its receiver *when delivered*, with the receiver's state then.
* **Metadata** reaches each node separately (:meth:`SimulatedCluster.deliver_metadata`), so a
  node can act on a stale view, as a paused (SIGSTOP) leader does when it resumes.
* **Crash** (SIGKILL) abandons a node's log without flushing; **restart** reopens it (crash
  recovery, epoch cache and HW checkpoint reloaded), registers a new incarnation and gives the
  node the current metadata. **Pause** freezes a node: no heartbeats, no metadata, no
  messages processed, until **resume**.
* An idempotent **producer** (:class:`SimProducer`) sends one batch at a time with acks=all and
  retries it, with the same sequence numbers, until it is acknowledged.

The invariants the tests check are in :meth:`SimulatedCluster.check_invariants`.
"""

from __future__ import annotations

import itertools
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.controller.core import ControllerCore, ControllerError, ControllerSettings
from reference_broker.log import LogConfig, OffsetOutOfRangeError, PartitionLog
from reference_broker.log.testing import batch
from reference_broker.metadata.image import MetadataImage
from reference_broker.metadata.records import (
    NO_LEADER,
    Endpoint,
    MetadataRecord,
    PartitionRecord,
)
from reference_broker.producers import ProducerStateError
from reference_broker.records import RecordError, iter_records, scan_valid_prefix, validate_batches
from reference_broker.replication.partition import (
    EpochQuery,
    FetchPosition,
    FollowerRead,
    IsrChange,
    Partition,
    PartitionState,
    ReplicationConfig,
    ReplicationError,
    Role,
)

TOPIC = "sim"


class FakeClock:
    """Milliseconds that pass only when :meth:`advance` is called."""

    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms

    def advance(self, ms: int) -> int:
        self.now_ms += ms
        return self.now_ms


@attrs.define(slots=True)
class Message:
    """One message in flight: ``deliver`` runs at the receiver when it arrives."""

    id: int
    kind: str
    source: int  # node id, or -1 for the controller
    target: int
    deliver: Callable[[], None]
    on_drop: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        return f"<{self.id} {self.kind} {self.source}->{self.target}>"


CONTROLLER = -1


class SimNode:
    """One broker of the simulation, holding one replica of the partition."""

    def __init__(self, node_id: int, directory: Path) -> None:
        self.node_id = node_id
        self.directory = directory
        self.partition: Partition | None = None
        self.incarnation = 0
        self.broker_epoch = -1
        self.applied = 0  # metadata records applied
        self.paused = False
        self.outstanding: Any = None  # the follower's request in flight, if any
        self.isr_requests = 0

    @property
    def alive(self) -> bool:
        return self.partition is not None


@attrs.define(slots=True)
class Ack:
    offset: int
    values: tuple[bytes, ...]


class SimProducer:
    """An idempotent producer with one acks=all batch in flight, retried until acknowledged."""

    def __init__(self, producer_id: int = 4000) -> None:
        self.producer_id = producer_id
        self.next_sequence = 0
        self.counter = itertools.count()
        self.current: tuple[int, tuple[bytes, ...]] | None = None  # (base sequence, values)
        self.in_flight = False
        self.sent_at_ms = 0
        self.acked: list[Ack] = []
        self.errors: list[str] = []

    def batch_to_send(self, size: int) -> tuple[int, tuple[bytes, ...]]:
        if self.current is None:
            values = tuple(b"v%d" % next(self.counter) for _ in range(size))
            self.current = (self.next_sequence, values)
        return self.current

    def acknowledged(self, first_offset: int) -> None:
        assert self.current is not None
        sequence, values = self.current
        self.acked.append(Ack(first_offset, values))
        self.next_sequence = sequence + len(values)
        self.current = None

    @property
    def acked_values(self) -> dict[bytes, int]:
        return {value: ack.offset + i for ack in self.acked for i, value in enumerate(ack.values)}


class SimulatedCluster:
    """Nodes, controller, network and clock of one simulated replicated partition."""

    def __init__(
        self,
        root: Path,
        nodes: int = 3,
        min_insync_replicas: int = 2,
        unclean: bool = False,
        replica_lag_time_max_ms: int = 1_000,
        session_timeout_ms: int = 3_000,
        produce_timeout_ms: int = 2_000,
    ) -> None:
        self.root = root
        self.clock = FakeClock()
        self.min_insync_replicas = min_insync_replicas
        self.session_timeout_ms = session_timeout_ms
        self.produce_timeout_ms = produce_timeout_ms
        self.replication = ReplicationConfig(
            replica_lag_time_max_ms=replica_lag_time_max_ms,
            high_watermark_checkpoint_interval_ms=2_000,
            isr_change_retry_backoff_ms=200,
        )
        self.log_config = LogConfig(segment_bytes=4096)
        self.metadata: list[MetadataRecord] = []
        self.controller = ControllerCore(
            ControllerSettings(session_timeout_ms=session_timeout_ms,
                               unclean_leader_election=unclean),
            MetadataImage(), self._append_metadata, self.clock.now_ms,
        )
        self.nodes = {n: SimNode(n, root / f"node{n}" / f"{TOPIC}-0") for n in range(nodes)}
        self.network: list[Message] = []
        self._ids = itertools.count()
        self.producer = SimProducer()
        self.history: list[str] = []  # what happened, for failure reports
        # invariant state
        self.committed: dict[int, bytes] = {}
        self.max_hw = 0
        self._hw_seen: dict[tuple[int, int], int] = {}  # (node, incarnation) -> last HW
        for node in self.nodes.values():
            self._start(node)
        for node in self.nodes.values():
            self._heartbeat(node)
        self.controller.create_topic(TOPIC, 1, nodes, {})
        self.topic_id: uuid.UUID = self.controller.image.topics_by_name[TOPIC].topic_id
        for node in self.nodes.values():
            self.deliver_metadata(node.node_id)

    # --- metadata and controller ---------------------------------------------------------

    def _append_metadata(self, records: Any) -> int:
        self.metadata.extend(records)
        return len(self.metadata) - 1

    def _heartbeat(self, node: SimNode) -> None:
        if node.alive and not node.paused:
            self.controller.heartbeat(node.node_id, node.broker_epoch, node.applied - 1, False,
                                      self.clock.now_ms)

    def deliver_metadata(self, node_id: int, count: int | None = None) -> None:
        """Apply the next ``count`` (all) metadata records the node has not seen."""
        node = self.nodes[node_id]
        if not node.alive or node.paused:
            return
        end = len(self.metadata) if count is None else min(len(self.metadata), node.applied + count)
        for record in self.metadata[node.applied:end]:
            node.applied += 1
            if isinstance(record, PartitionRecord):
                self._apply(node, record)

    def _apply(self, node: SimNode, record: PartitionRecord) -> None:
        partition = node.partition
        assert partition is not None
        now = self.clock.now_ms
        if node.node_id not in record.replicas:
            return
        if record.leader == node.node_id:
            changed = partition.become_leader(node.node_id, record.leader_epoch,
                                              record.partition_epoch, record.replicas,
                                              record.isr, now)
        else:
            changed = partition.become_follower(record.leader, record.leader_epoch,
                                                record.partition_epoch, record.replicas,
                                                record.isr, now)
        if changed:
            node.outstanding = None  # the fetcher starts over
            self.history.append(f"node {node.node_id}: {partition!r}")

    def _start(self, node: SimNode) -> None:
        now = self.clock.now_ms
        plog = PartitionLog.open(node.directory, self.log_config, now)
        partition = Partition(TOPIC, 0, plog, node_id=node.node_id, config=self.replication,
                              now_ms=now)
        partition.alter_isr = lambda change, node=node: self._send_alter(node, change)
        node.partition = partition
        node.incarnation += 1
        node.outstanding = None
        node.paused = False
        node.broker_epoch = self.controller.register_broker(
            node.node_id, f"incarnation-{node.node_id}-{node.incarnation}",
            [Endpoint("PLAINTEXT", "sim", 9092 + node.node_id)], now,
        )
        # A (re)started broker acts on the metadata as it stands, not on its history.
        latest: PartitionRecord | None = None
        for record in self.metadata:
            if isinstance(record, PartitionRecord):
                latest = record
        node.applied = len(self.metadata)
        if latest is not None:
            self._apply(node, latest)

    # --- faults ------------------------------------------------------------------------------

    def crash(self, node_id: int) -> None:
        """SIGKILL: the process dies; what reached its files survives."""
        node = self.nodes[node_id]
        if node.partition is None:
            return
        node.partition.log.abandon()
        node.partition = None
        node.outstanding = None
        node.paused = False
        self.network = [m for m in self.network if node_id not in (m.source, m.target)]
        self.history.append(f"crash {node_id}")
        if self.producer.in_flight and self._producer_target == node_id:
            self.producer.in_flight = False  # the connection broke: outcome unknown

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.alive:
            return
        self.history.append(f"restart {node_id}")
        self._start(node)

    def pause(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.alive:
            node.paused = True
            self.history.append(f"pause {node_id}")

    def resume(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.paused:
            node.paused = False
            self.history.append(f"resume {node_id}")

    def wipe(self, node_id: int) -> None:
        """Crash and lose the disk (used only by tests of unclean scenarios)."""
        self.crash(node_id)
        shutil.rmtree(self.nodes[node_id].directory, ignore_errors=True)

    # --- network -----------------------------------------------------------------------------

    def _send(self, kind: str, source: int, target: int, deliver: Callable[[], None],
              on_drop: Callable[[], None] = lambda: None) -> None:
        self.network.append(Message(next(self._ids), kind, source, target, deliver, on_drop))

    def deliverable(self) -> list[Message]:
        """Messages whose receiver can process them now (not paused)."""
        return [m for m in self.network if not self._blocked(m.target)]

    def _blocked(self, node_id: int) -> bool:
        return node_id != CONTROLLER and self.nodes[node_id].paused

    def deliver(self, message: Message) -> None:
        self.network.remove(message)
        message.deliver()

    def drop(self, message: Message) -> None:
        self.network.remove(message)
        self.history.append(f"drop {message!r}")
        message.on_drop()

    def follower_send(self, node_id: int) -> bool:
        """The follower's fetcher sends its next request (if it has none in flight)."""
        node = self.nodes[node_id]
        partition = node.partition
        if partition is None or node.paused or node.outstanding is not None:
            return False
        request = partition.follower_request()
        if request is None:
            return False
        node.outstanding = request
        leader = request.leader_id

        def dropped() -> None:
            if node.outstanding is request:
                node.outstanding = None

        if isinstance(request, EpochQuery):
            self._send("epoch", node_id, leader,
                       lambda: self._serve_epoch_query(node, leader, request), dropped)
        else:
            self._send("fetch", node_id, leader,
                       lambda: self._serve_fetch(node, leader, request), dropped)
        return True

    def round_trip_of(self, node_id: int) -> None:
        """``node_id``'s fetcher sends its next request and gets the answer, both delivered at
        once (if the leader is reachable); other messages stay where they are."""
        if not self.follower_send(node_id):
            return
        request = self.network[-1]
        if self._blocked(request.target):
            return
        self.deliver(request)
        replies = [m for m in self.network if m.kind == "reply" and m.target == node_id]
        if replies:
            self.deliver(replies[-1])

    def _serve_epoch_query(self, follower: SimNode, leader_id: int, query: EpochQuery) -> None:
        leader = self.nodes[leader_id].partition
        if leader is None:
            self._reply(follower, query, lambda p: None)
            return
        try:
            leader.check_leader(query.current_leader_epoch)
            error, (epoch, end) = ErrorCode.none, leader.end_offset_for_epoch(query.epoch)
        except ReplicationError as exc:
            error, epoch, end = exc.error, -1, -1
        self._reply(follower, query, lambda p: p.on_epoch_end_offset(
            query, error, epoch, end, self.clock.now_ms))

    def _serve_fetch(self, follower: SimNode, leader_id: int, request: FetchPosition) -> None:
        leader = self.nodes[leader_id].partition
        if leader is None:
            self._reply(follower, request, lambda p: None)
            return
        error = ErrorCode.none
        read = FollowerRead(b"", -1, -1, -1)
        try:
            read = leader.read_for_follower(
                follower.node_id, request.fetch_offset, request.last_fetched_epoch,
                request.current_leader_epoch, 1 << 16, self.clock.now_ms,
            )
        except ReplicationError as exc:
            error = exc.error
        except OffsetOutOfRangeError:
            error = ErrorCode.offset_out_of_range
            read = FollowerRead(b"", leader.high_watermark, leader.log.log_start_offset,
                                leader.log_end_offset)
        self._reply(follower, request, lambda p: p.on_fetch_response(
            request, error, read.high_watermark, read.log_start_offset, read.records,
            read.diverging_epoch, self.clock.now_ms))

    def _reply(self, follower: SimNode, request: Any, apply: Callable[[Partition], object]) -> None:
        incarnation = follower.incarnation

        def deliver() -> None:
            if follower.outstanding is request:
                follower.outstanding = None
            if follower.partition is not None and follower.incarnation == incarnation:
                apply(follower.partition)

        def dropped() -> None:
            if follower.outstanding is request:
                follower.outstanding = None

        leader = request.leader_id
        self._send("reply", leader, follower.node_id, deliver, dropped)

    def _send_alter(self, node: SimNode, change: IsrChange) -> None:
        incarnation = node.incarnation
        broker_epoch = node.broker_epoch
        node.isr_requests += 1

        def at_controller() -> None:
            try:
                record = self.controller.alter_partition(
                    node.node_id, broker_epoch, self.topic_id, 0, change.leader_epoch,
                    change.partition_epoch, change.new_isr,
                )
                error, state = ErrorCode.none, PartitionState(record.leader, record.leader_epoch,
                                                      record.partition_epoch, record.isr)
            except ControllerError as exc:
                error, state = exc.error, None

            def answer() -> None:
                if node.partition is not None and node.incarnation == incarnation:
                    node.partition.complete_isr_change(change, error, state, self.clock.now_ms)

            def lost() -> None:
                if node.partition is not None and node.incarnation == incarnation:
                    node.partition.complete_isr_change(change, ErrorCode.request_timed_out, None,
                                                       self.clock.now_ms)

            self._send("alter-reply", CONTROLLER, node.node_id, answer, lost)

        def lost() -> None:
            if node.partition is not None and node.incarnation == incarnation:
                node.partition.complete_isr_change(change, ErrorCode.request_timed_out, None,
                                                   self.clock.now_ms)

        self._send("alter", node.node_id, CONTROLLER, at_controller, lost)

    # --- clock -------------------------------------------------------------------------------

    def tick(self, ms: int) -> None:
        now = self.clock.advance(ms)
        producer = self.producer
        if producer.in_flight and now - producer.sent_at_ms > 2 * self.produce_timeout_ms:
            # The client's own request timeout (a frozen broker never answers): the outcome is
            # unknown and the batch will be retried with the same sequence numbers.
            producer.in_flight = False
        for node in self.nodes.values():
            if node.partition is not None and not node.paused:
                node.partition.tick(now)
                self._heartbeat(node)
        self.controller.tick(now)

    # --- producing ---------------------------------------------------------------------------

    _producer_target = -1

    def produce(self, node_id: int, size: int = 2) -> ErrorCode | str:
        """The producer sends its current batch to ``node_id`` (acks=all), as a client with
        that node as the partition's leader in its metadata would. Returns what happened:
        "skipped", "sent", or the error that refused the batch."""
        producer = self.producer
        node = self.nodes[node_id]
        if producer.in_flight or node.partition is None or node.paused:
            return "skipped"
        partition = node.partition
        sequence, values = producer.batch_to_send(size)
        records = bytearray(batch(*values, producer_id=producer.producer_id,
                                  base_sequence=sequence))
        try:
            partition.check_leader()
            partition.check_min_isr(self.min_insync_replicas)
            result = partition.append_as_leader(records, validate_batches(records),
                                                self.clock.now_ms)
        except ReplicationError as exc:
            return exc.error
        except (ProducerStateError, RecordError) as exc:
            # A deposed leader that has not heard of it may refuse a batch it cannot place (its
            # producer state lacks what the real leader has); from the real leader, such an
            # error would mean the history lost or duplicated something.
            if self.leader() is node:
                producer.errors.append(f"{type(exc).__name__}: {exc}")
            return exc.error_code
        producer.in_flight = True
        producer.sent_at_ms = self.clock.now_ms
        self._producer_target = node_id
        incarnation = node.incarnation

        sent_at = producer.sent_at_ms

        def committed(error: ErrorCode) -> None:
            if (node.incarnation != incarnation or not producer.in_flight
                    or producer.sent_at_ms != sent_at):
                return
            producer.in_flight = False
            if error is ErrorCode.none:
                # Observed now: the acknowledging leader may die before this step ends.
                self._observe_committed(node.node_id, partition)
                producer.acknowledged(result.first_offset)
                self.history.append(f"acked {values} at {result.first_offset} by {node_id}")

        partition.wait_for_commit(result.last_offset + 1, self.min_insync_replicas,
                                  self.clock.now_ms + self.produce_timeout_ms, committed)
        return "sent"

    # --- observing ---------------------------------------------------------------------------

    def leader(self) -> SimNode | None:
        """The node the controller says leads, if it is up and believes it."""
        record = self.controller.image.partition(TOPIC, 0)
        if record is None or record.leader == NO_LEADER:
            return None
        node = self.nodes[record.leader]
        if node.partition is None or node.partition.role is not Role.LEADER:
            return None
        if node.partition.leader_epoch != record.leader_epoch:
            return None
        return node

    @staticmethod
    def records_of(partition: Partition, below: int | None = None) -> dict[int, bytes]:
        """offset -> value of every record in the replica's log (below ``below``)."""
        plog = partition.log
        out: dict[int, bytes] = {}
        offset = plog.log_start_offset
        end = plog.log_end_offset if below is None else min(below, plog.log_end_offset)
        while offset < end:
            data = plog.read(offset, 1 << 20).records
            headers, _ = scan_valid_prefix(data)
            if not headers:
                break
            for header in headers:
                for record in iter_records(data, header):
                    if offset <= record.offset < end:
                        out[record.offset] = record.value or b""
            offset = headers[-1].next_offset
        return out

    def check_invariants(self, clean: bool = True) -> None:
        """The safety properties (raise AssertionError with the story so far):

        * every replica's HW is within its log, and never moves back within one incarnation
          (``clean``: only an unclean election may cut below it);
        * below its own HW every replica agrees with every other (the committed history: once
          a record is below some replica's HW, that offset holds that record everywhere, for
          ever);
        * every acknowledged record is in the committed history at its acknowledged offset.
        """
        for node in self.nodes.values():
            partition = node.partition
            if partition is None:
                continue
            hw = partition.high_watermark
            assert partition.log.log_start_offset <= hw <= partition.log_end_offset, self._story(
                f"node {node.node_id}: HW {hw} outside its log")
            key = (node.node_id, node.incarnation)
            if clean:
                assert hw >= self._hw_seen.get(key, 0), self._story(
                    f"node {node.node_id}: HW went back from {self._hw_seen[key]} to {hw}")
            self._hw_seen[key] = hw
            self._observe_committed(node.node_id, partition)
        for value, offset in self.producer.acked_values.items():
            assert self.committed.get(offset) == value, self._story(
                f"acknowledged {value!r} at offset {offset} is not committed there "
                f"(committed: {self.committed.get(offset)!r})")
        leader = self.leader()
        record = self.controller.image.partition(TOPIC, 0)
        if clean and leader is not None and record is not None:
            # What makes clean elections safe: every running member of the controller's ISR
            # already holds the leader's log up to the leader's HW.
            assert leader.partition is not None
            hw = leader.partition.high_watermark
            below = self.records_of(leader.partition, below=hw)
            for member in record.isr:
                partition = self.nodes[member].partition
                if partition is None or member == leader.node_id:
                    continue
                assert partition.log_end_offset >= hw, self._story(
                    f"ISR member {member} ends at {partition.log_end_offset}, below the "
                    f"leader's HW {hw}")
                held = self.records_of(partition, below=hw)
                assert held == below, self._story(
                    f"ISR member {member} disagrees with leader {leader.node_id} below HW {hw}")

    def _observe_committed(self, node_id: int, partition: Partition) -> None:
        """Add the replica's records below its HW to the committed history, which they must
        agree with."""
        hw = partition.high_watermark
        for offset, value in self.records_of(partition, below=hw).items():
            known = self.committed.setdefault(offset, value)
            assert known == value, self._story(
                f"node {node_id} has {value!r} at committed offset {offset}, "
                f"the committed history has {known!r}")
        self.max_hw = max(self.max_hw, hw)

    def _story(self, message: str) -> str:
        state = "\n".join(f"  node {n.node_id}: {n.partition!r}" for n in self.nodes.values())
        steps = "\n".join(self.history[-40:])
        return f"{message}\nreplicas:\n{state}\nrecent steps:\n{steps}"

    # --- healing -----------------------------------------------------------------------------

    def heal(self, rounds: int = 400) -> None:
        """End every fault and let the cluster settle: all nodes up, all metadata delivered,
        every message delivered, time passing, the producer retrying its batch, until all
        replicas are in the ISR with the same log and the producer has nothing pending."""
        for node_id, node in self.nodes.items():
            if node.paused:
                self.resume(node_id)
            if not node.alive:
                self.restart(node_id)
        for _ in range(rounds):
            for node_id in self.nodes:
                self.deliver_metadata(node_id)
                self.follower_send(node_id)
            while self.network:
                self.deliver(self.network[0])
            leader = self.leader()
            if leader is not None and self.producer.current is not None:
                self.produce(leader.node_id)
            self.tick(100)
            if self.settled():
                return
        raise AssertionError(self._story("the cluster did not settle after healing"))

    def settled(self) -> bool:
        leader = self.leader()
        if leader is None or self.producer.current is not None or self.network:
            return False
        assert leader.partition is not None
        if len(leader.partition.isr) != len(self.nodes):
            return False
        leo = leader.partition.log_end_offset
        return all(
            n.partition is not None and n.partition.log_end_offset == leo
            and n.partition.high_watermark == leo
            for n in self.nodes.values()
        )

    def close(self) -> None:
        for node in self.nodes.values():
            if node.partition is not None:
                node.partition.log.abandon()
                node.partition = None
