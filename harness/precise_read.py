"""The precise final read: every partition read to its end through kconform's own wire client.

A campaign's verdict rests on its final read (the ``drain`` operation, docs/history-format.md):
unseen writes are judged by it, and so is whose fault a duplicate is. A client library hands
the application records without the batch they came in, so it cannot tell a record the broker
stored twice from a record the producer sent twice. This reader asks the partition leaders with
plain Fetch requests (harness.session) and records, with every poll, the identity of each batch
it returned: producer id, producer epoch and base sequence (`batches`). The batch CRC covers
those fields, so they are the producer's own, whatever the broker did with the batch.

It is also independent of the client under test: a consumer library's bug cannot hide records
from the drain, nor invent them.

With ``read_committed`` it reads as a read_committed consumer does (KIP-98): Fetch at that
isolation level, handing over only what ``specs.transaction_log.read_committed_offsets`` keeps
(no aborted transaction's records, no markers). The Kafka Streams workload's output is read so:
the transactions that wrote it are not in the history, so only the reader can leave the aborted
ones out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from harness.clients.base import text
from harness.history.format import READ_COMMITTED
from harness.history.write import Recorder
from harness.session import EARLIEST, FetchedRecord, FetchResult, SessionError, WireSession
from specs.transaction_log import FetchedBatch, read_committed_offsets

TP = tuple[str, int]

PROCESS = "drain"
CLIENT = "kconform wire reader (Fetch, batch identities recorded)"
"""How the history's ``meta.clients`` names this reader."""

# Errors after which the leader may have moved: find it again and retry.
_LEADER_ERRORS = frozenset({"NOT_LEADER_OR_FOLLOWER", "UNKNOWN_LEADER_EPOCH", "FENCED_LEADER_EPOCH",
                            "LEADER_NOT_AVAILABLE", "UNKNOWN_TOPIC_OR_PARTITION", "REPLICA_NOT_AVAILABLE",
                            "KAFKA_STORAGE_ERROR", "NOT_COORDINATOR"})


def poll_value(topic: str, partition: int, result: FetchResult, offset: int,
               kept: Iterable[FetchedRecord] | None = None) -> dict[str, Any]:
    """The ``poll`` completion of one Fetch: the records from ``offset`` on (or those of them a
    consumer ``kept``, e.g. after dropping aborted transactions), the batches they came from
    (identity included), and the high watermark the response reported."""
    records = result.from_offset(offset) if kept is None else tuple(kept)
    used = {r.batch_base for r in records}
    return {
        "records": [[topic, partition, r.offset, text(r.key), text(r.value) or ""] for r in records],
        "batches": [[topic, partition, b.base_offset, b.last_offset, b.producer_id, b.producer_epoch,
                     b.base_sequence] for b in result.batches if b.base_offset in used],
        "high_watermarks": [[topic, partition, result.high_watermark]],
    }


def fetched_batches(result: FetchResult) -> list[FetchedBatch]:
    """The answer's batches as a consumer sees them (`specs.transaction_log`)."""
    offsets: dict[int, list[int]] = {}
    for r in result.records:
        offsets.setdefault(r.batch_base, []).append(r.offset)
    markers = dict(result.markers)
    return [FetchedBatch(h.last_offset, h.producer_id, h.is_transactional, h.is_control,
                         markers.get(h.base_offset) == "ABORT", tuple(offsets.get(h.base_offset, ())))
            for h in result.batches]


def read_to_end(bootstrap: str, ends: Mapping[TP, int], history: Recorder, *, process: str = PROCESS,
                timeout_s: float = 60.0, max_bytes: int = 1 << 20, read_committed: bool = False) -> bool:
    """Read every partition in ``ends`` from its first offset to its end offset, recorded as one
    ``drain`` with a ``poll`` per Fetch; True when every partition got to its end (the drain is
    then ``ok``; else ``info``, and unseen writes are not judged).

    A log that starts above 0 (retention, DeleteRecords) is read from its start, recorded as a
    ``seek``. Leader changes and lost connections are retried until ``timeout_s``.
    ``read_committed``: read as a read_committed consumer (the module docstring); the end is
    reached once every transaction below it has ended.
    """
    deadline = time.monotonic() + timeout_s
    invoke = history.invoke(process, "drain", partitions=[list(tp) for tp in sorted(ends)])
    complete = True
    with WireSession(bootstrap, timeout_s=min(15.0, timeout_s)) as session:
        for tp in sorted(ends):
            if not _read_partition(session, tp, ends[tp], history, process, deadline, max_bytes, read_committed):
                complete = False
    if complete:
        history.ok(invoke)
    else:
        history.info(invoke, "TIMEOUT")
    return complete


def _read_partition(session: WireSession, tp: TP, end: int, history: Recorder, process: str,
                    deadline: float, max_bytes: int, read_committed: bool) -> bool:
    topic, partition = tp
    offset = 0
    while offset < end:
        if time.monotonic() > deadline:
            return False
        poll = history.invoke(process, "poll", {"isolation_level": READ_COMMITTED} if read_committed else {})
        try:
            result = session.fetch(topic, partition, offset, max_bytes=max_bytes, partition_max_bytes=max_bytes,
                                   max_wait_ms=200, isolation=1 if read_committed else 0)
        except SessionError as exc:
            history.info(poll, "DISCONNECTED", message=str(exc)[:200])
            _refresh(session, tp)
            continue
        if result.error == "OFFSET_OUT_OF_RANGE":
            history.fail(poll, result.error)
            start = _log_start(session, tp)
            if start is None or start <= offset:
                time.sleep(0.1)
                continue
            seek = history.invoke(process, "seek", topic=topic, partition=partition, offset=start)
            history.ok(seek)
            offset = start
            continue
        if result.error != "NONE":
            history.fail(poll, result.error)
            if result.error in _LEADER_ERRORS:
                _refresh(session, tp)
            time.sleep(0.1)
            continue
        if read_committed:
            kept = set(read_committed_offsets(fetched_batches(result), result.aborted or (), offset))
            value = poll_value(topic, partition, result, offset, (r for r in result.records if r.offset in kept))
            value["last_stable_offsets"] = [[topic, partition, result.last_stable_offset]]
        else:
            value = poll_value(topic, partition, result, offset)
        history.ok(poll, value)
        if value["records"]:
            offset = value["records"][-1][2] + 1
        elif result.batches and result.batches[-1].next_offset > offset:
            # Only control records, aborted ones (read_committed) or records below the fetch
            # offset: step over the batches.
            offset = result.batches[-1].next_offset
        elif result.high_watermark <= offset:
            time.sleep(0.05)  # nothing readable yet: the high watermark has not reached the end
    return True


def _refresh(session: WireSession, tp: TP) -> None:
    try:
        session.leader(*tp, refresh=True)
    except SessionError:
        time.sleep(0.2)


def _log_start(session: WireSession, tp: TP) -> int | None:
    try:
        answer = session.list_offsets(*tp, EARLIEST)
    except SessionError:
        return None
    return answer.offset if answer.error == "NONE" else None
