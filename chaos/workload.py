"""The campaign workload: concurrent producers and consumers over ``harness.clients``.

Every operation goes into the campaign's history through the workload clients (unique values
``<process>-<n>``, sends classified ok / fail / info). Threads, each bounded in time:

* **producers** (``p0``, ``p1``, ...): send at ``rate`` records per second each, to partitions
  drawn from the seed, with the chosen ``acks`` and idempotence, at most ``max_pending``
  unacknowledged at once (so a partition does not queue up a minute of records). With
  ``transactions`` each is a transactional producer (its transactional id is the campaign's
  group prefix and its name, kept by every incarnation, so a new one fences the last) sending
  transactions of ``txn_size`` records (``txn_send_gap_ms`` apart), aborting ``abort_ratio`` of
  them, each recorded as a ``txn`` operation; the consumers then read ``read_committed``;
* **consumers**, one mode each:

  - ``assigned``: assigned every partition from the beginning, no group: it reads through the
    whole log as it grows (its successive reads are what lost-write and poll-skip look at);
  - ``commit-after``: a member of a group that processes (the ``poll`` event) and then commits
    (at-least-once: a crash in between redelivers);
  - ``commit-before``: a member of a group that commits what it took from the library and then
    processes it (at-most-once: a crash in between loses it). Its ``poll`` event is recorded
    when it processes, after the commit (``Consumer.take`` / ``record_delivery``).

  Consumers of one mode share one group. A ``consumer-crash`` fault makes a group consumer
  crash at its worst moment (the point between commit and processing, whichever comes second)
  and start again, under a new process name (``c1.2``), when the fault ends;
* **processors** (``x0``, ``x1``, ... with ``processors``): consume-transform-produce
  instances (KIP-447) in one group, each turning what one poll took from the topic into one
  record each on the output topic (``<topic>-out``) in a transaction that also commits its
  input positions (:class:`ProcessorWorker`). The assigned consumer reads the output topic too.
  A ``processor-crash`` fault crashes one in the middle of a transaction; its replacement
  keeps its transactional id.

With ``streams`` N, N instances of a Kafka Streams application (exactly_once_v2) process the
topic into ``<topic>-streams-out`` (``chaos.streams_workload``), and one more consumer, ``out0``,
reads that output read_committed from the beginning.

After the faults, the campaign stops the producers (flushing what is in flight), waits for
the cluster, stops the processors and consumers and *drains*: kconform's own wire reader
(``harness.precise_read``) reads every partition from its first offset to its end (a ``drain``
operation in the history), recording the producer identity of every batch, so whose fault a
duplicate is can be read from the log.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

import attrs

from chaos.streams_workload import OUTPUT_DRAIN, StreamsApplication, output_topic
from harness import precise_read
from harness.clients import (
    ClientError,
    Consumed,
    Consumer,
    ConsumerSettings,
    Producer,
    ProducerSettings,
    SendHandle,
    describe_client,
    java_streams,
    make_consumer,
    make_producer,
    next_offsets,
)
from harness.clients.base import text
from harness.history.write import Recorder
from specs.produce import Outcome

CONSUMER_MODES = ("assigned", "commit-after", "commit-before")
# The client libraries whose transactions kconform drives (harness.clients, Producer.transaction).
TRANSACTIONAL_CLIENTS = ("confluent-kafka", "kafka-python", "aiokafka", "java")
# Those the processors run on: aiokafka (0.14) implements no KIP-447, neither the group metadata in
# TxnOffsetCommit (a member the group replaced still commits its offsets) nor OffsetFetch with
# require_stable (a new owner starts from the offsets committed before a pending transaction), so
# a rebalance during a transaction makes its processors process input twice, whatever the broker.
PROCESSOR_CLIENTS = tuple(c for c in TRANSACTIONAL_CLIENTS if c != "aiokafka")
# The most input records a processor's transaction takes (max.poll.records of its consumer): many
# short transactions rather than a few long ones after each rebalance.
PROCESSOR_POLL_RECORDS = 100
TP = tuple[str, int]
PROCESSOR_START_TIMEOUT_S = 60.0
ZOMBIE_MAX_S = 120.0  # a zombie left frozen (its fault never ended) wakes by itself after this


@attrs.frozen
class WorkloadSettings:
    """How the campaign's clients behave."""

    client: str = "confluent-kafka"
    producers: int = 2
    rate: float = 100.0  # records per second per producer
    acks: str = "all"
    idempotence: bool = True
    consumers: tuple[str, ...] = ("assigned", "commit-after", "commit-after")
    partitions: int = 3
    request_timeout_ms: int = 3000
    delivery_timeout_ms: int = 20_000
    max_pending: int = 1000
    # Transactional producers (KIP-98): each sends transactions of txn_size records and aborts
    # abort_ratio of them; consumers then read read_committed.
    transactions: bool = False
    txn_size: int = 4
    abort_ratio: float = 0.2
    transaction_timeout_ms: int = 60_000
    # Milliseconds between a transaction's sends: each new partition then joins the transaction
    # by an AddPartitionsToTxn of its own, spread over the transaction's life.
    txn_send_gap_ms: int = 0
    # Instances of a Kafka Streams application reading the topic, its commit.interval.ms and
    # processing.guarantee (exactly_once_v2, KIP-447; at_least_once: the control that duplicates).
    streams: int = 0
    streams_commit_interval_ms: int = 100
    streams_guarantee: str = "exactly_once_v2"
    # Consume-transform-produce instances (KIP-447) in one group: each turns what it polls from
    # the topic into one record each on the output topic and commits its input positions in the
    # same transaction, aborting abort_ratio of them.
    processors: int = 0
    # False: the processors do not seek back to the committed positions after a transaction that
    # did not commit, and so skip its input (an application bug, to see exactly-once-processing fire).
    rewind_after_abort: bool = True

    @property
    def transactional(self) -> bool:
        """Whether the run has transactions to judge (transactional producers or processors)."""
        return self.transactions or self.processors > 0

    def producer_settings(self, transactional_id: str | None = None) -> ProducerSettings:
        return ProducerSettings(acks=self.acks, idempotence=self.idempotence, linger_ms=5,
                                delivery_timeout_ms=self.delivery_timeout_ms, client_id="kconform-chaos",
                                request_timeout_ms=self.request_timeout_ms, metadata_max_age_ms=1000,
                                transactional_id=transactional_id,
                                transaction_timeout_ms=self.transaction_timeout_ms)

    def consumer_settings(self) -> ConsumerSettings:
        return ConsumerSettings(auto_offset_reset="earliest", client_id="kconform-chaos",
                                session_timeout_ms=6000, max_poll_records=500, metadata_max_age_ms=1000,
                                isolation_level="read_committed" if self.transactional else "read_uncommitted")

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "consumers": list(self.consumers)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> WorkloadSettings:
        fields = {f.name for f in attrs.fields(cls)}
        values = {k: v for k, v in obj.items() if k in fields}
        if "consumers" in values:
            values["consumers"] = tuple(values["consumers"])
        return cls(**values)


