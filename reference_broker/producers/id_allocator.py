"""Producer ids for InitProducerId, never handed out twice (KIP-98, KIP-730).

As in KRaft, the controller owns the producer id space: it hands a broker a *block* of ids
(AllocateProducerIds) and records the end of the block in the metadata log
(``ProducerIdsRecord``) before answering, so no block is ever given out twice, not even across
crashes of the controller or the broker. A broker that restarts asks for a fresh block and the
unused rest of its old one is skipped, as Kafka's ProducerIdManager does.

:class:`ProducerIdBlocks` is the broker's side: the ids left in the current block, and the
callers waiting for the next block when it has run out.
"""

from __future__ import annotations

from collections.abc import Callable

BLOCK_SIZE = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE

IdCallback = Callable[[int | None], None]


class ProducerIdBlocks:
    """Hands out the ids of the blocks it is given, in order; each id once."""

    def __init__(self) -> None:
        self._next = 0
        self._end = 0
        self.waiting: list[IdCallback] = []
        self.requesting = False  # a block has been asked for and not yet received

    @property
    def remaining(self) -> int:
        return self._end - self._next

    def allocate(self) -> int | None:
        """The next id, or None when the current block is used up."""
        if self._next >= self._end:
            return None
        producer_id = self._next
        self._next += 1
        return producer_id

    def add_block(self, start: int, length: int) -> None:
        """Switch to a new block (the rest of the old one is never used)."""
        if start < self._end:
            raise ValueError(f"producer id block {start}+{length} overlaps ids already used")
        self._next = start
        self._end = start + length
        self.requesting = False
        waiting, self.waiting = self.waiting, []
        for callback in waiting:
            callback(self.allocate())

    def fail_waiting(self) -> None:
        """The block request failed: tell every waiting caller (None)."""
        self.requesting = False
        waiting, self.waiting = self.waiting, []
        for callback in waiting:
            callback(None)
