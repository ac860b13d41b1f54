"""The transaction machine: transactional producers, zombies and plain writers on shared partitions,
read by read_committed and read_uncommitted consumers.

Why it exists. The transaction checks (`harness.conformance.transaction_checks`) each play one
scenario: a commit, an abort, a fence. The bugs that matter in a broker's transactions are in
how they interleave: an aborted transaction between two committed ones of the same producer, an
open transaction holding the last stable offset (LSO) back while another commits after it, a
zombie's batch slipping in after the fence, a plain write between transactional ones. This
machine draws such interleavings with Hypothesis and checks every answer against the model of
the logs they write (`specs.transaction_log`), so a failure shrinks to the few steps that show it.

Theory of operation. Each example creates one topic of two partitions and drives, at the wire
level (:class:`~harness.wire_transactions.WireTransaction`), producers of up to two
transactional ids:

- ``start_producer``: InitProducerId for a new or an existing transactional id. A second
  instance of an id keeps its producer id with a higher epoch and *fences* the first, whose open
  transaction the coordinator aborts (KIP-98; ABORT markers in each of its partitions). The
  fenced instance stays as a *zombie*;
- ``add_partitions`` (AddPartitionsToTxn v3; the first one begins a transaction),
  ``send_transactional`` (a transactional batch to an added partition), ``end_transaction``
  (EndTxn v4, commit or abort: a marker in every partition added, written or not);
- ``zombie_acts``: a zombie's batch, AddPartitionsToTxn or EndTxn must be refused,
  PRODUCER_FENCED or INVALID_PRODUCER_EPOCH (KIP-98, KIP-588; a batch for a partition its
  transaction never had is refused too, KIP-890 part 1), and must change nothing;
- ``produce_outside_transactions``: plain or idempotent batches to the same partitions;
- ``fetch``: read_committed or read_uncommitted from a drawn offset.

Checked, on every answer:

- every write lands at the model's log end (offsets are contiguous, and each marker takes one);
- markers: the coordinator writes them after EndTxn is answered, so the step that ended a
  transaction waits (up to the session's timeout) until each partition's marker is readable,
  and checks it is a control batch of the transaction's producer with the right type (COMMIT or
  ABORT) at the offset the model expects;
- each Fetch answer's high watermark is the log end and its LSO is the model's: the first
  offset of the oldest open transaction in the partition, else the high watermark (KIP-98);
- read_uncommitted: the records and markers from the fetch offset are the model's, one for one;
- read_committed: no batch at or above the LSO, every transaction in ``aborted_transactions``
  is one that aborted there, and the records a consumer keeps after applying the list and the
  markers as Kafka's consumer does (`specs.transaction_log.read_committed_offsets`) are exactly
  the non-transactional and committed records from the fetch offset to the LSO;
- after every step, ListOffsets latest answers the LSO under read_committed (KIP-98), and a
  read_committed Fetch of each partition from offset 0 passes the checks above.

The machine records a history (transactions as ``txn`` operations, fetches as polls of their
isolation level), so a failure is reported with the anomalies the checkers name in it (a
read_committed reader given an aborted record is *aborted-read*, G1a).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from harness.clients.base import text
from harness.history.format import READ_COMMITTED as READ_COMMITTED_NAME
from harness.precise_read import fetched_batches, poll_value
from harness.session import LATEST, FetchResult, SessionError, make_batch
from harness.stateful.base import KafkaMachine, expect
from harness.stateful.log_machine import IdempotentProducer
from harness.wire_transactions import FENCED, READ_COMMITTED, WireTransaction
from specs.transaction_log import NO_PRODUCER_ID, Appended, Marker, TransactionLog, read_committed_offsets
from specs.types import Offset, PartitionId, TopicPartition

PARTITIONS = 2
MAX_TRANSACTIONAL_IDS = 2
READ_UNCOMMITTED = 0
MARKER_POLL_MS = 100  # a Fetch waiting for a marker returns as soon as it is readable
# (offset, what is there, producer id, transactional): one entry of a log as seen or modelled
Seen = tuple[int, str, int, bool]


@attrs.define(eq=False)
class Instance:
    """One producer instance of a transactional id as the machine drives it, and its open
    transaction (the model's number, the history's invocation, its micro-operations)."""

    wire: WireTransaction
    process: str
    transaction: int | None = None
    invoke: int | None = None
    ops: list[list[Any]] = attrs.field(factory=list)


class TransactionMachine(KafkaMachine):
    """Transactional producers, zombies and plain writers against the model of their logs."""

    def __init__(self) -> None:
        super().__init__()
        self.tps: list[TopicPartition] = []
        self.model = TransactionLog()
        self.live: dict[str, Instance] = {}  # by transactional id
        self.zombies: list[Instance] = []
        self.instances = 0
        self.idempotent: IdempotentProducer | None = None

    # --- producers -----------------------------------------------------------------------------

    @initialize()
    def setup(self) -> None:
        self.step()
        created = self.new_topic(PARTITIONS, {})
        expect(created.error == "NONE" and created.seen_partitions == PARTITIONS,
               f"CreateTopics {created.name} with {PARTITIONS} partitions: {created.error}, Metadata shows "
               f"{created.seen_partitions} partitions")
        self.tps = [TopicPartition(created.name, PartitionId(p)) for p in range(PARTITIONS)]
        self._start(self.name("txn"))

    @rule(data=st.data())
    def start_producer(self, data: st.DataObject) -> None:
        """InitProducerId for one of the transactional ids, or for a new one."""
        self.step()
        ids = list(self.live)  # in the order they were first used
        which = data.draw(st.integers(0, min(len(ids), MAX_TRANSACTIONAL_IDS - 1)), label="transactional id")
        self._start(ids[which] if which < len(ids) else self.name("txn"))

    def _start(self, transactional_id: str) -> None:
        self.instances += 1
        instance = Instance(WireTransaction(self.session, transactional_id), f"producer-{self.instances}")
        error = instance.wire.init()
        expect(error == "NONE", f"InitProducerId for transactional id {transactional_id}: {error}")
        previous = self.live.get(transactional_id)
        self.live[transactional_id] = instance
        if previous is None:
            return
        expect(instance.wire.producer_id == previous.wire.producer_id and instance.wire.epoch > previous.wire.epoch,
               f"InitProducerId of a second instance of {transactional_id}: producer id {instance.wire.producer_id} "
               f"epoch {instance.wire.epoch}; the first had producer id {previous.wire.producer_id} epoch "
               f"{previous.wire.epoch}, and a new instance keeps the id with a higher epoch (KIP-98)")
        self.zombies.append(previous)
        if previous.transaction is not None:
            # The coordinator aborted the fenced instance's transaction before answering.
            self._ended(previous, commit=False, fenced_by=instance.process)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), partitions=st.sets(st.integers(0, PARTITIONS - 1), min_size=1))
    def add_partitions(self, data: st.DataObject, partitions: set[int]) -> None:
        self.step()
        self._add(_draw(data, list(self.live.values()), "producer"), [self.tps[p] for p in sorted(partitions)])

    def _add(self, instance: Instance, tps: list[TopicPartition]) -> None:
        """AddPartitionsToTxn; the first one begins a transaction."""
        answer = instance.wire.add_partitions([(tp.topic, tp.partition) for tp in tps])
        expect(set(answer.values()) == {"NONE"} and len(answer) == len(tps),
               f"AddPartitionsToTxn {[str(tp) for tp in tps]} by {instance.process}: {answer}; the current instance "
               "adds existing partitions to its transaction (KIP-98)")
        if instance.transaction is None:
            self.model, instance.transaction = self.model.begin(instance.wire.producer_id, tps)
            instance.invoke, instance.ops = self.history.begin_txn(instance.process, []), []
        else:
            self.model = self.model.add(instance.transaction, tps)

    def _open(self) -> list[Instance]:
        return [i for i in self.live.values() if i.transaction is not None]

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), count=st.integers(1, 3))
    def send_transactional(self, data: st.DataObject, count: int) -> None:
        """A transactional batch; the partition is added to the transaction first if it is not
        in it yet (as producers do)."""
        self.step()
        instance = _draw(data, list(self.live.values()), "producer")
        tp = data.draw(st.sampled_from(self.tps), label="partition")
        if instance.transaction is None or tp not in self.model.transactions[instance.transaction].partitions:
            self._add(instance, [tp])
        assert instance.transaction is not None
        values = [self.value() for _ in range(count)]
        before = self.model.end_offset(tp)
        result = instance.wire.send(tp.topic, tp.partition, [v.encode() for v in values])
        expect(result.error == "NONE" and result.base_offset == before,
               f"transactional Produce of {count} records by {instance.process} to {tp}, added to its transaction: "
               f"{result.error} at base offset {result.base_offset}; the log ended at {before}, and a batch of "
               "the ongoing transaction is appended there (KIP-98)")
        self.model, _ = self.model.append(tp, values, instance.wire.producer_id, instance.transaction)
        instance.ops += [["send", tp.topic, tp.partition, None, v, before + n] for n, v in enumerate(values)]

    @precondition(lambda self: bool(self._open()))
    @rule(data=st.data(), commit=st.booleans())
    def end_transaction(self, data: st.DataObject, commit: bool) -> None:
        self.step()
        instance = _draw(data, self._open(), "producer")
        end_invoked = self.history.now()
        error = instance.wire.end(commit)
        expect(error == "NONE", f"EndTxn({'commit' if commit else 'abort'}) of {instance.process}'s ongoing "
               f"transaction: {error} (KIP-98)")
        self._ended(instance, commit, end_invoked=end_invoked)

    def _ended(self, instance: Instance, commit: bool, fenced_by: str | None = None,
               end_invoked: int | None = None) -> None:
        """The model ends ``instance``'s transaction (with EndTxn, or aborted when a new instance
        ``fenced_by`` started); wait for its markers and check them."""
        assert instance.transaction is not None and instance.invoke is not None
        self.model, markers = self.model.end(instance.transaction, commit)
        whose = f"{instance.process}'s transaction " + (f"fenced by {fenced_by}" if fenced_by else "after EndTxn")
        for tp, marker in markers.items():
            self._await_marker(tp, marker, whose)
        if fenced_by is None:
            self.history.end_txn(instance.invoke, instance.ops, outcome="commit" if commit else "abort",
                                 end_invoked=end_invoked)
        else:
            self.history.end_txn(instance.invoke, instance.ops, type_="fail", error="PRODUCER_FENCED")
        instance.transaction, instance.invoke, instance.ops = None, None, []

    def _await_marker(self, tp: TopicPartition, marker: Marker, whose: str) -> None:
        """Read ``tp`` from the marker's offset until something is there (the coordinator writes
        markers after answering); it must be the marker."""
        deadline = time.monotonic() + self.session.timeout_s
        while True:
            result = self.session.fetch(tp.topic, tp.partition, marker.offset, max_wait_ms=MARKER_POLL_MS)
            if result.error != "NONE" or result.batches or time.monotonic() > deadline:
                break
        what = f"the {marker.kind} marker of {whose}, expected in {tp} at offset {marker.offset}"
        expect(result.error == "NONE", f"{what}: Fetch from that offset: {result.error}")
        expect(bool(result.batches), f"{what}: not written within {self.session.timeout_s:.0f} s (high watermark "
               f"{result.high_watermark}); the coordinator writes a marker to every partition of the transaction "
               "once it has ended (KIP-98)")
        seen = _seen(result, marker.offset)
        expect(seen[:1] == [_modelled(marker)],
               f"{what}: the log holds {_show(seen[:1])} there, expected {_show([_modelled(marker)])} (KIP-98)")

    @precondition(lambda self: bool(self.zombies))
    @rule(data=st.data(), action=st.sampled_from(("send", "add", "commit", "abort")),
          partition=st.integers(0, PARTITIONS - 1))
    def zombie_acts(self, data: st.DataObject, action: str, partition: int) -> None:
        self.step()
        zombie = _draw(data, self.zombies, "zombie")
        tp = self.tps[partition]
        if action == "send":
            error = zombie.wire.send(tp.topic, tp.partition, [self.value().encode()]).error
        elif action == "add":
            error = zombie.wire.add_partitions([(tp.topic, tp.partition)]).get((tp.topic, tp.partition), "no answer")
        else:
            error = zombie.wire.end(commit=action == "commit")
        expect(error in FENCED,
               f"{action} by {zombie.process} (transactional id {zombie.wire.id}, epoch {zombie.wire.epoch}), "
               f"fenced by a newer instance: {error}; a fenced producer's requests are refused with PRODUCER_FENCED or "
               "INVALID_PRODUCER_EPOCH (KIP-98, KIP-588; for a partition it never added, KIP-890 part 1)")

    # --- writes outside transactions -----------------------------------------------------------

    @rule(data=st.data(), count=st.integers(1, 3), idempotent=st.booleans())
    def produce_outside_transactions(self, data: st.DataObject, count: int, idempotent: bool) -> None:
        self.step()
        tp = data.draw(st.sampled_from(self.tps), label="partition")
        values = [self.value() for _ in range(count)]
        producer = self._idempotent() if idempotent else None
        producer_id, epoch = (producer.producer_id, producer.epoch) if producer else (NO_PRODUCER_ID, -1)
        sequence = producer.next_sequence.get((tp.topic, tp.partition), 0) if producer else -1
        batch = make_batch([v.encode() for v in values], producer_id=producer_id, producer_epoch=epoch,
                           base_sequence=sequence)
        before = self.model.end_offset(tp)
        result = self.session.produce(tp.topic, tp.partition, batch, acks=-1)
        assert result is not None
        expect(result.error == "NONE" and result.base_offset == before,
               f"{'idempotent' if producer else 'plain'} Produce of {count} records to {tp}: {result.error} at base "
               f"offset {result.base_offset}; the log ended at {before}, open transactions or not (KIP-98)")
        if producer is not None:
            producer.next_sequence[(tp.topic, tp.partition)] = sequence + count
        self.model, _ = self.model.append(tp, values, producer_id)
        for n, v in enumerate(values):
            invoke = self.history.invoke("writer", "send", topic=tp.topic, partition=tp.partition, key=None, value=v)
            self.history.ok(invoke, topic=tp.topic, partition=tp.partition, offset=before + n)

    def _idempotent(self) -> IdempotentProducer:
        if self.idempotent is None:
            error, producer_id, epoch = self.session.init_producer_id()
            expect(error == "NONE" and producer_id >= 0, f"InitProducerId for an idempotent producer: {error}")
            self.idempotent = IdempotentProducer(producer_id, epoch)
        return self.idempotent

    # --- reads ---------------------------------------------------------------------------------

    @rule(data=st.data(), committed=st.booleans())
    def fetch(self, data: st.DataObject, committed: bool) -> None:
        self.step()
        tp = data.draw(st.sampled_from(self.tps), label="partition")
        self._fetch(tp, data.draw(st.integers(0, self.model.end_offset(tp)), label="offset"), committed)

    def _fetch(self, tp: TopicPartition, offset: int, committed: bool) -> None:
        """Fetch ``tp`` from ``offset`` and check the answer against the model."""
        isolation = READ_COMMITTED if committed else READ_UNCOMMITTED
        result = self.session.fetch(tp.topic, tp.partition, offset, isolation=isolation, max_wait_ms=1)
        what = f"{'read_committed' if committed else 'read_uncommitted'} Fetch {tp} at offset {offset}"
        expect(result.error == "NONE", f"{what}: {result.error}; the offset is inside the log [0, "
               f"{self.model.end_offset(tp)}]")
        self._check_positions(tp, result.high_watermark, result.last_stable_offset, what)
        seek = self.history.invoke("reader", "seek", topic=tp.topic, partition=tp.partition, offset=offset)
        self.history.ok(seek)
        if committed:
            self._check_read_committed(tp, offset, result, what)
        else:
            self._check_read_uncommitted(tp, offset, result, what)

    def _check_positions(self, tp: TopicPartition, high_watermark: int, stable: int, what: str) -> None:
        end, lso = self.model.end_offset(tp), self.model.last_stable_offset(tp)
        expect(high_watermark == end,
               f"{what}: high watermark {high_watermark}; the log holds {end} records and markers, every one "
               f"acknowledged or waited for, so the high watermark is {end} (Kafka documentation 4.7)")
        expect(stable == lso, f"{what}: last stable offset {stable}, expected {lso}: {self._why_lso(tp)} (KIP-98)")

    def _why_lso(self, tp: TopicPartition) -> str:
        lso = self.model.last_stable_offset(tp)
        if lso == self.model.end_offset(tp):
            return "no transaction is open in the partition, so it is the high watermark"
        holder = self.model.entries(tp, lso, lso + 1)[0]
        assert isinstance(holder, Appended)
        return (f"the oldest transaction open in the partition (producer {holder.producer_id}) wrote its first record "
                f"there at {lso}")

    def _check_read_uncommitted(self, tp: TopicPartition, offset: int, result: FetchResult, what: str) -> None:
        self.history.ok(self.history.invoke("reader", "poll"), **poll_value(tp.topic, tp.partition, result, offset))
        seen = _seen(result, offset)
        expected = [_modelled(e) for e in self.model.entries(tp, offset)]
        expect(seen == expected, f"{what}: the log from {offset} reads {_show(seen)}, the model holds "
               f"{_show(expected)}; read_uncommitted consumers get every record and marker below the high watermark")

    def _check_read_committed(self, tp: TopicPartition, offset: int, result: FetchResult, what: str) -> None:
        lso = self.model.last_stable_offset(tp)
        kept = read_committed_offsets(fetched_batches(result), result.aborted or (), offset)
        kept_set = set(kept)
        records = [r for r in result.from_offset(offset) if r.offset in kept_set]
        poll = self.history.invoke("reader", "poll", {"isolation_level": READ_COMMITTED_NAME})
        self.history.ok(poll, **poll_value(tp.topic, tp.partition, result, offset, records),
                        last_stable_offsets=[[tp.topic, tp.partition, result.last_stable_offset]])
        beyond = [b.base_offset for b in result.batches if b.last_offset >= lso]
        expect(not beyond, f"{what}: batches at {beyond} are at or above the last stable offset {lso}; a "
               "read_committed Fetch returns only what is below it (KIP-98)")
        listed = set(result.aborted or ())
        wrong = sorted(listed - self.model.aborted_transactions(tp))
        expect(not wrong, f"{what}: aborted_transactions lists (producer id, first offset) {wrong}, which no "
               f"aborted transaction is; the aborted ones in {tp} are {sorted(self.model.aborted_transactions(tp))} "
               "(KIP-98)")
        expected = self.model.read_committed(tp, offset)
        expect(list(kept) == [e.offset for e in expected],
               f"{what}: a read_committed consumer keeps offsets {list(kept)} (aborted_transactions "
               f"{sorted(listed)}, markers {list(result.markers)}), expected {[e.offset for e in expected]}: the "
               f"records outside transactions and of committed ones below the last stable offset {lso}. "
               f"{self._explain(tp, set(kept) ^ {e.offset for e in expected})} (KIP-98)")
        values = {r.offset: text(r.value) for r in records}
        wrong_values = [(e.offset, values.get(e.offset), e.value) for e in expected if values.get(e.offset) != e.value]
        expect(not wrong_values, f"{what}: (offset, value read, value written) {wrong_values[:5]}")

    def _explain(self, tp: TopicPartition, offsets: set[int]) -> str:
        """What the model holds at each of ``offsets`` (the ones a reader got wrong)."""
        entries = {e.offset: e for e in self.model.entries(tp)}
        said = []
        for offset in sorted(offsets)[:5]:
            entry = entries.get(Offset(offset))
            if isinstance(entry, Appended) and entry.transaction is not None:
                state = self.model.state(entry.transaction).value
                said.append(f"{offset} is a record of a transaction of producer {entry.producer_id}, {state}")
            else:
                said.append(f"{offset} is {_show([_modelled(entry)]) if entry else 'past the log end'}")
        return "; ".join(said)

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def stable_offsets_hold(self) -> None:
        """ListOffsets latest read_committed answers each partition's LSO."""
        if not self.tps:
            return
        self.checking("stable_offsets_hold")
        answers = self.session.list_offsets_many([(tp.topic, tp.partition) for tp in self.tps], LATEST,
                                                 isolation=READ_COMMITTED)
        for tp in self.tps:
            answer, lso = answers[(tp.topic, tp.partition)], self.model.last_stable_offset(tp)
            expect((answer.error, answer.offset) == ("NONE", lso),
                   f"ListOffsets latest read_committed for {tp}: {answer.error} offset {answer.offset}; it answers "
                   f"the last stable offset {lso}: {self._why_lso(tp)} (KIP-98)")

    @invariant()
    def read_committed_views_hold(self) -> None:
        """A read_committed reader of each partition from its start keeps exactly what the model
        says (the drawn fetches start anywhere)."""
        if not self.tps:
            return
        self.checking("read_committed_views_hold")
        for tp in self.tps:
            self._fetch(tp, 0, committed=True)

    def cleanup(self) -> None:
        """Abort the transactions left open, so the coordinator does not wait for their timeout."""
        for instance in self._open():
            try:
                instance.wire.end(commit=False)
            except SessionError:
                pass  # best effort: the example is over


