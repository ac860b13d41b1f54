"""The seed's delivery guarantees as predicates over what a consumer group was given.

Theory of operation. Kafka's documentation (4.6, "Message Delivery Semantics") names three
guarantees and says which consumer behaviour gives each:

- **at-most-once**: "Messages may be lost but are never redelivered." The consumer commits its
  position *before* processing; a crash between the commit and the processing loses the
  records in between.
- **at-least-once**: "Messages are never lost but may be redelivered." The consumer commits
  *after* processing; a crash between the processing and the commit redelivers them.
- **exactly-once**: "each message is delivered once and only once", with transactions that
  commit the output and the consumed offsets together (KIP-98, KIP-447).

As predicates over a history, for one consumer group, with `required` the records the group
had to be given (acknowledged writes it is subscribed to and that it got the chance to read)
and `delivered` how many times each record was given to any member of the group:

- at-least-once holds when every required record was delivered at least once;
- at-most-once holds when no record was delivered more than once;
- exactly-once holds when both hold.

`crash_outcomes` is the per-record consequence of a consumer crash for each commit strategy, the
diagrams of the seed.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

import attrs

V = TypeVar("V", bound=Hashable)


class Guarantee(enum.Enum):
    """A delivery guarantee; the values are the CLI's `--guarantee` names."""

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"


class CommitPoint(enum.Enum):
    """When a consumer commits its position relative to processing the records."""

    BEFORE_PROCESSING = "before-processing"
    AFTER_PROCESSING = "after-processing"
    TRANSACTIONAL = "transactional"


def guarantee_of(commit_point: CommitPoint) -> Guarantee:
    """The guarantee a commit strategy gives (Kafka documentation 4.6)."""
    return {
        CommitPoint.BEFORE_PROCESSING: Guarantee.AT_MOST_ONCE,
        CommitPoint.AFTER_PROCESSING: Guarantee.AT_LEAST_ONCE,
        CommitPoint.TRANSACTIONAL: Guarantee.EXACTLY_ONCE,
    }[commit_point]


def crash_outcomes(commit_point: CommitPoint) -> frozenset[int]:
    """How many times a record in flight when a consumer crashes may end up processed.

    Before: committed but not processed, the next owner starts after it (0), or it was
    processed just before the crash (1). After: processed but maybe not committed, the next
    owner processes it again (1 or 2). Transactional: the output and the offsets commit
    together or not at all (1).
    """
    return {
        CommitPoint.BEFORE_PROCESSING: frozenset({0, 1}),
        CommitPoint.AFTER_PROCESSING: frozenset({1, 2}),
        CommitPoint.TRANSACTIONAL: frozenset({1}),
    }[commit_point]


def undelivered(required: Iterable[V], delivered: Mapping[V, int]) -> frozenset[V]:
    """The required records delivered zero times (at-least-once violations)."""
    return frozenset(v for v in required if delivered.get(v, 0) < 1)


def redelivered(delivered: Mapping[V, int]) -> frozenset[V]:
    """The records delivered more than once (at-most-once violations)."""
    return frozenset(v for v, n in delivered.items() if n > 1)


@attrs.frozen
class Violations:
    """The records that break a guarantee: never delivered, and delivered more than once."""

    undelivered: frozenset[Hashable]
    redelivered: frozenset[Hashable]

    @property
    def ok(self) -> bool:
        """Whether the guarantee holds."""
        return not self.undelivered and not self.redelivered


def violations(guarantee: Guarantee, required: Iterable[V], delivered: Mapping[V, int]) -> Violations:
    """The records that break `guarantee` for one group."""
    missing: frozenset[V] = frozenset()
    repeated: frozenset[V] = frozenset()
    if guarantee in (Guarantee.AT_LEAST_ONCE, Guarantee.EXACTLY_ONCE):
        missing = undelivered(required, delivered)
    if guarantee in (Guarantee.AT_MOST_ONCE, Guarantee.EXACTLY_ONCE):
        repeated = redelivered(delivered)
    return Violations(frozenset(missing), frozenset(repeated))


def holds(guarantee: Guarantee, required: Iterable[V], delivered: Mapping[V, int]) -> bool:
    """Whether `guarantee` holds for one group."""
    return violations(guarantee, required, delivered).ok
