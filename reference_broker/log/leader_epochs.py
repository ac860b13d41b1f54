"""The leader epoch cache of one partition: which leader epoch wrote which range of offsets.

Theory of operation (Kafka's LeaderEpochFileCache, KIP-101 and KIP-279):

Every batch a leader appends carries the leader's epoch in its ``partitionLeaderEpoch`` field
(bytes 12-16, outside the CRC). The cache keeps, for each epoch that wrote anything (or, on a
leader, the epoch it currently leads), the offset of its first record: a list of
``(epoch, start offset)`` increasing in both. Epoch ``e`` then covers ``[start(e), start(next))``
and the latest epoch runs to the log end offset.

A follower that meets a new leader asks it "where does my latest epoch end in *your* log?"
(OffsetForLeaderEpoch, or the diverging epoch of a Fetch). Records at or past that offset were
written by a leader the new leader does not agree with, so the follower truncates there. Offsets
alone cannot tell (KIP-101: truncating to the high watermark loses committed records, keeping
everything lets replicas disagree); epochs can.

Rules, each Kafka's:

* :meth:`assign` appends ``(epoch, start)`` when the epoch is new; an entry that would break the
  ordering (an epoch or start offset at or above the new one) is removed first.
* :meth:`end_offset_for` answers OffsetForLeaderEpoch: for the latest epoch, the log end offset;
  otherwise the largest known epoch <= the requested one, ended by the start offset of the next
  epoch; (-1, -1) (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET) when nothing is known.
* :meth:`truncate_from_end` follows log truncation (entries starting at or past the new end go);
  :meth:`truncate_from_start` follows the log start offset (older entries go, the one covering
  the new start is moved to it).

The cache is stored as Kafka's ``leader-epoch-checkpoint`` in the partition directory (version
line, entry count, one ``epoch start`` line per entry), rewritten atomically on every change.
Changes happen once per leader change or truncation, not per append, so the fsync is cheap.
It is written *before* the batches it describes, so after a crash it may describe offsets the log
lost, never the reverse; opening the log truncates it to the log end offset.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable
from pathlib import Path

from reference_broker.log.files import TEMPORARY_SUFFIX, fsync_directory

LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1
_VERSION = "0"


class LeaderEpochCache:
    """``(epoch, start offset)`` entries of one partition, persisted at ``path`` (None: memory)."""

    def __init__(self, path: Path | None, entries: Iterable[tuple[int, int]] = ()) -> None:
        self.path = path
        self._epochs: list[int] = []
        self._starts: list[int] = []
        for epoch, start in entries:
            self._epochs.append(epoch)
            self._starts.append(start)

    @classmethod
    def load(cls, path: Path) -> LeaderEpochCache | None:
        """The cache stored at ``path``; None when the file is missing or malformed (the caller
        rebuilds it from the log)."""
        try:
            lines = path.read_text().split("\n")
        except FileNotFoundError:
            return None
        try:
            if lines[0] != _VERSION:
                return None
            count = int(lines[1])
            entries = [tuple(map(int, line.split())) for line in lines[2 : 2 + count]]
        except (IndexError, ValueError):
            return None
        if len(entries) != count or any(len(entry) != 2 for entry in entries):
            return None
        pairs = [(entry[0], entry[1]) for entry in entries]
        for (e1, s1), (e2, s2) in zip(pairs, pairs[1:]):
            if not (e1 < e2 and s1 <= s2):
                return None
        return cls(path, pairs)

    # --- queries ---------------------------------------------------------------------------------

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._starts))

    @property
    def latest_epoch(self) -> int:
        """The newest epoch, or UNDEFINED_EPOCH (-1) when the cache is empty."""
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    @property
    def earliest_epoch(self) -> int:
        return self._epochs[0] if self._epochs else UNDEFINED_EPOCH

    def start_offset_of(self, epoch: int) -> int | None:
        slot = bisect.bisect_left(self._epochs, epoch)
        if slot < len(self._epochs) and self._epochs[slot] == epoch:
            return self._starts[slot]
        return None

    def epoch_at(self, offset: int) -> int:
        """The epoch that wrote ``offset`` (the latest entry starting at or before it)."""
        slot = bisect.bisect_right(self._starts, offset) - 1
        return self._epochs[slot] if slot >= 0 else UNDEFINED_EPOCH

    def end_offset_for(self, requested: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) answering OffsetForLeaderEpoch for ``requested`` (Kafka's
        LeaderEpochFileCache.endOffsetFor): the largest epoch <= ``requested`` and the offset
        where the epoch after it starts."""
        if requested == UNDEFINED_EPOCH or not self._epochs:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested == self._epochs[-1]:
            # The epoch still being written to ends at the log end offset.
            return requested, log_end_offset
        higher = bisect.bisect_right(self._epochs, requested)
        if higher == len(self._epochs):
            # Newer than anything known; cannot happen for a leader, whose epoch is the latest.
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            # Older than every known epoch (the log start moved past them): the follower must
            # start from the first epoch we do know.
            return requested, self._starts[0]
        return self._epochs[higher - 1], self._starts[higher]

    # --- changes ---------------------------------------------------------------------------------

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; returns whether anything changed."""
        if epoch < 0 or start_offset < 0:
            return False
        if self._epochs and epoch == self._epochs[-1] and start_offset >= self._starts[-1]:
            return False
        # Entries that would break monotonicity go (Kafka's maybeTruncateNonMonotonicEntries).
        while self._epochs and (self._epochs[-1] >= epoch or self._starts[-1] >= start_offset):
            self._epochs.pop()
            self._starts.pop()
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        self.persist()
        return True

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs starting at or after ``end_offset`` (the log was truncated there)."""
        changed = False
        while self._starts and self._starts[-1] >= end_offset:
            self._epochs.pop()
            self._starts.pop()
            changed = True
        if changed:
            self.persist()

    def truncate_from_start(self, start_offset: int) -> None:
        """Forget epochs wholly below the new log start; the one holding it now starts there."""
        keep_from = bisect.bisect_right(self._starts, start_offset) - 1
        if keep_from < 0:
            return
        changed = keep_from > 0 or self._starts[keep_from] != start_offset
        del self._epochs[:keep_from]
        del self._starts[:keep_from]
        self._starts[0] = start_offset
        if changed:
            self.persist()

    def clear(self) -> None:
        if self._epochs:
            self._epochs.clear()
            self._starts.clear()
            self.persist()

    def persist(self, durable: bool = True) -> None:
        """Rewrite the checkpoint file atomically; ``durable`` also fsyncs it (not needed for
        a file whose loss only costs rebuilding the cache from the log)."""
        if self.path is None:
            return
        body = "".join(f"{e} {s}\n" for e, s in zip(self._epochs, self._starts))
        temporary = self.path.with_name(self.path.name + TEMPORARY_SUFFIX)
        with open(temporary, "w") as file:
            file.write(f"{_VERSION}\n{len(self._epochs)}\n{body}")
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(temporary, self.path)
        if durable:
            fsync_directory(self.path.parent)
