"""The interface over kafka-python."""

from __future__ import annotations

import re
from typing import Any

from harness.clients.base import (
    TP,
    ClientError,
    ClientUnavailable,
    ConsumedRecord,
    Consumer,
    DeliveryCallback,
    Producer,
)
from harness.error_names import error_name

try:
    import kafka
    import kafka.errors as kerrors
    from kafka.structs import OffsetAndMetadata
    from kafka.structs import TopicPartition as KTP
except ImportError:  # pragma: no cover - depends on the environment
    kafka = None


def _require() -> Any:
    if kafka is None:
        raise ClientUnavailable("kafka-python is not installed: pip install 'kconform[clients]'")
    return kafka


def error_of(exc: BaseException) -> str:
    """The history's error name for a kafka-python (or aiokafka: same shapes) exception."""
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno != 0:
        return error_name(errno)  # -1 is UNKNOWN_SERVER_ERROR
    name = type(exc).__name__
    wrapped = _WRAPPED_ERROR.search(str(exc)) if name == "KafkaError" else None
    if wrapped is not None:
        return error_name(int(wrapped.group(1)))  # "... for unknown reasons: [Error 7] RequestTimedOutError"
    if "Timeout" in name:
        return "TIMEOUT"
    if "Connection" in name or "NodeNotReady" in name or "NoBrokersAvailable" in name:
        return "DISCONNECTED"
    return name


# The error code inside the message of an error kafka-python wraps in a plain KafkaError.
_WRAPPED_ERROR = re.compile(r"\[Error (-?\d+)\]")

# kafka-python's errors after which the producer cannot go on (its other transactional errors
# leave it able to abort).
FATAL_TRANSACTION_ERRORS = frozenset({
    "ProducerFencedError", "InvalidProducerEpochError", "TransactionalIdAuthorizationFailedError",
    "UnsupportedVersionError", "AuthenticationFailedError",
})


class KafkaPythonProducer(Producer):
    client = "kafka-python"

    def _open(self) -> None:
        lib = _require()
        s = self.settings
        self._p = lib.KafkaProducer(
            bootstrap_servers=self.bootstrap.split(","), client_id=s.client_id,
            acks="all" if s.acks == "all" else int(s.acks), enable_idempotence=s.idempotence,
            linger_ms=s.linger_ms, delivery_timeout_ms=s.delivery_timeout_ms,
            request_timeout_ms=s.request_timeout_ms or max(1000, min(s.delivery_timeout_ms // 2, 30_000)),
            **({} if s.metadata_max_age_ms is None else {"metadata_max_age_ms": s.metadata_max_age_ms}),
            **({} if s.transactional_id is None else {
                "transactional_id": s.transactional_id, "transaction_timeout_ms": s.transaction_timeout_ms}),
        )

    def _init_transactions(self) -> None:
        self._transactional(self._p.init_transactions)

    def _begin_transaction(self) -> None:
        self._transactional(self._p.begin_transaction)

    def _end_transaction(self, commit: bool) -> None:
        self._transactional(self._p.commit_transaction if commit else self._p.abort_transaction)

    def _send_offsets(self, offsets: dict[TP, int], group_metadata: object) -> None:
        # The consumer's ConsumerGroupMetadata (generation and member id: KIP-447 fencing).
        self._transactional(lambda: self._p.send_offsets_to_transaction(
            {KTP(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}, group_metadata))

    def _transactional(self, call: Any) -> None:
        try:
            call()
        except kerrors.KafkaError as exc:
            # kafka-python also ends in its fatal state with errors of no class of their own:
            # a transactional request that timed out ("for unknown reasons") is one. Its state
            # says whether the producer can still abort.
            fatal = type(exc).__name__ in FATAL_TRANSACTION_ERRORS or self._p._transaction_manager.has_fatal_error()
            raise ClientError(error_of(exc), str(exc), fatal=fatal, abortable=not fatal) from exc

    def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None,
              done: DeliveryCallback) -> None:
        try:
            future = self._p.send(topic, value=value, key=key, partition=partition)
        except kerrors.KafkaError as exc:
            raise ClientError(error_of(exc), str(exc)) from exc
        future.add_callback(lambda md: done(None, md.partition, md.offset))
        future.add_errback(lambda exc: done(error_of(exc), partition, None))

    def _flush(self, timeout_s: float) -> int:
        try:
            self._p.flush(timeout=timeout_s)
        except kerrors.KafkaTimeoutError:
            return 1
        return 0

    def _close(self) -> None:
        self._p.close(timeout=5)


class KafkaPythonConsumer(Consumer):
    client = "kafka-python"

    def _open(self) -> None:
        lib = _require()
        s = self.settings
        self._c = lib.KafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","), client_id=s.client_id, group_id=self.group,
            enable_auto_commit=False, auto_offset_reset=s.auto_offset_reset, isolation_level=s.isolation_level,
            session_timeout_ms=s.session_timeout_ms, heartbeat_interval_ms=min(3000, s.session_timeout_ms // 3),
            max_poll_records=s.max_poll_records,
            **({} if s.metadata_max_age_ms is None else {"metadata_max_age_ms": s.metadata_max_age_ms}),
        )

    def _assign(self, partitions: list[TP], offsets: dict[TP, int]) -> None:
        tps = [KTP(t, p) for t, p in partitions]
        self._c.assign(tps)
        for tp in tps:
            if (tp.topic, tp.partition) in offsets:
                self._c.seek(tp, offsets[(tp.topic, tp.partition)])
            elif self.settings.auto_offset_reset == "earliest":
                self._c.seek_to_beginning(tp)

    def _subscribe(self, topics: list[str]) -> None:
        outer = self

        class Listener(kafka.ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                generation = getattr(getattr(outer._c, "_coordinator", None), "_generation", None)
                outer._rebalanced([(tp.topic, tp.partition) for tp in assigned],
                                  getattr(generation, "generation_id", None),
                                  getattr(generation, "member_id", None))

        self._c.subscribe(topics, listener=Listener())

    def _seek(self, topic: str, partition: int, offset: int) -> None:
        self._c.seek(KTP(topic, partition), offset)

    def _poll(self, timeout_s: float) -> list[ConsumedRecord]:
        try:
            batches = self._c.poll(timeout_ms=int(timeout_s * 1000))
        except kerrors.KafkaError as exc:
            raise ClientError(error_of(exc), str(exc)) from exc
        return [ConsumedRecord(r.topic, r.partition, r.offset, r.key, r.value)
                for records in batches.values() for r in records]

    def _commit(self, offsets: dict[TP, int]) -> None:
        try:
            self._c.commit({KTP(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})
        except kerrors.KafkaError as exc:
            raise ClientError(error_of(exc), str(exc)) from exc

    def _committed(self, partitions: list[TP]) -> dict[TP, int]:
        out = {}
        for t, p in partitions:
            got = self._c.committed(KTP(t, p))
            out[(t, p)] = -1 if got is None else int(got)
        return out

    def _group_metadata(self) -> object:
        return self._c.group_metadata()

    def _close(self) -> None:
        self._c.close(autocommit=False)
