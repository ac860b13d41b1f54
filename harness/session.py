"""A blocking Kafka wire session for checks and state machines: one request, its raw answer.

Conformance checks and Hypothesis state machines ask a broker one precise question at a time
and compare the exact answer (error code, offsets, batches) with the spec. They are plain
synchronous code, so this module wraps the asyncio :class:`~harness.wire.WireClient` in a
private event loop: every call finishes its I/O before it returns (docs/architecture.md, principle 11), and
nothing runs in the background between calls.

Versions are negotiated once with ApiVersions: each API is spoken at the highest version both
the broker and this session know (`VERSION_CAPS` keeps requests in the shapes written here,
addressing topics by name). Requests go to the partition leader or group coordinator named by
Metadata and FindCoordinator, so the same code works on one broker or a cluster.

Errors come back as Kafka's upper-case names (``"OFFSET_OUT_OF_RANGE"``, ``"NONE"``), the names
the history format and `specs` use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import struct
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import attrs

from harness.error_names import error_name
from harness.wire import WireClient, WireError, build, decode_response, encode_request, request_class
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.prescan import encode_uvarint
from reference_broker.records import (
    BatchHeader,
    Record,
    RecordError,
    build_batch,
    iter_records,
    parse_control_batch,
    scan_valid_prefix,
)

T = TypeVar("T")

GROUP_KEY, TRANSACTION_KEY = 0, 1  # FindCoordinator's key types
TRANSACTIONAL_BIT = 0x10  # a record batch's attributes (KIP-98)
RETRIABLE_COORDINATOR_ERRORS = frozenset({"NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE",
                                          "COORDINATOR_LOAD_IN_PROGRESS"})
"""Errors a client answers by finding the coordinator again and retrying (Kafka protocol guide)."""

# The API keys this module sends (reference_broker/protocol/api_keys.py names every one).
PRODUCE, FETCH, LIST_OFFSETS, METADATA = ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.LIST_OFFSETS, ApiKey.METADATA
OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR = ApiKey.OFFSET_COMMIT, ApiKey.OFFSET_FETCH, ApiKey.FIND_COORDINATOR
JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP = ApiKey.JOIN_GROUP, ApiKey.HEARTBEAT, ApiKey.LEAVE_GROUP, ApiKey.SYNC_GROUP
API_VERSIONS, CREATE_TOPICS, DELETE_TOPICS = ApiKey.API_VERSIONS, ApiKey.CREATE_TOPICS, ApiKey.DELETE_TOPICS
DELETE_RECORDS, INIT_PRODUCER_ID, DESCRIBE_CONFIGS = ApiKey.DELETE_RECORDS, ApiKey.INIT_PRODUCER_ID, ApiKey.DESCRIBE_CONFIGS

API_NAMES: Mapping[int, str] = {key: key.title for key in ApiKey}

# The highest version of each API whose request shape this module writes. Produce 13, Fetch 13,
# OffsetCommit 10 and OffsetFetch 10 address topics by id; OffsetFetch 8 and FindCoordinator 4
# batch groups; OffsetCommit 9 and Metadata 13 change semantics we do not model here; DeleteTopics
# 6 names topics as entities (5 takes the names).
VERSION_CAPS: Mapping[int, int] = {
    PRODUCE: 12, FETCH: 12, LIST_OFFSETS: 9, METADATA: 12, OFFSET_COMMIT: 8, OFFSET_FETCH: 7,
    FIND_COORDINATOR: 3, JOIN_GROUP: 7, HEARTBEAT: 4, LEAVE_GROUP: 4, SYNC_GROUP: 5,
    API_VERSIONS: 3, CREATE_TOPICS: 7, DELETE_TOPICS: 5, DELETE_RECORDS: 2, INIT_PRODUCER_ID: 4,
}

# ListOffsets' symbolic timestamps (Kafka protocol guide; KIP-734 for MAX_TIMESTAMP).
LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3


class UnsupportedApi(Exception):
    """The broker does not offer an API (or a version) a check needs."""


class SessionError(Exception):
    """The broker did not answer as the protocol requires (closed, wrong shape, no leader)."""


def pauses(first_s: float = 0.005, longest_s: float = 0.05) -> Iterator[float]:
    """The waits between polls for something a broker will have soon (a new topic's leader, a
    coordinator): 5 ms, doubling to 50 ms. On loopback the answer usually comes within a few
    milliseconds, and a fixed 50 ms sleep was most of the cost of creating a topic on Apache
    Kafka (about 55 ms of the 143 ms measured); the doubling keeps a slow broker from being
    polled hard."""
    pause = first_s
    while True:
        yield pause
        pause = min(pause * 2, longest_s)


@attrs.frozen
class FetchedRecord:
    """One record of a Fetch response, with the batch it came in."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    batch_base: int
    batch_last: int


