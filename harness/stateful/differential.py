"""Differential runs: one drawn step sequence, every request to two targets, answers compared.

The state machines judge a broker against the model in `specs`. A differential run judges two
brokers against each other: :class:`MirroredSession` is the machine's wire session, and each
request it is asked to make goes to the first target (whose answer the machine sees and checks
against the model, as usual) and then to the second; the two answers are compared, normalised,
and the first pair that differs raises :class:`Divergence`, naming the machine's step, the
request and both answers. Hypothesis shrinks it like any failure, so the report is the fewest
steps after which the two targets answer differently. Run against Apache Kafka, this is how
the model is settled by Kafka: where the reference broker and Kafka agree and the model does
not, the model is wrong.

What is compared, and what is normalised away because brokers may legitimately differ:

- error codes by name, never error messages;
- CreateTopics: the error and the partitions Metadata shows once the topic is served; never
  topic ids, leaders, replicas, node ids or addresses (the targets run different clusters);
- Produce: error, base offset and log start offset; an ``acks=0`` produce has no answer on
  either side. Idempotent batches carry producer ids the *first* target chose: the second
  target gets the same batch re-encoded with the id and epoch *it* gave for the same
  InitProducerId (broker-chosen ids are mapped, never compared; only InitProducerId's error is);
- Fetch: error, high watermark, last stable offset and log start offset, and the records'
  offsets, keys, values and timestamps. How many batches past the first a size-limited fetch
  returns may differ (KIP-74 requires the first whole batch; the rest is up to the broker), so
  the shorter record list must be a prefix of the longer, and both must be empty or neither;
  a torn partial batch at the end is ignored;
- ListOffsets: error, offset and timestamp (record timestamps are the client's, the same on
  both sides); never the leader epoch;
- DeleteRecords: error and low watermark.

A request that fails on one side only (no answer in time, connection lost) is a divergence
too. DeleteTopics, with which a run removes its topics when it is over, is not compared. Group requests are not mirrored (their member ids are the coordinator's choice and would
need mapping through every JoinGroup and SyncGroup): differential runs drive the log machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from harness.session import (
    FetchResult,
    ListOffsetsResult,
    ProduceResult,
    SessionError,
    UnsupportedApi,
    WireSession,
)
from harness.targets.base import Target
from reference_broker.records import build_batch, iter_records, scan_valid_prefix

T = TypeVar("T")


class Divergence(AssertionError):
    """The two targets answered one request differently (after normalisation)."""

    def __init__(self, label: str, request: str, first: tuple[str, str], second: tuple[str, str]) -> None:
        self.label = label
        self.request = request
        self.answers = (first, second)
        where = f" at {label}" if label else ""
        super().__init__(f"the targets answered differently{where}: {request}\n"
                         f"  {first[0]}: {first[1]}\n  {second[0]}: {second[1]}")


def _records(result: FetchResult) -> list[tuple[int, bytes | None, bytes | None, int]]:
    return [(r.offset, r.key, r.value, r.timestamp) for r in result.records]


def _describe_fetch(result: FetchResult) -> str:
    offsets = [r.offset for r in result.records]
    span = "no records" if not offsets else f"records {offsets[0]}-{offsets[-1]} ({len(offsets)})"
    return (f"{result.error}, high watermark {result.high_watermark}, last stable offset "
            f"{result.last_stable_offset}, log start {result.log_start_offset}, {span}")


def fetches_agree(a: FetchResult, b: FetchResult) -> bool:
    """Whether two Fetch answers agree up to what a broker may choose (see the module doc)."""
    if (a.error, a.high_watermark, a.last_stable_offset, a.log_start_offset) != \
            (b.error, b.high_watermark, b.last_stable_offset, b.log_start_offset):
        return False
    ra, rb = _records(a), _records(b)
    if bool(ra) != bool(rb):
        return False
    shorter, longer = sorted((ra, rb), key=len)
    return longer[: len(shorter)] == shorter


class MirroredSession(WireSession):
    """A wire session to ``first`` that repeats every machine request on ``second`` and raises
    :class:`Divergence` on the first answer that differs."""

    def __init__(self, first: Target, second: Target, timeout_s: float = 15.0, client_id: str = "kconform") -> None:
        super().__init__(first.bootstrap, timeout_s=timeout_s, client_id=client_id)
        self.names = (first.name, second.name) if first.name != second.name else (f"{first.name} (1)",
                                                                                  f"{second.name} (2)")
        self.second = WireSession(second.bootstrap, timeout_s=timeout_s, client_id=client_id)
        self._producers: dict[tuple[int, int], tuple[int, int]] = {}  # first's (id, epoch) -> second's
        self.compared = 0

    def close(self) -> None:
        self.second.close()
        super().close()

    # --- comparing -----------------------------------------------------------------------------

    def _both(self, request: str, first: Callable[[], T], second: Callable[[], T],
              agree: Callable[[T, T], bool], show: Callable[[T], str]) -> T:
        """Ask the first target, then the second; the first's answer when they agree."""
        mine = first()
        try:
            theirs = second()
        except SessionError as exc:
            raise Divergence(self.label, request, (self.names[0], show(mine)),
                             (self.names[1], f"no answer: {exc}")) from None
        self.compared += 1
        if not agree(mine, theirs):
            raise Divergence(self.label, request, (self.names[0], show(mine)), (self.names[1], show(theirs)))
        return mine

    # --- the requests the log machine makes --------------------------------------------------

    def create_topics(self, topics: Mapping[str, tuple[int, Mapping[str, str]]]) -> dict[str, tuple[str, int]]:
        return self._both(
            f"CreateTopics {', '.join(f'{n} ({p} partitions, {dict(c)})' for n, (p, c) in topics.items())}",
            lambda: super(MirroredSession, self).create_topics(topics), lambda: self.second.create_topics(topics),
            lambda a, b: a == b,
            lambda r: "; ".join(f"{n}: {e}, Metadata shows {p} partitions" for n, (e, p) in sorted(r.items())))

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     configs: Mapping[str, str] | None = None, validate_only: bool = False,
                     wait: bool = True, assignments: Sequence[Sequence[int]] | None = None) -> str:
        def ask(session: WireSession) -> str:
            return WireSession.create_topic(session, name, partitions, replication_factor, configs, validate_only,
                                            wait, assignments)
        return self._both(f"CreateTopics {name} ({partitions} partitions, {dict(configs or {})})",
                          lambda: ask(self), lambda: ask(self.second), lambda a, b: a == b, str)

    def delete_topics(self, names: Sequence[str], per_request: int = 200) -> dict[str, str]:
        """Clean-up, not under test: both targets delete, the first's answers are returned."""
        try:
            self.second.delete_topics(names, per_request)
        except (SessionError, UnsupportedApi):
            pass
        return super().delete_topics(names, per_request)

    def partitions(self, topic: str) -> int:
        return self._both(f"Metadata {topic}", lambda: super(MirroredSession, self).partitions(topic),
                          lambda: self.second.partitions(topic), lambda a, b: a == b, lambda n: f"{n} partitions")

    def init_producer_id(self) -> tuple[str, int, int]:
        mine = super().init_producer_id()
        try:
            theirs = self.second.init_producer_id()
        except SessionError as exc:
            raise Divergence(self.label, "InitProducerId", (self.names[0], mine[0]),
                             (self.names[1], f"no answer: {exc}")) from None
        if mine[0] != theirs[0]:
            raise Divergence(self.label, "InitProducerId", (self.names[0], mine[0]), (self.names[1], theirs[0]))
        self._producers[(mine[1], mine[2])] = (theirs[1], theirs[2])
        return mine

    def _for_second(self, records: bytes) -> bytes:
        """The batch as the second target must get it: its own producer id and epoch."""
        headers, _ = scan_valid_prefix(records)
        if not headers or all(h.producer_id < 0 for h in headers):
            return records
        out = bytearray()
        for h in headers:
            producer = self._producers.get((h.producer_id, h.producer_epoch))
            if producer is None:
                out += records[h.position:h.position + h.size]
                continue
            out += build_batch(list(iter_records(records, h)), base_offset=h.base_offset,
                               last_offset_delta=h.last_offset_delta, partition_leader_epoch=h.partition_leader_epoch,
                               attributes=h.attributes, producer_id=producer[0], producer_epoch=producer[1],
                               base_sequence=h.base_sequence)
        return bytes(out)

    def produce(self, topic: str, partition: int, records: bytes, acks: int = -1,
                timeout_ms: int = 10_000, version: int | None = None,
                transactional_id: str | None = None) -> ProduceResult | None:
        def key(r: ProduceResult | None) -> tuple[str, int, int] | None:
            return None if r is None else (r.error, r.base_offset, r.log_start_offset)

        return self._both(
            f"Produce acks={acks} to {topic}-{partition}",
            lambda: super(MirroredSession, self).produce(topic, partition, records, acks, timeout_ms, version,
                                                         transactional_id),
            lambda: self.second.produce(topic, partition, self._for_second(records), acks, timeout_ms, version,
                                        transactional_id),
            lambda a, b: key(a) == key(b),
            lambda r: "no answer (acks=0)" if r is None else
            f"{r.error}, base offset {r.base_offset}, log start {r.log_start_offset}")

    def fetch(self, topic: str, partition: int, offset: int, *, max_bytes: int = 1 << 20,
              partition_max_bytes: int = 1 << 20, max_wait_ms: int = 0, min_bytes: int = 1,
              isolation: int = 0, version: int | None = None) -> FetchResult:
        def ask(session: WireSession) -> FetchResult:
            return WireSession.fetch(session, topic, partition, offset, max_bytes=max_bytes,
                                     partition_max_bytes=partition_max_bytes, max_wait_ms=max_wait_ms,
                                     min_bytes=min_bytes, isolation=isolation, version=version)
        return self._both(f"Fetch {topic}-{partition} at offset {offset} (max bytes {max_bytes})",
                          lambda: ask(self), lambda: ask(self.second), fetches_agree, _describe_fetch)

    def list_offsets_many(self, partitions: Sequence[tuple[str, int]], timestamp: int, isolation: int = 0,
                          version: int | None = None) -> dict[tuple[str, int], ListOffsetsResult]:
        def show(answers: dict[tuple[str, int], ListOffsetsResult]) -> str:
            return "; ".join(f"{t}-{p}: {a.error}, offset {a.offset}, timestamp {a.timestamp}"
                             for (t, p), a in sorted(answers.items()))
        return self._both(
            f"ListOffsets {timestamp} ({_spec_name(timestamp)}) for "
            f"{', '.join(f'{t}-{p}' for t, p in partitions)}",
            lambda: super(MirroredSession, self).list_offsets_many(partitions, timestamp, isolation, version),
            lambda: self.second.list_offsets_many(partitions, timestamp, isolation, version),
            lambda a, b: a == b, show)

    def delete_records(self, topic: str, partition: int, offset: int) -> tuple[str, int]:
        return self._both(f"DeleteRecords {topic}-{partition} before offset {offset}",
                          lambda: super(MirroredSession, self).delete_records(topic, partition, offset),
                          lambda: self.second.delete_records(topic, partition, offset), lambda a, b: a == b,
                          lambda r: f"{r[0]}, low watermark {r[1]}")


def _spec_name(timestamp: int) -> str:
    return {-1: "latest", -2: "earliest", -3: "max timestamp"}.get(timestamp, "by timestamp")


__all__ = ["Divergence", "MirroredSession", "fetches_agree"]
