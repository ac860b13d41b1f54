"""Delivery guarantees as predicates, and the commit strategies that give them."""

from __future__ import annotations

from specs.delivery import CommitPoint, Guarantee, crash_outcomes, guarantee_of, holds, violations


def test_at_least_once_needs_every_required_record_delivered() -> None:
    """A missing record breaks at-least-once; a repeated one does not."""
    assert holds(Guarantee.AT_LEAST_ONCE, ["a", "b"], {"a": 2, "b": 1})
    assert violations(Guarantee.AT_LEAST_ONCE, ["a", "b"], {"a": 1}).undelivered == {"b"}


def test_at_most_once_forbids_redelivery_only() -> None:
    """A repeated record breaks at-most-once; a missing one does not."""
    assert holds(Guarantee.AT_MOST_ONCE, ["a", "b"], {"a": 1})
    assert violations(Guarantee.AT_MOST_ONCE, ["a"], {"a": 2}).redelivered == {"a"}


def test_exactly_once_is_both() -> None:
    """Exactly-once fails on a missing record and on a repeated one."""
    assert holds(Guarantee.EXACTLY_ONCE, ["a"], {"a": 1})
    assert not holds(Guarantee.EXACTLY_ONCE, ["a"], {})
    assert not holds(Guarantee.EXACTLY_ONCE, ["a"], {"a": 2})


def test_commit_points_give_the_seed_guarantees_and_crash_outcomes() -> None:
    """Committing before processing loses on a crash, after duplicates, transactionally neither."""
    assert guarantee_of(CommitPoint.BEFORE_PROCESSING) is Guarantee.AT_MOST_ONCE
    assert crash_outcomes(CommitPoint.BEFORE_PROCESSING) == {0, 1}
    assert guarantee_of(CommitPoint.AFTER_PROCESSING) is Guarantee.AT_LEAST_ONCE
    assert crash_outcomes(CommitPoint.AFTER_PROCESSING) == {1, 2}
    assert crash_outcomes(CommitPoint.TRANSACTIONAL) == {1}
