"""The transaction coordinator's decisions, request by request, over a fake log."""

from __future__ import annotations

import pytest
from kio.schema.errors import ErrorCode

from reference_broker.groups.log_format import partition_for as offsets_partition_for
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.transactions.coordinator import error_for_version
from reference_broker.transactions.log_format import decode_key, decode_value
from reference_broker.transactions.state import TransactionState
from tests.reference_broker.transactions.fakes import PARTITIONS, TIMEOUT_MS, Driver

E = ErrorCode
S = TransactionState
TP = ("topic", 0)


def ongoing(d: Driver, tid: str = "t", version: int = 0) -> tuple[int, int]:
    """An Ongoing transaction of ``tid``, begun by a client of transaction ``version``."""
    result = d.init(tid)
    assert result.error is E.none
    assert d.add(result.producer_id, result.producer_epoch, [TP], tid, version) is E.none
    return result.producer_id, result.producer_epoch


# --- InitProducerId ------------------------------------------------------------------------------


def test_init_gives_a_new_id_then_bumps_its_epoch() -> None:
    d = Driver()
    first = d.init()
    assert (first.error, first.producer_id, first.producer_epoch) == (E.none, 1000, 0)
    again = d.init()  # a new instance of the same transactional id fences the first
    assert (again.producer_id, again.producer_epoch) == (1000, 1)
    assert d.txn().last_producer_epoch == -1
    records = d.storage.records[d.coordinator.partition_for("t")]
    assert [decode_key(k) for k, _ in records] == ["t", "t"]
    value = records[-1][1]
    assert value is not None and decode_value(value).producer_epoch == 1


@pytest.mark.parametrize(("tid", "timeout", "error"), [
    ("", TIMEOUT_MS, E.invalid_request),
    ("t", 0, E.invalid_transaction_timeout),
    ("t", 900_001, E.invalid_transaction_timeout),  # over transaction.max.timeout.ms
])
def test_init_refuses_bad_requests(tid: str, timeout: int, error: ErrorCode) -> None:
    assert Driver().init(tid, timeout).error is error


def test_not_coordinator_and_load_in_progress() -> None:
    d = Driver()
    partition = d.coordinator.partition_for("t")
    d.coordinator.unload_partition(partition)
    assert d.init().error is E.not_coordinator
    assert d.coordinator.coordinator_error("t") is E.not_coordinator
    d.coordinator.begin_loading(partition, 7)
    assert d.init().error is E.coordinator_load_in_progress
    assert d.coordinator.list_transactions().error is E.coordinator_load_in_progress
    d.coordinator.load_partition(partition, 7, d.now_ms)
    assert d.init().error is E.none and d.coordinator.coordinator_error("t") is None


def test_init_during_a_write_in_flight_is_concurrent() -> None:
    d = Driver()
    d.storage.hold = True
    first = d.init_later()
    assert d.init().error is E.concurrent_transactions
    d.storage.release()
    assert first.result.producer_epoch == 0


def test_init_of_an_open_transaction_aborts_and_fences_it() -> None:
    """KIP-98: the new instance gets CONCURRENT_TRANSACTIONS while the coordinator aborts the
    old one's transaction with a bumped epoch; its retry then gets the next epoch."""
    d = Driver(transaction_version=0)
    pid, epoch = ongoing(d)
    assert d.init().error is E.concurrent_transactions
    assert d.txn().state is S.PREPARE_ABORT and d.txn().producer_epoch == epoch + 1
    assert d.add(pid, epoch) is E.producer_fenced
    assert d.end(pid, epoch, commit=True).error is E.producer_fenced
    assert d.init().error is E.concurrent_transactions  # markers still being written
    [markers] = d.write_markers()
    assert (markers.commit, markers.producer_epoch, markers.partitions) == (False, epoch + 1, {TP})
    assert d.txn().state is S.COMPLETE_ABORT
    retry = d.init()
    assert (retry.error, retry.producer_id, retry.producer_epoch) == (E.none, pid, epoch + 2)


