"""The transactional APIs a producer (and an admin) sends to its transaction coordinator (KIP-98).

Each handler turns the request into a call of
:class:`~reference_broker.transactions.TransactionCoordinator` and renders its answer, as
Kafka's KafkaApis does:

* InitProducerId with a transactional id (KIP-98, KIP-360; without one it is the idempotent
  producer's, :mod:`reference_broker.handlers.producers`);
* AddPartitionsToTxn: v0-3 from clients (one transaction, every partition gets the same error;
  an empty or unknown topic's partitions get UNKNOWN_TOPIC_OR_PARTITION and the others
  OPERATION_NOT_ATTEMPTED, as Kafka validates them first); v4 from brokers, batched, with
  ``verify_only`` (KIP-890 part 1) answered from the coordinator's view without writing; v5
  from brokers, without ``verify_only``, adds the partitions of a Produce v12 or a
  TxnOffsetCommit v5 for a client of transaction version 2 (KIP-890 part 2);
* AddOffsetsToTxn: the group's ``__consumer_offsets`` partition joins the transaction;
* EndTxn: commit or abort; the markers are then written through the broker's marker channel;
* DescribeTransactions and ListTransactions (KIP-664) from what this node coordinates;
* DescribeProducers (KIP-664): the producer state of partitions this node leads.

PRODUCER_FENCED is INVALID_PRODUCER_EPOCH for the request versions before KIP-588's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.groups import OFFSETS_TOPIC
from reference_broker.handlers.context import Later, RequestContext, milliseconds
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.transactions.coordinator import (
    ProducerIdAndEpoch,
    ProducerIdResult,
    error_for_version,
)
from reference_broker.transactions.log_format import NO_PRODUCER_ID, TopicPartition

THROTTLE = {"throttle_time": 0}
BATCHED_ADD_PARTITIONS_FROM_VERSION = 4  # brokers' AddPartitionsToTxn (KIP-890 part 1)
# EndTxn 5 answers the next epoch, AddPartitionsToTxn 5 (from brokers) adds the partitions of
# a Produce 12 or a TxnOffsetCommit 5 (KIP-890 part 2).
TRANSACTION_V2_FROM_VERSION = 5



def _client_transaction_version(broker: Broker, version: int) -> int:
    """The transaction version of an EndTxn or AddPartitionsToTxn of ``version``."""
    return broker.transactions.config.client_transaction_version(version >= TRANSACTION_V2_FROM_VERSION)


# --- InitProducerId ------------------------------------------------------------------------


def init_transactional_producer_id(broker: Broker, ctx: RequestContext, request: Any,
                                   now_ms: int) -> Any:
    """InitProducerId with a transactional id: the coordinator's new epoch for it."""
    producer_id = getattr(request, "producer_id", NO_PRODUCER_ID)
    expected = (None if producer_id == NO_PRODUCER_ID
                else ProducerIdAndEpoch(int(producer_id), int(request.producer_epoch)))

    def render(result: ProducerIdResult) -> dict[str, Any]:
        return {**THROTTLE,
                "error_code": error_for_version(result.error, ApiKey.INIT_PRODUCER_ID, ctx.api_version),
                "producer_id": result.producer_id, "producer_epoch": result.producer_epoch}

    later = Later(render)
    broker.transactions.init_producer_id(request.transactional_id, milliseconds(request.transaction_timeout),
                                         expected, now_ms, later.callback)
    return later.response()


# --- AddPartitionsToTxn --------------------------------------------------------------------


def _topic_results(errors: dict[TopicPartition, ErrorCode]) -> list[dict[str, Any]]:
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for (topic, index), error in errors.items():
        by_topic.setdefault(topic, []).append({"partition_index": index, "partition_error_code": error})
    return [{"name": name, "results_by_partition": results} for name, results in by_topic.items()]


def _add_partitions(
    broker: Broker, transactional_id: str, producer_id: int, producer_epoch: int,
    topics: Any, verify_only: bool, version: int, now_ms: int,
    callback: Callable[[dict[TopicPartition, ErrorCode]], None],
) -> None:
    """One transaction of an AddPartitionsToTxn request: each partition's error."""
    wanted = [(topic.name, int(index)) for topic in topics for index in topic.partitions]
    unknown = {tp for tp in wanted if broker.image.partition(*tp) is None}
    if unknown:
        # KafkaApis: partitions of unknown topics fail, the rest are not attempted.
        callback({tp: ErrorCode.unknown_topic_or_partition if tp in unknown
                  else ErrorCode.operation_not_attempted for tp in wanted})
        return
    if verify_only:
        callback(broker.transactions.verify_partitions(transactional_id, producer_id, producer_epoch, wanted))
        return

    def answered(error: ErrorCode) -> None:
        error = error_for_version(error, ApiKey.ADD_PARTITIONS_TO_TXN, version)
        callback(dict.fromkeys(wanted, error))

    broker.transactions.add_partitions(
        transactional_id, producer_id, producer_epoch, wanted, now_ms, answered,
        _client_transaction_version(broker, version))