class _Crash(Exception):
    """Raised at a consumer's crash point when a crash was asked for."""


class _Worker(threading.Thread):
    def __init__(self, workload: Workload, name: str) -> None:
        super().__init__(name=f"kconform-chaos-{name}", daemon=True)
        self.workload = workload
        self.stop_event = threading.Event()
        self.errors: list[str] = []
        self.errors_seen = 0  # recoverable library failures (a producer replaced)

    def _unexpected(self) -> None:
        self.errors.append(traceback.format_exc(limit=6))
        time.sleep(0.2)


class ProducerWorker(_Worker):
    """Sends at a steady rate until stopped, then flushes.

    A producer the library declares dead (librdkafka's fatal errors, e.g. an idempotent
    producer whose sequence numbers the broker no longer knows after an unclean election) is
    closed and replaced by a new incarnation under a new process name (``p0.2``), so values
    stay unique; the dead one's unanswered sends stay pending (indeterminate) in the history.
    """

    def __init__(self, workload: Workload, name: str, seed: int) -> None:
        super().__init__(workload, name)
        self.name_base = name
        self.process = name
        self.incarnation = 1
        self.rng = random.Random(seed)
        self.sent = 0
        self.acknowledged = 0
        self.flushed = threading.Event()
        self.unflushed = 0
        self._pending: list[SendHandle] = []
        # A zombie-producer fault: asked for, made (the zombie's process name), woken.
        self.zombie_requested = threading.Event()
        self.zombie_made = threading.Event()
        self.zombie_wake = threading.Event()
        self.zombie_process = ""
        self.zombies: list[threading.Thread] = []

    def _prune(self) -> None:
        still = []
        for handle in self._pending:
            if handle.done:
                if handle.result(0).outcome is Outcome.SUCCESS:
                    self.acknowledged += 1
            else:
                still.append(handle)
        self._pending = still

    def _open(self) -> Producer:
        w = self.workload
        if not w.settings.transactions:
            return make_producer(w.settings.client, w.bootstrap, w.settings.producer_settings(), w.history,
                                 self.process)
        # Every incarnation keeps the worker's transactional id: the next one fences the last.
        producer = make_producer(w.settings.client, w.bootstrap,
                                 w.settings.producer_settings(f"{w.group_prefix}-{self.name_base}"), w.history,
                                 self.process)
        try:
            producer.init_transactions()
        except BaseException:
            _close_quietly(producer)
            raise
        return producer

    def _transaction(self, producer: Producer) -> None:
        """One transaction of txn_size records to partitions drawn from the seed, committed or
        (abort_ratio of them) aborted; its committed records count as acknowledged."""
        s = self.workload.settings
        sends = [(self.workload.topic, self.rng.randrange(s.partitions), None, producer.next_value())
                 for _ in range(s.txn_size)]
        commit = self.rng.random() >= s.abort_ratio
        self.sent += len(sends)
        if producer.transaction(sends, commit, s.txn_send_gap_ms / 1000) == "commit":
            self.acknowledged += len(sends)

    def _replace(self, producer: Producer) -> Producer:
        """Close a producer the library gave up on and start the next incarnation."""
        self.errors_seen += 1
        # Closing a dead librdkafka producer waits for its queued sends to time out
        # (delivery.timeout.ms, 20 s): that happens aside, so the next incarnation sends at once.
        # Those sends stay pending in the history (indeterminate), which is what they are.
        threading.Thread(target=_close_quietly, args=(producer,), name=f"{self.process}-close",
                         daemon=True).start()
        time.sleep(0.2)
        return self._next_incarnation()

    def _next_incarnation(self) -> Producer:
        self._pending = []
        self.incarnation += 1
        self.process = f"{self.name_base}.{self.incarnation}"
        return self._open()

    def _become_zombie(self, producer: Producer) -> Producer:
        """A zombie-producer fault: this incarnation freezes in the middle of a transaction (after
        its first send is answered) and a new incarnation with the same transactional id starts,
        which fences it (KIP-98: InitProducerId bumps the epoch and aborts the open transaction).
        When the fault ends the zombie wakes, sends the rest and commits: the broker must refuse
        both, so its transaction ends ``fail`` or ``info``, never committed. Returns the new
        incarnation; the zombie runs on in a thread of its own until it has tried."""
        s = self.workload.settings
        sends = [(self.workload.topic, self.rng.randrange(s.partitions), None, producer.next_value())
                 for _ in range(max(2, s.txn_size))]
        frozen = threading.Event()

        def stall(first: SendHandle) -> None:
            with contextlib.suppress(TimeoutError):
                first.result(s.delivery_timeout_ms / 1000)
            frozen.set()
            self.zombie_wake.wait(ZOMBIE_MAX_S)

        def haunt() -> None:
            try:
                producer.transaction(sends, True, stall=stall)
            except Exception as exc:  # noqa: BLE001 - a fenced zombie's library gives up: expected
                if not _fatal(exc):
                    self.errors.append(f"zombie {producer.process}: {exc!r}")
            finally:
                frozen.set()
                _close_quietly(producer)

        self.sent += len(sends)
        self.zombie_wake.clear()
        zombie = threading.Thread(target=haunt, name=f"{self.process}-zombie", daemon=True)
        self.zombies.append(zombie)
        zombie.start()
        frozen.wait(s.delivery_timeout_ms / 1000 + 5)
        self.zombie_process = self.process
        self.zombie_requested.clear()
        self.zombie_made.set()
        return self._next_incarnation()

    def join_zombies(self, timeout_s: float) -> None:
        """Wake every zombie and wait for each to finish its transaction (bounded)."""
        self.zombie_wake.set()
        for zombie in self.zombies:
            zombie.join(timeout_s)

    def run(self) -> None:
        s = self.workload.settings
        producer: Producer | None = None
        try:
            producer = self._open()
            interval = 1.0 / s.rate
            next_at = time.monotonic()
            while not self.stop_event.is_set():
                try:
                    self._prune()
                    if len(self._pending) >= s.max_pending:
                        producer.serve(0.05)
                        continue
                    now = time.monotonic()
                    if now < next_at:
                        producer.serve(min(0.05, next_at - now))
                        continue
                    if now - next_at > 1.0:
                        next_at = now  # fell behind (a fault): no burst to catch up
                    if s.transactions and self.zombie_requested.is_set():
                        producer = self._become_zombie(producer)
                        continue
                    if s.transactions:
                        self._transaction(producer)
                        next_at += interval * s.txn_size
                        continue
                    partition = self.rng.randrange(s.partitions)
                    self._pending.append(producer.send(self.workload.topic, None, producer.next_value(),
                                                       partition))
                    self.sent += 1
                    next_at += interval
                except Exception as exc:  # noqa: BLE001 - the library declared this producer dead
                    if not _fatal(exc):
                        raise
                    producer = self._replace(producer)
            try:
                self.unflushed = producer.flush(s.delivery_timeout_ms / 1000 + 5)
            except Exception as exc:  # noqa: BLE001
                if not _fatal(exc):
                    raise
            self._prune()
        except Exception:  # noqa: BLE001 - a workload bug must be reported, not kill the campaign
            self._unexpected()
        finally:
            self.flushed.set()
            if producer is not None:
                try:
                    producer.close()
                except Exception as exc:  # noqa: BLE001
                    if not _fatal(exc):
                        self._unexpected()