@attrs.frozen
class FetchResult:
    """One partition of a Fetch response, batches decoded."""

    error: str
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: tuple[FetchedRecord, ...]
    batches: tuple[BatchHeader, ...]
    raw_size: int
    torn_tail: bool  # bytes after the last whole batch (a partial batch, KIP-74 allows it)
    # read_committed: (producer id, first offset) of each aborted transaction the answer lists
    # (None: the list is null, as for read_uncommitted).
    aborted: tuple[tuple[int, int], ...] | None = None
    # The transaction markers among the batches (KIP-98): each control batch's base offset and
    # its marker's type, "COMMIT" or "ABORT" (a control batch without a valid marker is left out).
    markers: tuple[tuple[int, str], ...] = ()

    def from_offset(self, offset: int) -> tuple[FetchedRecord, ...]:
        """The records at or after ``offset`` (what a client hands to the application)."""
        return tuple(r for r in self.records if r.offset >= offset)


@attrs.frozen
class ProduceResult:
    error: str
    base_offset: int
    log_start_offset: int
    error_message: str | None = None


@attrs.frozen
class ListOffsetsResult:
    error: str
    offset: int
    timestamp: int


@attrs.frozen
class JoinAnswer:
    error: str
    generation: int
    member_id: str
    leader: str
    protocol_name: str | None
    members: tuple[tuple[str, bytes], ...]


def decode_batches(data: bytes | None) -> tuple[list[BatchHeader], list[FetchedRecord], bool]:
    """Split a fetched record set into whole batches and their records; whether a torn
    partial batch followed them."""
    if not data:
        return [], [], False
    headers, covered = scan_valid_prefix(data)
    records = [
        FetchedRecord(r.offset, r.timestamp, r.key, r.value, h.base_offset, h.last_offset)
        for h in headers if not h.is_control for r in iter_records(data, h)
    ]
    return headers, records, covered < len(data)


def decode_markers(data: bytes, headers: Sequence[BatchHeader]) -> tuple[tuple[int, str], ...]:
    """(base offset, "COMMIT" or "ABORT") of each control batch holding a transaction marker."""
    markers = []
    for h in headers:
        if h.is_control:
            try:
                marker = parse_control_batch(data, h)
            except RecordError:
                continue
            if marker is not None:
                markers.append((h.base_offset, marker.control_type.name))
    return tuple(markers)


def make_batch(values: Sequence[bytes | None], *, keys: Sequence[bytes | None] | None = None,
               timestamps: Sequence[int] | None = None, producer_id: int = -1, producer_epoch: int = -1,
               base_sequence: int = -1, transactional: bool = False) -> bytes:
    """One uncompressed v2 batch as a producer sends it (base offset 0); ``transactional`` sets
    the batch's transactional bit (KIP-98)."""
    now = int(time.time() * 1000)
    keys = keys if keys is not None else [None] * len(values)
    stamps = timestamps if timestamps is not None else [now] * len(values)
    return build_batch(
        [Record(i, stamps[i], keys[i], v) for i, v in enumerate(values)], base_offset=0,
        producer_id=producer_id, producer_epoch=producer_epoch if producer_id >= 0 else -1,
        base_sequence=base_sequence if producer_id >= 0 else -1,
        attributes=TRANSACTIONAL_BIT if transactional else 0,
    )


