"""The interface over confluent-kafka (librdkafka)."""

from __future__ import annotations

import warnings
from typing import Any

from harness.clients.base import (
    TP,
    ClientError,
    ClientUnavailable,
    ConsumedRecord,
    Consumer,
    DeliveryCallback,
    Producer,
    bounded,
)
from harness.error_names import error_name

try:
    import confluent_kafka as ck
except ImportError:  # pragma: no cover - depends on the environment
    ck = None  # type: ignore[assignment]

# librdkafka's synchronous commit and its consumer close can block forever (no timeout of their
# own; close hangs when the group is mid-rebalance or the coordinator is gone, librdkafka #1002,
# confluent-kafka-python #1667), and a blocked C call cannot be interrupted, so a workload or a
# test would hang with it. Both run in a daemon thread that the caller waits for a bounded time.
COMMIT_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 30.0

# Each transactional call (init, commit, abort) waits this long, and a retriable failure (its
# timeout) is retried this many times in all, as librdkafka's documentation asks.
TRANSACTION_CALL_TIMEOUT_S = 30.0
TRANSACTION_CALL_ATTEMPTS = 3

LOG_LEVEL = 3  # librdkafka's syslog level: errors only (its warnings flood stderr during rebalances)

# librdkafka's local (negative) error codes, as the history names them.
_LOCAL = {
    "_MSG_TIMED_OUT": "TIMEOUT",
    "_TIMED_OUT": "TIMEOUT",
    "_TIMED_OUT_QUEUE": "TIMEOUT",
    "_TRANSPORT": "DISCONNECTED",
    "_ALL_BROKERS_DOWN": "DISCONNECTED",
    "_UNKNOWN_TOPIC": "UNKNOWN_TOPIC_OR_PARTITION",
    "_UNKNOWN_PARTITION": "UNKNOWN_TOPIC_OR_PARTITION",
    "_MSG_SIZE_TOO_LARGE": "MESSAGE_TOO_LARGE",
}


def _require() -> Any:
    if ck is None:
        raise ClientUnavailable("confluent-kafka is not installed: pip install 'kconform[clients]'")
    return ck


def _optional(settings: dict[str, int | None]) -> dict[str, int]:
    """The settings that are not None (None: keep librdkafka's default)."""
    return {key: value for key, value in settings.items() if value is not None}


def error_of(err: Any) -> str:
    """The history's error name for a confluent_kafka.KafkaError."""
    code = int(err.code())
    if code > 0:
        return error_name(code)
    name = str(err.name())
    return _LOCAL.get(name, name.lstrip("_"))


def _client_error(exc: Any) -> ClientError:
    """A confluent_kafka.KafkaException as a ClientError, with what librdkafka requires next."""
    err = exc.args[0]
    return ClientError(error_of(err), str(err), abortable=bool(err.txn_requires_abort()), fatal=bool(err.fatal()))