def _close_quietly(client: Producer | Consumer) -> None:
    with contextlib.suppress(Exception):
        client.close()


def _fatal(exc: BaseException) -> bool:
    """A client library's "this producer can no longer be used" error."""
    if isinstance(exc, ClientError) and exc.fatal:
        return True
    text = str(exc)
    return "FATAL" in text or "fatal" in text.lower()


class _Crashable(_Worker):
    """A worker a client fault crashes at its crash point (:meth:`request_crash`) and that starts
    again, under a new process name (``c1.2``), when the fault ends (``restart``)."""

    def __init__(self, workload: Workload, name: str) -> None:
        super().__init__(workload, name)
        self.name_base = name
        self.incarnation = 1
        self.process = name
        self.crashes = 0
        self.crash_requested = threading.Event()
        self.crashed = threading.Event()
        self.restart = threading.Event()
        self._crash_asked_at = 0.0

    def _crash_point(self) -> None:
        if self.crash_requested.is_set():
            raise _Crash

    def _await_restart(self) -> bool:
        """Crashed: wait for the fault to end and become the next incarnation; False when the
        workload stops first."""
        self.crash_requested.clear()
        self.crashes += 1
        self.crashed.set()
        while not self.restart.wait(0.1):
            if self.stop_event.is_set():
                return False
        self.restart.clear()
        self.crashed.clear()
        self._next_incarnation()
        return True

    def _next_incarnation(self) -> None:
        self.incarnation += 1
        self.process = f"{self.name_base}.{self.incarnation}"

    def request_crash(self) -> None:
        self._crash_asked_at = time.monotonic()
        self.crash_requested.set()


