"""Deterministic protocol checks: one precise request at a time, exact error codes and offsets.

Each check sends requests with the wire session (`harness.session`) and compares the raw answer
with the Kafka rule its ``rule`` names. Topics and groups are created fresh with unique names.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from harness.conformance.context import CheckContext, CheckSkipped, expect
from harness.conformance.registry import check
from harness.error_names import error_name
from harness.session import (
    API_NAMES,
    API_VERSIONS,
    EARLIEST,
    FETCH,
    FIND_COORDINATOR,
    INIT_PRODUCER_ID,
    LATEST,
    LIST_OFFSETS,
    MAX_TIMESTAMP,
    METADATA,
    OFFSET_FETCH,
    UNKNOWN_TAG,
    FetchedRecord,
    SessionError,
    WireSession,
    api_versions_frame,
    header_tags_position,
    make_batch,
    request_ceiling,
    request_floor,
    with_unknown_tag,
)
from harness.targets.base import (
    CONSUMER_GROUPS,
    CREATE_TOPICS,
    DELETE_RECORDS,
    IDEMPOTENCE,
    TOPIC_IDS,
)
from harness.targets.base import (
    MAX_TIMESTAMP as MAX_TS_CAP,
)
from harness.wire import build, encode_request, request_class
from reference_broker.groups.testing import consumer_subscription

T0 = 1_700_000_000_000


# --- helpers -----------------------------------------------------------------------------------

def _topic(ctx: CheckContext, s: WireSession, partitions: int = 1, configs: dict[str, str] | None = None) -> str:
    name = ctx.name("t")
    error = s.create_topic(name, partitions, configs=configs)
    expect(error == "NONE", f"CreateTopics {name} ({partitions} partitions): {error}")
    return name


def _produce(s: WireSession, topic: str, values: list[bytes], partition: int = 0, acks: int = -1,
             timestamps: list[int] | None = None) -> int:
    result = s.produce(topic, partition, make_batch(values, timestamps=timestamps), acks=acks)
    assert result is not None
    expect(result.error == "NONE", f"Produce of {len(values)} records to {topic}-{partition} (acks={acks}): "
           f"{result.error} {result.error_message or ''}".strip())
    return result.base_offset


def _read(s: WireSession, topic: str, partition: int, start: int, end: int) -> list[FetchedRecord]:
    """Every record in [start, end), fetching until done."""
    out: list[FetchedRecord] = []
    offset = start
    for _ in range(1000):
        if offset >= end:
            break
        result = s.fetch(topic, partition, offset, max_wait_ms=100)
        expect(result.error == "NONE", f"Fetch {topic}-{partition} at {offset}: {result.error}")
        got = [r for r in result.from_offset(offset) if r.offset < end]
        if not got:
            expect(offset >= result.high_watermark,
                   f"Fetch {topic}-{partition} at {offset}: no records below the high watermark "
                   f"{result.high_watermark}")
            break
        out.extend(got)
        offset = got[-1].offset + 1
    return out


def _values(tag: str, n: int) -> list[bytes]:
    return [f"{tag}-{i}".encode() for i in range(n)]


# --- ApiVersions -------------------------------------------------------------------------------

@check("api-versions", rule="KIP-35/KIP-511: ApiVersions lists every API with a min <= max version range")
def api_versions(ctx: CheckContext) -> None:
    """ApiVersions v3 answers NONE and lists ApiVersions itself among well-formed ranges."""
    s = ctx.session()
    versions = s.versions
    bad = {k: v for k, v in versions.items() if v[0] > v[1] or v[0] < 0}
    expect(not bad, f"ApiVersions lists ranges with min > max or negative: {bad}")
    expect(API_VERSIONS in versions and versions[API_VERSIONS][0] <= 3 <= versions[API_VERSIONS][1],
           f"ApiVersions v3 answered, but its own range is {versions.get(API_VERSIONS)}")
    ctx.details["apis"] = len(versions)


@check("api-versions-unsupported-version",
       rule="KIP-511: an ApiVersions request at a version the broker does not know is answered with a v0 "
            "response carrying UNSUPPORTED_VERSION and the supported ranges, so the client can retry")
def api_versions_unsupported(ctx: CheckContext) -> None:
    """An ApiVersions request at version 32767 gets UNSUPPORTED_VERSION with the ranges (v0)."""
    s = ctx.session()
    try:
        response = s.raw(api_versions_frame(32767), API_VERSIONS, 0)
    except SessionError as exc:
        try:
            as_v3 = ctx.session().raw(api_versions_frame(32767), API_VERSIONS, 3)
            seen = f"it decodes as a v3 (flexible) response with error {error_name(as_v3.error_code)}"
        except SessionError:
            seen = f"{exc}"
        expect(False, f"ApiVersions at version 32767: the answer is not a v0 response; {seen}")
    error = error_name(response.error_code)
    expect(error == "UNSUPPORTED_VERSION",
           f"ApiVersions at version 32767 answered {error}, not UNSUPPORTED_VERSION")
    keys = {int(k.api_key) for k in response.api_keys}
    expect(API_VERSIONS in keys, f"the UNSUPPORTED_VERSION answer lists no range for ApiVersions (lists {sorted(keys)})")


_FIXED = {"bool": 1, "int8": 1, "int16": 2, "int32": 4, "timedelta_i32": 4, "int64": 8}


def _after(cls: type, name: str) -> int:
    """The bytes of the fixed-size fields that follow field ``name`` in request class ``cls``."""
    fields = dataclasses.fields(cls)
    index = [f.name for f in fields].index(name)
    return sum(_FIXED[str(f.metadata["kafka_type"])] for f in fields[index + 1:])


def _gist(api_key: int, response: Any) -> object:
    """What a request's answer says, without what may change between two asks (leaders, ISR,
    epochs, throttling): error codes, API ranges, topics and partitions, offsets."""
    if api_key == API_VERSIONS:
        return error_name(response.error_code), sorted((int(k.api_key), int(k.min_version), int(k.max_version))
                                                       for k in response.api_keys)
    if api_key == METADATA:
        return sorted((t.name, error_name(t.error_code), len(t.partitions)) for t in response.topics)
    return sorted((t.name, int(p.partition_index), error_name(p.error_code), int(p.offset))
                  for t in response.topics for p in t.partitions)


@check("unknown-tagged-fields", requires=[CREATE_TOPICS],
       rule="KIP-482: a receiver skips the tagged fields it does not know (that is what lets a newer client "
            "talk to an older broker), so a request carrying them, in its header, its body or a nested "
            "struct, is answered as the same request without them")
def unknown_tagged_fields(ctx: CheckContext) -> None:
    """ApiVersions, Metadata and ListOffsets with an unknown tagged field in the header, the body
    and a nested struct are answered exactly as without it."""
    s = ctx.session()
    topic = ctx.name("t")
    expect(s.create_topic(topic, 1) == "NONE", f"CreateTopics {topic} failed")
    tried = []
    for api_key, nested in ((API_VERSIONS, 0), (METADATA, 1), (LIST_OFFSETS, 2)):
        version = s.version(api_key)
        cls = request_class(api_key, version)
        if not cls.__flexible__:
            continue  # no tagged fields before a flexible version
        plain = encode_request(build(cls, _probe_fields(api_key, topic)), 1000 + api_key)
        tagged = plain
        if nested:  # the last topic's (Metadata) or partition's (ListOffsets) tagged fields
            tagged = with_unknown_tag(tagged, -(1 + _after(cls, "topics") + nested))
        tagged = with_unknown_tag(tagged, -1)  # the body's own
        tagged = with_unknown_tag(tagged, header_tags_position(tagged))
        what = f"{API_NAMES[api_key]} v{version} with tag {UNKNOWN_TAG} in the header, the body" + \
            (" and a nested struct" if nested else "")
        address = s.leader(topic, 0) if api_key == LIST_OFFSETS else None
        expected = s.raw(plain, api_key, version, address=address)
        try:
            answer = s.raw(tagged, api_key, version, address=address)
        except SessionError as exc:
            s.drop_connection(address or s.bootstrap)
            expect(False, f"{what}: no answer ({exc}); the broker must skip tags it does not know (KIP-482)")
        got, want = _gist(api_key, answer), _gist(api_key, expected)
        expect(got == want, f"{what} was answered {got}; without the tags: {want}")
        tried.append(f"{API_NAMES[api_key]} v{version}")
    if not tried:
        raise CheckSkipped("the target speaks no flexible version of ApiVersions, Metadata or ListOffsets")
    ctx.details["requests"] = tried


# Requests that change nothing (or only register an idempotent producer id), per API.
def _probe_fields(api_key: int, topic: str) -> dict[str, object]:
    fields: dict[int, dict[str, object]] = {
        METADATA: {"topics": [{"name": topic, "topic_id": None}], "allow_auto_topic_creation": False,
                   "include_topic_authorized_operations": False},
        API_VERSIONS: {"client_software_name": "kconform", "client_software_version": "1"},
        LIST_OFFSETS: {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}]}]},
        FETCH: {"replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": 1 << 20, "isolation_level": 0,
                "session_id": 0, "session_epoch": -1, "topics": [{"topic": topic, "partitions": [{
                    "partition": 0, "current_leader_epoch": -1, "fetch_offset": 0, "last_fetched_epoch": -1,
                    "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}], "forgotten_topics_data": [],
                "rack_id": ""},
        FIND_COORDINATOR: {"key": f"{topic}-group", "key_type": 0},
        INIT_PRODUCER_ID: {"transactional_id": None, "transaction_timeout": 60_000, "producer_id": -1,
                           "producer_epoch": -1},
        OFFSET_FETCH: {"group_id": f"{topic}-group", "topics": [{"name": topic, "partition_indexes": [0]}],
                       "require_stable": False},
    }
    return fields[api_key]


_PROBED = (METADATA, API_VERSIONS, LIST_OFFSETS, FETCH, FIND_COORDINATOR, INIT_PRODUCER_ID, OFFSET_FETCH)
_PROBE_CAPS = {FETCH: 12, OFFSET_FETCH: 7, FIND_COORDINATOR: 3}  # request shapes written here


@check("advertised-versions-answered", requires=[CREATE_TOPICS],
       rule="KIP-35: a broker serves every version in the range its ApiVersions answer advertises")
def advertised_versions(ctx: CheckContext) -> None:
    """Every advertised version of Metadata, ApiVersions, ListOffsets, Fetch, FindCoordinator,
    InitProducerId and OffsetFetch is answered without UNKNOWN_SERVER_ERROR, UNSUPPORTED_VERSION
    or a closed connection."""
    s = ctx.session()
    topic = _topic(ctx, s)
    problems: list[str] = []
    beyond: list[str] = []
    tried = 0
    for api_key in _PROBED:
        have = s.versions.get(api_key)
        if have is None:
            continue
        low = max(have[0], request_floor(api_key))
        high = min(have[1], _PROBE_CAPS.get(api_key, have[1]))
        if have[1] > request_ceiling(api_key):
            # A broker newer than the wire client's schemas: what it cannot encode is not probed
            # (and is said so in the details), never counted as answered.
            beyond.append(f"{API_NAMES[api_key]} v{request_ceiling(api_key) + 1}-v{have[1]}")
            high = min(high, request_ceiling(api_key))
        for version in range(low, high + 1):
            tried += 1
            name = f"{API_NAMES[api_key]} v{version}"
            try:
                response = s.call(api_key, _probe_fields(api_key, topic), version=version,
                                  address=s.coordinator(f"{topic}-group") if api_key == OFFSET_FETCH else None)
            except SessionError as exc:
                problems.append(f"{name}: {exc}")
                continue
            codes = _error_codes(response)
            bad = sorted(c for c in codes if c in ("UNKNOWN_SERVER_ERROR", "UNSUPPORTED_VERSION"))
            if bad:
                problems.append(f"{name}: {bad[0]}")
    ctx.details["versions_tried"] = tried
    if beyond:
        ctx.details["not_probed_newer_than_the_wire_client"] = beyond
    expect(not problems, f"{len(problems)} of {tried} advertised versions fail: " + "; ".join(problems[:6]))


def _error_codes(obj: object, depth: int = 0) -> set[str]:
    """Every error code anywhere in a kio response."""
    found: set[str] = set()
    if depth > 4:
        return found
    for name in getattr(obj, "__dataclass_fields__", {}):
        value = getattr(obj, name)
        if name == "error_code":
            found.add(error_name(value))
        elif isinstance(value, tuple):
            for item in value:
                found |= _error_codes(item, depth + 1)
        elif hasattr(value, "__dataclass_fields__"):
            found |= _error_codes(value, depth + 1)
    return found


# --- topics ------------------------------------------------------------------------------------

@check("metadata-topics", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, Metadata: every partition of an existing topic has a leader among the "
            "listed brokers; an unknown topic is UNKNOWN_TOPIC_OR_PARTITION when auto-creation is off")
def metadata_topics(ctx: CheckContext) -> None:
    """Metadata lists a created topic's partitions with leaders, and an unknown topic as unknown."""
    s = ctx.session()
    topic = _topic(ctx, s, 3)
    response = s.metadata([topic])
    brokers = {int(b.node_id) for b in response.brokers}
    expect(bool(brokers), "Metadata lists no brokers")
    entry = [t for t in response.topics if t.name == topic]
    expect(len(entry) == 1 and error_name(entry[0].error_code) == "NONE",
           f"Metadata for the created topic {topic}: {[(t.name, error_name(t.error_code)) for t in response.topics]}")
    partitions = sorted(int(p.partition_index) for p in entry[0].partitions)
    expect(partitions == [0, 1, 2], f"Metadata lists partitions {partitions} of a 3-partition topic")
    leaderless = [int(p.partition_index) for p in entry[0].partitions if int(p.leader_id) not in brokers]
    expect(not leaderless, f"partitions {leaderless} have a leader that is not a listed broker")
    unknown = ctx.name("missing")
    answer = s.metadata([unknown])
    errors = [error_name(t.error_code) for t in answer.topics if t.name == unknown]
    expect(errors == ["UNKNOWN_TOPIC_OR_PARTITION"],
           f"Metadata for the unknown topic {unknown} with auto-creation off: {errors}")
    expect(s.partitions(unknown) == 0, f"Metadata without auto-creation created {unknown}")


