"""The partition-log machine: topics, produce (acks 0/1/all, idempotent), fetch, list offsets.

Theory of operation. The machine keeps one `specs.log.LogModel` per partition it created
and drives the broker with drawn steps: create topics (partitions, configs), produce batches of
unique values with acks 0, 1 or all, produce raw idempotent batches with chosen sequence
numbers (next, resent, or with a gap), fetch from drawn offsets with drawn size limits, list
offsets (earliest, latest, by timestamp, max timestamp) and delete records. Every answer is
compared with what Kafka allows:

- a produce lands at the log end: offsets are contiguous and increase (Kafka documentation
  1.1, "Topics and Logs");
- a resent idempotent batch is answered with its original offset and not stored again, a
  sequence gap is ``OUT_OF_ORDER_SEQUENCE_NUMBER`` (KIP-98);
- a fetch returns the log's own records, contiguously from the fetch offset, none at or beyond
  the high watermark, at least one batch when data is available even past the size limits
  (KIP-74); offsets outside [log start, log end] are ``OFFSET_OUT_OF_RANGE``;
- the high watermark never moves backwards, never passes the log end, and reaches the end of
  every ``acks=all`` write (checked after every step with ListOffsets);
- ListOffsets answers the log start (earliest), the high watermark (latest), the first offset
  whose timestamp is at least the one asked for (``specs.offsets.list_offsets``), and the first
  stored record with the largest timestamp (KIP-734, ``specs.offsets.max_timestamp``), which
  after DeleteRecords may be below the log start: Kafka keeps deleted records in their segment
  and its answer counts them. The machine's topics keep one segment (default ``segment.bytes``
  and ``segment.ms``; record timestamps span 30 s), so every record ever appended stays stored.

An ``acks=0`` produce gets no answer, so the model learns from the next ListOffsets on the same
connection (Kafka answers a connection's requests in order) whether it was appended; both
outcomes are allowed.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, initialize, invariant, precondition, rule

from harness.clients.base import text
from harness.precise_read import poll_value
from harness.session import EARLIEST, LATEST, MAX_TIMESTAMP, FetchResult, make_batch
from harness.stateful.base import KafkaMachine, describe, expect
from harness.targets.base import DELETE_RECORDS, IDEMPOTENCE, REPLICATION
from harness.targets.base import MAX_TIMESTAMP as MAX_TS_CAP
from specs.log import LogModel, ModelRecord
from specs.offsets import OFFSET_OUT_OF_RANGE, StoredLog, fetch, list_offsets, max_timestamp
from specs.produce import Acks, Outcome, ProducerConfig, classify
from specs.types import Offset

TP = tuple[str, int]
T0 = 1_700_000_000_000  # record timestamps: T0 + 1000 * drawn step (deterministic on replay)
# Every topic keeps its records for ever: T0 is in November 2023, so under Kafka's default
# retention.ms (7 days) the broker's next retention check (every 5 minutes) would delete any
# example's records, which the model does not foresee.
KEEP_RECORDS: dict[str, str] = {"retention.ms": "-1"}
TOPIC_CONFIGS: tuple[dict[str, str], ...] = (
    {}, {"message.timestamp.type": "CreateTime"}, {"cleanup.policy": "delete"}, {"max.message.bytes": "1048588"},
)
ACKS_NAMES = {-1: "all", 1: "1", 0: "0"}


@attrs.define
class IdempotentProducer:
    """An idempotent producer the machine drives by hand: its id, epoch and sequences."""

    producer_id: int
    epoch: int
    next_sequence: dict[TP, int] = attrs.field(factory=dict)
    last_batch: dict[TP, tuple[bytes, int, int]] = attrs.field(factory=dict)  # bytes, base, count
    forgotten: set[TP] = attrs.field(factory=set)  # partitions whose state DeleteRecords may have removed

    def __repr__(self) -> str:
        return f"IdempotentProducer(id={self.producer_id})"


class LogMachine(KafkaMachine):
    """Produce, fetch and list offsets against the model of each partition log."""

    topics = Bundle("topics")
    producers = Bundle("producers")
    ACKS: tuple[int, ...] = (-1, 1, 0)  # the acks settings produce draws from
    SPECS: tuple[str, ...] = ("earliest", "latest", "timestamp", "max-timestamp")  # ListOffsets specs

    def __init__(self) -> None:
        super().__init__()
        self.logs: dict[TP, LogModel] = {}
        # Records DeleteRecords moved the log start past, still stored in their segment.
        self.below_start: dict[TP, list[tuple[Offset, ModelRecord]]] = {}
        self.partition_count: dict[str, int] = {}
        self.replicated = self.has(REPLICATION)
        self.idempotent: list[IdempotentProducer] = []

    # --- helpers -------------------------------------------------------------------------------

    def _tp(self, data: st.DataObject, topic: str) -> TP:
        return topic, data.draw(st.integers(0, self.partition_count[topic] - 1), label="partition")

    def _observe_hw(self, tp: TP, hw: int, source: str) -> None:
        log = self.logs[tp]
        expect(hw >= log.high_watermark,
               f"{source} for {tp[0]}-{tp[1]}: high watermark {hw} is below {log.high_watermark}, seen "
               "before or implied by an acks=all acknowledgement; the high watermark never moves "
               "backwards (Kafka documentation 4.7, KIP-101)")
        expect(hw <= log.log_end_offset,
               f"{source} for {tp[0]}-{tp[1]}: high watermark {hw} is past the log end offset "
               f"{log.log_end_offset} (the model holds {log.log_end_offset - log.log_start_offset} records "
               "from the acknowledged writes): the broker holds records nobody wrote, or stored one twice")
        self.logs[tp] = log.advance_high_watermark(Offset(hw))

    def _append(self, tp: TP, records: list[ModelRecord], acks: int) -> int:
        log, base = self.logs[tp].append(records)
        if acks == -1 or not self.replicated:
            # acks=all completes once the high watermark covers the batch; a single broker is
            # its own ISR, so any append is committed at once.
            log = log.advance_high_watermark(log.log_end_offset)
        self.logs[tp] = log
        return base

    def _records(self, data: st.DataObject, count: int) -> list[ModelRecord]:
        steps = data.draw(st.lists(st.integers(0, 30), min_size=count, max_size=count), label="timestamps")
        return [ModelRecord(self.value(), None, T0 + 1000 * s) for s in steps]

    def _send_invokes(self, tp: TP, records: list[ModelRecord], process: str) -> list[int]:
        return [self.history.invoke(process, "send", topic=tp[0], partition=tp[1], key=None, value=r.value)
                for r in records]

    def _resolve_unanswered(self, tp: TP, records: list[ModelRecord], acks: int, why: str) -> bool:
        """Whether a produce nobody acknowledged was appended (both are allowed)."""
        before = self.logs[tp].log_end_offset
        deadline = time.monotonic() + (2.0 if self.replicated else 0.0)
        while True:
            latest = self.session.list_offsets(tp[0], tp[1], LATEST)
            expect(latest.error == "NONE", f"ListOffsets latest for {tp[0]}-{tp[1]}: {latest.error}")
            if latest.offset >= before + len(records) or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        expect(latest.offset in (before, before + len(records)) or (self.replicated and latest.offset < before),
               f"after {why} of {len(records)} records to {tp[0]}-{tp[1]} whose log ended at {before}, "
               f"ListOffsets latest is {latest.offset}: neither {before} (not appended) nor "
               f"{before + len(records)} (appended); offsets are contiguous from the log end")
        if latest.offset == before + len(records):
            self._append(tp, records, acks)
            self._observe_hw(tp, latest.offset, "ListOffsets latest")
            return True
        return False

    # --- topics --------------------------------------------------------------------------------

    def _create(self, partitions: int, configs: dict[str, str]) -> str:
        self.step()
        created = self.new_topic(partitions, {**KEEP_RECORDS, **configs})
        name = created.name
        expect(created.error == "NONE", f"CreateTopics {name} with {partitions} partitions and configs "
               f"{created.configs}: {created.error}; Kafka creates a topic with a valid name, partition count "
               "and configs")
        got = created.seen_partitions
        expect(got == partitions, f"Metadata shows {got} partitions for {name}, created with {partitions}")
        for p in range(partitions):
            self.logs[(name, p)] = LogModel()
            self.below_start[(name, p)] = []
        self.partition_count[name] = partitions
        return name

    @initialize(target=topics, partitions=st.integers(1, 3))
    def first_topic(self, partitions: int) -> str:
        return self._create(partitions, {})

    @rule(target=topics, partitions=st.integers(1, 3), configs=st.sampled_from(TOPIC_CONFIGS))
    def create_topic(self, partitions: int, configs: dict[str, str]) -> str:
        return self._create(partitions, configs)

    @rule(topic=topics, partitions=st.integers(1, 3))
    def create_existing_topic(self, topic: str, partitions: int) -> None:
        self.step()
        error = self.session.create_topic(topic, partitions)
        expect(error == "TOPIC_ALREADY_EXISTS",
               f"CreateTopics for the existing topic {topic}: {error}, not TOPIC_ALREADY_EXISTS")
        got = self.session.partitions(topic)
        expect(got == self.partition_count[topic],
               f"a refused CreateTopics changed {topic} from {self.partition_count[topic]} to {got} partitions")

    # --- produce -------------------------------------------------------------------------------

    @rule(topic=topics, data=st.data(), count=st.integers(1, 4))
    def produce(self, topic: str, data: st.DataObject, count: int) -> None:
        self.step()
        acks = data.draw(st.sampled_from(self.ACKS), label="acks")
        tp = self._tp(data, topic)
        records = self._records(data, count)
        invokes = self._send_invokes(tp, records, "writer")
        batch = make_batch([r.value.encode() for r in records], timestamps=[r.timestamp for r in records])
        before = self.logs[tp].log_end_offset
        result = self.session.produce(tp[0], tp[1], batch, acks=acks)
        what = f"Produce acks={ACKS_NAMES[acks]} of {count} records to {tp[0]}-{tp[1]}"
        if result is None:
            self._resolve_unanswered(tp, records, acks, what)
            for i in invokes:
                self.history.info(i, "NO_ACK")
            return
        config = ProducerConfig(acks=Acks(ACKS_NAMES[acks]), enable_idempotence=False, retries=0, max_in_flight=1)
        outcome = classify(None if result.error == "NONE" else result.error, config, attempts=1)
        if outcome is Outcome.SUCCESS and result.base_offset >= 0:
            # Record what the broker said before judging it: the checkers read the history too.
            for n, i in enumerate(invokes):
                self.history.ok(i, topic=tp[0], partition=tp[1], offset=result.base_offset + n)
        expect(result.error == "NONE" or self.replicated,
               f"{what}: {result.error}; a healthy broker appends a valid batch to an existing partition")
        if outcome is Outcome.SUCCESS:
            expect(result.base_offset == before,
                   f"{what}: acknowledged at base offset {result.base_offset}, but the log ended at {before}; "
                   "the broker appends at the log end, so offsets are contiguous and increasing "
                   "(Kafka documentation 1.1)")
            self._append(tp, records, acks)
        elif outcome is Outcome.FAILURE:
            for i in invokes:
                self.history.fail(i, result.error)
        else:
            self._resolve_unanswered(tp, records, acks, what)
            for i in invokes:
                self.history.info(i, result.error)

    @precondition(lambda self: self.has(IDEMPOTENCE))
    @rule(target=producers)
    def new_idempotent_producer(self) -> IdempotentProducer:
        self.step()
        error, producer_id, epoch = self.session.init_producer_id()
        expect(error == "NONE" and producer_id >= 0 and epoch >= 0,
               f"InitProducerId for an idempotent producer: error {error}, id {producer_id}, epoch {epoch}")
        producer = IdempotentProducer(producer_id, epoch)
        self.idempotent.append(producer)
        return producer

    @rule(producer=producers, topic=topics, data=st.data(), count=st.integers(1, 3))
    def produce_idempotent(self, producer: IdempotentProducer, topic: str, data: st.DataObject, count: int) -> None:
        self.step()
        tp = self._tp(data, topic)
        if tp in producer.forgotten:
            return
        sequence = producer.next_sequence.get(tp, 0)
        records = self._records(data, count)
        invokes = self._send_invokes(tp, records, f"idempotent-{producer.producer_id}")
        batch = make_batch([r.value.encode() for r in records], timestamps=[r.timestamp for r in records],
                           producer_id=producer.producer_id, producer_epoch=producer.epoch,
                           base_sequence=sequence)
        before = self.logs[tp].log_end_offset
        result = self.session.produce(tp[0], tp[1], batch, acks=-1)
        assert result is not None
        what = (f"idempotent Produce (producer {producer.producer_id}, sequence {sequence}) of {count} "
                f"records to {tp[0]}-{tp[1]}")
        if result.error == "NONE" and result.base_offset >= 0:
            for n, i in enumerate(invokes):
                self.history.ok(i, topic=tp[0], partition=tp[1], offset=result.base_offset + n)
        expect(result.error == "NONE", f"{what}: {result.error}; the next sequence number is accepted (KIP-98)")
        expect(result.base_offset == before,
               f"{what}: acknowledged at base offset {result.base_offset}, but the log ended at {before}; "
               "offsets are contiguous from the log end")
        self._append(tp, records, -1)
        producer.next_sequence[tp] = sequence + count
        producer.last_batch[tp] = (batch, result.base_offset, count)

    @rule(producer=producers, data=st.data())
    def resend_last_batch(self, producer: IdempotentProducer, data: st.DataObject) -> None:
        self.step()
        candidates = sorted(tp for tp in producer.last_batch if tp not in producer.forgotten)
        if not candidates:
            return
        tp = data.draw(st.sampled_from(candidates), label="partition")
        batch, base, count = producer.last_batch[tp]
        result = self.session.produce(tp[0], tp[1], batch, acks=-1)
        assert result is not None
        what = (f"resending the last idempotent batch (producer {producer.producer_id}, offsets "
                f"{base}-{base + count - 1}) to {tp[0]}-{tp[1]}")
        expect(result.error in ("NONE", "DUPLICATE_SEQUENCE_NUMBER"),
               f"{what}: {result.error}; the broker recognises the duplicate and answers with success (KIP-98)")
        expect(result.error != "NONE" or result.base_offset == base,
               f"{what}: answered base offset {result.base_offset}, not the original {base}; a duplicate is "
               "answered with the offset it was stored at and is not appended again (KIP-98)")

    @rule(producer=producers, data=st.data(), gap=st.integers(1, 3))
    def produce_with_sequence_gap(self, producer: IdempotentProducer, data: st.DataObject, gap: int) -> None:
        self.step()
        candidates = sorted(tp for tp in producer.next_sequence if tp not in producer.forgotten)
        if not candidates:
            return
        tp = data.draw(st.sampled_from(candidates), label="partition")
        sequence = producer.next_sequence[tp] + gap
        batch = make_batch([b"gap"], producer_id=producer.producer_id, producer_epoch=producer.epoch,
                           base_sequence=sequence)
        result = self.session.produce(tp[0], tp[1], batch, acks=-1)
        assert result is not None
        expect(result.error == "OUT_OF_ORDER_SEQUENCE_NUMBER",
               f"idempotent Produce to {tp[0]}-{tp[1]} with sequence {sequence} where "
               f"{producer.next_sequence[tp]} was next: {result.error} (base offset {result.base_offset}); "
               "a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER and nothing is appended (KIP-98)")

    # --- fetch ---------------------------------------------------------------------------------

    @rule(topic=topics, data=st.data(), max_bytes=st.sampled_from((1, 150, 1 << 20)))
    def fetch(self, topic: str, data: st.DataObject, max_bytes: int) -> None:
        self.step()
        tp = self._tp(data, topic)
        log = self.logs[tp]
        offset = data.draw(st.one_of(
            st.integers(log.log_start_offset, log.log_end_offset),
            st.integers(log.log_start_offset, log.log_end_offset),
            st.sampled_from((log.log_end_offset + 1, log.log_end_offset + 7, -1, log.log_start_offset - 1)),
        ), label="offset")
        # A short max wait, as clients use (max_wait=0 corner cases are a deterministic check).
        result = self.session.fetch(tp[0], tp[1], offset, max_bytes=max_bytes, partition_max_bytes=max_bytes,
                                    max_wait_ms=5)
        self._check_fetch(tp, offset, max_bytes, result)

    def _check_fetch(self, tp: TP, offset: int, max_bytes: int, result: FetchResult) -> None:
        log = self.logs[tp]
        what = f"Fetch {tp[0]}-{tp[1]} at offset {offset} (max bytes {max_bytes})"
        seek = self.history.invoke("reader", "seek", topic=tp[0], partition=tp[1], offset=max(offset, 0))
        self.history.ok(seek)
        poll = self.history.invoke("reader", "poll")
        if fetch(log, Offset(offset)).error == OFFSET_OUT_OF_RANGE:
            self.history.ok(poll, records=[])
            expect(result.error == OFFSET_OUT_OF_RANGE and not result.records,
                   f"{what}: {result.error} with {len(result.records)} records; the log spans "
                   f"[{log.log_start_offset}, {log.log_end_offset}) (log start, log end), so the answer is "
                   "OFFSET_OUT_OF_RANGE (Kafka protocol guide, Fetch)")
            return
        returned = result.from_offset(offset)
        # With each batch's producer id, epoch and sequence: a duplicate is then attributed.
        self.history.ok(poll, **poll_value(tp[0], tp[1], result, offset))
        expect(result.error == "NONE", f"{what}: {result.error}; the offset is inside the log "
               f"[{log.log_start_offset}, {log.log_end_offset}]")
        self._observe_hw(tp, result.high_watermark, what)
        log = self.logs[tp]
        hw = result.high_watermark
        expect(result.last_stable_offset == hw,
               f"{what}: last stable offset {result.last_stable_offset} differs from the high watermark {hw} "
               "although no transaction is open (KIP-98)")
        expect(result.log_start_offset in (-1, log.log_start_offset),
               f"{what}: log start offset {result.log_start_offset}, the model's is {log.log_start_offset}")
        beyond = [r.offset for r in result.records if r.offset >= hw]
        expect(not beyond, f"{what}: returned offsets {beyond[:5]} at or beyond the high watermark {hw}; only "
               "committed records are given to consumers (Kafka documentation 4.7)")
        for r in result.records:
            if r.offset < log.log_start_offset:
                continue  # the batch holding the log start may begin before it (KIP-107): clients skip those
            model = log.at(Offset(r.offset))
            expect(model is not None and text(r.value) == model.value,
                   f"{what}: offset {r.offset} holds {describe(text(r.value))}, the acknowledged write there "
                   f"was {describe(model.value if model else None)}")
        expected = [o for o, _ in fetch(log, Offset(offset)).records]  # the model's HW is now hw
        got = [r.offset for r in returned]
        expect(got == expected[: len(got)],
               f"{what}: returned offsets {_span(got)}, expected a contiguous run from {offset} "
               f"(the log holds {_span(expected)} below the high watermark {hw})")
        expect(bool(got) or offset >= hw,
               f"{what}: no records although {hw - offset} are readable; a fetch returns at least one "
               "batch when data is available, even past the size limits (KIP-74)")

    # --- list offsets and delete records -------------------------------------------------------

    @rule(topic=topics, data=st.data())
    def list_offsets(self, topic: str, data: st.DataObject) -> None:
        self.step()
        spec = data.draw(st.sampled_from(self.SPECS), label="spec")
        tp = self._tp(data, topic)
        if spec == "earliest":
            answer = self.session.list_offsets(tp[0], tp[1], EARLIEST)
            expect(answer.error == "NONE" and answer.offset == self.logs[tp].log_start_offset,
                   f"ListOffsets earliest for {tp[0]}-{tp[1]}: {answer.error} offset {answer.offset}, the log "
                   f"starts at {self.logs[tp].log_start_offset}")
        elif spec == "latest":
            answer = self.session.list_offsets(tp[0], tp[1], LATEST)
            expect(answer.error == "NONE", f"ListOffsets latest for {tp[0]}-{tp[1]}: {answer.error}")
            self._observe_hw(tp, answer.offset, "ListOffsets latest")
        elif spec == "timestamp":
            when = T0 + 1000 * data.draw(st.integers(-1, 32), label="timestamp step")
            answer = self.session.list_offsets(tp[0], tp[1], when)
            log = self.logs[tp]
            expected = list_offsets(log, when, stored=self._stored(tp))
            expect(answer.error == "NONE" and answer.offset == expected,
                   f"ListOffsets by timestamp {when} for {tp[0]}-{tp[1]}: {answer.error} offset {answer.offset}; "
                   f"the first record at or after that time is at {expected} (-1: none)")
            record = log.at(Offset(expected))
            if record is not None:
                expect(answer.timestamp == record.timestamp,
                       f"ListOffsets by timestamp {when}: answered timestamp {answer.timestamp}, the record at "
                       f"{expected} has {record.timestamp}")
        elif self.has(MAX_TS_CAP):
            self._max_timestamp(tp)

    def _stored(self, tp: TP) -> StoredLog:
        """What the broker stores for ``tp``: one segment, with the records below the log start."""
        return StoredLog.of(self.logs[tp], self.below_start[tp])

    def _max_timestamp(self, tp: TP) -> None:
        answer = self.session.list_offsets(tp[0], tp[1], MAX_TIMESTAMP)
        what = f"ListOffsets MAX_TIMESTAMP for {tp[0]}-{tp[1]}"
        expect(answer.error == "NONE", f"{what}: {answer.error}")
        expected = max_timestamp(self.logs[tp], stored=self._stored(tp))
        if (answer.timestamp, answer.offset) != expected and self.replicated:
            # The answer counts records below the broker's high watermark, which may have
            # passed the one the model last saw: see it now and judge again.
            latest = self.session.list_offsets(tp[0], tp[1], LATEST)
            if latest.error == "NONE":
                self._observe_hw(tp, latest.offset, "ListOffsets latest")
                expected = max_timestamp(self.logs[tp], stored=self._stored(tp))
        log = self.logs[tp]
        expect((answer.timestamp, answer.offset) == expected,
               f"{what}: offset {answer.offset} timestamp {answer.timestamp}; Kafka answers offset {expected[1]} "
               f"timestamp {expected[0]}: the first stored record with the largest timestamp, counting the "
               f"records below the log start {log.log_start_offset} that DeleteRecords left in their segment, "
               f"if it is below the high watermark {log.high_watermark}, else -1 (KIP-734; "
               "specs.offsets.max_timestamp)")

    @precondition(lambda self: self.has(DELETE_RECORDS))
    @rule(topic=topics, data=st.data())
    def delete_records(self, topic: str, data: st.DataObject) -> None:
        self.step()
        tp = self._tp(data, topic)
        log = self.logs[tp]
        offset = data.draw(st.integers(log.log_start_offset, log.high_watermark), label="offset")
        error, low = self.session.delete_records(tp[0], tp[1], offset)
        expect(error == "NONE" and low == max(offset, log.log_start_offset),
               f"DeleteRecords {tp[0]}-{tp[1]} before {offset} (log [{log.log_start_offset}, "
               f"{log.log_end_offset}), high watermark {log.high_watermark}): {error}, low watermark {low} (KIP-107)")
        self.logs[tp] = log.delete_before(Offset(offset))
        # Kafka only moves the log start: the records stay in their segment, and count for
        # MAX_TIMESTAMP, until the whole segment is below the log start (never, here).
        self.below_start[tp].extend(log.entries(end=Offset(offset)))
        for producer in self.idempotent:
            last = producer.last_batch.get(tp)
            if last is not None and last[1] + last[2] <= offset:
                producer.forgotten.add(tp)  # Kafka may drop the producer's state with its batches

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def high_watermarks_hold(self) -> None:
        if not self.logs:
            return
        self.checking("high_watermarks_hold")
        answers = self.session.list_offsets_many(sorted(self.logs), LATEST)
        for tp, answer in answers.items():
            expect(answer.error == "NONE", f"ListOffsets latest for {tp[0]}-{tp[1]}: {answer.error}")
            self._observe_hw(tp, answer.offset, "ListOffsets latest (after the step)")


def _span(offsets: list[int] | list[Any]) -> str:
    if not offsets:
        return "nothing"
    if len(offsets) <= 6:
        return str(list(offsets))
    return f"[{offsets[0]}, {offsets[1]}, ..., {offsets[-1]}] ({len(offsets)})"


__all__ = ["IdempotentProducer", "LogMachine"]