class WireSession:
    """Blocking access to one broker or cluster through its bootstrap address.

    Use as a context manager (or call :meth:`close`): it owns an event loop and one connection
    per broker it talked to.
    """

    def __init__(self, bootstrap: str, timeout_s: float = 15.0, client_id: str = "kconform") -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.client_id = client_id
        self._loop = asyncio.new_event_loop()
        self._conns: dict[str, WireClient] = {}
        self._nodes: dict[int, str] = {}
        self._versions: dict[int, tuple[int, int]] | None = None
        self._coordinators: dict[tuple[int, str], str] = {}  # (key type, key) -> address
        self._leaders: dict[tuple[str, int], str] = {}
        self._closed = False
        self._correlation = itertools.count(1)
        self.label = ""  # what the caller is doing (a machine's step), for messages

    # --- plumbing ------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the session's loop to completion. Interrupted (Ctrl-C), it is
        cancelled and wound down before the interruption goes on, so no task is left pending
        (asyncio would print each one's traceback when the loop closes)."""
        task = self._loop.create_task(coro)
        try:
            return self._loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    self._loop.run_until_complete(task)
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._conns.values():
            try:
                self.run(conn.close())
            except Exception:  # noqa: BLE001 - closing a dead connection must not mask the real error
                pass
        self._conns.clear()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def connect(self, address: str | None = None) -> WireClient:
        """A new connection of its own (for concurrent requests, e.g. group members)."""
        return await WireClient.for_bootstrap(address or self.bootstrap, self.timeout_s).connect()

    def _conn(self, address: str) -> WireClient:
        conn = self._conns.get(address)
        if conn is None:
            conn = self.run(self.connect(address))
            self._conns[address] = conn
        return conn

    def drop_connection(self, address: str | None = None) -> None:
        """Forget a connection (after the broker closed it, or to start a fresh one)."""
        conn = self._conns.pop(address or self.bootstrap, None)
        if conn is not None:
            try:
                self.run(conn.close())
            except Exception:  # noqa: BLE001
                pass

    @property
    def versions(self) -> Mapping[int, tuple[int, int]]:
        """The broker's ApiVersions answer: api key -> (min, max)."""
        if self._versions is None:
            response = self._request(self.bootstrap, build(request_class(API_VERSIONS, 3), {
                "client_software_name": "kconform", "client_software_version": "1"}))
            if error_name(response.error_code) != "NONE":
                raise SessionError(f"ApiVersions v3 failed: {error_name(response.error_code)}")
            self._versions = {int(k.api_key): (int(k.min_version), int(k.max_version))
                              for k in response.api_keys}
        return self._versions

    def supports(self, api_key: int, version: int | None = None) -> bool:
        have = self.versions.get(api_key)
        if have is None:
            return False
        return version is None or have[0] <= version <= have[1]

    def version(self, api_key: int, at_least: int = 0) -> int:
        """The version to speak: the highest both sides know, at least ``at_least``."""
        have = self.versions.get(api_key)
        name = API_NAMES.get(api_key, str(api_key))
        if have is None:
            raise UnsupportedApi(f"the broker does not offer {name} (API key {api_key})")
        ours = min(VERSION_CAPS.get(api_key, have[1]), request_ceiling(api_key))
        version = min(have[1], ours)
        floor = max(have[0], at_least, request_floor(api_key))
        if version < floor:
            raise UnsupportedApi(
                f"{name}: the broker offers v{have[0]}-v{have[1]}, this check needs v{floor}-v{ours}")
        return version

    def _request(self, address: str, body: Any, expect_response: bool = True) -> Any:
        conn = self._conn(address)
        api_key, version = int(type(body).__api_key__), int(type(body).__version__)
        what = f"{API_NAMES.get(api_key, str(api_key))} v{version} to {address}"
        correlation = next(self._correlation)

        async def exchange() -> bytes | None:
            await conn.send_raw(encode_request(body, correlation, self.client_id))
            return await conn.read_frame() if expect_response else None

        try:
            payload = self.run(asyncio.wait_for(exchange(), self.timeout_s))
        except (TimeoutError, WireError, OSError) as exc:
            self.drop_connection(address)
            raise SessionError(f"{what}: {type(exc).__name__}: {exc or 'no answer in time'}") from exc
        if payload is None:
            return None
        got = int.from_bytes(payload[:4], "big", signed=True) if len(payload) >= 4 else None
        if got != correlation:
            self.drop_connection(address)
            raise SessionError(
                f"{what}: the answer carries correlation id {got}, not {correlation}: the broker answered an "
                "earlier request that gets no response (an acks=0 Produce: 'the server will not send any "
                "response', Kafka protocol guide), or answered out of order")
        try:
            return decode_response(api_key, version, payload)[1]
        except Exception as exc:  # noqa: BLE001 - kio raises assorted errors on malformed input
            self.drop_connection(address)
            raise SessionError(f"{what}: the answer does not decode: {type(exc).__name__}: {exc}") from exc

    def call(self, api_key: int, fields: Mapping[str, Any], *, version: int | None = None,
             address: str | None = None, expect_response: bool = True) -> Any:
        """Send one request (built from ``fields``) and return the decoded response."""
        v = self.version(api_key) if version is None else version
        return self._request(address or self.bootstrap, build(request_class(api_key, v), fields),
                             expect_response)

    async def acall(self, conn: WireClient, api_key: int, fields: Mapping[str, Any],
                    version: int | None = None) -> Any:
        """Async form of :meth:`call` on a connection of the caller's own."""
        v = self.version(api_key) if version is None else version
        try:
            return await asyncio.wait_for(conn.request(build(request_class(api_key, v), fields)), self.timeout_s)
        except TimeoutError:
            raise SessionError(f"{API_NAMES.get(api_key, str(api_key))} v{v}: no answer within "
                               f"{self.timeout_s:.0f} s") from None
        except (WireError, OSError) as exc:
            raise SessionError(f"{API_NAMES.get(api_key, str(api_key))} v{v}: {type(exc).__name__}: {exc}") from exc

    def raw(self, frame: bytes, api_key: int, response_version: int, address: str | None = None) -> Any:
        """Send a hand-made request frame; decode the answer as ``response_version``."""
        conn = self._conn(address or self.bootstrap)

        async def go() -> bytes:
            await conn.send_raw(frame)
            return await conn.read_frame()

        try:
            payload = self.run(asyncio.wait_for(go(), self.timeout_s))
        except (TimeoutError, WireError, OSError) as exc:
            self.drop_connection(address or self.bootstrap)
            raise SessionError(f"raw request to {address or self.bootstrap}: {exc}") from exc
        try:
            return decode_response(api_key, response_version, payload)[1]
        except Exception as exc:  # noqa: BLE001 - kio raises assorted errors on malformed input
            raise SessionError(f"the answer ({len(payload)} bytes) does not decode as "
                               f"{API_NAMES.get(api_key, str(api_key))} v{response_version}: "
                               f"{type(exc).__name__}: {exc}") from exc

    # --- cluster view --------------------------------------------------------------------------

    def metadata(self, topics: Iterable[str] | None = None, allow_auto_create: bool = False) -> Any:
        names = None if topics is None else [{"name": t, "topic_id": None} for t in topics]
        response = self.call(METADATA, {"topics": names, "allow_auto_topic_creation": allow_auto_create,
                                        "include_topic_authorized_operations": False})
        for broker in response.brokers:
            self._nodes[int(broker.node_id)] = f"{broker.host}:{broker.port}"
        return response

    def broker_config(self, key: str) -> str | None:
        """The value of broker config ``key`` on one broker (DescribeConfigs), None when the
        broker does not say (no such key, DescribeConfigs not offered, an error)."""
        brokers = self.metadata([]).brokers
        if DESCRIBE_CONFIGS not in self.versions or not brokers:
            return None
        response = self.call(DESCRIBE_CONFIGS, {
            "resources": [{"resource_type": 4, "resource_name": str(int(brokers[0].node_id)),
                           "configuration_keys": [key]}],
            "include_synonyms": False, "include_documentation": False})
        for result in response.results:
            for config in result.configs if error_name(result.error_code) == "NONE" else ():
                if config.name == key:
                    return None if config.value is None else str(config.value)
        return None

    def node_address(self, node_id: int) -> str:
        if node_id not in self._nodes:
            self.metadata([])
        try:
            return self._nodes[node_id]
        except KeyError:
            raise SessionError(f"Metadata names no broker with node id {node_id}") from None

    def partitions(self, topic: str) -> int:
        """How many partitions Metadata reports for ``topic`` (0 when it does not exist)."""
        response = self.metadata([topic])
        for t in response.topics:
            if t.name == topic and error_name(t.error_code) == "NONE":
                return len(t.partitions)
        return 0

    def leader(self, topic: str, partition: int, refresh: bool = False) -> str:
        """The address of the partition's leader (waiting briefly for one to be elected)."""
        key = (topic, partition)
        if key in self._leaders and not refresh:
            return self._leaders[key]
        deadline = time.monotonic() + self.timeout_s
        for pause in pauses():
            response = self.metadata([topic])
            for t in response.topics:
                if t.name != topic:
                    continue
                for p in t.partitions:
                    if int(p.partition_index) == partition and int(p.leader_id) >= 0:
                        self._leaders[key] = self.node_address(int(p.leader_id))
                        return self._leaders[key]
            if time.monotonic() > deadline:
                break
            time.sleep(pause)
        raise SessionError(f"no leader for {topic}-{partition} within {self.timeout_s}s")

    def coordinator(self, key: str, key_type: int = GROUP_KEY) -> str:
        """The address of the coordinator of a group (key type 0) or transactional id (1)."""
        cached = self._coordinators.get((key_type, key))
        if cached is not None:
            return cached
        deadline = time.monotonic() + self.timeout_s
        what = "group" if key_type == GROUP_KEY else "transactional id"
        for pause in pauses():
            response = self.call(FIND_COORDINATOR, {"key": key, "key_type": key_type})
            error = error_name(response.error_code)
            if error == "NONE":
                self._coordinators[(key_type, key)] = f"{response.host}:{response.port}"
                return self._coordinators[(key_type, key)]
            if error not in ("COORDINATOR_NOT_AVAILABLE", "COORDINATOR_LOAD_IN_PROGRESS") or time.monotonic() > deadline:
                break
            time.sleep(pause)
        raise SessionError(f"FindCoordinator for {what} {key!r}: {error}")

    def coordinator_call(self, key: str, api_key: int, fields: Mapping[str, Any],
                         errors: Callable[[Any], Iterable[str]], key_type: int = GROUP_KEY,
                         version: int | None = None) -> Any:
        """A request to the coordinator of ``key``. While every error in the answer is a
        retriable coordinator error (the coordinator moved, e.g. after a restart, or is still
        loading), find the coordinator again and retry, as clients do, until the session's
        timeout; then the answer is returned as it is."""
        deadline = time.monotonic() + self.timeout_s
        waits = pauses()
        while True:
            response = self.call(api_key, fields, version=version, address=self.coordinator(key, key_type))
            seen = set(errors(response))
            if not seen or not seen <= RETRIABLE_COORDINATOR_ERRORS or time.monotonic() > deadline:
                return response
            self._coordinators.pop((key_type, key), None)
            time.sleep(next(waits))

    # --- topics --------------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     configs: Mapping[str, str] | None = None, validate_only: bool = False,
                     wait: bool = True, assignments: Sequence[Sequence[int]] | None = None) -> str:
        """CreateTopics for one topic; its error name. ``assignments``: the replicas (broker
        ids, preferred leader first) of each partition in order, instead of the broker's
        placement (``partitions`` and ``replication_factor`` are then implied). With ``wait``
        (and success), returns once Metadata shows a leader for every partition."""
        placed = [{"partition_index": i, "broker_ids": [int(b) for b in replicas]}
                  for i, replicas in enumerate(assignments or ())]
        if placed:
            partitions = len(placed)
        response = self.call(CREATE_TOPICS, {
            "topics": [{"name": name, "num_partitions": -1 if placed else partitions,
                        "replication_factor": -1 if placed else replication_factor, "assignments": placed,
                        "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()]}],
            "timeout": int(self.timeout_s * 1000), "validate_only": validate_only,
        })
        error = error_name(response.topics[0].error_code)
        if error == "NONE" and wait and not validate_only:
            self.wait_until_served({name: partitions})
        return error

    def create_topics(self, topics: Mapping[str, tuple[int, Mapping[str, str]]]) -> dict[str, tuple[str, int]]:
        """CreateTopics for several topics (name -> (partitions, configs); replication factor
        1) in one request, then wait until every one is served: name -> (CreateTopics' error,
        the partitions Metadata shows for it, 0 when none). Kafka's controller creates a batch
        for about the price of one topic (one metadata commit and propagation)."""
        response = self.call(CREATE_TOPICS, {
            "topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1, "assignments": [],
                        "configs": [{"name": k, "value": v} for k, v in configs.items()]}
                       for name, (partitions, configs) in topics.items()],
            "timeout": int(self.timeout_s * 1000), "validate_only": False,
        })
        errors = {t.name: error_name(t.error_code) for t in response.topics}
        missing = [name for name in topics if name not in errors]
        if missing:
            raise SessionError(f"CreateTopics answered without topics {missing}")
        seen = self.wait_until_served({name: topics[name][0] for name, error in errors.items() if error == "NONE"})
        return {name: (error, seen.get(name, 0)) for name, error in errors.items()}

    def _knows(self, address: str, topics: Mapping[str, int]) -> bool:
        """Whether the broker at ``address`` has every topic, with its partitions, in its metadata."""
        response = self.call(METADATA, {"topics": [{"name": t, "topic_id": None} for t in topics],
                                        "allow_auto_topic_creation": False,
                                        "include_topic_authorized_operations": False}, address=address)
        seen = {t.name: len(t.partitions) for t in response.topics if error_name(t.error_code) == "NONE"}
        return all(seen.get(name, 0) >= partitions for name, partitions in topics.items())

    def delete_topics(self, names: Sequence[str], per_request: int = 200) -> dict[str, str]:
        """DeleteTopics for ``names`` (``per_request`` at a time): name -> error."""
        errors: dict[str, str] = {}
        for i in range(0, len(names), per_request):
            response = self.call(DELETE_TOPICS, {"topic_names": list(names[i:i + per_request]),
                                                 "timeout": int(self.timeout_s * 1000)})
            errors.update({r.name: error_name(r.error_code) for r in response.responses})
        return errors

    def wait_until_served(self, topics: Mapping[str, int]) -> dict[str, int]:
        """Wait until every partition of ``topics`` (name -> partitions) has a leader that
        answers for it (a new topic's leader may learn of it after Metadata names it; clients
        retry meanwhile), and every broker's metadata has the topics, or the session's timeout
        passes. One Metadata request and one ListOffsets per leader each round, then Metadata at
        each broker; returns name -> the partitions Metadata shows.

        Every broker, because a request about the topic may go to any of them: Kafka's
        OffsetCommit answers UNKNOWN_TOPIC_OR_PARTITION from a group coordinator whose metadata
        cache has not learned of the topic yet (``KafkaApis.handleOffsetCommitRequest``), which
        failed one seed in ten of a sweep against a 3-node Kafka 4.4.0."""
        deadline = time.monotonic() + self.timeout_s
        counts: dict[str, int] = {}
        for pause in pauses():
            waiting: dict[str, list[tuple[str, int]]] = {}
            response = self.metadata(list(topics))
            for t in response.topics:
                if t.name not in topics or error_name(t.error_code) != "NONE":
                    continue
                counts[t.name] = len(t.partitions)
                for p in t.partitions:
                    if int(p.leader_id) >= 0:
                        self._leaders[(t.name, int(p.partition_index))] = self.node_address(int(p.leader_id))
            ready = True
            for name, partitions in topics.items():
                for partition in range(partitions):
                    address = self._leaders.get((name, partition))
                    if counts.get(name, 0) < partitions or address is None:
                        ready = False
                    else:
                        waiting.setdefault(address, []).append((name, partition))
            for address, tps in waiting.items():
                answer = self.call(LIST_OFFSETS, {"replica_id": -1, "isolation_level": 0, "topics": [
                    {"name": name, "partitions": [{"partition_index": p, "current_leader_epoch": -1,
                                                   "timestamp": EARLIEST} for n, p in tps if n == name]}
                    for name in dict.fromkeys(n for n, _ in tps)]}, address=address)
                ready = ready and all(error_name(q.error_code) == "NONE" for t in answer.topics for q in t.partitions)
            if ready:
                ready = all(self._knows(address, topics) for address in sorted(set(self._nodes.values())))
            if ready or time.monotonic() > deadline:
                break
            time.sleep(pause)
        return counts

    # --- produce and fetch ---------------------------------------------------------------------

    def produce(self, topic: str, partition: int, records: bytes, acks: int = -1,
                timeout_ms: int = 10_000, version: int | None = None,
                transactional_id: str | None = None) -> ProduceResult | None:
        """Produce one record set to one partition; None for ``acks=0`` (no response)."""
        response = self.call(PRODUCE, {
            "transactional_id": transactional_id, "acks": acks, "timeout": timeout_ms,
            "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": records}]}],
        }, version=version, address=self.leader(topic, partition), expect_response=acks != 0)
        if response is None:
            return None
        p = response.responses[0].partition_responses[0]
        return ProduceResult(error_name(p.error_code), int(p.base_offset),
                             int(getattr(p, "log_start_offset", -1)), getattr(p, "error_message", None))

    def fetch(self, topic: str, partition: int, offset: int, *, max_bytes: int = 1 << 20,
              partition_max_bytes: int = 1 << 20, max_wait_ms: int = 0, min_bytes: int = 1,
              isolation: int = 0, version: int | None = None) -> FetchResult:
        """One Fetch of one partition (sessionless)."""
        response = self.call(FETCH, {
            "cluster_id": None, "replica_id": -1, "max_wait": max_wait_ms, "min_bytes": min_bytes,
            "max_bytes": max_bytes, "isolation_level": isolation, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [{
                "partition": partition, "current_leader_epoch": -1, "fetch_offset": offset,
                "last_fetched_epoch": -1, "log_start_offset": -1,
                "partition_max_bytes": partition_max_bytes}]}],
            "forgotten_topics_data": [], "rack_id": "",
        }, version=version, address=self.leader(topic, partition))
        top = error_name(getattr(response, "error_code", 0))
        if top != "NONE":
            return FetchResult(top, -1, -1, -1, (), (), 0, False)
        entries = [q for t in response.responses for q in t.partitions if int(q.partition_index) == partition]
        if not entries:
            raise SessionError(
                f"Fetch {topic}-{partition} at {offset} (max bytes {max_bytes}): the answer leaves the partition "
                "out; a full (sessionless) fetch answers every partition it asks for (KIP-227)")
        p = entries[0]
        data = bytes(p.records) if p.records is not None else b""
        headers, records, torn = decode_batches(data)
        aborted = getattr(p, "aborted_transactions", None)
        return FetchResult(error_name(p.error_code), int(p.high_watermark), int(p.last_stable_offset),
                           int(getattr(p, "log_start_offset", -1)), tuple(records), tuple(headers),
                           len(data), torn, None if aborted is None else
                           tuple((int(a.producer_id), int(a.first_offset)) for a in aborted),
                           decode_markers(data, headers))

    def list_offsets(self, topic: str, partition: int, timestamp: int, isolation: int = 0,
                     version: int | None = None) -> ListOffsetsResult:
        return self.list_offsets_many([(topic, partition)], timestamp, isolation, version)[(topic, partition)]

    def list_offsets_many(self, partitions: Sequence[tuple[str, int]], timestamp: int, isolation: int = 0,
                          version: int | None = None) -> dict[tuple[str, int], ListOffsetsResult]:
        """ListOffsets for several partitions (grouped by leader: one request per broker)."""
        by_leader: dict[str, list[tuple[str, int]]] = {}
        for tp in partitions:
            by_leader.setdefault(self.leader(*tp), []).append(tp)
        out: dict[tuple[str, int], ListOffsetsResult] = {}
        for address, tps in by_leader.items():
            topics: dict[str, list[dict[str, Any]]] = {}
            for t, p in tps:
                topics.setdefault(t, []).append(
                    {"partition_index": p, "current_leader_epoch": -1, "timestamp": timestamp})
            response = self.call(LIST_OFFSETS, {
                "replica_id": -1, "isolation_level": isolation,
                "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()],
            }, version=version, address=address)
            for t in response.topics:
                for p in t.partitions:
                    out[(t.name, int(p.partition_index))] = ListOffsetsResult(
                        error_name(p.error_code), int(p.offset), int(p.timestamp))
        missing = [tp for tp in partitions if tp not in out]
        if missing:
            raise SessionError(f"ListOffsets answered without partitions {missing}")
        return out

    def delete_records(self, topic: str, partition: int, offset: int) -> tuple[str, int]:
        """DeleteRecords before ``offset``: (error, new low watermark)."""
        response = self.call(DELETE_RECORDS, {
            "topics": [{"name": topic, "partitions": [{"partition_index": partition, "offset": offset}]}],
            "timeout": int(self.timeout_s * 1000)}, address=self.leader(topic, partition))
        p = response.topics[0].partitions[0]
        return error_name(p.error_code), int(p.low_watermark)

    def init_producer_id(self) -> tuple[str, int, int]:
        """InitProducerId for an idempotent (non-transactional) producer: (error, id, epoch).
        The retriable coordinator errors are retried until the session's timeout, as clients do
        (a KRaft broker answers COORDINATOR_LOAD_IN_PROGRESS until the controller has given it
        its first block of producer ids, KIP-730)."""
        deadline = time.monotonic() + self.timeout_s
        waits = pauses()
        while True:
            response = self.call(INIT_PRODUCER_ID, {"transactional_id": None, "transaction_timeout": 60_000,
                                                    "producer_id": -1, "producer_epoch": -1})
            error = error_name(response.error_code)
            if error not in RETRIABLE_COORDINATOR_ERRORS or time.monotonic() > deadline:
                return error, int(response.producer_id), int(response.producer_epoch)
            time.sleep(next(waits))

    # --- groups --------------------------------------------------------------------------------

    def offset_commit(self, group: str, offsets: Mapping[tuple[str, int], int], generation: int = -1,
                      member_id: str = "", metadata: str | None = None) -> dict[tuple[str, int], str]:
        topics: dict[str, list[dict[str, Any]]] = {}
        for (t, p), off in offsets.items():
            topics.setdefault(t, []).append({"partition_index": p, "committed_offset": off,
                                             "committed_leader_epoch": -1, "committed_metadata": metadata})
        response = self.coordinator_call(group, OFFSET_COMMIT, {
            "group_id": group, "generation_id_or_member_epoch": generation, "member_id": member_id,
            "group_instance_id": None, "retention_time": -1,
            "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()],
        }, lambda r: [error_name(p.error_code) for t in r.topics for p in t.partitions
                      if error_name(p.error_code) != "NONE"])
        return {(t.name, int(p.partition_index)): error_name(p.error_code)
                for t in response.topics for p in t.partitions}

    def offset_fetch(self, group: str, partitions: Sequence[tuple[str, int]], require_stable: bool = False
                     ) -> dict[tuple[str, int], tuple[int, str | None, str]]:
        """Committed offsets: (topic, partition) -> (offset or -1, metadata, error). With
        ``require_stable`` (v7+, KIP-447) a partition whose transactional commit is pending
        answers UNSTABLE_OFFSET_COMMIT."""
        topics: dict[str, list[int]] = {}
        for t, p in partitions:
            topics.setdefault(t, []).append(p)
        response = self.coordinator_call(group, OFFSET_FETCH, {
            "group_id": group, "require_stable": require_stable,
            "topics": [{"name": t, "partition_indexes": ps} for t, ps in topics.items()],
        }, lambda r: [e for e in [error_name(getattr(r, "error_code", 0))] if e != "NONE"])
        top = error_name(getattr(response, "error_code", 0))
        if top != "NONE":
            raise SessionError(f"OffsetFetch for group {group!r}: {top}")
        return {(t.name, int(p.partition_index)): (int(p.committed_offset), p.metadata, error_name(p.error_code))
                for t in response.topics for p in t.partitions}

    async def ajoin_once(self, conn: WireClient, group: str, member_id: str, subscription: bytes,
                         session_ms: int = 60_000, rebalance_ms: int = 15_000) -> JoinAnswer:
        """One JoinGroup request (a new member of v4+ gets MEMBER_ID_REQUIRED and its id)."""
        response = await self.acall(conn, JOIN_GROUP, {
            "group_id": group, "session_timeout": session_ms, "rebalance_timeout": rebalance_ms,
            "member_id": member_id, "group_instance_id": None, "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": subscription}], "reason": None})
        return JoinAnswer(error_name(response.error_code), int(response.generation_id), response.member_id,
                          response.leader, response.protocol_name,
                          tuple((m.member_id, bytes(m.metadata)) for m in response.members))

    async def ajoin(self, conn: WireClient, group: str, member_id: str, subscription: bytes,
                    session_ms: int = 60_000, rebalance_ms: int = 15_000) -> JoinAnswer:
        """JoinGroup, with the MEMBER_ID_REQUIRED round of v4+ (KIP-394) done for a new member."""
        result = await self.ajoin_once(conn, group, member_id, subscription, session_ms, rebalance_ms)
        if result.error == "MEMBER_ID_REQUIRED":
            result = await self.ajoin_once(conn, group, result.member_id, subscription, session_ms, rebalance_ms)
        return result

    async def async_sync(self, conn: WireClient, group: str, generation: int, member_id: str,
                         assignments: Mapping[str, bytes]) -> tuple[str, bytes]:
        response = await self.acall(conn, SYNC_GROUP, {
            "group_id": group, "generation_id": generation, "member_id": member_id,
            "group_instance_id": None, "protocol_type": "consumer", "protocol_name": "range",
            "assignments": [{"member_id": m, "assignment": a} for m, a in assignments.items()]})
        return error_name(response.error_code), bytes(response.assignment)

    def heartbeat(self, group: str, generation: int, member_id: str) -> str:
        response = self.call(HEARTBEAT, {"group_id": group, "generation_id": generation,
                                         "member_id": member_id, "group_instance_id": None},
                             address=self.coordinator(group))
        return error_name(response.error_code)

    def leave(self, group: str, member_id: str) -> str:
        version = self.version(LEAVE_GROUP)
        fields: dict[str, Any] = {"group_id": group, "member_id": member_id,
                                  "members": [{"member_id": member_id, "group_instance_id": None}]}
        response = self.call(LEAVE_GROUP, fields, version=version, address=self.coordinator(group))
        error = error_name(response.error_code)
        if error == "NONE" and version >= 3 and response.members:
            error = error_name(response.members[0].error_code)
        return error


