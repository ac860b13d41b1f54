"""One small producer/consumer interface over every Kafka client library, recording histories.

Users validate a broker with the client library they ship, so the workloads run over
confluent-kafka, kafka-python or aiokafka through this interface (``--client``). Each backend
implements a few primitive methods (``_send``, ``_poll``, ...); the base classes here turn
every operation into history events (docs/history-format.md): ``send`` is invoked when the
application hands the record over and completed from the library's delivery report, classified
with `specs.produce.classify` (a timeout is ``info``, never ``fail``); polls record exactly the
records returned; subscriptions record the rebalances the library reports.

Values are unique within a run (``<process>-<counter>``, docs/architecture.md, principle 10): use
:meth:`Producer.next_value`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

import attrs

from harness.history.write import Recorder
from specs.offsets import offset_to_commit
from specs.produce import Acks, Outcome, ProducerConfig, classify
from specs.types import Offset

TP = tuple[str, int]


def bounded(call: Callable[[], object], timeout_s: float) -> bool:
    """Run `call` in a daemon thread and wait at most `timeout_s`: True if it returned (its
    exception, if any, is raised here), False if it is still running (it is abandoned)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=run, name="kconform-bounded-call", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return False
    if failure:
        raise failure[0]
    return True


class ClientUnavailable(RuntimeError):
    """The client library is not installed (the message says how to install it)."""


class ClientError(RuntimeError):
    """A client operation failed; ``error`` is Kafka's error name (or TIMEOUT, DISCONNECTED).

    For transactional calls the library also says what the application must do next:
    ``abortable`` (abort the transaction, then go on) or ``fatal`` (the producer is unusable,
    e.g. fenced by a newer instance of its transactional id)."""

    def __init__(self, error: str, message: str = "", *, abortable: bool = False, fatal: bool = False) -> None:
        super().__init__(f"{error}: {message}" if message else error)
        self.error = error
        self.abortable = abortable
        self.fatal = fatal


def text(data: bytes | None) -> str | None:
    """A key or value as the history records it (``hex:...`` for bytes that are not UTF-8)."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + data.hex()


@attrs.frozen
class ProducerSettings:
    """The producer settings every backend maps to its own configuration keys."""

    acks: str = "all"  # "0", "1" or "all"
    idempotence: bool = True
    linger_ms: int = 5
    delivery_timeout_ms: int = 30_000
    client_id: str = "kconform"
    # None: the library's default. A short request timeout makes a slow answer a retry (what
    # chaos campaigns need to provoke duplicates); a short metadata age follows leaders sooner.
    request_timeout_ms: int | None = None
    metadata_max_age_ms: int | None = None
    # A transactional producer (KIP-98): its transactional.id and transaction.timeout.ms.
    transactional_id: str | None = None
    transaction_timeout_ms: int = 60_000

    def spec(self) -> ProducerConfig:
        """The settings as `specs.produce` sees them (for classifying outcomes)."""
        return ProducerConfig(acks=Acks(self.acks), enable_idempotence=self.idempotence,
                              max_in_flight=5)


@attrs.frozen
class ConsumerSettings:
    auto_offset_reset: str = "earliest"
    client_id: str = "kconform"
    session_timeout_ms: int = 10_000
    max_poll_records: int = 500
    metadata_max_age_ms: int | None = None  # None: the library's default
    isolation_level: str = "read_uncommitted"  # or "read_committed" (KIP-98)


@attrs.frozen
class Delivery:
    """How one send ended."""

    outcome: Outcome
    topic: str
    partition: int | None
    offset: int | None
    error: str | None


class SendHandle:
    """The completion of one send: wait for it with :meth:`result`.

    ``pump`` serves the library's delivery reports while waiting, for libraries that deliver
    them only when asked (librdkafka calls them from ``poll``).
    """

    def __init__(self, pump: Callable[[float], None] | None = None) -> None:
        self._event = threading.Event()
        self._delivery: Delivery | None = None
        self._pump = pump

    def _set(self, delivery: Delivery) -> None:
        self._delivery = delivery
        self._event.set()

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def result(self, timeout_s: float | None = None) -> Delivery:
        if self._pump is not None:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while not self._event.is_set() and (deadline is None or time.monotonic() < deadline):
                self._pump(0.05)
        if not self._event.wait(0 if self._pump is not None else timeout_s):
            raise TimeoutError("the send has not completed")
        assert self._delivery is not None
        return self._delivery


@attrs.frozen
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def rows(records: Sequence[ConsumedRecord]) -> list[list[Any]]:
    """Records as a poll's ``records`` (docs/history-format.md)."""
    return [[r.topic, r.partition, r.offset, text(r.key), text(r.value)] for r in records]