def test_kip_360_recovery_with_the_current_epoch() -> None:
    """A producer naming its id and current epoch gets a bump and keeps the old epoch as the
    last one; a retry naming that last epoch gets the same answer without another bump."""
    d = Driver()
    first = d.init()
    bumped = d.init(expected=(first.producer_id, first.producer_epoch))
    assert (bumped.error, bumped.producer_epoch) == (E.none, 1)
    assert d.txn().last_producer_epoch == 0
    retry = d.init(expected=(first.producer_id, first.producer_epoch))
    assert (retry.error, retry.producer_epoch) == (E.none, 1)
    assert d.init(expected=(first.producer_id, 7)).error is E.producer_fenced
    assert d.init(expected=(999, 0)).error is E.producer_fenced


def test_an_exhausted_epoch_takes_a_new_producer_id() -> None:
    """KIP-360: at epoch 32766 InitProducerId rotates to a new producer id at epoch 0; the
    producer that named the old id can retry that rotation."""
    d = Driver()
    first = d.init()
    d.txn().producer_epoch = 32766
    rotated = d.init(expected=(first.producer_id, 32766))
    assert (rotated.error, rotated.producer_id, rotated.producer_epoch) == (E.none, 1001, 0)
    assert d.txn().previous_producer_id == first.producer_id
    retry = d.init(expected=(first.producer_id, 32766))
    assert (retry.producer_id, retry.producer_epoch) == (1001, 0)


def test_producer_id_allocation_errors_are_returned() -> None:
    d = Driver()
    d.id_error = E.coordinator_load_in_progress
    assert d.init().error is E.coordinator_load_in_progress


# --- AddPartitionsToTxn, AddOffsetsToTxn, verification -----------------------------------------


def test_add_partitions_starts_the_transaction() -> None:
    d = Driver()
    r = d.init()
    d.now_ms += 5
    assert d.add(r.producer_id, r.producer_epoch, [TP, ("other", 3)]) is E.none
    txn = d.txn()
    assert (txn.state, txn.partitions, txn.start_ms) == (S.ONGOING, {TP, ("other", 3)}, d.now_ms)
    records = len(d.storage.records[d.coordinator.partition_for("t")])
    assert d.add(r.producer_id, r.producer_epoch, [TP]) is E.none
    assert len(d.storage.records[d.coordinator.partition_for("t")]) == records  # nothing new


def test_add_partitions_errors() -> None:
    d = Driver()
    r = d.init()
    assert d.add(r.producer_id, r.producer_epoch, transactional_id="unknown") is E.invalid_producer_id_mapping
    assert d.add(r.producer_id + 1, r.producer_epoch) is E.invalid_producer_id_mapping
    assert d.add(r.producer_id, r.producer_epoch + 1) is E.producer_fenced
    assert d.add(r.producer_id, r.producer_epoch, transactional_id="") is E.invalid_request
    d.storage.hold = True
    d.add_later(r.producer_id, r.producer_epoch)
    assert d.add(r.producer_id, r.producer_epoch, [("x", 1)]) is E.concurrent_transactions


def test_add_offsets_adds_the_groups_offsets_partition() -> None:
    d = Driver()
    r = d.init()
    reply: list[ErrorCode] = []
    d.coordinator.add_offsets("t", r.producer_id, r.producer_epoch, "my-group", 50, d.now_ms, reply.append)
    assert reply == [E.none]
    assert d.txn().partitions == {("__consumer_offsets", offsets_partition_for("my-group", 50))}


def test_verify_partitions_kip_890() -> None:
    d = Driver()
    pid, epoch = ongoing(d)
    verify = d.coordinator.verify_partitions
    assert verify("t", pid, epoch, [TP, ("x", 1)]) == {TP: E.none, ("x", 1): E.transaction_abortable}
    assert verify("t", pid, epoch + 1, [TP]) == {TP: E.producer_fenced}
    assert verify("t", pid + 1, epoch, [TP]) == {TP: E.invalid_producer_id_mapping}
    assert verify("nobody", pid, epoch, [TP]) == {TP: E.invalid_producer_id_mapping}
    assert d.end(pid, epoch).error is E.none
    assert verify("t", pid, d.txn().producer_epoch, [TP]) == {TP: E.concurrent_transactions}