@check("create-topics-errors", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, CreateTopics: TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS, "
            "INVALID_REPLICATION_FACTOR, INVALID_TOPIC_EXCEPTION and INVALID_CONFIG are refused without "
            "creating anything; validate_only creates nothing")
def create_topics_errors(ctx: CheckContext) -> None:
    """CreateTopics refuses duplicates, bad partition counts, replication factors, names and configs."""
    s = ctx.session()
    topic = _topic(ctx, s, 2)
    brokers = len(s.metadata([]).brokers)
    cases: list[tuple[str, str, int, int, dict[str, str] | None, str]] = [
        ("an existing topic", topic, 2, 1, None, "TOPIC_ALREADY_EXISTS"),
        ("0 partitions", ctx.name("zero"), 0, 1, None, "INVALID_PARTITIONS"),
        (f"replication factor {brokers + 1} on {brokers} broker(s)", ctx.name("rf"), 1, brokers + 1, None,
         "INVALID_REPLICATION_FACTOR"),
        ("the name 'bad/name'", "bad/name", 1, 1, None, "INVALID_TOPIC_EXCEPTION"),
        ("the name '..'", "..", 1, 1, None, "INVALID_TOPIC_EXCEPTION"),
        ("an unknown config key", ctx.name("cfg"), 1, 1, {"no.such.config": "1"}, "INVALID_CONFIG"),
    ]
    problems = []
    for what, name, partitions, replication, configs, want in cases:
        got = s.create_topic(name, partitions, replication_factor=replication, configs=configs, wait=False)
        if got != want:
            problems.append(f"{what}: {got}, expected {want}")
        elif name != topic and s.partitions(name) != 0:
            problems.append(f"{what}: refused with {got} but the topic exists")
    dry = ctx.name("dry")
    got = s.create_topic(dry, 1, validate_only=True)
    if got != "NONE":
        problems.append(f"validate_only for a valid topic: {got}")
    if s.partitions(dry) != 0:
        problems.append("validate_only created the topic")
    expect(not problems, "; ".join(problems))