def next_offsets(records: Sequence[ConsumedRecord]) -> dict[TP, int]:
    """Per partition, the offset after the last of ``records``: what a consumer commits once it
    has processed them."""
    offsets: dict[TP, int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), offset_to_commit(Offset(r.offset)))
    return offsets


DeliveryCallback = Callable[[str | None, int | None, int | None], None]
"""(error name or None, partition, offset) from the library's delivery report."""


class _Client:
    """What producers and consumers share: the library's name, opening the library's client once
    the common fields are set (:meth:`_open`, each backend's only constructor code), and closing
    (also as a context manager, so that a failing workload does not leave a client's connections
    behind)."""

    client: ClassVar[str] = "?"

    def _open(self) -> None:
        """Create the library's client from ``self.bootstrap``, ``self.settings``, ``self.process``
        (and a consumer's ``self.group``); raise ClientUnavailable when the library is missing."""
        raise NotImplementedError

    def close(self) -> None:
        self._close()

    def crash(self) -> None:
        """Stop at once, as a crashed process would: nothing more is sent, nothing is committed
        or aborted. By default the library's client is closed aside (a daemon thread, so the
        caller goes on at once); the Java client SIGKILLs its JVM."""
        threading.Thread(target=self._close_quietly, name="kconform-crashed-client", daemon=True).start()

    def _close_quietly(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - a crashed client's close may fail: nobody is told
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close(self) -> None:
        raise NotImplementedError


class Producer(_Client):
    """A producer over one client library, recording every send into ``history``."""

    def __init__(self, bootstrap: str, settings: ProducerSettings | None = None,
                 history: Recorder | None = None, process: str = "p0") -> None:
        self.bootstrap = bootstrap
        self.settings = settings or ProducerSettings()
        self.history = history
        self.process = process
        self._counter = itertools.count()
        self._spec = self.settings.spec()
        self._open()

    def next_value(self) -> str:
        """A value no other write of the run has: ``<process>-<n>``."""
        return f"{self.process}-{next(self._counter)}"

    def send(self, topic: str, key: str | None, value: str, partition: int | None = None) -> SendHandle:
        """Hand one record to the library; the handle completes with its delivery report."""
        invoke = None
        if self.history is not None:
            invoke = self.history.invoke(self.process, "send", topic=topic, partition=partition,
                                         key=key, value=value)
        return self._hand_over(topic, key, value, partition, lambda d: self._record(
            invoke, d.outcome, d.topic, d.partition, d.offset, d.error))

    def _hand_over(self, topic: str, key: str | None, value: str, partition: int | None,
                   delivered: Callable[[Delivery], None]) -> SendHandle:
        """Give one record to the library; ``delivered`` and the handle get its delivery."""
        handle = SendHandle(self._pump)

        def done(error: str | None, got_partition: int | None, offset: int | None) -> None:
            outcome = classify(error, self._spec)
            if outcome is Outcome.SUCCESS and (offset is None or offset < 0 or got_partition is None):
                outcome, error = Outcome.INDETERMINATE, error or "NO_OFFSET"
            if outcome is Outcome.INDETERMINATE and error is None:
                error = "NO_ACK"  # acks=0: the broker says nothing
            delivery = Delivery(outcome, topic, got_partition, offset, error)
            delivered(delivery)
            handle._set(delivery)

        try:
            self._send(topic, key.encode() if key is not None else None, value.encode(), partition, done)
        except ClientError as exc:
            # Raised before the record was handed to the library: it was certainly not sent.
            delivery = Delivery(Outcome.FAILURE, topic, partition, None, exc.error)
            delivered(delivery)
            handle._set(delivery)
        return handle

    # --- transactions (KIP-98) -----------------------------------------------------------------

    def init_transactions(self) -> None:
        """InitProducerId for ``settings.transactional_id``: fences every older instance."""
        self._init_transactions()

    def transaction(self, sends: Sequence[tuple[str, int | None, str | None, str]], commit: bool,
                    gap_s: float = 0.0, *, consumed: Consumed | None = None,
                    before_end: Callable[[], None] | None = None,
                    stall: Callable[[SendHandle], None] | None = None) -> str:
        """Run one transaction of ``sends`` ((topic, partition, key, value)), ``gap_s`` seconds
        apart (so that each new partition is added to the transaction by a request of its own),
        then commit it or (``commit`` false) abort it, recorded as one ``txn`` operation
        (docs/history-format.md). Returns how it ended as the history has it: ``commit`` or
        ``abort`` (ok), ``fail`` (certainly not committed: commitTransaction was never called,
        or the library refused it and the transaction was aborted) or ``info`` (unknown).
        Raises the library's fatal error once recorded: the producer must be replaced.

        With ``consumed`` it is a consume-transform-produce transaction (KIP-447): the records a
        group consumer polled (with :meth:`Consumer.take`) are recorded as its ``poll``, and after
        the sends the consumer's positions past them go into the transaction
        (sendOffsetsToTransaction, with the consumer's group metadata, so that a member the group
        has since replaced is fenced), recorded as its ``offsets``. ``before_end`` runs just
        before commitTransaction / abortTransaction: an exception it raises (a crash) leaves the
        transaction open and its operation uncompleted. ``stall``, when given, is called with the
        first send's handle right after that send is handed to the library, and the transaction
        goes on when it returns: the application freezing in the middle of its transaction (a
        zombie-producer fault)."""
        ops: list[list[Any]] = [["send", *send] for send in sends]
        fields: dict[str, Any] = {"ops": ops, "commit": commit}
        done: list[list[Any]] = []
        if consumed is not None:
            fields = {"ops": [["poll"], *ops, ["offsets", consumed.group]], "commit": commit,
                      **consumed.consumer._poll_fields()}
            done.append(["poll", rows(consumed.records)])
        invoke = self.history.invoke(self.process, "txn", fields) if self.history is not None else None
        try:
            self._begin_transaction()
            handles = []
            for i, (topic, partition, key, value) in enumerate(sends):
                if i and gap_s:
                    self.serve(gap_s)
                handle = self._hand_over(topic, key, value, partition, lambda _: None)
                handles.append(((topic, partition, key, value), handle))
                if i == 0 and stall is not None:
                    stall(handle)
            for (topic, _, key, value), handle in handles:
                delivery = handle.result(self.settings.delivery_timeout_ms / 1000 + 5)
                if delivery.outcome is not Outcome.SUCCESS:
                    raise ClientError(delivery.error or "UNKNOWN", abortable=True)
                done.append(["send", topic, delivery.partition, key, value, delivery.offset])
            if consumed is not None:
                positions = next_offsets(consumed.records)
                self._send_offsets(positions, consumed.consumer.group_metadata())
                done.append(["offsets", consumed.group, [[t, p, o] for (t, p), o in sorted(positions.items())]])
        except (ClientError, TimeoutError) as exc:
            return self._give_up(invoke, done, exc, None)
        if before_end is not None:
            before_end()
        end_invoked = self.history.now() if self.history is not None else 0
        try:
            self._end_transaction(commit)
        except ClientError as exc:
            if commit and exc.abortable:
                return self._give_up(invoke, done, exc, end_invoked)  # the commit was refused
            self._complete(invoke, "info", exc.error, ops=done, end_invoked=end_invoked)
            if exc.fatal:
                raise
            return "info"
        outcome = "commit" if commit else "abort"
        if self.history is not None and invoke is not None:
            self.history.ok(invoke, ops=done, outcome=outcome, end_invoked=end_invoked)
        return outcome

    def _give_up(self, invoke: int | None, done: list[list[Any]], exc: BaseException,
                 end_invoked: int | None) -> str:
        """Abort after an error: the transaction is certainly not committed (no commit was sent,
        or the library says it was refused), whether the abort succeeds or not."""
        error = exc.error if isinstance(exc, ClientError) else "TIMEOUT"
        fatal = isinstance(exc, ClientError) and exc.fatal or self._stuck_after(error)
        if not fatal:
            try:
                self._end_transaction(False)
            except ClientError as abort_error:
                fatal = abort_error.fatal
        extra: dict[str, Any] = {"ops": done}
        if end_invoked is not None:
            extra["end_invoked"] = end_invoked
        self._complete(invoke, "fail", error, **extra)
        if fatal:
            if isinstance(exc, ClientError) and exc.fatal:
                raise exc
            raise ClientError(error, str(exc), fatal=True) from exc
        return "fail"

    def _complete(self, invoke: int | None, type_: str, error: str, **fields: Any) -> None:
        if self.history is not None and invoke is not None:
            self.history.complete(invoke, type_, error=error, **fields)

    def _record(self, invoke: int | None, outcome: Outcome, topic: str, partition: int | None,
                offset: int | None, error: str | None) -> None:
        if self.history is None or invoke is None:
            return
        if outcome is Outcome.SUCCESS:
            self.history.ok(invoke, topic=topic, partition=partition, offset=offset)
        elif outcome is Outcome.FAILURE:
            self.history.fail(invoke, error or "UNKNOWN")
        else:
            self.history.info(invoke, error or "UNKNOWN")

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait until every send has a delivery report; how many are still pending."""
        return self._flush(timeout_s)

    def serve(self, timeout_s: float = 0.0) -> None:
        """Let the library deliver pending delivery reports (waiting up to ``timeout_s``).
        Libraries that report by themselves need nothing: this just waits."""
        if self._pump is not None:
            self._pump(timeout_s)
        elif timeout_s > 0:
            time.sleep(timeout_s)

    # --- backend -------------------------------------------------------------------------------

    _pump: Callable[[float], None] | None = None
    """Serve pending delivery reports for up to the given seconds (None: reports come by themselves)."""

    def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None,
              done: DeliveryCallback) -> None:
        raise NotImplementedError

    def _flush(self, timeout_s: float) -> int:
        raise NotImplementedError

    def _init_transactions(self) -> None:
        raise ClientUnavailable(f"transactions are not implemented for {self.client} in kconform yet")

    def _begin_transaction(self) -> None:
        raise ClientUnavailable(f"transactions are not implemented for {self.client} in kconform yet")

    def _end_transaction(self, commit: bool) -> None:
        """commitTransaction or abortTransaction; ClientError (with abortable / fatal) on failure."""
        raise ClientUnavailable(f"transactions are not implemented for {self.client} in kconform yet")

    def _send_offsets(self, offsets: dict[TP, int], group_metadata: object) -> None:
        """sendOffsetsToTransaction (KIP-447): these next offsets to read, for the group that
        ``group_metadata`` (:meth:`Consumer.group_metadata`) describes; ClientError (with
        abortable / fatal) on failure."""
        raise ClientUnavailable(f"consume-transform-produce is not implemented for {self.client} in kconform yet")

    def _stuck_after(self, error: str) -> bool:
        """Whether a transaction that failed with ``error`` leaves this library's producer unable
        to write again, though the library does not say so: it is then reported as fatal."""
        return False


class Consumer(_Client):
    """A consumer over one client library, recording polls, position changes and commits."""

    def __init__(self, bootstrap: str, group: str | None = None, settings: ConsumerSettings | None = None,
                 history: Recorder | None = None, process: str = "c0") -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.settings = settings or ConsumerSettings()
        self.history = history
        self.process = process
        self.next_offsets: dict[TP, int] = {}  # one past the last offset returned, per partition
        self.assignment: frozenset[TP] = frozenset()
        self._open()

    # --- recorded operations -------------------------------------------------------------------

    def assign(self, partitions: Sequence[TP], offsets: Mapping[TP, int] | None = None) -> None:
        """Read these partitions (no group membership), from ``offsets`` or the reset policy."""
        self._op("assign", {"partitions": [list(tp) for tp in partitions]},
                 lambda: self._assign(list(partitions), dict(offsets or {})))
        self.assignment = frozenset(partitions)
        for tp, offset in (offsets or {}).items():
            self.next_offsets[tp] = offset

    def subscribe(self, topics: Sequence[str]) -> None:
        """Join ``self.group`` for ``topics``; rebalances are recorded as they are reported."""
        if self.group is None:
            raise ValueError("subscribe needs a consumer group")
        self._op("subscribe", {"group": self.group, "topics": list(topics),
                               "auto_offset_reset": self.settings.auto_offset_reset},
                 lambda: self._subscribe(list(topics)))

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._op("seek", {"topic": topic, "partition": partition, "offset": offset},
                 lambda: self._seek(topic, partition, offset))
        self.next_offsets[(topic, partition)] = offset

    def _poll_fields(self) -> dict[str, Any]:
        """A poll's invoke value: its isolation level, unless it is Kafka's default."""
        isolation = self.settings.isolation_level
        return {} if isolation == "read_uncommitted" else {"isolation_level": isolation}

    def poll(self, timeout_s: float = 1.0) -> list[ConsumedRecord]:
        invoke = self.history.invoke(self.process, "poll", self._poll_fields()) if self.history is not None else None
        try:
            records = self._poll(timeout_s)
        except ClientError as exc:
            if self.history is not None and invoke is not None:
                self.history.fail(invoke, exc.error)
            raise
        except BaseException:
            if self.history is not None and invoke is not None:
                self.history.info(invoke, "EXCEPTION")
            raise
        if self.history is not None and invoke is not None:
            self.history.ok(invoke, records=rows(records))
        for r in records:
            self.next_offsets[(r.topic, r.partition)] = offset_to_commit(Offset(r.offset))
        return records

    def take(self, timeout_s: float = 1.0) -> list[ConsumedRecord]:
        """Poll the library *without* recording a ``poll``: for an application that commits
        before it processes (at-most-once), whose delivery is when it takes the records after
        the commit. Record that with :meth:`record_delivery`; records never recorded were never
        delivered (a crash between the commit and the processing loses them)."""
        records = self._poll(timeout_s)
        for r in records:
            self.next_offsets[(r.topic, r.partition)] = offset_to_commit(Offset(r.offset))
        return records

    def record_delivery(self, records: Sequence[ConsumedRecord]) -> None:
        """Record records obtained with :meth:`take` as one ``poll`` that returned them."""
        if self.history is None:
            return
        invoke = self.history.invoke(self.process, "poll", self._poll_fields())
        self.history.ok(invoke, records=rows(records))

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit these next-offsets-to-read for ``self.group`` (synchronously)."""
        if self.group is None:
            raise ValueError("commit needs a consumer group")
        self._op("commit", {"group": self.group, "offsets": [[t, p, o] for (t, p), o in offsets.items()]},
                 lambda: self._commit(dict(offsets)), indeterminate=True)

    def committed(self, partitions: Sequence[TP]) -> dict[TP, int]:
        """The group's committed offsets (-1 where none)."""
        if self.group is None:
            raise ValueError("committed needs a consumer group")
        invoke = None
        if self.history is not None:
            invoke = self.history.invoke(self.process, "committed", group=self.group,
                                         partitions=[list(tp) for tp in partitions])
        try:
            result = self._committed(list(partitions))
        except ClientError as exc:
            if self.history is not None and invoke is not None:
                self.history.fail(invoke, exc.error)
            raise
        if self.history is not None and invoke is not None:
            self.history.ok(invoke, offsets=[[t, p, o] for (t, p), o in result.items()])
        return result

    def group_metadata(self) -> object:
        """The consumer's group metadata as its library gives it to a producer's
        sendOffsetsToTransaction (KIP-447: group id, generation, member id, group instance id),
        taken now: the generation of the last rebalance this consumer joined."""
        if self.group is None:
            raise ValueError("group metadata needs a consumer group")
        return self._group_metadata()

    def drain(self, ends: Mapping[TP, int], timeout_s: float = 30.0, idle_s: float = 5.0) -> bool:
        """Poll until every partition in ``ends`` was read up to its end offset; recorded as a
        ``drain`` (``ok`` when complete, ``info`` when the time ran out or nothing arrived for
        ``idle_s`` seconds while offsets were still missing)."""
        invoke = None
        if self.history is not None:
            invoke = self.history.invoke(self.process, "drain",
                                         partitions=[list(tp) for tp in ends])
        deadline = time.monotonic() + timeout_s
        last_record = time.monotonic()
        complete = False
        while True:
            if all(self.next_offsets.get(tp, 0) >= end for tp, end in ends.items()):
                complete = True
                break
            now = time.monotonic()
            if now > deadline or now - last_record > idle_s:
                break
            try:
                if self.poll(0.5):
                    last_record = time.monotonic()
            except ClientError:
                time.sleep(0.1)
        if self.history is not None and invoke is not None:
            if complete:
                self.history.ok(invoke)
            else:
                self.history.info(invoke, "TIMEOUT")
        return complete

    def _op(self, f: str, value: dict[str, Any], action: Callable[[], None], indeterminate: bool = False) -> None:
        invoke = self.history.invoke(self.process, f, value) if self.history is not None else None
        try:
            action()
        except ClientError as exc:
            if self.history is not None and invoke is not None:
                if indeterminate and exc.error in ("TIMEOUT", "DISCONNECTED", "REQUEST_TIMED_OUT"):
                    self.history.info(invoke, exc.error)
                else:
                    self.history.fail(invoke, exc.error)
            raise
        if self.history is not None and invoke is not None:
            self.history.ok(invoke)

    def _rebalanced(self, partitions: Sequence[TP], generation: int | None = None,
                    member: str | None = None) -> None:
        """Backends call this from the library's on-assign callback (the full assignment)."""
        self.assignment = frozenset(partitions)
        for tp in list(self.next_offsets):
            if tp not in self.assignment:
                del self.next_offsets[tp]
        if self.history is not None and self.group is not None:
            self.history.observe(self.process, "rebalance", group=self.group,
                                 partitions=[list(tp) for tp in sorted(partitions)],
                                 generation=generation, member=member)

    # --- backend -------------------------------------------------------------------------------

    def _assign(self, partitions: list[TP], offsets: dict[TP, int]) -> None:
        raise NotImplementedError

    def _subscribe(self, topics: list[str]) -> None:
        raise NotImplementedError

    def _seek(self, topic: str, partition: int, offset: int) -> None:
        raise NotImplementedError

    def _poll(self, timeout_s: float) -> list[ConsumedRecord]:
        raise NotImplementedError

    def _commit(self, offsets: dict[TP, int]) -> None:
        raise NotImplementedError

    def _committed(self, partitions: list[TP]) -> dict[TP, int]:
        raise NotImplementedError

    def _group_metadata(self) -> object:
        raise ClientUnavailable(f"consume-transform-produce is not implemented for {self.client} in kconform yet")


@attrs.frozen
class Consumed:
    """What a consume-transform-produce transaction processes: records a group consumer took."""

    consumer: Consumer
    records: Sequence[ConsumedRecord]

    @property
    def group(self) -> str:
        assert self.consumer.group is not None
        return self.consumer.group