# --- EndTxn --------------------------------------------------------------------------------------


def test_commit_with_transaction_version_0() -> None:
    """PrepareCommit is written and answered; the markers are the output; CompleteCommit once
    they are written. The epoch stays."""
    d = Driver(transaction_version=0)
    pid, epoch = ongoing(d)
    result = d.end(pid, epoch, commit=True, version=0)
    assert (result.error, result.producer_id, result.producer_epoch) == (E.none, -1, -1)  # < v5
    assert d.txn().state is S.PREPARE_COMMIT
    assert d.add(pid, epoch, [("x", 1)]) is E.concurrent_transactions
    assert d.end(pid, epoch, commit=True, version=0).error is E.concurrent_transactions  # a retry
    # CompleteCommit is pending while the markers are written: Kafka answers that first.
    assert d.end(pid, epoch, commit=False, version=0).error is E.concurrent_transactions
    [markers] = d.coordinator.take_markers()
    assert [(m.topic_partition, m.producer_id, m.producer_epoch, m.coordinator_epoch, m.commit)
            for m in markers.entries()] == [(TP, pid, epoch, 0, True)]
    d.coordinator.markers_written(markers, d.now_ms)
    assert (d.txn().state, d.txn().partitions, d.txn().producer_epoch) == (S.COMPLETE_COMMIT, set(), epoch)
    assert d.end(pid, epoch, commit=True, version=0).error is E.none  # a retry after completion
    assert d.end(pid, epoch, commit=False, version=0).error is E.invalid_txn_state
    assert d.add(pid, epoch) is E.none  # the next transaction, same epoch


def test_end_txn_in_empty_is_an_invalid_state() -> None:
    d = Driver()
    r = d.init()
    assert d.end(r.producer_id, r.producer_epoch).error is E.invalid_txn_state
    assert d.end(r.producer_id + 1, r.producer_epoch).error is E.invalid_producer_id_mapping
    assert d.end(r.producer_id, r.producer_epoch, transactional_id="nobody").error is E.invalid_producer_id_mapping


def test_transaction_version_2_bumps_the_epoch_on_every_end_txn() -> None:
    """KIP-890 part 2: EndTxn returns epoch + 1; a retry with the old epoch is recognised (and
    answered CONCURRENT_TRANSACTIONS while the markers are written, NONE after); the old epoch
    is fenced everywhere else."""
    d = Driver()
    pid, epoch = ongoing(d)
    result = d.end(pid, epoch, commit=True, version=2)
    assert (result.error, result.producer_id, result.producer_epoch) == (E.none, pid, epoch + 1)
    assert d.end(pid, epoch, version=2).error is E.concurrent_transactions
    [markers] = d.write_markers()
    assert markers.producer_epoch == epoch + 1
    retry = d.end(pid, epoch, version=2)
    assert (retry.error, retry.producer_epoch) == (E.none, epoch + 1)
    assert d.end(pid, epoch, commit=False, version=2).error is E.invalid_txn_state
    assert d.add(pid, epoch) is E.producer_fenced
    assert d.add(pid, epoch + 1) is E.none
    assert d.end(pid, epoch + 1, version=2).producer_epoch == epoch + 2