# --- produce -----------------------------------------------------------------------------------

@check("produce-offsets-contiguous", requires=[CREATE_TOPICS],
       rule="Kafka documentation 1.1 (Topics and Logs): each appended record gets the next offset, so a "
            "batch's base offset is the log end offset and offsets are contiguous and increasing")
def produce_offsets_contiguous(ctx: CheckContext) -> None:
    """Successive produces (acks=1 and all; 1, 3 and 5 records) are acknowledged at the log end."""
    s = ctx.session()
    topic = _topic(ctx, s)
    end = 0
    for n, acks in [(1, -1), (3, -1), (5, 1), (1, 1), (2, -1)]:
        base = _produce(s, topic, _values(f"b{end}", n), acks=acks)
        expect(base == end, f"a batch of {n} records (acks={acks}) was acknowledged at base offset {base}; "
               f"the log ended at {end}")
        end += n
    fetched = s.fetch(topic, 0, 0, max_wait_ms=100)
    expect([r.offset for r in fetched.records] == list(range(end)),
           f"after {end} acknowledged records a fetch from 0 returns offsets {[r.offset for r in fetched.records]}")


@check("produce-acks-zero-no-response", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, Produce: with acks=0 'the server will not send any response (this is the "
            "only case where the server will not reply to a request)'")