class ConsumerWorker(_Crashable):
    """One consumer (see the module docstring for the modes), restarted after a crash."""

    def __init__(self, workload: Workload, name: str, mode: str, topic: str | None = None,
                 read_committed: bool = False) -> None:
        super().__init__(workload, name)
        self.mode = mode
        self.records = 0
        self.topic = topic  # None: the campaign's topics (see _open)
        self.read_committed = read_committed

    @property
    def group(self) -> str | None:
        return None if self.mode == "assigned" else f"{self.workload.group_prefix}-{self.mode}"

    def _open(self) -> Consumer:
        w = self.workload
        settings = w.settings.consumer_settings()
        if self.read_committed:
            settings = attrs.evolve(settings, isolation_level="read_committed")
        consumer = make_consumer(w.settings.client, w.bootstrap, self.group, settings, w.history, self.process)
        try:
            if self.mode == "assigned":
                # The reader of everything the campaign writes (the input and the processors'
                # output), or of the one topic it was given.
                tps = [(t, p) for t in ([self.topic] if self.topic else w.topics)
                       for p in range(w.settings.partitions)]
                consumer.assign(tps, {tp: 0 for tp in tps})
            else:
                consumer.subscribe([w.topic])
        except BaseException:
            consumer.close()
            raise
        return consumer

    def _step(self, consumer: Consumer) -> None:
        if self.crash_requested.is_set() and time.monotonic() - self._crash_asked_at > 3.0:
            raise _Crash  # no records came to crash between: crash anyway
        if self.mode == "assigned":
            self.records += len(consumer.poll(0.2))
        elif self.mode == "commit-after":
            records = consumer.poll(0.2)
            if records:
                self.records += len(records)
                self._crash_point()  # processed, not committed: the next owner gets them again
                try:
                    consumer.commit(next_offsets(records))
                except ClientError:
                    pass  # recorded; a later commit covers these offsets
        else:  # commit-before
            records = consumer.take(0.2)
            if records:
                try:
                    consumer.commit(next_offsets(records))
                except ClientError:
                    return  # not committed: not processed either (the next owner may get them)
                self._crash_point()  # committed, not processed: lost for this group
                consumer.record_delivery(records)
                self.records += len(records)

    def run(self) -> None:
        consumer: Consumer | None = None
        while not self.stop_event.is_set():
            try:
                if consumer is None:
                    consumer = self._open()
                self._step(consumer)
            except _Crash:
                if consumer is not None:
                    _close_quietly(consumer)
                    consumer = None
                if not self._await_restart():
                    return
            except ClientError:
                time.sleep(0.1)
            except Exception:  # noqa: BLE001
                self._unexpected()
        if consumer is not None:
            _close_quietly(consumer)


