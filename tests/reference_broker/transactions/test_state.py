"""The transaction states and the metadata's transitions, against Kafka's TransactionMetadata."""

from __future__ import annotations

import pytest

from reference_broker.transactions.metadata import TransactionMetadata
from reference_broker.transactions.state import (
    VALID_PREVIOUS_STATES,
    IllegalTransitionError,
    TransactionState,
)

S = TransactionState


def test_ids_and_names_are_kafkas() -> None:
    """The byte stored and the name shown (TransactionState.fromId / name)."""
    assert [(s.value, s.display) for s in S] == [
        (0, "Empty"), (1, "Ongoing"), (2, "PrepareCommit"), (3, "PrepareAbort"),
        (4, "CompleteCommit"), (5, "CompleteAbort"), (6, "Dead"), (7, "PrepareEpochFence"),
    ]
    assert S.from_name("Ongoing") is S.ONGOING and S.from_name("ongoing") is None


def test_the_legal_transitions_are_kafkas() -> None:
    legal = {(before, after) for after, befores in VALID_PREVIOUS_STATES.items() for before in befores}
    assert legal == {
        (S.EMPTY, S.EMPTY), (S.COMPLETE_COMMIT, S.EMPTY), (S.COMPLETE_ABORT, S.EMPTY),
        (S.ONGOING, S.ONGOING), (S.EMPTY, S.ONGOING), (S.COMPLETE_COMMIT, S.ONGOING),
        (S.COMPLETE_ABORT, S.ONGOING), (S.ONGOING, S.PREPARE_COMMIT), (S.ONGOING, S.PREPARE_ABORT),
        (S.PREPARE_EPOCH_FENCE, S.PREPARE_ABORT), (S.EMPTY, S.PREPARE_ABORT),
        (S.COMPLETE_COMMIT, S.PREPARE_ABORT), (S.COMPLETE_ABORT, S.PREPARE_ABORT),
        (S.PREPARE_COMMIT, S.COMPLETE_COMMIT),
        (S.PREPARE_ABORT, S.COMPLETE_ABORT), (S.EMPTY, S.DEAD), (S.COMPLETE_COMMIT, S.DEAD),
        (S.COMPLETE_ABORT, S.DEAD), (S.ONGOING, S.PREPARE_EPOCH_FENCE),
    }
    assert {s for s in S if s.expiration_allowed} == {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}


def _metadata(state: TransactionState) -> TransactionMetadata:
    return TransactionMetadata("t", 1, producer_epoch=3, timeout_ms=100, state=state,
                               partitions={("a", 0)} if state is not S.EMPTY else set(), start_ms=5)


@pytest.mark.parametrize("state", list(S))
def test_illegal_transitions_raise(state: TransactionState) -> None:
    """Preparing a move its target does not allow from ``state`` is a bug: it raises."""
    txn = _metadata(state)
    moves = {
        S.ONGOING: lambda: txn.prepare_add_partitions([("b", 1)], 10),
        S.PREPARE_COMMIT: lambda: txn.prepare_abort_or_commit(S.PREPARE_COMMIT, 0, -1, 10),
        S.PREPARE_EPOCH_FENCE: txn.prepare_fence_producer_epoch,
        S.DEAD: txn.prepare_dead,
    }
    for target, move in moves.items():
        txn.pending = None
        if target.may_follow(state):
            assert move().state is target
        else:
            with pytest.raises(IllegalTransitionError):
                move()


def test_a_pending_transition_blocks_another() -> None:
    txn = _metadata(S.EMPTY)
    txn.prepare_add_partitions([("a", 0)], 10)
    with pytest.raises(IllegalTransitionError):
        txn.prepare_add_partitions([("a", 1)], 10)


def test_completing_a_transition_applies_it() -> None:
    txn = _metadata(S.EMPTY)
    transit = txn.prepare_add_partitions([("a", 0)], 10)
    assert txn.state is S.EMPTY and txn.pending is S.ONGOING
    txn.complete_transition(transit)
    assert (txn.state, txn.pending, txn.partitions, txn.start_ms, txn.last_update_ms) == (
        S.ONGOING, None, {("a", 0)}, 10, 10)
    with pytest.raises(IllegalTransitionError):  # nothing pending any more
        txn.complete_transition(transit)


def test_transaction_version_2_bumps_the_epoch_at_prepare() -> None:
    """KIP-890 part 2: PrepareX carries epoch + 1, the old one as the last epoch."""
    txn = _metadata(S.ONGOING)
    transit = txn.prepare_abort_or_commit(S.PREPARE_COMMIT, 2, -1, 10)
    txn.complete_transition(transit)
    assert (txn.producer_epoch, txn.last_producer_epoch, txn.state) == (4, 3, S.PREPARE_COMMIT)
    txn.complete_transition(txn.prepare_complete(11))
    assert (txn.producer_epoch, txn.state, txn.partitions) == (4, S.COMPLETE_COMMIT, set())


def test_the_fence_bumps_once_even_when_its_write_failed() -> None:
    """A failed PrepareEpochFence write leaves the bumped epoch unreturned: no second bump."""
    txn = _metadata(S.ONGOING)
    assert txn.prepare_fence_producer_epoch().producer_epoch == 4
    txn.pending, txn.failed_epoch_fence = None, True
    assert txn.prepare_fence_producer_epoch().producer_epoch == 3
