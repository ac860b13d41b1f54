"""The interface over aiokafka, its asyncio hidden behind a private event-loop thread.

aiokafka's clients must be created and used inside a running event loop. Each wrapper owns one
loop on one daemon thread; every call is submitted to it with
``asyncio.run_coroutine_threadsafe`` and waited for, so callers stay synchronous and nothing is
shared between wrappers. Delivery reports run on the loop thread (the history recorder is
thread-safe). ``close`` stops the client, then the loop, then joins the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from harness.clients.base import (
    TP,
    ClientError,
    ClientUnavailable,
    ConsumedRecord,
    Consumer,
    DeliveryCallback,
    Producer,
)
from harness.clients.kafka_python import error_of

try:
    import aiokafka
    import aiokafka.errors as aerrors
    from aiokafka.structs import TopicPartition as ATP
except ImportError:  # pragma: no cover - depends on the environment
    aiokafka = None

T = TypeVar("T")
CALL_TIMEOUT_S = 60.0


def _require() -> Any:
    if aiokafka is None:
        raise ClientUnavailable("aiokafka is not installed: pip install 'kconform[clients]'")
    return aiokafka


def _unless_a_client_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's handler of exceptions nobody waited for: aiokafka leaves its own errors in
    futures it never reads (a fenced producer's pending sends, when it is closed); they are
    what the producer reported already, not news for stderr. Anything else goes to asyncio's
    default handler."""
    if not isinstance(context.get("exception"), aerrors.KafkaError):
        loop.default_exception_handler(context)


class LoopThread:
    """An event loop running on a daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_unless_a_client_error)
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_rest(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self.loop.close()


class AiokafkaProducer(Producer):
    client = "aiokafka"

    def _open(self) -> None:
        lib = _require()
        s = self.settings
        self._loop = LoopThread(f"aiokafka-producer-{self.process}")

        async def create() -> Any:
            producer = lib.AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, client_id=s.client_id,
                acks="all" if s.acks == "all" else int(s.acks), enable_idempotence=s.idempotence,
                linger_ms=s.linger_ms,
                request_timeout_ms=s.request_timeout_ms or min(s.delivery_timeout_ms, 30_000),
                **({} if s.metadata_max_age_ms is None else {"metadata_max_age_ms": s.metadata_max_age_ms}),
                **({} if s.transactional_id is None else {
                    "transactional_id": s.transactional_id, "transaction_timeout_ms": s.transaction_timeout_ms}))
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            return producer

        try:
            self._p = self._loop.run(create())
        except aerrors.KafkaError as exc:
            self._loop.close()
            raise ClientError(error_of(exc), f"the producer could not start: {exc!r}") from exc
        except BaseException:
            self._loop.close()
            raise

    def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None,
              done: DeliveryCallback) -> None:
        async def send() -> None:
            future = await self._p.send(topic, value=value, key=key, partition=partition)

            def report(f: asyncio.Future[Any]) -> None:
                if f.cancelled():
                    done("DISCONNECTED", partition, None)
                elif f.exception() is not None:
                    done(error_of(f.exception()), partition, None)  # type: ignore[arg-type]
                else:
                    md = f.result()
                    done(None, md.partition, md.offset)

            future.add_done_callback(report)

        try:
            self._loop.run(send())
        except (aerrors.KafkaError, aerrors.IllegalOperation) as exc:
            # IllegalOperation: the transaction is no longer open (a send of it failed and
            # aiokafka wants it aborted); the record was not handed over.
            raise ClientError(error_of(exc), str(exc)) from exc

    def _init_transactions(self) -> None:
        """aiokafka's start() has done InitProducerId for the transactional id already."""

    def _stuck_after(self, error: str) -> bool:
        # aiokafka does not take back the sequence numbers of a batch the broker refused
        # outright, and never bumps its epoch to start them again (KIP-360): once a partition
        # answers OUT_OF_ORDER_SEQUENCE_NUMBER, every later batch there is refused the same way.
        return error == "OUT_OF_ORDER_SEQUENCE_NUMBER"

    def _begin_transaction(self) -> None:
        self._transactional(self._p.begin_transaction)

    def _end_transaction(self, commit: bool) -> None:
        self._transactional(self._p.commit_transaction if commit else self._p.abort_transaction)

    def _send_offsets(self, offsets: dict[TP, int], group_metadata: object) -> None:
        # aiokafka takes a group id only (:meth:`AiokafkaConsumer._group_metadata`).
        self._transactional(lambda: self._p.send_offsets_to_transaction(
            {ATP(t, p): o for (t, p), o in offsets.items()}, group_metadata))

    def _transactional(self, call: Any) -> None:
        async def run() -> None:
            result = call()
            if asyncio.iscoroutine(result):
                await result

        try:
            self._loop.run(run())
        except aerrors.KafkaError as exc:
            manager = self._p._txn_manager
            fatal = type(exc).__name__ in ("ProducerFenced", "InvalidProducerEpoch", "UnsupportedVersionError") or (
                manager is not None and manager.is_fatal_error())
            raise ClientError(error_of(exc), str(exc), fatal=fatal, abortable=not fatal) from exc

    def _flush(self, timeout_s: float) -> int:
        try:
            self._loop.run(asyncio.wait_for(self._p.flush(), timeout_s), timeout_s + 5)
        except TimeoutError:
            return 1
        return 0

    def _close(self) -> None:
        try:
            self._loop.run(self._p.stop(), 30)
        finally:
            self._loop.close()