class ProcessorWorker(_Crashable):
    """A consume-transform-produce instance (KIP-447): a read_committed member of the processors'
    group and a transactional producer whose transactional id every incarnation keeps (the next
    one fences the last, and the coordinator aborts the transaction it left open).

    Each transaction processes what one poll took: one output record per input record (to the
    same partition of the output topic, keyed by the input's value), the consumer's positions
    past them sent to the transaction, then commit or (``abort_ratio`` of them, drawn from the
    seed) abort. After a transaction that did not commit it seeks back to the group's committed
    positions, as KIP-447 applications do. A ``processor-crash`` fault crashes it after its sends
    and offsets, before it ends the transaction, and nowhere else: its clients are dropped
    without closing (the Java client's JVMs are SIGKILLed)."""

    def __init__(self, workload: Workload, name: str, seed: int) -> None:
        super().__init__(workload, name)
        self.rng = random.Random(seed)
        self.processed = 0  # input records whose transaction committed
        self.transactions = 0
        self.ready = threading.Event()  # its first clients are open (the campaign's clock may start)

    def _open(self) -> tuple[Consumer, Producer]:
        w = self.workload
        s = w.settings
        producer = make_producer(s.client, w.bootstrap, s.producer_settings(f"{w.group_prefix}-{self.name_base}"),
                                 w.history, self.process)
        try:
            producer.init_transactions()  # fences the last incarnation before this one reads
            consumer = make_consumer(s.client, w.bootstrap, w.processor_group,
                                     attrs.evolve(s.consumer_settings(), max_poll_records=PROCESSOR_POLL_RECORDS),
                                     w.history, self.process)
        except BaseException:
            _close_quietly(producer)
            raise
        try:
            consumer.subscribe([w.topic])
        except BaseException:
            _close_quietly(consumer)
            _close_quietly(producer)
            raise
        return consumer, producer

    def _step(self, consumer: Consumer, producer: Producer) -> None:
        # No crash outside a transaction: a processor that gets no input (its group is
        # rebalancing) does not reach its crash point, and the fault is not applied (TIMEOUT).
        records = consumer.take(0.2)
        if not records:
            return
        w = self.workload
        sends = [(w.processed_topic, r.partition, text(r.value), producer.next_value()) for r in records]
        commit = self.rng.random() >= w.settings.abort_ratio
        self.transactions += 1
        outcome = producer.transaction(sends, commit, w.settings.txn_send_gap_ms / 1000,
                                       consumed=Consumed(consumer, records), before_end=self._crash_point)
        if outcome == "commit":
            self.processed += len(records)
        elif w.settings.rewind_after_abort:
            self._rewind(consumer)

    @staticmethod
    def _rewind(consumer: Consumer) -> None:
        """Back to the group's committed positions (the start where none)."""
        owned = sorted(consumer.assignment)
        if owned:
            for (topic, partition), offset in consumer.committed(owned).items():
                consumer.seek(topic, partition, max(0, offset))

    def run(self) -> None:
        clients: tuple[Consumer, Producer] | None = None
        while not self.stop_event.is_set():
            try:
                if clients is None:
                    clients = self._open()
                    self.ready.set()
                self._step(*clients)
            except _Crash:
                if clients is not None:
                    for client in clients:
                        client.crash()
                    clients = None
                if not self._await_restart():
                    return
            except ClientError as exc:
                if clients is not None and (exc.fatal or _fatal(exc)):
                    # Fenced or otherwise dead: a new incarnation (new consumer, same transactional id).
                    self.errors_seen += 1
                    for client in clients:
                        _close_quietly(client)
                    clients = None
                    self._next_incarnation()
                elif clients is not None:
                    # A failed seek or offset fetch leaves the position unknown: rewind again.
                    with contextlib.suppress(ClientError):
                        self._rewind(clients[0])
                time.sleep(0.1)
            except Exception:  # noqa: BLE001
                self._unexpected()
        if clients is not None:
            for client in clients:
                _close_quietly(client)


