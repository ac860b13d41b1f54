"""A Hypothesis state machine: idempotent producers sending, retrying, skipping and re-epoching
batches against a ProducerStateManager, checked step by step against a model that keeps the
whole log of accepted batches."""

from __future__ import annotations

import attrs
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from kio.schema.errors import ErrorCode

from reference_broker.producers.snapshot import decode, encode
from reference_broker.producers.state import (
    SEQUENCE_MODULUS,
    Duplicate,
    ProducerStateError,
    ProducerStateManager,
)
from reference_broker.records import BatchHeader, Record, build_batch, parse_header

EXPIRATION_MS = 1_000
KAFKA_CACHED_BATCHES = 5  # a producer has at most five requests in flight
PRODUCERS = st.integers(0, 2)
COUNTS = st.integers(1, 3)


@attrs.frozen
class Stored:
    """A batch the model log accepted."""

    producer_id: int
    epoch: int
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


class Model:
    """Kafka's rules restated over the full history instead of a five-batch cache."""

    def __init__(self) -> None:
        self.log: list[Stored] = []
        self.forgotten_before: dict[int, int] = {}  # producer id -> log index its memory starts at

    def history(self, producer_id: int) -> list[Stored]:
        start = self.forgotten_before.get(producer_id, 0)
        return [batch for batch in self.log[start:] if batch.producer_id == producer_id]

    def decide(self, producer_id: int, epoch: int, first: int, count: int) -> str | ErrorCode | Stored:
        """"ok", an error, or the stored batch a retry duplicates."""
        last = (first + count - 1) % SEQUENCE_MODULUS
        history = self.history(producer_id)
        if not history:
            return "ok" if first == 0 else ErrorCode.unknown_producer_id
        current = history[-1].epoch
        if epoch == current:
            same_epoch = [batch for batch in history if batch.epoch == current]
            for batch in same_epoch[-KAFKA_CACHED_BATCHES:]:
                if (batch.first_seq, batch.last_seq) == (first, last):
                    return batch
        if epoch < current:
            return ErrorCode.invalid_producer_epoch
        if epoch > current:
            return "ok" if first == 0 else ErrorCode.out_of_order_sequence_number
        expected = (history[-1].last_seq + 1) % SEQUENCE_MODULUS
        return "ok" if first == expected else ErrorCode.out_of_order_sequence_number

    def expire(self, now_ms: int) -> None:
        for producer_id in {batch.producer_id for batch in self.log}:
            history = self.history(producer_id)
            if history and now_ms - history[-1].timestamp >= EXPIRATION_MS:
                self.forgotten_before[producer_id] = len(self.log)


@attrs.define
class Client:
    epoch: int = 0
    next_seq: int = 0
    sent: list[tuple[int, int, int]] = attrs.Factory(list)  # (epoch, first seq, count)


def make_header(producer_id: int, epoch: int, first: int, count: int, timestamp: int,
                base_offset: int = 0) -> BatchHeader:
    return parse_header(build_batch(
        [Record(base_offset + i, timestamp, None, b"v") for i in range(count)],
        base_offset=base_offset,
        producer_id=producer_id, producer_epoch=epoch, base_sequence=first,
    ))


