"""The follower side of replication, in the driver: copy leaders' logs over the Fetch API.

Theory of operation (Kafka's ReplicaFetcherManager / ReplicaFetcherThread, one fetcher per
leader):

* :class:`ReplicaFetcherManager` looks, every few tens of milliseconds (and at once when
  poked), at which partitions this broker follows and who leads them, and keeps one
  :class:`LeaderFetcher` task per leader broker. A task ends by itself when nothing follows its
  leader any more; roles are re-read before every request, so a role change needs no message.
* Each round a task asks every partition it serves what to send
  (:meth:`Partition.follower_request`): partitions that must first find where their log
  diverges from the new leader's get an OffsetForLeaderEpoch (v4) request, the others go into
  one Fetch (v13: topic ids, ``last_fetched_epoch``; ``replica_id`` = this broker). The answers
  go back to the partitions (:meth:`Partition.on_epoch_end_offset`,
  :meth:`Partition.on_fetch_response`), which ignore answers made stale by a role change.
* The Fetch waits at the leader up to ``replica.fetch.wait.max.ms`` for
  ``replica.fetch.min.bytes``, bounded by ``replica.fetch.max.bytes`` per partition and
  ``replica.fetch.response.max.bytes`` in all. A partition whose answer is an error is left out
  for ``replica.fetch.backoff.ms``; a failed connection is retried after that long too.
  ``replica.socket.timeout.ms`` bounds every wait for an answer.

All the decisions are in the sans-I/O :class:`~reference_broker.replication.Partition`; this
module only moves bytes, which is why the simulation in
:mod:`reference_broker.replication.testing` covers the logic without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.drivers.wire_client import WireClient, WireError
from reference_broker.log import LogError
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.records import RecordError
from reference_broker.replication.partition import (
    EpochQuery,
    FetchPosition,
    Partition,
    Role,
)

if TYPE_CHECKING:
    from reference_broker.broker import Broker

log = logging.getLogger(__name__)

FETCH = ApiKey.FETCH
FETCH_VERSION = 13  # topic ids, last_fetched_epoch, replica_id (v15 moves it to replica_state)
OFFSET_FOR_LEADER_EPOCH = ApiKey.OFFSET_FOR_LEADER_EPOCH
OFFSET_FOR_LEADER_EPOCH_VERSION = 4
SUPERVISE_INTERVAL_S = 0.05

PartitionKey = tuple[str, int]


@attrs.frozen(slots=True)
class FetcherConfig:
    """The replica.fetch.* keys (Kafka's names and defaults)."""

    wait_max_ms: int = 500  # replica.fetch.wait.max.ms
    min_bytes: int = 1  # replica.fetch.min.bytes
    max_bytes: int = 1024 * 1024  # replica.fetch.max.bytes (per partition)
    response_max_bytes: int = 10 * 1024 * 1024  # replica.fetch.response.max.bytes
    backoff_ms: int = 1000  # replica.fetch.backoff.ms
    socket_timeout_ms: int = 30_000  # replica.socket.timeout.ms

    @classmethod
    def from_broker(cls, get: Callable[[str], Any]) -> FetcherConfig:
        return cls(
            wait_max_ms=int(get("replica.fetch.wait.max.ms")),
            min_bytes=int(get("replica.fetch.min.bytes")),
            max_bytes=int(get("replica.fetch.max.bytes")),
            response_max_bytes=int(get("replica.fetch.response.max.bytes")),
            backoff_ms=int(get("replica.fetch.backoff.ms")),
            socket_timeout_ms=int(get("replica.socket.timeout.ms")),
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReplicaFetcherManager:
    """One fetch task per leader this broker follows; see the module docstring."""

    def __init__(
        self, broker: Broker, config: FetcherConfig, now_ms: Callable[[], int] = _now_ms
    ) -> None:
        self.broker = broker
        self.config = config
        self.now_ms = now_ms
        self.fetchers: dict[int, LeaderFetcher] = {}
        self._task: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="replica-fetchers")

    def poke(self) -> None:
        """Roles may have changed: look again now rather than at the next interval."""
        self._poked.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        fetchers = list(self.fetchers.values())
        self.fetchers.clear()
        await asyncio.gather(*(f.stop() for f in fetchers), return_exceptions=True)

    def leaders_followed(self) -> set[int]:
        me = self.broker.node_id
        return {
            p.leader_id for p in self.broker.partitions()
            if p.role is Role.FOLLOWER and p.leader_id >= 0 and p.leader_id != me
        }

    async def _supervise(self) -> None:
        while True:
            try:
                wanted = self.leaders_followed()
                for leader_id, fetcher in list(self.fetchers.items()):
                    if fetcher.done:
                        del self.fetchers[leader_id]
                for leader_id in wanted - set(self.fetchers):
                    fetcher = LeaderFetcher(self, leader_id)
                    self.fetchers[leader_id] = fetcher
                    fetcher.start()
            except Exception:  # keep replication supervised; the error is logged
                log.exception("replica fetcher supervision failed")
            try:
                await asyncio.wait_for(self._poked.wait(), SUPERVISE_INTERVAL_S)
            except TimeoutError:
                pass
            self._poked.clear()


class LeaderFetcher:
    """Fetches every partition this broker follows from one leader broker."""

    def __init__(self, manager: ReplicaFetcherManager, leader_id: int) -> None:
        self.manager = manager
        self.broker = manager.broker
        self.config = manager.config
        self.leader_id = leader_id
        self._client: WireClient | None = None
        self._address: tuple[str, int] | None = None
        self._delayed: dict[PartitionKey, int] = {}  # partition -> no request before (ms)
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.done = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"replica-fetcher-{self.leader_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._disconnect()

    def _partitions(self) -> list[Partition]:
        return [
            p for p in self.broker.partitions()
            if p.role is Role.FOLLOWER and p.leader_id == self.leader_id
        ]

    async def _run(self) -> None:
        try:
            while True:
                partitions = self._partitions()
                if not partitions:
                    return
                try:
                    progressed = await self._round(partitions)
                except (WireError, OSError, TimeoutError) as exc:
                    if not self._failing:
                        log.warning("replica fetcher: cannot reach leader %d at %s: %s",
                                    self.leader_id, self._address, exc or type(exc).__name__)
                    self._failing = True
                    await self._disconnect()
                    await asyncio.sleep(self.config.backoff_ms / 1000)
                    continue
                if self._failing:
                    log.info("replica fetcher: fetching from leader %d again", self.leader_id)
                    self._failing = False
                if not progressed:
                    await asyncio.sleep(self._idle_s())
        finally:
            self.done = True
            await self._disconnect()

    def _idle_s(self) -> float:
        """Nothing could be asked: sleep until the first delayed partition may be retried."""
        now = self.manager.now_ms()
        waits = [at - now for at in self._delayed.values() if at > now]
        return max(0.005, min(waits, default=self.config.backoff_ms) / 1000)

    async def _connect(self) -> WireClient:
        address = self.broker.peer_address(self.leader_id)
        if address is None:
            raise WireError(f"no known address for broker {self.leader_id}")
        if self._client is not None and address == self._address:
            return self._client
        await self._disconnect()
        self._address = address
        client = WireClient(address[0], address[1], self.config.socket_timeout_ms / 1000)
        await client.connect()
        self._client = client
        return client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _ready(self, partitions: list[Partition]) -> list[Partition]:
        now = self.manager.now_ms()
        ready = []
        for partition in partitions:
            key = (partition.topic, partition.index)
            if self._delayed.get(key, 0) <= now:
                self._delayed.pop(key, None)
                ready.append(partition)
        return ready

    def _delay(self, partition: Partition) -> None:
        self._delayed[(partition.topic, partition.index)] = (
            self.manager.now_ms() + self.config.backoff_ms
        )

    async def _round(self, partitions: list[Partition]) -> bool:
        """One request to the leader; whether anything could be asked."""
        queries: list[tuple[Partition, EpochQuery]] = []
        fetches: list[tuple[Partition, FetchPosition]] = []
        for partition in self._ready(partitions):
            request = partition.follower_request()
            if isinstance(request, EpochQuery):
                queries.append((partition, request))
            elif isinstance(request, FetchPosition):
                fetches.append((partition, request))
        if not queries and not fetches:
            return False
        client = await self._connect()
        if queries:
            await self._ask_epochs(client, queries)
        else:
            await self._fetch(client, fetches)
        return True

    async def _ask_epochs(self, client: WireClient, queries: list[tuple[Partition, EpochQuery]]) -> None:
        by_topic: dict[str, list[dict[str, int]]] = {}
        for partition, query in queries:
            by_topic.setdefault(partition.topic, []).append({
                "partition": partition.index,
                "current_leader_epoch": query.current_leader_epoch,
                "leader_epoch": query.epoch,
            })
        response = await client.call(OFFSET_FOR_LEADER_EPOCH, OFFSET_FOR_LEADER_EPOCH_VERSION, {
            "replica_id": self.broker.node_id,
            "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
        })
        answers = {
            (topic.topic, part.partition): part
            for topic in response.topics for part in topic.partitions
        }
        now = self.manager.now_ms()
        for partition, query in queries:
            answer = answers.get((partition.topic, partition.index))
            if answer is None:
                self._delay(partition)
                continue
            error = ErrorCode(answer.error_code)
            if error is not ErrorCode.none:
                log.info("%s-%d: OffsetForLeaderEpoch from leader %d: %s", partition.topic,
                         partition.index, self.leader_id, error.name)
                self._delay(partition)
                continue
            partition.on_epoch_end_offset(query, error, int(answer.leader_epoch),
                                          int(answer.end_offset), now)

    async def _fetch(self, client: WireClient, fetches: list[tuple[Partition, FetchPosition]]) -> None:
        by_topic: dict[Any, list[dict[str, int]]] = {}
        requested: dict[tuple[Any, int], tuple[Partition, FetchPosition]] = {}
        for partition, position in fetches:
            topic = self.broker.image.topic(partition.topic)
            if topic is None:
                continue
            by_topic.setdefault(topic.topic_id, []).append({
                "partition": partition.index,
                "current_leader_epoch": position.current_leader_epoch,
                "fetch_offset": position.fetch_offset,
                "last_fetched_epoch": position.last_fetched_epoch,
                "log_start_offset": position.log_start_offset,
                "partition_max_bytes": self.config.max_bytes,
            })
            requested[(topic.topic_id, partition.index)] = (partition, position)
        if not requested:
            return
        response = await client.call(FETCH, FETCH_VERSION, {
            "replica_id": self.broker.node_id,
            "max_wait": self.config.wait_max_ms,
            "min_bytes": self.config.min_bytes,
            "max_bytes": self.config.response_max_bytes,
            "isolation_level": 0,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic_id": t, "partitions": ps} for t, ps in by_topic.items()],
            "forgotten_topics_data": [],
            "rack_id": "",
        })
        if response.error_code != ErrorCode.none:
            log.info("fetch from leader %d failed: %s", self.leader_id,
                     ErrorCode(response.error_code).name)
            for partition, _ in requested.values():
                self._delay(partition)
            return
        now = self.manager.now_ms()
        for topic in response.responses:
            for part in topic.partitions:
                entry = requested.get((topic.topic_id, part.partition_index))
                if entry is None:
                    continue
                partition, position = entry
                error = ErrorCode(part.error_code)
                diverging = part.diverging_epoch
                diverging_epoch = (
                    (int(diverging.epoch), int(diverging.end_offset))
                    if diverging is not None and diverging.epoch >= 0 else None
                )
                try:
                    partition.on_fetch_response(
                        position, error, int(part.high_watermark), int(part.log_start_offset),
                        part.records or b"", diverging_epoch, now,
                    )
                except (LogError, RecordError, OSError) as exc:
                    log.error("%s-%d: cannot apply data fetched from leader %d: %s",
                              partition.topic, partition.index, self.leader_id, exc)
                    self._delay(partition)
                    continue
                if error not in (ErrorCode.none, ErrorCode.offset_out_of_range):
                    log.debug("%s-%d: fetch from leader %d: %s", partition.topic,
                              partition.index, self.leader_id, error.name)
                    self._delay(partition)
