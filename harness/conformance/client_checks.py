"""Workload checks through real client libraries (``--client``), judged by the history checkers.

Each check records every send, poll, commit and rebalance into a history (docs/history-format.md)
and hands it to `harness.checkers`: an anomaly there (lost-write, duplicate, inconsistent-offsets,
nonmonotonic-send, poll-skip, ...) fails the check and is counted by name in results.json.
"""

from __future__ import annotations

import time

from harness.clients import (
    ClientError,
    ClientUnavailable,
    ConsumerSettings,
    ProducerSettings,
    make_consumer,
    make_producer,
)
from harness.clients.base import Consumer, Delivery, Producer, text
from harness.clients.kcat_reader import kcat_path, kcat_read
from harness.conformance.context import CheckContext, CheckFailed, CheckSkipped, expect
from harness.conformance.registry import check
from harness.history.load import History
from harness.history.write import Recorder
from harness.session import LATEST, WireSession
from harness.targets.base import CONSUMER_GROUPS, CREATE_TOPICS
from specs.produce import Outcome

ORDERED = 20  # sends awaited one by one to one partition (order is checkable record by record)
PIPELINED = 1000  # sends in flight together, spread over partitions by key
GROUP_RECORDS = 300
INTEROP_PIPELINED = 300
GROUP_TIME_S = 75.0


def _producer(ctx: CheckContext, history: object, process: str, client: str | None = None) -> Producer:
    client = client or ctx.client
    assert client is not None
    try:
        return make_producer(client, ctx.bootstrap, ProducerSettings(client_id=f"kconform-{process}"),
                             history, process)  # type: ignore[arg-type]
    except ClientUnavailable as exc:
        raise CheckSkipped(str(exc)) from exc
    except ClientError as exc:
        raise CheckFailed(f"the {client} producer could not start against the target: {exc}") from exc


def _consumer(ctx: CheckContext, history: object, process: str, group: str | None = None,
              client: str | None = None) -> Consumer:
    client = client or ctx.client
    assert client is not None
    try:
        return make_consumer(client, ctx.bootstrap, group,
                             ConsumerSettings(client_id=f"kconform-{process}", auto_offset_reset="earliest"),
                             history, process)  # type: ignore[arg-type]
    except ClientUnavailable as exc:
        raise CheckSkipped(str(exc)) from exc


def _ends(s: WireSession, topic: str, partitions: int, deliveries: list[Delivery]) -> dict[tuple[str, int], int]:
    """Where a final read must get to: the log end after every write was acknowledged. That is
    at least one past every acknowledged offset, whatever ListOffsets says (a broker whose
    ListOffsets is wrong fails its own check; here it must not hide records from the drain)."""
    answers = s.list_offsets_many([(topic, p) for p in range(partitions)], LATEST)
    ends = {tp: max(a.offset, 0) for tp, a in answers.items()}
    for d in deliveries:
        if d.partition is not None and d.offset is not None:
            tp = (topic, d.partition)
            ends[tp] = max(ends.get(tp, 0), d.offset + 1)
    return ends


def _send_all(ctx: CheckContext, producer: Producer, topic: str, ordered: int, pipelined: int) -> list[Delivery]:
    """``ordered`` sends to partition 0 awaited one by one, then ``pipelined`` keyed ones in flight
    together; fails unless every one is acknowledged."""
    handles = []
    for _ in range(ordered):
        handle = producer.send(topic, None, producer.next_value(), partition=0)
        handles.append(handle)
        try:
            handle.result(30)
        except TimeoutError:
            raise CheckFailed(f"a send to {topic}-0 through {producer.client} got no delivery report in 30 s") from None
    handles += [producer.send(topic, f"k{i}", producer.next_value()) for i in range(pipelined)]
    remaining = producer.flush(60)
    expect(remaining == 0, f"{remaining} sends through {producer.client} got no delivery report in 60 s")
    deliveries = [h.result(1) for h in handles]
    bad = [d for d in deliveries if d.outcome is not Outcome.SUCCESS]
    expect(not bad, f"{len(bad)} of {len(handles)} sends through {producer.client} were not acknowledged, first: "
           f"{bad[0].outcome.value} {bad[0].error}" if bad else "")
    return deliveries