def _encodable(api_key: int, version: int) -> bool:
    try:
        request_class(api_key, version)
        return True
    except Exception:  # noqa: BLE001 - kio raises assorted errors for unknown versions
        return False


@functools.cache
def request_floor(api_key: int) -> int:
    """The lowest version kio can encode for ``api_key`` (Kafka 4.x floors)."""
    for version in range(0, 20):
        if _encodable(api_key, version):
            return version
    return 0


@functools.cache
def request_ceiling(api_key: int) -> int:
    """The highest version kio can encode for ``api_key``: a broker newer than kio's schemas
    (Apache Kafka 4.4 advertises ApiVersions v5, kio 0.6.5 knows v0-v4) is spoken to at most at
    this version, as a real client speaks its own highest version."""
    floor = request_floor(api_key)
    version = floor
    while _encodable(api_key, version + 1):
        version += 1
    return version


def api_versions_frame(version: int, correlation_id: int = 99) -> bytes:
    """An ApiVersions v3 request frame whose header claims ``version`` (to test negotiation
    with a version the broker does not know)."""
    frame = bytearray(encode_request(build(request_class(API_VERSIONS, 3), {
        "client_software_name": "kconform", "client_software_version": "1"}), correlation_id))
    struct.pack_into(">h", frame, 6, version)  # size(4) api_key(2) api_version(2)
    return bytes(frame)


UNKNOWN_TAG, UNKNOWN_TAG_VALUE = 9999, b"\x01\x02\x03"  # a tag no Kafka schema defines (KIP-482)


def with_unknown_tag(frame: bytes, position: int, tag: int = UNKNOWN_TAG, value: bytes = UNKNOWN_TAG_VALUE) -> bytes:
    """``frame`` (with its size prefix) with one tagged field added to the empty tagged-field
    buffer at ``position`` (negative: from the end), and the size prefix fixed; a receiver that
    follows KIP-482 skips it. ValueError when no empty buffer is there."""
    at = position % len(frame)
    if frame[at] != 0:
        raise ValueError(f"byte {at} of the frame is {frame[at]}, not an empty tagged-field buffer")
    entry = bytes([1]) + encode_uvarint(tag) + encode_uvarint(len(value)) + value
    out = bytearray(frame[:at] + entry + frame[at + 1:])
    struct.pack_into(">i", out, 0, len(out) - 4)
    return bytes(out)


def header_tags_position(frame: bytes) -> int:
    """Where a flexible request header's tagged-field buffer is: after size, api key, version,
    correlation id and the (legacy, int16-length) client id."""
    (length,) = struct.unpack_from(">h", frame, 12)
    return 14 + max(int(length), 0)
