"""The marker channel's bookkeeping: which WriteTxnMarkers requests go where, what an answer
does, and when the coordinator hears that a transaction's markers are all written."""

from __future__ import annotations

from collections.abc import Iterable

from kio.schema.errors import ErrorCode

from reference_broker.transactions import TxnMarkers
from reference_broker.transactions.log_format import TopicPartition
from reference_broker.transactions.marker_channel import (
    GONE,
    NO_LEADER,
    RETRY_BACKOFF_MS,
    MarkerChannel,
    MarkerRequest,
)
from reference_broker.transactions.metadata import TxnTransit
from reference_broker.transactions.state import TransactionState

A0, A1, B0 = ("a", 0), ("a", 1), ("b", 0)


def markers(partitions: Iterable[TopicPartition], producer_id: int = 7, commit: bool = True) -> TxnMarkers:
    complete = TxnTransit(producer_id, -1, -1, 3, -1, 60_000, TransactionState.COMPLETE_COMMIT,
                          frozenset(), 0, 0, 0)
    return TxnMarkers(f"tx-{producer_id}", producer_id, 3, 5, commit, frozenset(partitions), 0, complete)


class Harness:
    def __init__(self, leaders: dict[TopicPartition, int | None]) -> None:
        self.leaders = leaders
        self.written: list[str] = []
        self.owned = True
        self.channel = MarkerChannel(lambda m, now: self.written.append(m.transactional_id),
                                     lambda m: self.owned)

    def requests(self, now_ms: int = 0) -> list[MarkerRequest]:
        return self.channel.requests(now_ms, lambda tp: self.leaders.get(tp, GONE))


def errors_for(request: MarkerRequest, error: ErrorCode = ErrorCode.none) -> dict[tuple[int, TopicPartition], ErrorCode]:
    return {(e.producer_id, e.topic_partition): error for e in request.entries}


def test_markers_go_to_each_partitions_leader_and_complete_once_all_are_written() -> None:
    h = Harness({A0: 1, A1: 2, B0: 1})
    h.channel.add([markers([A0, A1, B0])])
    to_1, to_2 = h.requests()
    assert (to_1.leader, {e.topic_partition for e in to_1.entries}) == (1, {A0, B0})
    assert (to_2.leader, [e.topic_partition for e in to_2.entries]) == (2, [A1])
    assert all(e.coordinator_epoch == 5 and e.producer_epoch == 3 and e.commit for e in to_1.entries)
    assert h.requests() == []  # in flight: not sent twice
    h.channel.answered(to_1, errors_for(to_1), 10)
    assert h.written == []
    h.channel.answered(to_2, errors_for(to_2), 10)
    assert h.written == ["tx-7"] and len(h.channel) == 0


def test_a_retriable_error_is_retried_after_the_backoff_at_the_new_leader() -> None:
    h = Harness({A0: 1})
    h.channel.add([markers([A0])])
    (first,) = h.requests(0)
    h.channel.answered(first, errors_for(first, ErrorCode.not_leader_or_follower), 0)
    assert h.requests(RETRY_BACKOFF_MS - 1) == []
    h.leaders[A0] = 2
    (again,) = h.requests(RETRY_BACKOFF_MS)
    assert again.leader == 2
    h.channel.answered(again, {}, RETRY_BACKOFF_MS)  # no answer at all: retried too
    (third,) = h.requests(2 * RETRY_BACKOFF_MS)
    h.channel.answered(third, errors_for(third), 2 * RETRY_BACKOFF_MS)
    assert h.written == ["tx-7"]


def test_a_partition_without_a_leader_waits_and_a_deleted_one_is_dropped() -> None:
    h = Harness({A0: NO_LEADER})
    h.channel.add([markers([A0, B0])])  # B0's topic does not exist
    assert h.requests() == []
    assert h.written == [] and len(h.channel) == 1
    h.leaders[A0] = 3
    (request,) = h.requests()
    h.channel.answered(request, errors_for(request), 0)
    assert h.written == ["tx-7"]


def test_a_fenced_coordinator_stops_sending_and_never_reports_the_markers_written() -> None:
    for error in (ErrorCode.transaction_coordinator_fenced, ErrorCode.invalid_producer_epoch):
        h = Harness({A0: 1, A1: 1})
        h.channel.add([markers([A0, A1])])
        (request,) = h.requests()
        h.channel.answered(request, {(7, A0): ErrorCode.none, (7, A1): error}, 0)
        assert h.written == [] and len(h.channel) == 0 and h.requests(10_000) == []


def test_a_transaction_the_coordinator_no_longer_owns_is_dropped_before_sending() -> None:
    h = Harness({A0: 1})
    h.channel.add([markers([A0])])
    h.owned = False
    assert h.requests() == [] and len(h.channel) == 0 and h.written == []


def test_answers_are_matched_to_their_transaction_by_producer_id() -> None:
    h = Harness({A0: 1})
    h.channel.add([markers([A0], producer_id=7), markers([A0], producer_id=8, commit=False)])
    (request,) = h.requests()
    assert sorted((e.producer_id, e.commit) for e in request.entries) == [(7, True), (8, False)]
    h.channel.answered(request, {(8, A0): ErrorCode.none, (7, A0): ErrorCode.request_timed_out}, 0)
    assert h.written == ["tx-8"]