@pytest.mark.parametrize(("state", "commit", "retry", "outcome"), [
    ("Empty", False, True, E.producer_fenced), ("Empty", False, False, "bump"),
    ("Empty", True, True, E.producer_fenced), ("Empty", True, False, E.invalid_txn_state),
    ("CompleteAbort", False, True, E.none), ("CompleteAbort", False, False, "bump"),
    ("CompleteAbort", True, True, E.invalid_txn_state), ("CompleteAbort", True, False, E.invalid_txn_state),
    ("CompleteCommit", False, True, E.invalid_txn_state), ("CompleteCommit", False, False, "bump"),
    ("CompleteCommit", True, True, E.none), ("CompleteCommit", True, False, E.invalid_txn_state),
])
def test_transaction_version_2_end_txn_without_an_open_transaction(
    state: str, commit: bool, retry: bool, outcome: ErrorCode | str,
) -> None:
    """Kafka's table for Empty / CompleteAbort / CompleteCommit with TV2: a retry carries the
    epoch before the last bump; an abort with the current epoch bumps the epoch and completes
    at once (no partition, no marker), since the client cannot know whether a partition joined."""
    d = Driver()
    pid, epoch = d.init().producer_id, 0
    if state != "Empty":
        assert d.add(pid, epoch) is E.none
        epoch = d.end(pid, epoch, commit=state == "CompleteCommit").producer_epoch
        d.write_markers()
    assert d.txn().state.display == state
    if state == "Empty":
        d.txn().last_producer_epoch = epoch
        d.txn().producer_epoch = epoch = epoch + 1  # as after an InitProducerId recovery bump
    result = d.end(pid, epoch - 1 if retry else epoch, commit=commit)
    if outcome == "bump":
        assert (result.error, result.producer_epoch) == (E.none, epoch + 1)
        assert d.txn().state is S.COMPLETE_ABORT and d.coordinator.take_markers() == []
    else:
        assert result.error is outcome
        if outcome is E.none:
            assert (result.producer_id, result.producer_epoch) == (pid, epoch)


def test_transaction_version_2_rotates_the_producer_id_when_the_epoch_runs_out() -> None:
    d = Driver()
    pid, _ = ongoing(d)
    d.txn().producer_epoch = 32766
    result = d.end(pid, 32766, version=2)
    assert (result.error, result.producer_id, result.producer_epoch) == (E.none, pid, 32767)
    [markers] = d.write_markers()
    assert markers.producer_epoch == 32767
    txn = d.txn()
    assert (txn.producer_id, txn.producer_epoch, txn.previous_producer_id) == (1001, 0, pid)
    retry = d.end(pid, 32766, version=2)  # the retry of the request that overflowed
    assert (retry.error, retry.producer_id, retry.producer_epoch) == (E.none, 1001, 0)


# --- timeouts and expiry -------------------------------------------------------------------------


def test_a_timed_out_transaction_is_aborted_and_its_producer_fenced() -> None:
    d = Driver(transaction_version=0)
    pid, epoch = ongoing(d)
    d.advance(TIMEOUT_MS)  # not yet: start + timeout is not before now
    assert d.txn().state is S.ONGOING
    d.advance(10_000)
    assert d.txn().state is S.PREPARE_ABORT and d.txn().producer_epoch == epoch + 1
    assert d.end(pid, epoch, version=0).error is E.producer_fenced
    [markers] = d.write_markers()
    assert not markers.commit and d.txn().state is S.COMPLETE_ABORT


@pytest.mark.parametrize(("client_version", "bumps"), [(2, 2), (0, 1)])
def test_a_timed_out_transaction_on_a_transaction_version_2_coordinator(client_version: int, bumps: int) -> None:
    """The fence bumps once; the abort bumps once more only for a transaction of a client of
    transaction version 2 (Kafka 4.4.0 fences a version-0 client's transaction with one bump)."""
    d = Driver()
    pid, epoch = ongoing(d, version=client_version)
    d.advance(TIMEOUT_MS + 10_000)
    [markers] = d.write_markers()
    assert markers.producer_epoch == epoch + bumps and d.txn().state is S.COMPLETE_ABORT
    assert d.add(pid, epoch) is E.producer_fenced


def test_idle_transactional_ids_expire() -> None:
    """transactional.id.expiration.ms: an id with no open transaction is tombstoned and
    forgotten; one with an open transaction is kept."""
    d = Driver(transactional_id_expiration_ms=100_000, remove_expired_transaction_cleanup_interval_ms=50_000,
               max_timeout_ms=10**9)
    d.init("idle")
    d.init_later("busy", 10**8)
    pid = d.txn("busy").producer_id
    assert d.add(pid, 0, transactional_id="busy") is E.none
    d.advance(200_000)
    assert d.coordinator.metadata("idle") is None and d.coordinator.metadata("busy") is not None
    assert d.storage.records[d.coordinator.partition_for("idle")][-1] == (b"\x00\x00\x00\x04idle", None)
    d.fail_over()
    assert d.coordinator.metadata("idle") is None