def processed_topic(topic: str) -> str:
    """The topic the processors of a campaign on ``topic`` write to."""
    return f"{topic}-out"


class Workload:
    """The producers, consumers and processors of one campaign."""

    def __init__(self, settings: WorkloadSettings, bootstrap: str, topic: str, history: Recorder, seed: int,
                 group_prefix: str, replication_factor: int = 1) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.topic = topic
        self.processed_topic = processed_topic(topic)
        self.history = history
        self.group_prefix = group_prefix
        rng = random.Random(seed)
        self.producers = [ProducerWorker(self, f"p{i}", rng.randrange(1 << 31)) for i in range(settings.producers)]
        self.consumers = [ConsumerWorker(self, f"c{i}", mode) for i, mode in enumerate(settings.consumers)]
        # Drawn after the producers' seeds, so that adding processors changes nothing else.
        self.processors = [ProcessorWorker(self, f"x{i}", rng.randrange(1 << 31)) for i in range(settings.processors)]
        self.streams: StreamsApplication | None = None
        self.warnings: list[str] = []
        if settings.streams:
            # ClientUnavailable (no Java, no jars) is raised here, before anything starts.
            self.streams = StreamsApplication(streams_settings(settings, bootstrap, topic, group_prefix,
                                                               replication_factor), settings.streams, history)
            self.consumers.append(ConsumerWorker(self, STREAMS_READER, "assigned", output_topic(topic),
                                                 read_committed=True))

    @property
    def topics(self) -> list[str]:
        """The campaign's topics: its input, and the processors' output when there are processors."""
        return [self.topic, self.processed_topic] if self.processors else [self.topic]

    @property
    def processor_group(self) -> str:
        return f"{self.group_prefix}-processors"

    @property
    def _workers(self) -> list[_Worker]:
        return [*self.producers, *self.consumers, *self.processors]

    @property
    def _crashables(self) -> list[_Crashable]:
        return [*self.consumers, *self.processors]

    @property
    def group_consumers(self) -> list[str]:
        return [c.name_base for c in self.consumers if c.mode != "assigned"]

    def groups(self) -> dict[str, str]:
        """Group id -> consumer mode (the groups whose deliveries --guarantee judges; the
        processors' group is judged by exactly-once-processing)."""
        return {c.group: c.mode for c in self.consumers if c.group is not None}

    def start(self) -> None:
        if self.streams is not None:
            self.warnings += self.streams.start()
        for worker in [*self.consumers, *self.processors, *self.producers]:
            worker.start()
        # The processors' clients start before the clock does: a Java processor is two JVMs,
        # which take seconds to start on a busy machine, and a campaign's faults are timed for
        # processors that are already processing.
        deadline = time.monotonic() + PROCESSOR_START_TIMEOUT_S
        for x in self.processors:
            if not x.ready.wait(max(0.0, deadline - time.monotonic())):
                self.warnings.append(f"processor {x.name_base} had not started its clients "
                                     f"{PROCESSOR_START_TIMEOUT_S:.0f} s after the workload started")

    @property
    def sent(self) -> int:
        return sum(p.sent for p in self.producers)

    @property
    def acknowledged(self) -> int:
        return sum(p.acknowledged for p in self.producers)

    @property
    def producers_replaced(self) -> int:
        return sum(w.errors_seen for w in [*self.producers, *self.processors])

    @property
    def read(self) -> int:
        return sum(c.records for c in self.consumers)

    @property
    def processed(self) -> int:
        """Input records the processors processed in committed transactions."""
        return sum(x.processed for x in self.processors)

    @property
    def crashes(self) -> int:
        return sum(w.crashes for w in self._crashables)

    @property
    def errors(self) -> list[str]:
        return [e for w in self._workers for e in w.errors]

    def stop_producers(self, timeout_s: float | None = None) -> int:
        """Stop sending, flush what is in flight; how many sends were still unacknowledged."""
        for p in self.producers:
            p.stop_event.set()
        limit = timeout_s if timeout_s is not None else self.settings.delivery_timeout_ms / 1000 + 15
        for p in self.producers:
            p.join(limit)
            p.join_zombies(limit)
        return sum(p.unflushed for p in self.producers)

    def stop_consumers(self, timeout_s: float = 30.0) -> None:
        """Stop the processors (after their current transaction), then the consumers."""
        for group in (self.processors, self.consumers):
            for c in group:
                c.stop_event.set()
                c.restart.set()
            for c in group:
                c.join(timeout_s)

    def stop(self) -> None:
        """Stop everything now (an interrupted campaign)."""
        if self.streams is not None:
            self.streams.kill_all()
        for w in self._workers:
            w.stop_event.set()
        for c in self._crashables:
            c.restart.set()
        for p in self.producers:
            p.zombie_wake.set()
        for w in self._workers:
            if w.is_alive():
                w.join(30)

    def _crashable(self, name: str) -> _Crashable:
        for c in self._crashables:
            if c.name_base == name:
                return c
        known = ", ".join(c.name_base for c in self._crashables)
        raise KeyError(f"no consumer or processor {name!r} (there are: {known})")

    def crash(self, name: str, timeout_s: float = 10.0) -> str:
        """Crash group consumer or processor ``name`` at its crash point; returns the process
        that crashed."""
        worker = self._crashable(name)
        if isinstance(worker, ConsumerWorker) and worker.mode == "assigned":
            raise KeyError(f"consumer {name!r} is not in a group")
        process = worker.process
        worker.request_crash()
        if not worker.crashed.wait(timeout_s):
            worker.crash_requested.clear()  # not applied: it must not crash later, unrestarted
            if not worker.crashed.is_set():
                raise TimeoutError(f"{name} did not reach its crash point in {timeout_s:.0f} s")
        return process

    def restart(self, name: str) -> str:
        """Start a new incarnation of crashed consumer or processor ``name``; returns its
        process name."""
        worker = self._crashable(name)
        worker.restart.set()
        deadline = time.monotonic() + 5
        while worker.crashed.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        return worker.process


    def _producer(self, name: str) -> ProducerWorker:
        for p in self.producers:
            if p.name_base == name:
                return p
        raise KeyError(f"no producer {name!r} (producers: {', '.join(p.name_base for p in self.producers)})")

    def make_zombie(self, name: str) -> str:
        """Freeze transactional producer ``name`` in the middle of its next transaction and start
        its next incarnation (``ProducerWorker._become_zombie``); returns the zombie's process."""
        worker = self._producer(name)
        if not self.settings.transactions:
            raise KeyError(f"producer {name!r} is not transactional")
        worker.zombie_made.clear()
        worker.zombie_requested.set()
        # Bounded by the zombie's wait for its first send, plus its current transaction.
        timeout_s = 2 * self.settings.delivery_timeout_ms / 1000 + 10
        if not worker.zombie_made.wait(timeout_s):
            worker.zombie_requested.clear()
            raise TimeoutError(f"producer {name} did not start a transaction in {timeout_s:.0f} s")
        return worker.zombie_process

    def wake_zombie(self, name: str) -> None:
        """The zombie of ``name`` resumes its transaction (and tries to commit it); the campaign
        waits for it when it stops the producers."""
        self._producer(name).zombie_wake.set()

    def kill_streams(self, name: str) -> str:
        """SIGKILL Kafka Streams instance ``name``; returns the process killed."""
        if self.streams is None:
            raise KeyError("no Kafka Streams instance to kill (--streams)")
        return self.streams.kill(name)

    def restart_streams(self, name: str) -> None:
        """Start a new instance in place of killed Streams instance ``name``."""
        if self.streams is not None:
            self.streams.restart(name)


