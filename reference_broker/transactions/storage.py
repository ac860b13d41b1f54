"""Where the coordinator's records go: one partition of ``__transaction_state`` per call.

:class:`TransactionStateLog` is all the coordinator needs: append records to a partition with
acks=-1 and hear when they are replicated, and replay a partition when this node becomes its
leader. Its methods have the signatures of the group coordinator's
:class:`~reference_broker.groups.storage.OffsetsLog`: the broker gives both internal topics the
same implementation (:class:`~reference_broker.groups.storage.TopicOffsetsLog`). Kafka appends every
``__transaction_state`` record with ``requiredAcks = -1`` (TransactionLog.EnforcedRequiredAcks)
and ``timeout = request.timeout.ms``, tombstones included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from kio.schema.errors import ErrorCode

KeyValue = tuple[bytes, bytes | None]
# Called once with None (the records are committed) or an error.
AppendCallback = Callable[[ErrorCode | None], None]


class TransactionStateLog(Protocol):
    """The ``__transaction_state`` partitions this node leads; errors are Kafka errors."""

    def append_committed(
        self, partition: int, records: Sequence[KeyValue], now_ms: int, deadline_ms: int,
        callback: AppendCallback,
    ) -> None:
        """Append records to one partition (one batch) with acks=-1: ``callback`` gets None
        once they are committed (below the high watermark), else an error; it runs exactly
        once, possibly before this returns. ``deadline_ms``: REQUEST_TIMED_OUT then."""

    def replay_partition(self, partition: int) -> Iterable[KeyValue]:
        """Every record of one partition, oldest first."""