def _draw(data: st.DataObject, choices: Sequence[Instance], label: str) -> Instance:
    """One of ``choices``, drawn by process name (so that Hypothesis prints the name)."""
    by_process = {i.process: i for i in choices}
    return by_process[data.draw(st.sampled_from(sorted(by_process)), label=label)]


def _modelled(entry: Appended | Marker) -> Seen:
    if isinstance(entry, Marker):
        return entry.offset, entry.kind, entry.producer_id, True
    return entry.offset, repr(entry.value), entry.producer_id, entry.transaction is not None


def _seen(result: FetchResult, offset: int) -> list[Seen]:
    """The records and markers of a Fetch answer from ``offset`` on, as :func:`_modelled` shows
    the model's (a control batch without a valid marker shows as "CONTROL?")."""
    headers = {h.base_offset: h for h in result.batches}
    markers = dict(result.markers)
    seen: list[Seen] = [(r.offset, repr(text(r.value)), headers[r.batch_base].producer_id,
                         headers[r.batch_base].is_transactional) for r in result.from_offset(offset)]
    seen += [(h.base_offset, markers.get(h.base_offset, "CONTROL?"), h.producer_id, h.is_transactional)
             for h in result.batches if h.is_control and h.base_offset >= offset]
    return sorted(seen)


def _show(entries: Sequence[Seen]) -> str:
    if not entries:
        return "nothing"
    shown = [f"{o}: {what} (producer {p}{', transactional' if txn else ''})" for o, what, p, txn in entries[:8]]
    return "[" + "; ".join(shown) + (f"; ... ({len(entries)})" if len(entries) > 8 else "") + "]"


__all__ = ["Instance", "TransactionMachine"]