STREAMS_READER = "out0"
"""The consumer reading the Streams application's output (read_committed)."""


def streams_settings(settings: WorkloadSettings, bootstrap: str, topic: str, group_prefix: str,
                     replication_factor: int) -> java_streams.StreamsSettings:
    """The Streams application of a campaign: its id is the campaign's group prefix and
    ``streams``, its internal topics as replicated as the campaign topic."""
    return java_streams.StreamsSettings(f"{group_prefix}-streams", bootstrap, topic, output_topic(topic),
                                        settings.streams_commit_interval_ms, replication_factor,
                                        processing_guarantee=settings.streams_guarantee)


def workload_clients(settings: WorkloadSettings) -> dict[str, str]:
    """Process name -> the client library (and version) it runs, for the history's
    ``meta.clients`` (restarted incarnations, ``p0.2``, are found under their first name)."""
    library = describe_client(settings.client)
    clients = {f"p{i}": library for i in range(settings.producers)}
    clients.update({f"c{i}": library for i in range(len(settings.consumers))})
    clients.update({f"x{i}": library for i in range(settings.processors)})
    if settings.streams:
        clients.update({f"s{i}": java_streams.describe(guarantee=settings.streams_guarantee)
                        for i in range(settings.streams)})
        clients[STREAMS_READER] = library
        clients[OUTPUT_DRAIN] = precise_read.CLIENT
    clients[precise_read.PROCESS] = precise_read.CLIENT
    return clients
