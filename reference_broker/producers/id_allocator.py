"""Producer ids for InitProducerId, never handed out twice (KIP-98).

Kafka's ProducerIdManager takes ids in blocks of 1000 from the controller, which persists the
end of the last block it gave out (in ZooKeeper, later in the KRaft metadata log); a broker that
restarts asks for a fresh block and the unused rest of its old block is skipped. Here the node
is its own controller: the end of the reserved block is persisted in
``<log.dirs>/__kconform_producer_ids`` before any id of the block is returned, so even a crash
right after an InitProducerId answer cannot lead to the same id being given out again.

The block logic is a plain class (:class:`ProducerIdAllocator`) around a ``reserve`` callback;
:meth:`ProducerIdAllocator.in_directory` binds it to that file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

BLOCK_SIZE = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE
FILE_NAME = "__kconform_producer_ids"
_VERSION = "0"


class ProducerIdAllocator:
    """Hands out increasing producer ids, reserving (persisting) a block before using it."""

    def __init__(
        self,
        first_unreserved: int,
        reserve: Callable[[int], None],
        block_size: int = BLOCK_SIZE,
    ) -> None:
        """``first_unreserved``: the first id no earlier run may have used; ``reserve(end)``
        must durably record that ids below ``end`` are taken before it returns."""
        self._next = first_unreserved
        self._block_end = first_unreserved
        self._reserve = reserve
        self._block_size = block_size

    def allocate(self) -> int:
        if self._next >= self._block_end:
            end = self._next + self._block_size
            self._reserve(end)
            self._block_end = end
        producer_id = self._next
        self._next += 1
        return producer_id

    @classmethod
    def in_directory(cls, directory: Path, block_size: int = BLOCK_SIZE) -> ProducerIdAllocator:
        """An allocator whose reservations live in ``directory/__kconform_producer_ids``."""
        path = directory / FILE_NAME
        return cls(read_reserved(path), lambda end: write_reserved(path, end), block_size)


def read_reserved(path: Path) -> int:
    """The end of the last reserved block (0 when none was ever reserved)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    lines = text.split("\n")
    if len(lines) < 2 or lines[0] != _VERSION or not lines[1].isdigit():
        raise ValueError(f"malformed producer id file {path}: {text[:80]!r}")
    return int(lines[1])


def write_reserved(path: Path, end: int) -> None:
    """Replace the file atomically and durably (temporary file, fsync, rename, fsync dir)."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as file:
        file.write(f"{_VERSION}\n{end}\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
