"""A transactional producer at the wire level (KIP-98), for the checks and machines that judge
every answer of a transaction themselves.

A client library hides what the coordinator and the partition leaders answer: it retries,
bumps epochs and turns errors into exceptions. :class:`WireTransaction` sends InitProducerId,
AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, transactional Produce batches and EndTxn
itself through a :class:`~harness.session.WireSession`, and returns each answer as the broker
gave it. It retries
only what every producer retries (CONCURRENT_TRANSACTIONS while the coordinator completes the
previous transaction; on a Produce, NOT_ENOUGH_REPLICAS or CONCURRENT_TRANSACTIONS while a
leader cannot verify a batch yet), so a refusal the rules call for reaches the caller.

The transaction checks (`harness.conformance.transaction_checks`) and the transaction state
machine (`harness.stateful.txn_machine`) both drive it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from harness.error_names import error_name
from harness.session import TRANSACTION_KEY, ProduceResult, WireSession, make_batch, pauses
from reference_broker.protocol.api_keys import ApiKey

TP = tuple[str, int]
T = TypeVar("T")
READ_COMMITTED = 1  # Fetch's and ListOffsets' isolation_level (KIP-98)
# Versions a producer of Kafka 3.x/4.x sends without transaction version 2 (AddPartitionsToTxn
# 4+ is the brokers' batched form; EndTxn 5 bumps the epoch, KIP-890 part 2).
ADD_PARTITIONS_VERSION, END_TXN_VERSION, INIT_VERSION = 3, 4, 4
ADD_OFFSETS_VERSION, TXN_OFFSET_COMMIT_VERSION = 3, 3  # TxnOffsetCommit 3: KIP-447's member fields
FENCED = ("PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH")  # KIP-588 renamed the error
# What a leader answers a transactional Produce while it cannot verify it with the coordinator yet.
UNVERIFIED = frozenset({"NOT_ENOUGH_REPLICAS", "CONCURRENT_TRANSACTIONS"})


class WireTransaction:
    """One transactional producer at the wire level: its id, producer id, epoch and sequences."""

    def __init__(self, s: WireSession, transactional_id: str, timeout_ms: int = 60_000) -> None:
        self.s = s
        self.id = transactional_id
        self.timeout_ms = timeout_ms
        self.producer_id = -1
        self.epoch = -1
        self.sequences: dict[TP, int] = {}

    def _call(self, api_key: int, fields: dict[str, Any], version: int,
              errors: Any = lambda r: [error_name(r.error_code)]) -> Any:
        return self.s.coordinator_call(self.id, api_key, fields, lambda r: [
            e for e in errors(r) if e != "NONE"], key_type=TRANSACTION_KEY, version=version)

    def _again_while(self, call: Callable[[], T], retriable: Callable[[T], bool]) -> T:
        """``call``'s answer, asked again with growing pauses while ``retriable`` says producers
        would retry it, until the session's timeout (then the last answer)."""
        deadline = time.monotonic() + self.s.timeout_s
        for pause in pauses():
            answer = call()
            if not retriable(answer) or time.monotonic() > deadline:
                return answer
            time.sleep(pause)
        raise AssertionError("unreachable")

    def init(self, timeout_ms: int | None = None) -> str:
        """InitProducerId; CONCURRENT_TRANSACTIONS (an open transaction being aborted) is retried
        as clients do. Keeps the producer id and epoch it gets."""
        response = self._again_while(lambda: self._call(ApiKey.INIT_PRODUCER_ID, {
            "transactional_id": self.id, "transaction_timeout": timeout_ms or self.timeout_ms,
            "producer_id": -1, "producer_epoch": -1}, INIT_VERSION),
            lambda r: error_name(r.error_code) == "CONCURRENT_TRANSACTIONS")
        error = error_name(response.error_code)
        if error == "NONE":
            self.producer_id, self.epoch = int(response.producer_id), int(response.producer_epoch)
            self.sequences.clear()
        return error

    def add_partitions(self, partitions: Iterable[TP], epoch: int | None = None) -> dict[TP, str]:
        """AddPartitionsToTxn (v3); each partition's error. CONCURRENT_TRANSACTIONS is retried,
        as clients do."""
        topics: dict[str, list[int]] = {}
        for topic, partition in partitions:
            topics.setdefault(topic, []).append(partition)

        def errors_of(response: Any) -> dict[TP, str]:
            return {(t.name, int(p.partition_index)): error_name(p.partition_error_code)
                    for t in response.results_by_topic_v3_and_below for p in t.results_by_partition}

        # CONCURRENT_TRANSACTIONS: the previous transaction's markers are still being written.
        return self._again_while(lambda: errors_of(self._call(ApiKey.ADD_PARTITIONS_TO_TXN, {
            "v3_and_below_transactional_id": self.id, "v3_and_below_producer_id": self.producer_id,
            "v3_and_below_producer_epoch": self.epoch if epoch is None else epoch,
            "v3_and_below_topics": [{"name": t, "partitions": ps} for t, ps in topics.items()]},
            ADD_PARTITIONS_VERSION, lambda r: list(errors_of(r).values()))),
            lambda errors: set(errors.values()) == {"CONCURRENT_TRANSACTIONS"})

    def add_offsets(self, group: str) -> str:
        """AddOffsetsToTxn (v3): the group's ``__consumer_offsets`` partition joins the transaction
        (KIP-98). CONCURRENT_TRANSACTIONS is retried, as clients do."""
        return self._again_while(lambda: error_name(self._call(ApiKey.ADD_OFFSETS_TO_TXN, {
            "transactional_id": self.id, "producer_id": self.producer_id, "producer_epoch": self.epoch,
            "group_id": group}, ADD_OFFSETS_VERSION).error_code), lambda e: e == "CONCURRENT_TRANSACTIONS")

    def commit_offsets(self, group: str, offsets: Mapping[TP, int], generation: int = -1,
                       member_id: str = "") -> dict[TP, str]:
        """TxnOffsetCommit (v3, KIP-447: with the consumer's generation and member id, so that the
        group coordinator fences a zombie) to the group's coordinator; each partition's error."""
        topics: dict[str, list[dict[str, Any]]] = {}
        for (topic, partition), offset in offsets.items():
            topics.setdefault(topic, []).append({"partition_index": partition, "committed_offset": offset,
                                                 "committed_leader_epoch": -1, "committed_metadata": None})

        def errors_of(response: Any) -> dict[TP, str]:
            return {(t.name, int(p.partition_index)): error_name(p.error_code)
                    for t in response.topics for p in t.partitions}

        response = self.s.coordinator_call(group, ApiKey.TXN_OFFSET_COMMIT, {
            "transactional_id": self.id, "group_id": group, "producer_id": self.producer_id,
            "producer_epoch": self.epoch, "generation_id": generation, "member_id": member_id,
            "group_instance_id": None, "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()]},
            lambda r: list(errors_of(r).values()), version=TXN_OFFSET_COMMIT_VERSION)
        return errors_of(response)

    def send(self, topic: str, partition: int, values: Sequence[bytes], epoch: int | None = None) -> ProduceResult:
        """A transactional batch with the next sequence of the partition. It is sent again until
        the session's timeout while the leader answers that it cannot verify it with the
        coordinator yet (KIP-890 part 1: the coordinator is loading, completing the previous
        transaction, or out of reach), as producers do: NOT_ENOUGH_REPLICAS (Kafka 3.x, the
        reference broker), CONCURRENT_TRANSACTIONS (Kafka 4.4.0, seen while the previous
        transaction completes)."""
        sequence = self.sequences.get((topic, partition), 0)
        batch = make_batch(list(values), producer_id=self.producer_id,
                           producer_epoch=self.epoch if epoch is None else epoch,
                           base_sequence=sequence, transactional=True)

        def produce() -> ProduceResult:
            result = self.s.produce(topic, partition, batch, transactional_id=self.id)
            assert result is not None
            return result

        result = self._again_while(produce, lambda r: r.error in UNVERIFIED)
        if result.error == "NONE":
            self.sequences[(topic, partition)] = sequence + len(values)
        return result

    def end(self, commit: bool, epoch: int | None = None, producer_id: int | None = None) -> str:
        """EndTxn (v4); CONCURRENT_TRANSACTIONS is not retried here."""
        response = self._call(ApiKey.END_TXN, {
            "transactional_id": self.id,
            "producer_id": self.producer_id if producer_id is None else producer_id,
            "producer_epoch": self.epoch if epoch is None else epoch, "committed": commit}, END_TXN_VERSION)
        return error_name(response.error_code)