class ProducerStateMachine(RuleBasedStateMachine):
    """Three producers send, retry, skip ahead, bump epochs and go idle; every verdict of the
    producer state (written, duplicate with its offsets, or which error) matches the model."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ProducerStateManager(EXPIRATION_MS)
        self.model = Model()
        self.clients = {producer_id: Client() for producer_id in range(3)}
        self.now = 0
        self.log_end = 0

    def send(self, producer_id: int, epoch: int, first: int, count: int) -> str | ErrorCode | Stored:
        """Send one batch to both; they must agree. Returns the model's verdict."""
        header = make_header(producer_id, epoch, first, count, self.now)
        expected = self.model.decide(producer_id, epoch, first, count)
        event("duplicate" if isinstance(expected, Stored) else
              expected.name if isinstance(expected, ErrorCode) else expected)
        try:
            duplicate = self.state.check([header])
        except ProducerStateError as exc:
            assert exc.error_code == expected, (exc.error_code, expected)
            return expected
        if isinstance(expected, Stored):
            assert duplicate == Duplicate(expected.first_offset, expected.last_offset,
                                          expected.timestamp)
            return expected
        assert expected == "ok" and duplicate is None, (expected, duplicate)
        stored = attrs.evolve(header, base_offset=self.log_end)
        self.state.update(stored)
        self.model.log.append(Stored(producer_id, epoch, first, stored.last_sequence,
                                     stored.base_offset, stored.last_offset, self.now))
        self.log_end = stored.next_offset
        return expected

    @rule(producer_id=PRODUCERS, counts=st.lists(COUNTS, min_size=1, max_size=8))
    def send_next(self, producer_id: int, counts: list[int]) -> None:
        client = self.clients[producer_id]
        for count in counts:
            verdict = self.send(producer_id, client.epoch, client.next_seq, count)
            if verdict == "ok":
                client.sent.append((client.epoch, client.next_seq, count))
                client.next_seq = (client.next_seq + count) % SEQUENCE_MODULUS

    @rule(producer_id=PRODUCERS, back=st.integers(1, 8))
    def retry(self, producer_id: int, back: int) -> None:
        sent = self.clients[producer_id].sent
        if sent:  # resend one of the producer's recent batches as it was
            epoch, first, count = sent[-min(back, len(sent))]
            self.send(producer_id, epoch, first, count)

    @rule(producer_id=PRODUCERS, skip=st.integers(1, 3), count=COUNTS)
    def skip_ahead(self, producer_id: int, skip: int, count: int) -> None:
        client = self.clients[producer_id]
        self.send(producer_id, client.epoch, client.next_seq + skip, count)

    @rule(producer_id=PRODUCERS)
    def bump_epoch(self, producer_id: int) -> None:
        client = self.clients[producer_id]
        client.epoch += 1
        client.next_seq = 0

    @rule(producer_id=PRODUCERS, epoch=st.integers(0, 3), first=st.integers(0, 12), count=COUNTS)
    def send_anything(self, producer_id: int, epoch: int, first: int, count: int) -> None:
        self.send(producer_id, epoch, first, count)

    @rule(elapsed=st.integers(0, 2 * EXPIRATION_MS))
    def time_passes_and_expiry_runs(self, elapsed: int) -> None:
        self.now += elapsed
        self.state.remove_expired(self.now)
        self.model.expire(self.now)

    @rule()
    def snapshot_and_reload(self) -> None:
        reloaded = ProducerStateManager(EXPIRATION_MS)
        reloaded.restore(decode(encode(self.state.entries())))
        assert sorted(reloaded.entries(), key=lambda e: e.producer_id) == sorted(
            self.state.entries(), key=lambda e: e.producer_id)
        self.state = reloaded

    @invariant()
    def replaying_the_log_gives_the_same_last_batches(self) -> None:
        """What recovery rebuilds from stored batches matches what the checked path built."""
        replayed = ProducerStateManager(EXPIRATION_MS)
        for batch in self.model.log:
            count = batch.last_offset - batch.first_offset + 1
            replayed.update(make_header(batch.producer_id, batch.epoch, batch.first_seq, count,
                                        batch.timestamp, batch.first_offset))
        for entry in self.state.entries():
            again = replayed.entry(entry.producer_id)
            assert again is not None
            assert (again.epoch, again.last_batch) == (entry.epoch, entry.last_batch)

    @invariant()
    def no_sequence_is_stored_twice_while_remembered(self) -> None:
        """Within what the partition remembers, no (producer, epoch, sequence) is stored twice."""
        for producer_id in self.clients:
            seen: set[tuple[int, int]] = set()
            for batch in self.model.history(producer_id):
                for i in range(batch.last_offset - batch.first_offset + 1):
                    key = (batch.epoch, (batch.first_seq + i) % SEQUENCE_MODULUS)
                    assert key not in seen
                    seen.add(key)


TestProducerState = ProducerStateMachine.TestCase