def handle_add_partitions_to_txn(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    version = ctx.api_version
    if version < BATCHED_ADD_PARTITIONS_FROM_VERSION:
        later = Later(lambda errors: {**THROTTLE, "results_by_topic_v3_and_below": _topic_results(errors)})
        _add_partitions(broker, request.v3_and_below_transactional_id,
                        int(request.v3_and_below_producer_id), int(request.v3_and_below_producer_epoch),
                        request.v3_and_below_topics, False, version, now_ms, later.callback)
        return later.response()
    transactions = list(request.transactions)
    results: list[dict[str, Any] | None] = [None] * len(transactions)
    later = Later(lambda _: {**THROTTLE, "error_code": ErrorCode.none,
                             "results_by_transaction": results})
    outstanding = len(transactions)
    if not transactions:
        return {**THROTTLE, "error_code": ErrorCode.none, "results_by_transaction": []}

    def one(position: int, transactional_id: str) -> Callable[[dict[TopicPartition, ErrorCode]], None]:
        def done(errors: dict[TopicPartition, ErrorCode]) -> None:
            nonlocal outstanding
            results[position] = {"transactional_id": transactional_id, "topic_results": _topic_results(errors)}
            outstanding -= 1
            if outstanding == 0:
                later.callback(results)
        return done

    for position, txn in enumerate(transactions):
        _add_partitions(broker, txn.transactional_id, int(txn.producer_id), int(txn.producer_epoch),
                        txn.topics, bool(txn.verify_only), version, now_ms,
                        one(position, txn.transactional_id))
    return later.response()


# --- AddOffsetsToTxn, EndTxn -----------------------------------------------------------------


def offsets_partition_count(broker: Broker) -> int:
    """The partition count the group coordinator computes a group's ``__consumer_offsets``
    partition with (partitionFor): the topic's once it exists, offsets.topic.num.partitions
    before."""
    offsets = broker.topics.get(OFFSETS_TOPIC)
    return offsets.partitions if offsets is not None else int(broker.config.get("offsets.topic.num.partitions"))


def handle_add_offsets_to_txn(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    later = Later(lambda error: {
        **THROTTLE, "error_code": error_for_version(error, ApiKey.ADD_OFFSETS_TO_TXN, ctx.api_version)})
    broker.transactions.add_offsets(request.transactional_id, int(request.producer_id),
                                    int(request.producer_epoch), request.group_id,
                                    offsets_partition_count(broker), now_ms, later.callback)
    return later.response()


def handle_end_txn(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    def render(result: ProducerIdResult) -> dict[str, Any]:
        body = {**THROTTLE, "error_code": error_for_version(result.error, ApiKey.END_TXN, ctx.api_version)}
        if ctx.api_version >= TRANSACTION_V2_FROM_VERSION:
            body.update(producer_id=result.producer_id, producer_epoch=result.producer_epoch)
        return body

    later = Later(render)
    broker.transactions.end_txn(
        request.transactional_id, int(request.producer_id), int(request.producer_epoch),
        bool(request.committed),
        _client_transaction_version(broker, ctx.api_version),
        now_ms, later.callback)
    return later.response()


# --- DescribeTransactions, ListTransactions, DescribeProducers -------------------------------


def handle_describe_transactions(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    states = []
    for transactional_id in request.transactional_ids:
        found = broker.transactions.describe(transactional_id)
        states.append({
            "error_code": found.error, "transactional_id": transactional_id,
            "transaction_state": found.state, "transaction_timeout": found.timeout_ms,
            "transaction_start_time": found.start_ms, "producer_id": found.producer_id,
            "producer_epoch": found.producer_epoch,
            "topics": [{"topic": topic, "partitions": list(indexes)}
                       for topic, indexes in found.topics.items()],
        })
    return {**THROTTLE, "transaction_states": states}


def handle_list_transactions(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    found = broker.transactions.list_transactions(
        [int(p) for p in request.producer_id_filters], request.state_filters,
        int(getattr(request, "duration_filter", -1)), now_ms)
    return {**THROTTLE, "error_code": found.error, "unknown_state_filters": list(found.unknown_state_filters),
            "transaction_states": [
                {"transactional_id": t.transactional_id, "producer_id": t.producer_id,
                 "transaction_state": t.state} for t in found.transactions]}


def _producers_of(broker: Broker, topic: str, index: int) -> dict[str, Any]:
    partition, error = broker.leader_partition(topic, index)
    if partition is None:
        return {"partition_index": index, "error_code": error, "error_message": None, "active_producers": []}
    active = [
        {"producer_id": entry.producer_id, "producer_epoch": entry.epoch,
         "last_sequence": entry.last_seq, "last_timestamp": entry.last_timestamp,
         "coordinator_epoch": entry.coordinator_epoch,
         "current_txn_start_offset": -1 if entry.current_txn_first_offset is None
         else entry.current_txn_first_offset}
        for entry in sorted(partition.log.producer_state.entries(), key=lambda e: e.producer_id)
    ]
    return {"partition_index": index, "error_code": ErrorCode.none, "error_message": None,
            "active_producers": active}


def handle_describe_producers(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    return {**THROTTLE, "topics": [
        {"name": topic.name, "partitions": [_producers_of(broker, topic.name, int(index))
                                            for index in topic.partition_indexes]}
        for topic in request.topics
    ]}