# --- the log: errors, fail-over ------------------------------------------------------------------


@pytest.mark.parametrize(("append_error", "error"), [
    (E.not_enough_replicas, E.coordinator_not_available),
    (E.request_timed_out, E.coordinator_not_available),
    (E.not_leader_or_follower, E.not_coordinator),
    (E.message_too_large, E.unknown_server_error),
])
def test_append_errors_become_coordinator_errors(append_error: ErrorCode, error: ErrorCode) -> None:
    d = Driver()
    r = d.init()
    d.storage.fail_with = append_error
    assert d.add(r.producer_id, r.producer_epoch) is error
    assert d.txn().pending is None and d.txn().state is S.EMPTY  # nothing happened
    d.storage.fail_with = None
    assert d.add(r.producer_id, r.producer_epoch) is E.none


def test_a_write_completing_after_an_unload_is_not_applied() -> None:
    d = Driver()
    r = d.init()
    d.storage.hold = True
    reply = d.add_later(r.producer_id, r.producer_epoch)
    d.coordinator.unload_partition(d.coordinator.partition_for("t"))
    d.storage.release()
    assert reply.result is E.not_coordinator


def test_fail_over_writes_the_markers_of_a_prepared_transaction_again() -> None:
    """The outcome was replicated but not every marker written: the new coordinator (another
    coordinator epoch) outputs them again, and completes the transaction."""
    d = Driver()
    pid, epoch = ongoing(d)
    assert d.end(pid, epoch, commit=True).error is E.none
    [old] = d.coordinator.take_markers()
    d.fail_over()
    [again] = d.coordinator.take_markers()
    assert (again.commit, again.partitions, again.producer_epoch, again.coordinator_epoch) == (
        True, {TP}, epoch + 1, 1)
    assert d.txn().state is S.PREPARE_COMMIT
    d.coordinator.markers_written(old, d.now_ms)  # the deposed coordinator's: ignored
    assert d.txn().state is S.PREPARE_COMMIT
    d.coordinator.markers_written(again, d.now_ms)
    assert d.txn().state is S.COMPLETE_COMMIT
    assert d.end(pid, epoch).producer_epoch == epoch + 1  # the client's retry


def test_a_failed_complete_write_is_retried_at_the_next_tick() -> None:
    d = Driver()
    pid, epoch = ongoing(d)
    d.end(pid, epoch, commit=False)
    d.storage.fail_with = E.not_enough_replicas
    d.write_markers()
    assert d.txn().state is S.PREPARE_ABORT and d.txn().pending is S.COMPLETE_ABORT
    d.storage.fail_with = None
    d.advance(1)
    assert d.txn().state is S.COMPLETE_ABORT


def test_transaction_version_0_writes_value_version_0() -> None:
    d = Driver(transaction_version=0)
    d.init()
    [(_, value)] = d.storage.records[d.coordinator.partition_for("t")]
    assert value is not None and value[:2] == b"\x00\x00"
    d1 = Driver(transaction_version=1)
    d1.init()
    [(_, value)] = d1.storage.records[d1.coordinator.partition_for("t")]
    assert value is not None and value[:2] == b"\x00\x01"


# --- DescribeTransactions, ListTransactions ------------------------------------------------------


def test_describe_and_list() -> None:
    d = Driver()
    pid, epoch = ongoing(d, "a")
    d.init("b")
    described = d.coordinator.describe("a")
    assert (described.error, described.state, described.producer_id, described.producer_epoch,
            described.timeout_ms, dict(described.topics)) == (
        E.none, "Ongoing", pid, epoch, TIMEOUT_MS, {"topic": (0,)})
    assert d.coordinator.describe("nobody").error is E.transactional_id_not_found
    assert d.coordinator.describe("").error is E.invalid_request
    listed = d.coordinator.list_transactions()
    assert [(t.transactional_id, t.state) for t in listed.transactions] == [("a", "Ongoing"), ("b", "Empty")]
    only = d.coordinator.list_transactions(states=["Ongoing", "Nope"])
    assert [t.transactional_id for t in only.transactions] == ["a"] and only.unknown_state_filters == ("Nope",)
    assert [t.transactional_id for t in d.coordinator.list_transactions(producer_ids=[pid]).transactions] == ["a"]
    assert all(p < PARTITIONS for p in (d.coordinator.partition_for("a"), d.coordinator.partition_for("b")))