class ConfluentProducer(Producer):
    client = "confluent-kafka"

    def _open(self) -> None:
        lib = _require()
        s = self.settings
        self._p = lib.Producer({
            "bootstrap.servers": self.bootstrap, "client.id": s.client_id, "acks": s.acks,
            "enable.idempotence": s.idempotence, "linger.ms": s.linger_ms,
            "message.timeout.ms": s.delivery_timeout_ms, "log_level": LOG_LEVEL,
            **_optional({"request.timeout.ms": s.request_timeout_ms,
                         "topic.metadata.refresh.interval.ms": s.metadata_max_age_ms}),
            **({} if s.transactional_id is None else {
                "transactional.id": s.transactional_id, "transaction.timeout.ms": s.transaction_timeout_ms}),
        })
        self._pump = self._serve_reports

    def _serve_reports(self, timeout_s: float) -> None:
        try:
            self._p.poll(timeout_s)
        except ck.KafkaException as exc:  # librdkafka raises its fatal errors (e.g. fenced) here
            raise _client_error(exc) from exc

    def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None,
              done: DeliveryCallback) -> None:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                done(error_of(err), msg.partition() if msg.partition() >= 0 else None, None)
            else:
                done(None, msg.partition(), msg.offset())

        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": report}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._p.produce(topic, **kwargs)
                break
            except BufferError:
                self._p.poll(0.1)  # the local queue is full: serve delivery reports, then retry
            except ck.KafkaException as exc:
                raise ClientError(error_of(exc.args[0]), str(exc)) from exc
        self._p.poll(0)

    def _flush(self, timeout_s: float) -> int:
        return int(self._p.flush(timeout_s))

    def _init_transactions(self) -> None:
        self._transactional(lambda: self._p.init_transactions(TRANSACTION_CALL_TIMEOUT_S))

    def _begin_transaction(self) -> None:
        self._transactional(self._p.begin_transaction)

    def _end_transaction(self, commit: bool) -> None:
        end = self._p.commit_transaction if commit else self._p.abort_transaction
        self._transactional(lambda: end(TRANSACTION_CALL_TIMEOUT_S))

    def _send_offsets(self, offsets: dict[TP, int], group_metadata: object) -> None:
        positions = [ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        self._transactional(lambda: self._p.send_offsets_to_transaction(positions, group_metadata,
                                                                        TRANSACTION_CALL_TIMEOUT_S))

    def _transactional(self, call: Any) -> None:
        """A transactional API call; a retriable error (a timeout) is retried, as librdkafka
        asks, a few times; the rest become ClientError with what the library requires next."""
        for attempt in range(TRANSACTION_CALL_ATTEMPTS):
            try:
                call()
                return
            except ck.KafkaException as exc:
                err = exc.args[0]
                if err.retriable() and attempt + 1 < TRANSACTION_CALL_ATTEMPTS:
                    continue
                raise _client_error(exc) from exc

    def _close(self) -> None:
        self._p.flush(0)
        if hasattr(self._p, "close"):
            self._p.close()


class ConfluentConsumer(Consumer):
    client = "confluent-kafka"

    def _open(self) -> None:
        lib = _require()
        s = self.settings
        self._c = lib.Consumer({
            "bootstrap.servers": self.bootstrap, "client.id": s.client_id,
            # librdkafka needs a group id even for assign(); nothing is committed without a call.
            "group.id": self.group or f"kconform-nogroup-{self.process}", "enable.auto.commit": False,
            "auto.offset.reset": s.auto_offset_reset, "enable.partition.eof": False,
            "isolation.level": s.isolation_level,
            "session.timeout.ms": s.session_timeout_ms, "log_level": LOG_LEVEL,
            **_optional({"topic.metadata.refresh.interval.ms": s.metadata_max_age_ms}),
        })

    def _assign(self, partitions: list[TP], offsets: dict[TP, int]) -> None:
        beginning = ck.OFFSET_BEGINNING if self.settings.auto_offset_reset == "earliest" else ck.OFFSET_END
        self._c.assign([ck.TopicPartition(t, p, offsets.get((t, p), beginning))
                        for t, p in partitions])

    def _subscribe(self, topics: list[str]) -> None:
        def on_assign(consumer: Any, partitions: list[Any]) -> None:
            member = consumer.memberid() if hasattr(consumer, "memberid") else None
            self._rebalanced([(tp.topic, tp.partition) for tp in partitions], None, member)

        def on_revoke(_consumer: Any, _partitions: list[Any]) -> None:
            pass

        self._c.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)

    def _seek(self, topic: str, partition: int, offset: int) -> None:
        try:
            self._c.seek(ck.TopicPartition(topic, partition, offset))
        except ck.KafkaException as exc:
            raise ClientError(error_of(exc.args[0]), str(exc)) from exc

    def _poll(self, timeout_s: float) -> list[ConsumedRecord]:
        messages = self._c.consume(self.settings.max_poll_records, timeout_s)
        out: list[ConsumedRecord] = []
        errors: list[str] = []
        for m in messages:
            if m.error() is not None:
                errors.append(error_of(m.error()))
                continue
            out.append(ConsumedRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value()))
        if errors and not out:
            raise ClientError(errors[0])
        return out

    def _commit(self, offsets: dict[TP, int]) -> None:
        partitions = [ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            finished = bounded(lambda: self._c.commit(offsets=partitions, asynchronous=False),
                               COMMIT_TIMEOUT_S)
        except ck.KafkaException as exc:
            raise ClientError(error_of(exc.args[0]), str(exc)) from exc
        if not finished:
            # Indeterminate: the commit may still land (the history records it as info).
            raise ClientError("TIMEOUT", f"librdkafka's commit did not return within {COMMIT_TIMEOUT_S:.0f} s")

    def _committed(self, partitions: list[TP]) -> dict[TP, int]:
        try:
            got = self._c.committed([ck.TopicPartition(t, p) for t, p in partitions], timeout=10)
        except ck.KafkaException as exc:
            raise ClientError(error_of(exc.args[0]), str(exc)) from exc
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else -1) for tp in got}

    def _group_metadata(self) -> object:
        return self._c.consumer_group_metadata()

    def _close(self) -> None:
        if not bounded(self._c.close, CLOSE_TIMEOUT_S):
            warnings.warn(f"{self.process}: librdkafka's consumer close did not return within "
                          f"{CLOSE_TIMEOUT_S:.0f} s; abandoned (left to a daemon thread)", stacklevel=2)
