"""Getting a decided transaction's markers written by its partitions' leaders (Kafka's
TransactionMarkerChannelManager), as bookkeeping without I/O.

The coordinator outputs :class:`~reference_broker.transactions.coordinator.TxnMarkers` once an
outcome is replicated. The channel keeps, per transaction, the partitions whose marker is not
written yet; :meth:`MarkerChannel.requests` says which WriteTxnMarkers requests to send now (one
per leader, with every marker due there), the driver sends them (to this node too) and reports
each partition's error with :meth:`MarkerChannel.answered`. Kafka's rules
(TransactionMarkerRequestCompletionHandler):

* NONE: the partition is done. When every partition of a transaction is, the coordinator is
  told (``markers_written``) and writes CompleteCommit / CompleteAbort.
* NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS(_AFTER_APPEND),
  REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR and a failed connection: tried again after
  :data:`RETRY_BACKOFF_MS`, at whichever broker leads the partition then. So is a partition
  without a leader: a marker is never skipped because its leader is down.
* INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED: this coordinator is deposed or the
  producer's epoch moved on; the channel stops sending that transaction's markers. Whoever
  coordinates it now writes them again (a new coordinator reloads PrepareX and outputs them).
* a partition of a topic that no longer exists is dropped (its marker has nowhere to go).
* before every send, the coordinator must still own the transaction at the markers' coordinator
  epoch; a transaction it lost is dropped for the same reason as a fenced one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.transactions.coordinator import MarkerEntry, TxnMarkers
from reference_broker.transactions.log_format import TopicPartition

log = logging.getLogger(__name__)

RETRY_BACKOFF_MS = 100
NO_LEADER = -1
# leader_of's answer for a partition whose topic no longer exists.
GONE = None

RETRIABLE = frozenset({
    ErrorCode.not_leader_or_follower, ErrorCode.unknown_topic_or_partition,
    ErrorCode.not_enough_replicas, ErrorCode.not_enough_replicas_after_append,
    ErrorCode.request_timed_out, ErrorCode.kafka_storage_error,
    ErrorCode.coordinator_load_in_progress,
})
STOP_SENDING = frozenset({ErrorCode.invalid_producer_epoch, ErrorCode.transaction_coordinator_fenced})


@attrs.define(slots=True, eq=False)
class _Pending:
    markers: TxnMarkers
    remaining: set[TopicPartition]
    in_flight: set[TopicPartition] = attrs.field(factory=set)
    retry_at_ms: int = 0


@attrs.frozen(slots=True)
class MarkerRequest:
    """One WriteTxnMarkers request to send to broker ``leader``."""

    leader: int
    entries: tuple[MarkerEntry, ...]


class MarkerChannel:
    """The markers not written yet; see the module docstring.

    ``written(markers, now_ms)`` is called once every marker of a transaction is written;
    ``owns(markers)`` says whether the coordinator still owns that transaction at the markers'
    coordinator epoch.
    """

    def __init__(self, written: Callable[[TxnMarkers, int], None],
                 owns: Callable[[TxnMarkers], bool]) -> None:
        self._written = written
        self._owns = owns
        self._pending: list[_Pending] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, markers: Iterable[TxnMarkers]) -> None:
        for each in markers:
            self._pending.append(_Pending(each, set(each.partitions)))

    def requests(
        self, now_ms: int, leader_of: Callable[[TopicPartition], int | None],
    ) -> list[MarkerRequest]:
        """The requests to send now, marking their partitions in flight until answered.
        ``leader_of`` gives a partition's leader, NO_LEADER, or GONE (no such partition)."""
        by_leader: dict[int, list[MarkerEntry]] = {}
        for pending in list(self._pending):
            if pending.retry_at_ms > now_ms:
                continue
            if not self._owns(pending.markers):
                log.info("no longer coordinating %s: its markers are left to the new coordinator",
                         pending.markers.transactional_id)
                self._pending.remove(pending)
                continue
            for entry in pending.markers.entries():
                tp = entry.topic_partition
                if tp not in pending.remaining or tp in pending.in_flight:
                    continue
                leader = leader_of(tp)
                if leader is GONE:
                    log.info("%s-%d no longer exists: no marker for %s", tp[0], tp[1],
                             pending.markers.transactional_id)
                    pending.remaining.discard(tp)
                elif leader != NO_LEADER:
                    pending.in_flight.add(tp)
                    by_leader.setdefault(leader, []).append(entry)
            self._maybe_done(pending, now_ms)
        return [MarkerRequest(leader, tuple(entries)) for leader, entries in sorted(by_leader.items())]

    def answered(self, request: MarkerRequest, errors: dict[tuple[int, TopicPartition], ErrorCode],
                 now_ms: int) -> None:
        """The answer to ``request``: the error per (producer id, partition); an entry missing
        from ``errors`` (no answer, the connection failed) counts as REQUEST_TIMED_OUT."""
        for entry in request.entries:
            pending = self._find(entry)
            if pending is None:
                continue
            tp = entry.topic_partition
            pending.in_flight.discard(tp)
            error = errors.get((entry.producer_id, tp), ErrorCode.request_timed_out)
            if error is ErrorCode.none:
                pending.remaining.discard(tp)
            elif error in STOP_SENDING:
                log.info("marker for %s at %s-%d refused (%s): no more markers for it here",
                         pending.markers.transactional_id, tp[0], tp[1], error.name)
                self._pending.remove(pending)
                continue
            elif error in RETRIABLE:
                pending.retry_at_ms = now_ms + RETRY_BACKOFF_MS
            else:
                # Kafka treats the rest (a corrupt or oversized marker, ...) as a bug of its own
                # and stops; a reference broker logs it and keeps trying rather than leave the
                # transaction hanging silently.
                log.error("marker for %s at %s-%d failed with %s", pending.markers.transactional_id,
                          tp[0], tp[1], error.name)
                pending.retry_at_ms = now_ms + RETRY_BACKOFF_MS
            self._maybe_done(pending, now_ms)

    def _find(self, entry: MarkerEntry) -> _Pending | None:
        for pending in self._pending:
            markers = pending.markers
            if (markers.producer_id == entry.producer_id
                    and markers.producer_epoch == entry.producer_epoch
                    and markers.coordinator_epoch == entry.coordinator_epoch
                    and entry.topic_partition in markers.partitions):
                return pending
        return None

    def _maybe_done(self, pending: _Pending, now_ms: int) -> None:
        if not pending.remaining and pending in self._pending:
            self._pending.remove(pending)
            self._written(pending.markers, now_ms)