class AiokafkaConsumer(Consumer):
    client = "aiokafka"

    def _open(self) -> None:
        lib = _require()
        s = self.settings
        self._loop = LoopThread(f"aiokafka-consumer-{self.process}")
        self._started = False

        async def create() -> Any:
            return lib.AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, client_id=s.client_id, group_id=self.group,
                enable_auto_commit=False, auto_offset_reset=s.auto_offset_reset,
                isolation_level=s.isolation_level,
                session_timeout_ms=s.session_timeout_ms,
                heartbeat_interval_ms=min(3000, s.session_timeout_ms // 3),
                max_poll_records=s.max_poll_records,
                **({} if s.metadata_max_age_ms is None else {"metadata_max_age_ms": s.metadata_max_age_ms}))

        try:
            self._c = self._loop.run(create())
        except BaseException:
            self._loop.close()
            raise

    async def _ensure_started(self) -> None:
        if not self._started:
            await self._c.start()
            self._started = True

    def _assign(self, partitions: list[TP], offsets: dict[TP, int]) -> None:
        async def assign() -> None:
            await self._ensure_started()
            tps = [ATP(t, p) for t, p in partitions]
            self._c.assign(tps)
            for tp in tps:
                if (tp.topic, tp.partition) in offsets:
                    self._c.seek(tp, offsets[(tp.topic, tp.partition)])
                elif self.settings.auto_offset_reset == "earliest":
                    await self._c.seek_to_beginning(tp)

        self._loop.run(assign())

    def _subscribe(self, topics: list[str]) -> None:
        outer = self

        class Listener(aiokafka.ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            async def on_partitions_assigned(self, assigned: Any) -> None:
                coordinator = getattr(outer._c, "_coordinator", None)
                outer._rebalanced([(tp.topic, tp.partition) for tp in assigned],
                                  getattr(coordinator, "generation", None),
                                  getattr(coordinator, "member_id", None))

        async def subscribe() -> None:
            self._c.subscribe(topics, listener=Listener())
            await self._ensure_started()

        self._loop.run(subscribe())

    def _seek(self, topic: str, partition: int, offset: int) -> None:
        async def seek() -> None:
            self._c.seek(ATP(topic, partition), offset)

        self._loop.run(seek())

    def _poll(self, timeout_s: float) -> list[ConsumedRecord]:
        async def poll() -> dict[Any, list[Any]]:
            await self._ensure_started()
            result: dict[Any, list[Any]] = await self._c.getmany(timeout_ms=int(timeout_s * 1000))
            return result

        try:
            batches = self._loop.run(poll(), timeout_s + CALL_TIMEOUT_S)
        except aerrors.KafkaError as exc:
            raise ClientError(error_of(exc), str(exc)) from exc
        return [ConsumedRecord(r.topic, r.partition, r.offset, r.key, r.value)
                for records in batches.values() for r in records]

    def _commit(self, offsets: dict[TP, int]) -> None:
        try:
            self._loop.run(self._c.commit({ATP(t, p): o for (t, p), o in offsets.items()}))
        except aerrors.KafkaError as exc:
            raise ClientError(error_of(exc), str(exc)) from exc

    def _committed(self, partitions: list[TP]) -> dict[TP, int]:
        async def committed() -> dict[TP, int]:
            out = {}
            for t, p in partitions:
                got = await self._c.committed(ATP(t, p))
                out[(t, p)] = -1 if got is None else int(got)
            return out

        return self._loop.run(committed())

    def _group_metadata(self) -> object:
        """aiokafka's sendOffsetsToTransaction takes the group id alone: its TxnOffsetCommit
        carries no generation or member id, so a member the group replaced is not fenced by
        the group (KIP-447), only by its transactional id."""
        return self.group

    def _close(self) -> None:
        try:
            if self._started:
                self._loop.run(self._c.stop(), 30)
        finally:
            self._loop.close()