def test_markers_reported_twice_complete_once() -> None:
    d = Driver()
    pid, epoch = ongoing(d)
    d.end(pid, epoch)
    [markers] = d.coordinator.take_markers()
    d.storage.hold = True
    d.coordinator.markers_written(markers, d.now_ms)
    d.coordinator.markers_written(markers, d.now_ms)  # while CompleteX is being written
    d.storage.release()
    d.coordinator.markers_written(markers, d.now_ms)  # after
    assert d.txn().state is S.COMPLETE_COMMIT
    assert len(d.storage.records[d.coordinator.partition_for("t")]) == 4  # init, add, prepare, complete


def test_fencing_an_exhausted_epoch_with_transaction_version_2_does_not_overflow() -> None:
    """The fence bumps 32766 to 32767; the TV2 abort cannot bump again, so it keeps 32767 and
    the next producer id takes over at CompleteAbort (kconform's guard against an int16
    overflow)."""
    d = Driver()
    pid, _ = ongoing(d, version=2)
    d.txn().producer_epoch = 32766
    assert d.init().error is E.concurrent_transactions
    [markers] = d.write_markers()
    assert markers.producer_epoch == 32767 and not markers.commit
    txn = d.txn()
    assert (txn.state, txn.producer_id, txn.producer_epoch, txn.previous_producer_id) == (
        S.COMPLETE_ABORT, 1001, 0, pid)
    retry = d.init()
    assert (retry.error, retry.producer_id, retry.producer_epoch) == (E.none, 1001, 1)


def test_a_failed_fence_write_does_not_bump_twice() -> None:
    """KIP-360: the fence's epoch was never returned, so the next fence reuses it."""
    d = Driver(transaction_version=0)
    pid, epoch = ongoing(d)
    d.storage.fail_with = E.not_enough_replicas
    assert d.init().error is E.coordinator_not_available
    assert d.txn().failed_epoch_fence and d.txn().producer_epoch == epoch + 1
    assert d.txn().state is S.ONGOING and d.txn().pending is None
    d.storage.fail_with = None
    assert d.init().error is E.concurrent_transactions
    [markers] = d.write_markers()
    assert markers.producer_epoch == epoch + 1 and not d.txn().failed_epoch_fence


def test_a_failed_tombstone_keeps_the_id() -> None:
    d = Driver(transactional_id_expiration_ms=100, remove_expired_transaction_cleanup_interval_ms=1000)
    d.init()
    d.storage.fail_with = E.not_enough_replicas
    d.advance(1000)
    assert d.txn().pending is None and d.txn().state is S.EMPTY
    d.storage.fail_with = None
    d.advance(1000)
    assert d.coordinator.metadata("t") is None


def test_a_load_cancelled_by_an_unload_loads_nothing() -> None:
    d = Driver()
    d.init()
    partition = d.coordinator.partition_for("t")
    d.coordinator.unload_partition(partition)
    d.coordinator.begin_loading(partition, 3)
    d.coordinator.unload_partition(partition, 3)
    assert d.init().error is E.not_coordinator


@pytest.mark.parametrize(("api", "old", "new"), [
    (ApiKey.INIT_PRODUCER_ID, 3, 4), (ApiKey.END_TXN, 1, 2),
    (ApiKey.ADD_PARTITIONS_TO_TXN, 1, 2), (ApiKey.ADD_OFFSETS_TO_TXN, 1, 2),
])
def test_old_request_versions_are_told_invalid_producer_epoch(api: ApiKey, old: int, new: int) -> None:
    """KafkaApis: versions before KIP-588 get INVALID_PRODUCER_EPOCH for PRODUCER_FENCED."""
    assert error_for_version(E.producer_fenced, api, old) is E.invalid_producer_epoch
    assert error_for_version(E.producer_fenced, api, new) is E.producer_fenced
    assert error_for_version(E.concurrent_transactions, api, old) is E.concurrent_transactions