def produce_acks_zero(ctx: CheckContext) -> None:
    """An acks=0 produce gets no response: the next answer on the connection is for the next request."""
    s = ctx.session()
    topic = _topic(ctx, s)
    result = s.produce(topic, 0, make_batch(_values("zero", 2)), acks=0)
    expect(result is None, "acks=0 produce returned a response object")
    try:
        latest = s.list_offsets(topic, 0, LATEST)
    except SessionError as exc:
        expect(False, f"after an acks=0 Produce, the next request on the connection got: {exc}")
    expect(latest.offset == 2, f"after an acks=0 produce of 2 records ListOffsets latest is {latest.offset}; "
           "requests on one connection are processed in order, so the records are appended first")


@check("produce-invalid-acks", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, Produce: acks must be 0, 1 or -1, else INVALID_REQUIRED_ACKS")
def produce_invalid_acks(ctx: CheckContext) -> None:
    """acks=2 is refused with INVALID_REQUIRED_ACKS and nothing is appended."""
    s = ctx.session()
    topic = _topic(ctx, s)
    result = s.produce(topic, 0, make_batch([b"x"]), acks=2)
    assert result is not None
    expect(result.error == "INVALID_REQUIRED_ACKS", f"Produce with acks=2: {result.error}")
    expect(s.list_offsets(topic, 0, LATEST).offset == 0, "a refused produce was appended")


@check("produce-corrupt-batch", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, Record Batch: the CRC covers the batch; a mismatch is CORRUPT_MESSAGE and "
            "the batch is not appended")
def produce_corrupt_batch(ctx: CheckContext) -> None:
    """A batch with a wrong CRC is refused with CORRUPT_MESSAGE and nothing is appended."""
    s = ctx.session()
    topic = _topic(ctx, s)
    batch = bytearray(make_batch([b"value"]))
    batch[-1] ^= 0xFF
    result = s.produce(topic, 0, bytes(batch))
    assert result is not None
    expect(result.error == "CORRUPT_MESSAGE", f"Produce of a batch with a bad CRC: {result.error}")
    expect(s.list_offsets(topic, 0, LATEST).offset == 0, "the corrupt batch was appended")


@check("produce-unknown-partition", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, Produce: a partition the topic does not have is UNKNOWN_TOPIC_OR_PARTITION")
def produce_unknown_partition(ctx: CheckContext) -> None:
    """A produce to partition 5 of a one-partition topic is UNKNOWN_TOPIC_OR_PARTITION."""
    s = ctx.session()
    topic = _topic(ctx, s)
    response = s.call(0, {"transactional_id": None, "acks": -1, "timeout": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": 5, "records": make_batch([b"x"])}]}]},
        address=s.leader(topic, 0))
    errors = [error_name(p.error_code) for t in response.responses for p in t.partition_responses]
    expect(errors == ["UNKNOWN_TOPIC_OR_PARTITION"], f"Produce to partition 5 of a 1-partition topic: {errors}")


# --- fetch -------------------------------------------------------------------------------------

@check("fetch-acknowledged-records", requires=[CREATE_TOPICS],
       rule="Kafka documentation 1.1 and protocol guide, Record Batch: a fetch returns the records at the "
            "offsets they were acknowledged at, in the batches they were written in (CRC intact)")
def fetch_acknowledged_records(ctx: CheckContext) -> None:
    """Fetched records carry their acknowledged offsets and values, batches as produced, CRCs valid."""
    s = ctx.session()
    topic = _topic(ctx, s)
    written: dict[int, bytes] = {}
    batches = []
    for n in (3, 1, 4, 2):
        values = _values(f"w{len(written)}", n)
        base = _produce(s, topic, values)
        batches.append((base, base + n - 1))
        written.update({base + i: v for i, v in enumerate(values)})
    result = s.fetch(topic, 0, 0, max_wait_ms=100)
    expect(result.error == "NONE", f"Fetch at 0: {result.error}")
    got = {r.offset: r.value for r in result.records}
    expect(got == written, f"fetched {sorted(got.items())[:6]}..., acknowledged {sorted(written.items())[:6]}...")
    spans = [(h.base_offset, h.last_offset) for h in result.batches]
    expect(spans == batches, f"fetched batches span {spans}, the produces were {batches}")
    expect(not result.torn_tail, "the answer holds bytes that are not a whole batch with a valid CRC, "
           "although everything fit in the size limits")


@check("fetch-from-inside-a-batch", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, Fetch: the broker returns whole batches, starting with the one holding the "
            "fetch offset (clients skip the records before it); records from the offset on are contiguous")
def fetch_inside_batch(ctx: CheckContext) -> None:
    """A fetch at an offset inside a batch returns that whole batch, then contiguous records."""
    s = ctx.session()
    topic = _topic(ctx, s)
    _produce(s, topic, _values("a", 5))
    _produce(s, topic, _values("b", 5))
    result = s.fetch(topic, 0, 2, max_wait_ms=100)
    expect(result.error == "NONE", f"Fetch at offset 2: {result.error}")
    expect(bool(result.batches) and result.batches[0].base_offset <= 2 <= result.batches[0].last_offset,
           f"Fetch at offset 2 (inside the batch 0-4) returned batches "
           f"{[(h.base_offset, h.last_offset) for h in result.batches]}")
    offsets = [r.offset for r in result.from_offset(2)]
    expect(offsets == list(range(2, 10)), f"records from offset 2: {offsets}, expected 2..9")


@check("fetch-at-least-one-batch", requires=[CREATE_TOPICS],
       rule="KIP-74: if the first batch is larger than max_bytes or partition_max_bytes it is still returned "
            "whole, so consumers make progress")
def fetch_at_least_one_batch(ctx: CheckContext) -> None:
    """A fetch whose byte limits are smaller than the first batch still returns that batch whole."""
    s = ctx.session()
    topic = _topic(ctx, s)
    _produce(s, topic, [b"x" * 2000, b"y" * 2000])
    _produce(s, topic, [b"z" * 2000])
    for max_bytes in (1, 100):
        result = s.fetch(topic, 0, 0, max_bytes=max_bytes, partition_max_bytes=max_bytes, max_wait_ms=100)
        expect(result.error == "NONE", f"Fetch with max_bytes={max_bytes}: {result.error}")
        expect([r.offset for r in result.records][:2] == [0, 1],
               f"Fetch with max_bytes={max_bytes}: offsets {[r.offset for r in result.records]} "
               f"({result.raw_size} bytes); the first batch (offsets 0-1, ~4 kB) must come back whole")


@check("fetch-offset-out-of-range", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, Fetch: an offset below the log start or above the log end offset is "
            "OFFSET_OUT_OF_RANGE; the log end offset itself is valid and returns nothing")
def fetch_out_of_range(ctx: CheckContext) -> None:
    """Fetching past the log end or before its start is OFFSET_OUT_OF_RANGE; at the end, empty."""
    s = ctx.session()
    topic = _topic(ctx, s)
    _produce(s, topic, _values("r", 3))
    problems = []
    for offset, want in ((4, "OFFSET_OUT_OF_RANGE"), (1000, "OFFSET_OUT_OF_RANGE"), (-1, "OFFSET_OUT_OF_RANGE"),
                         (3, "NONE")):
        try:
            result = s.fetch(topic, 0, offset, max_wait_ms=50)
        except SessionError as exc:
            problems.append(f"offset {offset}: {exc}")
            continue
        if result.error != want:
            problems.append(f"offset {offset} (log [0, 3)): {result.error}, expected {want}")
        elif result.from_offset(max(offset, 0)):
            problems.append(f"offset {offset}: returned records {[r.offset for r in result.records]}")
    expect(not problems, "; ".join(problems))


@check("fetch-max-wait-zero", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, Fetch: max_wait_ms=0 answers at once with what is available, and a full "
            "(sessionless) fetch answers every partition it asks for (KIP-227)")
def fetch_max_wait_zero(ctx: CheckContext) -> None:
    """A fetch with max_wait 0 returns the available records at once (and an empty partition entry)."""
    s = ctx.session()
    topic = _topic(ctx, s, 2)
    _produce(s, topic, _values("m", 2), partition=0)
    started = time.monotonic()
    try:
        full = s.fetch(topic, 0, 0, max_wait_ms=0)
        empty = s.fetch(topic, 1, 0, max_wait_ms=0)
    except SessionError as exc:
        expect(False, f"Fetch with max_wait 0: {exc}")
    elapsed = time.monotonic() - started
    expect(full.error == "NONE" and [r.offset for r in full.records] == [0, 1],
           f"Fetch at 0 with max_wait 0 where offsets 0-1 exist: {full.error} {[r.offset for r in full.records]}")
    expect(empty.error == "NONE" and not empty.records, f"Fetch of the empty partition: {empty.error}")
    expect(elapsed < 2.0, f"two fetches with max_wait 0 took {elapsed:.1f} s")


@check("fetch-long-poll", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, Fetch: without min_bytes of data the broker waits up to max_wait_ms before "
            "answering (long polling), and answers early once data arrives")
def fetch_long_poll(ctx: CheckContext) -> None:
    """A fetch at the log end with max_wait 1000 ms waits (not a busy loop) and returns nothing."""
    s = ctx.session()
    topic = _topic(ctx, s)
    _produce(s, topic, _values("l", 1))
    started = time.monotonic()
    result = s.fetch(topic, 0, 1, max_wait_ms=1000, min_bytes=1)
    elapsed = time.monotonic() - started
    expect(result.error == "NONE" and not result.from_offset(1),
           f"Fetch at the log end: {result.error} with {len(result.records)} records")
    expect(elapsed >= 0.5, f"a fetch at the log end with max_wait 1000 ms and min_bytes 1 answered after "
           f"{elapsed * 1000:.0f} ms; the broker should park it until data arrives or max_wait passes")
    expect(elapsed < 5.0, f"a fetch with max_wait 1000 ms answered after {elapsed:.1f} s")


@check("high-watermark", requires=[CREATE_TOPICS],
       rule="Kafka documentation 4.7 (Replication) and KIP-101: the high watermark covers every acks=all "
            "write, never moves backwards, and Fetch and ListOffsets agree on it; without transactions the "
            "last stable offset equals it (KIP-98)")
def high_watermark(ctx: CheckContext) -> None:
    """After each acks=all produce the high watermark reaches the log end; it never goes backwards."""
    s = ctx.session()
    topic = _topic(ctx, s)
    previous = 0
    end = 0
    for n in (1, 4, 2, 3):
        _produce(s, topic, _values(f"h{end}", n))
        end += n
        fetched = s.fetch(topic, 0, 0, max_wait_ms=50)
        latest = s.list_offsets(topic, 0, LATEST)
        expect(fetched.high_watermark == end,
               f"after an acks=all write ending at {end}, Fetch reports high watermark {fetched.high_watermark}")
        expect(latest.offset == fetched.high_watermark,
               f"ListOffsets latest {latest.offset} differs from Fetch's high watermark {fetched.high_watermark}")
        expect(fetched.high_watermark >= previous,
               f"high watermark went back from {previous} to {fetched.high_watermark}")
        expect(fetched.last_stable_offset == fetched.high_watermark,
               f"last stable offset {fetched.last_stable_offset} differs from high watermark "
               f"{fetched.high_watermark} with no transaction open")
        expect(fetched.log_start_offset in (0, -1), f"log start offset {fetched.log_start_offset}, expected 0")
        previous = fetched.high_watermark


# --- list offsets ------------------------------------------------------------------------------

@check("list-offsets", requires=[CREATE_TOPICS],
       rule="Kafka protocol guide, ListOffsets: EARLIEST (-2) is the log start offset, LATEST (-1) the high "
            "watermark; a timestamp finds the first record whose timestamp is at least it, and -1 when none is")
def list_offsets_check(ctx: CheckContext) -> None:
    """ListOffsets earliest, latest and by timestamp (first record at or after it; -1 past the last)."""
    s = ctx.session()
    topic = _topic(ctx, s)
    problems = []
    for spec, want in ((EARLIEST, 0), (LATEST, 0), (T0, -1)):
        got = s.list_offsets(topic, 0, spec)
        if (got.error, got.offset) != ("NONE", want):
            problems.append(f"empty partition, spec {spec}: {got.error} offset {got.offset}, expected {want}")
    stamps = [T0 + 1000, T0 + 3000, T0 + 3000, T0 + 7000, T0 + 9000]
    _produce(s, topic, _values("ts", 3), timestamps=stamps[:3])
    _produce(s, topic, _values("tt", 2), timestamps=stamps[3:])
    cases = [(EARLIEST, 0, None), (LATEST, 5, None), (T0, 0, T0 + 1000), (T0 + 1000, 0, T0 + 1000),
             (T0 + 2000, 1, T0 + 3000), (T0 + 3000, 1, T0 + 3000), (T0 + 5000, 3, T0 + 7000),
             (T0 + 9000, 4, T0 + 9000), (T0 + 9001, -1, None)]
    for spec, want, stamp in cases:
        got = s.list_offsets(topic, 0, spec)
        if got.error != "NONE" or got.offset != want or (stamp is not None and got.timestamp != stamp):
            problems.append(f"spec {spec}: {got.error} offset {got.offset} timestamp {got.timestamp}, "
                            f"expected offset {want}" + (f" timestamp {stamp}" if stamp else ""))
    expect(not problems, "; ".join(problems))


@check("list-offsets-max-timestamp", requires=[CREATE_TOPICS, MAX_TS_CAP],
       rule="KIP-734: ListOffsets with MAX_TIMESTAMP (-3) answers the offset and timestamp of the record with "
            "the largest timestamp")
def list_offsets_max_timestamp(ctx: CheckContext) -> None:
    """ListOffsets MAX_TIMESTAMP finds the record with the largest timestamp, not the last one."""
    s = ctx.session()
    topic = _topic(ctx, s)
    _produce(s, topic, [b"a"], timestamps=[T0 + 1000])
    _produce(s, topic, [b"b"], timestamps=[T0 + 9000])
    _produce(s, topic, [b"c"], timestamps=[T0 + 2000])
    got = s.list_offsets(topic, 0, MAX_TIMESTAMP, version=s.version(LIST_OFFSETS, at_least=7))
    expect((got.error, got.offset, got.timestamp) == ("NONE", 1, T0 + 9000),
           f"MAX_TIMESTAMP: {got.error} offset {got.offset} timestamp {got.timestamp}; the largest timestamp "
           f"{T0 + 9000} is at offset 1")


@check("delete-records", requires=[CREATE_TOPICS, DELETE_RECORDS],
       rule="KIP-107: DeleteRecords moves the log start offset (the low watermark) forward; earlier offsets "
            "are OFFSET_OUT_OF_RANGE and ListOffsets earliest answers the new start; an offset past the high "
            "watermark is OFFSET_OUT_OF_RANGE")
def delete_records(ctx: CheckContext) -> None:
    """DeleteRecords moves the log start; fetches below it are out of range, earliest follows it."""
    s = ctx.session()
    topic = _topic(ctx, s)
    _produce(s, topic, _values("d", 6))
    try:
        error, low = s.delete_records(topic, 0, 4)
    except SessionError as exc:
        expect(False, f"DeleteRecords before offset 4: {exc}")
    expect((error, low) == ("NONE", 4), f"DeleteRecords before offset 4: {error}, low watermark {low}")
    earliest = s.list_offsets(topic, 0, EARLIEST)
    expect(earliest.offset == 4, f"after DeleteRecords before 4, ListOffsets earliest is {earliest.offset}")
    below = s.fetch(topic, 0, 2, max_wait_ms=50)
    expect(below.error == "OFFSET_OUT_OF_RANGE", f"Fetch at 2, below the new log start 4: {below.error}")
    at = s.fetch(topic, 0, 4, max_wait_ms=50)
    expect(at.error == "NONE" and [r.offset for r in at.from_offset(4)] == [4, 5],
           f"Fetch at the new log start 4: {at.error} {[r.offset for r in at.records]}")
    error, _ = s.delete_records(topic, 0, 7)
    expect(error == "OFFSET_OUT_OF_RANGE", f"DeleteRecords before 7, past the high watermark 6: {error}")


# --- idempotence -------------------------------------------------------------------------------

@check("idempotent-producer", requires=[CREATE_TOPICS, IDEMPOTENCE],
       rule="KIP-98: InitProducerId gives distinct producer ids; a resent batch (same producer, epoch and "
            "sequence) is answered with its original offset and stored once; a sequence gap is "
            "OUT_OF_ORDER_SEQUENCE_NUMBER")
def idempotent_producer(ctx: CheckContext) -> None:
    """A resent idempotent batch is deduplicated; a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER."""
    s = ctx.session()
    topic = _topic(ctx, s)
    first = s.init_producer_id()
    second = s.init_producer_id()
    expect(first[0] == "NONE" and second[0] == "NONE", f"InitProducerId: {first[0]}, {second[0]}")
    expect(first[1] != second[1], f"two InitProducerId calls returned the same producer id {first[1]}")
    pid, epoch = first[1], first[2]
    batch0 = make_batch(_values("i0", 2), producer_id=pid, producer_epoch=epoch, base_sequence=0)
    r0 = s.produce(topic, 0, batch0)
    assert r0 is not None
    expect((r0.error, r0.base_offset) == ("NONE", 0), f"first idempotent batch: {r0.error} at {r0.base_offset}")
    again = s.produce(topic, 0, batch0)
    assert again is not None
    expect(again.error in ("NONE", "DUPLICATE_SEQUENCE_NUMBER") and (again.error != "NONE" or again.base_offset == 0),
           f"resending the same batch: {again.error} at base offset {again.base_offset}; expected success with "
           "the original offset 0")
    gap = s.produce(topic, 0, make_batch([b"gap"], producer_id=pid, producer_epoch=epoch, base_sequence=5))
    assert gap is not None
    expect(gap.error == "OUT_OF_ORDER_SEQUENCE_NUMBER", f"sequence 5 where 2 was next: {gap.error}")
    r1 = s.produce(topic, 0, make_batch(_values("i1", 1), producer_id=pid, producer_epoch=epoch, base_sequence=2))
    assert r1 is not None
    expect((r1.error, r1.base_offset) == ("NONE", 2), f"the next sequence 2: {r1.error} at {r1.base_offset}")
    stored = [r.value for r in _read(s, topic, 0, 0, 3)]
    expect(stored == [b"i0-0", b"i0-1", b"i1-0"], f"the log holds {stored}; the resent batch must be stored once")
    expect(s.list_offsets(topic, 0, LATEST).offset == 3, "records beyond the three written are in the log")


# --- groups ------------------------------------------------------------------------------------

@check("committed-offsets-round-trip", requires=[CREATE_TOPICS, CONSUMER_GROUPS],
       rule="Kafka protocol guide, OffsetCommit/OffsetFetch: a committed offset and its metadata are returned "
            "as committed; a partition never committed answers -1")
def committed_offsets_round_trip(ctx: CheckContext) -> None:
    """OffsetFetch returns what OffsetCommit stored (offset and metadata), -1 where nothing was."""
    s = ctx.session()
    topic = _topic(ctx, s, 3)
    group = ctx.name("g")
    errors = s.offset_commit(group, {(topic, 0): 17, (topic, 1): 3}, metadata="meta-17")
    expect(set(errors.values()) == {"NONE"}, f"OffsetCommit to an empty group: {errors}")
    got = s.offset_fetch(group, [(topic, 0), (topic, 1), (topic, 2)])
    want = {(topic, 0): (17, "meta-17"), (topic, 1): (3, "meta-17"), (topic, 2): (-1, None)}
    seen = {tp: (o, m) for tp, (o, m, _e) in got.items()}
    expect(all(seen.get(tp, (None, None))[0] == w[0] for tp, w in want.items()),
           f"OffsetFetch after committing p0=17, p1=3: {seen}")
    expect(seen[(topic, 0)][1] == "meta-17", f"committed metadata came back as {seen[(topic, 0)][1]!r}")
    s.offset_commit(group, {(topic, 0): 5})
    expect(s.offset_fetch(group, [(topic, 0)])[(topic, 0)][0] == 5,
           "a second commit (moving back to 5, an explicit reset) did not replace the first")


@check("group-membership", requires=[CREATE_TOPICS, CONSUMER_GROUPS],
       rule="Kafka protocol guide, JoinGroup/SyncGroup/Heartbeat/LeaveGroup and KIP-394: a member joins "
            "(MEMBER_ID_REQUIRED first), gets a generation and its assignment; a rejoin starts a higher "
            "generation; stale generations are ILLEGAL_GENERATION, unknown or departed members "
            "UNKNOWN_MEMBER_ID")
def group_membership(ctx: CheckContext) -> None:
    """Join, sync, heartbeat and commit with generation fencing, then leave."""
    s = ctx.session(timeout_s=15)
    topic = _topic(ctx, s, 2)
    group = ctx.name("g")
    conn = s.run(s.connect(s.coordinator(group)))
    subscription = consumer_subscription([topic])
    try:
        first = s.run(s.ajoin_once(conn, group, "", subscription, rebalance_ms=10_000))
        expect(first.error in ("MEMBER_ID_REQUIRED", "NONE"), f"first JoinGroup: {first.error}")
        try:
            joined = s.run(s.ajoin(conn, group, first.member_id, subscription, rebalance_ms=10_000))
        except SessionError as exc:
            expect(False, f"JoinGroup of a lone member asking for a 10 s rebalance timeout: {exc}; the "
                   "coordinator completes the join within the rebalance timeout (KIP-134 caps the initial "
                   "delay by it)")
        expect(joined.error == "NONE", f"JoinGroup: {joined.error}")
        expect(joined.generation >= 1, f"the first generation is {joined.generation}; Kafka starts at 1")
        expect(joined.leader == joined.member_id, "a lone member is not its group's leader")
        from reference_broker.groups.testing import consumer_assignment, decode_assignment

        mine = consumer_assignment({topic: [0, 1]})
        error, assignment = s.run(s.async_sync(conn, group, joined.generation, joined.member_id,
                                               {joined.member_id: mine}))
        expect(error == "NONE" and decode_assignment(assignment) == {(topic, 0), (topic, 1)},
               f"SyncGroup: {error}, assignment {decode_assignment(assignment) if error == 'NONE' else None}")
        expect(s.heartbeat(group, joined.generation, joined.member_id) == "NONE", "Heartbeat of the member failed")
        again = s.run(s.ajoin(conn, group, joined.member_id, subscription, rebalance_ms=10_000))
        expect(again.error == "NONE" and again.generation > joined.generation,
               f"the leader's rejoin: {again.error} generation {again.generation} after {joined.generation}")
        error, _ = s.run(s.async_sync(conn, group, again.generation, again.member_id, {again.member_id: mine}))
        expect(error == "NONE", f"SyncGroup in generation {again.generation}: {error}")
        stale = s.heartbeat(group, joined.generation, joined.member_id)
        expect(stale == "ILLEGAL_GENERATION", f"Heartbeat with the old generation {joined.generation}: {stale}")
        commit = s.offset_commit(group, {(topic, 0): 1}, joined.generation, joined.member_id)
        expect(commit[(topic, 0)] == "ILLEGAL_GENERATION", f"OffsetCommit with the old generation: {commit}")
        commit = s.offset_commit(group, {(topic, 0): 1}, again.generation, joined.member_id)
        expect(commit[(topic, 0)] == "NONE", f"OffsetCommit with the current generation: {commit}")
        unknown = s.heartbeat(group, again.generation, "no-such-member")
        expect(unknown == "UNKNOWN_MEMBER_ID", f"Heartbeat of an unknown member: {unknown}")
        expect(s.leave(group, joined.member_id) == "NONE", "LeaveGroup failed")
        gone = s.heartbeat(group, again.generation, joined.member_id)
        expect(gone in ("UNKNOWN_MEMBER_ID",), f"Heartbeat after leaving: {gone}")
    finally:
        s.run(conn.close())


@check("topic-ids", requires=[CREATE_TOPICS, TOPIC_IDS],
       rule="KIP-516: Metadata v10+ returns each topic's id, Fetch v13+ addresses the topic by it, and an "
            "unknown id is UNKNOWN_TOPIC_ID")
def topic_ids(ctx: CheckContext) -> None:
    """A topic's id from Metadata fetches its records (Fetch v13); an unknown id is UNKNOWN_TOPIC_ID."""
    s = ctx.session()
    topic = _topic(ctx, s)
    _produce(s, topic, _values("id", 2))
    version = min(s.versions[METADATA][1], 12)
    response = s.call(METADATA, {"topics": [{"name": topic, "topic_id": None}], "allow_auto_topic_creation": False,
                                 "include_topic_authorized_operations": False}, version=version)
    tid = response.topics[0].topic_id
    expect(tid is not None and tid.int != 0, f"Metadata v{version} returned topic id {tid}")
    if not s.supports(FETCH, 13):
        raise CheckSkipped(f"the target's Fetch versions {s.versions.get(FETCH)} do not include 13 (topic ids)")
    fetch_v = 13

    def fetch_by_id(topic_id: uuid.UUID) -> tuple[str, int]:
        r = s.call(FETCH, {"replica_id": -1, "max_wait": 100, "min_bytes": 1, "max_bytes": 1 << 20,
                           "isolation_level": 0, "session_id": 0, "session_epoch": -1,
                           "topics": [{"topic_id": topic_id, "partitions": [{
                               "partition": 0, "current_leader_epoch": -1, "fetch_offset": 0,
                               "last_fetched_epoch": -1, "log_start_offset": -1,
                               "partition_max_bytes": 1 << 20}]}],
                           "forgotten_topics_data": [], "rack_id": ""}, version=fetch_v,
                   address=s.leader(topic, 0))
        top = error_name(r.error_code)
        if top != "NONE" or not r.responses:
            return top, 0
        p = r.responses[0].partitions[0]
        return error_name(p.error_code), int(p.high_watermark)

    expect(fetch_by_id(tid) == ("NONE", 2), f"Fetch v{fetch_v} by topic id: {fetch_by_id(tid)}")
    unknown = fetch_by_id(uuid.uuid4())
    expect(unknown[0] == "UNKNOWN_TOPIC_ID", f"Fetch v{fetch_v} of an unknown topic id: {unknown[0]}")