def _write(ctx: CheckContext, s: WireSession, recorder: Recorder, topic: str, ordered: int, pipelined: int,
           client: str | None = None) -> dict[tuple[str, int], int]:
    """Write ``topic`` (three partitions) with one producer of ``client`` (default: the check's), as
    :func:`_send_all` does; the end offsets a final read must reach."""
    producer = _producer(ctx, recorder, "p0", client=client)
    try:
        deliveries = _send_all(ctx, producer, topic, ordered, pipelined)
    finally:
        producer.close()
    return _ends(s, topic, 3, deliveries)


@check("client-roundtrip", kind="client", per_client=True, requires=[CREATE_TOPICS],
       rule="Kafka documentation 1.1 and 4.6: every acknowledged record is in the log once, at the offset it "
            "was acknowledged at, in the order one producer wrote it to a partition, and a consumer reading "
            "the partitions from the start gets each exactly once")
def client_roundtrip(ctx: CheckContext) -> None:
    """Records sent with the client library are read back once each, at their acknowledged offsets."""
    _write_then_read(ctx, ctx.client, ctx.client, PIPELINED)


@check("client-group", kind="client", per_client=True, requires=[CREATE_TOPICS, CONSUMER_GROUPS],
       rule="Kafka documentation 1.1 (Consumers) and 4.6: a group's members share the partitions, each owned "
            "by one member per generation; every record is delivered to the group (at-least-once with commits "
            "after processing) and committed offsets only move forward")
def client_group(ctx: CheckContext) -> None:
    """Two consumers of one group share a topic: every record delivered, commits held, no split brain."""
    s = ctx.session()
    topic = ctx.name("t")
    group = ctx.name("g")
    expect(s.create_topic(topic, 3) == "NONE", f"CreateTopics {topic} failed")
    recording = ctx.recording()
    ends = _write(ctx, s, recording.recorder, topic, 0, GROUP_RECORDS)
    consumers = [_consumer(ctx, recording.recorder, f"c{i}", group) for i in range(2)]
    delivered: set[str] = set()
    deadline = time.monotonic() + GROUP_TIME_S
    first_delivery: float | None = None
    started = time.monotonic()
    try:
        for c in consumers:
            c.subscribe([topic])
        last_look = 0.0
        read_to: dict[tuple[str, int], int] = {}
        while time.monotonic() < deadline:
            through = all(read_to.get(tp, 0) >= end for tp, end in ends.items())
            if (len(delivered) >= GROUP_RECORDS or through) and time.monotonic() - last_look > 0.5:
                # Everything was delivered (or read past); done once the broker holds the final
                # commits (a commit refused during a rebalance is redone by the next owner).
                last_look = time.monotonic()
                fetched = s.offset_fetch(group, sorted(ends))
                if all(fetched[tp][0] == end for tp, end in ends.items()):
                    break
            for c in consumers:
                try:
                    records = c.poll(0.2)
                except ClientError:
                    continue
                if not records:
                    continue
                first_delivery = first_delivery or time.monotonic() - started
                delivered.update(v for r in records if (v := text(r.value)) is not None)
                positions: dict[tuple[str, int], int] = {}
                for r in records:
                    positions[(r.topic, r.partition)] = r.offset + 1
                for tp, next_offset in positions.items():
                    read_to[tp] = max(read_to.get(tp, 0), next_offset)
                try:
                    c.commit(positions)  # after processing: at-least-once
                except ClientError:
                    pass  # e.g. a rebalance in progress: the history records the failed commit
    finally:
        for c in consumers:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing a consumer must not hide the result
                pass
    ctx.details["first_delivery_s"] = round(first_delivery, 1) if first_delivery is not None else None
    # The broker's view of the commits, asked directly (a client may hold the request behind a rebalance).
    invoke = recording.recorder.invoke("checker", "committed", group=group, partitions=[list(tp) for tp in sorted(ends)])
    fetched = s.offset_fetch(group, sorted(ends))
    committed = {tp: offset for tp, (offset, _, _) in fetched.items()}
    recording.recorder.ok(invoke, offsets=[[t, p, o] for (t, p), o in sorted(committed.items())])
    ctx.check_history(recording.history(), guarantees=["at-least-once"])
    expect(len(delivered) == GROUP_RECORDS,
           f"{GROUP_RECORDS - len(delivered)} of {GROUP_RECORDS} acknowledged records were not delivered to the "
           f"group of two {ctx.client} consumers within {GROUP_TIME_S:.0f} s (first delivery after "
           f"{ctx.details['first_delivery_s']} s)")
    behind = {f"{t}-{p}": (committed.get((t, p)), end) for (t, p), end in ends.items() if committed.get((t, p)) != end}
    expect(not behind, f"after every record was processed and its offset committed, OffsetFetch answers "
           f"(committed, end) {behind}")


@check("client-interop", kind="client", per_pair=True, requires=[CREATE_TOPICS],
       rule="Kafka documentation 5.3 (the on-disk and wire format is the record batch, the same for every "
            "client): records one client library writes are read by another with the same offsets, keys and "
            "values, each once")
def client_interop(ctx: CheckContext) -> None:
    """Records one client library writes (keyed, ordered and pipelined), another reads back unchanged."""
    assert ctx.client is not None and ">" in ctx.client, "client-interop runs per pair, e.g. [java>kcat]"
    writer, reader = ctx.client.split(">", 1)
    if reader == "kcat":
        _require_kcat()
    history = _write_then_read(ctx, writer, reader, INTEROP_PIPELINED)
    changed = _changed_keys(history.raw)
    expect(not changed, f"{len(changed)} records read by {reader} carry another key than {writer} sent, first: "
           + "; ".join(changed[:3]))


def _write_then_read(ctx: CheckContext, writer: str | None, reader: str | None, pipelined: int) -> History:
    """Write a new topic with ``writer`` (:data:`ORDERED` sends awaited, then ``pipelined`` in
    flight), read every partition back from 0 with ``reader`` (a client library or ``kcat``), and
    check the recorded history; that history, for the caller's own checks."""
    s = ctx.session()
    topic = ctx.name("t")
    expect(s.create_topic(topic, 3) == "NONE", f"CreateTopics {topic} failed")
    recording = ctx.recording()
    ends = _write(ctx, s, recording.recorder, topic, ORDERED, pipelined, client=writer)
    short = _read_with_kcat(ctx, recording.recorder, ends) if reader == "kcat" else \
        _read_with_client(ctx, recording.recorder, ends, reader)
    history = recording.history()
    ctx.details["records"] = ORDERED + pipelined
    ctx.check_history(history)
    expect(not short, short)
    return history


def _read_with_client(ctx: CheckContext, recorder: Recorder, ends: dict[tuple[str, int], int],
                      reader: str | None) -> str:
    """Read every partition from 0 to its end with ``reader``; what fell short ("" if nothing)."""
    consumer = _consumer(ctx, recorder, "c0", client=reader)
    try:
        consumer.assign(sorted(ends), {tp: 0 for tp in ends})
        complete = consumer.drain(ends, 60)
    finally:
        consumer.close()
    return "" if complete else f"the {reader} consumer did not reach the end offsets {ends} within 60 s"


def _read_with_kcat(ctx: CheckContext, recorder: Recorder, ends: dict[tuple[str, int], int]) -> str:
    """Read every partition from 0 to its end with kcat, each read recorded as a ``poll``."""
    short = []
    for (t, p), end in sorted(ends.items()):
        invoke = recorder.invoke("c0", "poll")
        try:
            records = kcat_read(ctx.bootstrap, t, p, 0)
        except ClientError as exc:
            recorder.fail(invoke, exc.error)
            raise CheckFailed(f"kcat could not read {t}-{p}: {exc}") from exc
        recorder.ok(invoke, records=[[r.topic, r.partition, r.offset, text(r.key), text(r.value)] for r in records])
        got = max((r.offset + 1 for r in records), default=0)
        if got < end:
            short.append(f"kcat read {t}-{p} up to offset {got}, short of its end {end}")
    return "; ".join(short)


def _require_kcat() -> None:
    try:
        kcat_path()
    except ClientUnavailable as exc:
        raise CheckSkipped(str(exc)) from exc


def _changed_keys(events: list[dict[str, object]]) -> list[str]:
    """Records read with a key other than the one their value was sent with (the checkers judge
    values and offsets, not keys)."""
    sent: dict[object, object] = {}
    changed = []
    for e in events:
        value = e["value"]
        assert isinstance(value, dict)
        if e["f"] == "send" and e["type"] == "invoke":
            sent[value["value"]] = value["key"]
        elif e["f"] == "poll" and e["type"] == "ok":
            for topic, partition, offset, key, record_value in value.get("records", []):
                if record_value in sent and sent[record_value] != key:
                    changed.append(f"{record_value} at {topic}-{partition}@{offset}: sent with key "
                                   f"{sent[record_value]!r}, read with {key!r}")
    return changed
