"""A Hypothesis state machine: producers of a few transactional ids (new instances, KIP-360
recoveries, fenced zombies) add partitions and end transactions while the clock moves (timeouts),
writes to ``__transaction_state`` are held in flight, markers are written late or never, and
appends fail for a while, and ``__transaction_state`` partitions move to a new coordinator (unload, then load at the next
coordinator epoch).

Checked after every step:

* the producer id and epoch handed out for a transactional id never go back, and the
  coordinator's own are never behind them (KIP-98 fencing relies on it);
* a fenced producer (any but the newest answer) is refused: AddPartitionsToTxn never accepts it
  and EndTxn never starts a PrepareCommit/PrepareAbort for it;
* at most one transaction per transactional id: partitions only while Ongoing or PrepareX, and
  at most one outstanding set of markers per id at its current coordinator epoch;
* every PrepareX has its markers output at the current coordinator epoch, and a transaction
  reaches CompleteX only after those markers were reported written (with the matching outcome).
"""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from kio.schema.errors import ErrorCode

from reference_broker.transactions.coordinator import (
    ProducerIdAndEpoch,
    ProducerIdResult,
    TransactionCoordinator,
    TxnMarkers,
)
from reference_broker.transactions.metadata import TransactionMetadata
from reference_broker.transactions.state import TransactionState
from tests.reference_broker.transactions.fakes import PARTITIONS, TIMEOUT_MS, Driver

S = TransactionState
IDS = ("a", "b", "c")
TOPIC_PARTITIONS = [("t", 0), ("t", 1), ("u", 0)]
Session = tuple[int, int]  # (producer id, epoch) a producer was given
WHICH = st.sampled_from([0, 0, 0, 1, 2])  # mostly the newest session, sometimes a zombie


class TransactionMachine(RuleBasedStateMachine):
    @initialize(version=st.sampled_from([0, 1, 2]))
    def start(self, version: int) -> None:
        self.d = Driver(transaction_version=version)
        self.version = version
        self.epochs = dict.fromkeys(range(PARTITIONS), 0)  # coordinator epoch per partition
        self.sessions: dict[str, list[Session]] = {tid: [] for tid in IDS}  # answers, oldest first
        self.outstanding: list[TxnMarkers] = []  # output, not yet reported written
        self.reported: dict[str, bool] = {}  # tid -> commit? of markers reported since PrepareX
        self.last_state: dict[str, TransactionState] = {}

    @property
    def c(self) -> TransactionCoordinator:
        return self.d.coordinator

    def _collect(self) -> None:
        self.outstanding.extend(self.c.take_markers())

    def _answered(self, tid: str, result: ProducerIdResult) -> None:
        if result.error is not ErrorCode.none or result.producer_id < 0:
            return
        session = (result.producer_id, result.producer_epoch)
        handed = self.sessions[tid]
        assert not handed or session >= handed[-1], (tid, session, handed)
        if not handed or session != handed[-1]:
            handed.append(session)

    def _session(self, tid: str, which: int) -> tuple[Session, bool] | None:
        """A session of ``tid`` (the newest when ``which`` is 0) and whether it is fenced."""
        handed = self.sessions[tid]
        if not handed:
            return None
        index = max(0, len(handed) - 1 - which)
        return handed[index], index != len(handed) - 1

    # --- producers -------------------------------------------------------------------------

    @rule(tid=st.sampled_from(IDS), recover=st.booleans())
    def init_producer_id(self, tid: str, recover: bool) -> None:
        """A new instance (no expected epoch), or a KIP-360 recovery of the newest session."""
        expected = None
        if recover and self.sessions[tid]:
            expected = ProducerIdAndEpoch(*self.sessions[tid][-1])
        self.c.init_producer_id(tid, TIMEOUT_MS, expected, self.d.now_ms,
                                lambda result: self._answered(tid, result))
        self._collect()

    @rule(tid=st.sampled_from(IDS), which=WHICH,
          partitions=st.lists(st.sampled_from(TOPIC_PARTITIONS), min_size=1, max_size=2))
    def add_partitions(self, tid: str, which: int, partitions: list[tuple[str, int]]) -> None:
        chosen = self._session(tid, which)
        if chosen is None:
            return
        (pid, epoch), fenced = chosen
        answers: list[ErrorCode] = []
        self.c.add_partitions(tid, pid, epoch, partitions, self.d.now_ms, answers.append)
        if fenced:
            assert ErrorCode.none not in answers, (tid, pid, epoch, self.sessions[tid])

    @rule(tid=st.sampled_from(IDS), which=WHICH, commit=st.booleans(), markers=st.booleans())
    def end_txn(self, tid: str, which: int, commit: bool, markers: bool) -> None:
        """EndTxn, and with ``markers`` the markers written at once (as on a healthy cluster)."""
        chosen = self._session(tid, which)
        if chosen is None:
            return
        (pid, epoch), fenced = chosen
        txn = self.c.metadata(tid)
        before = (txn.state, txn.pending) if txn is not None else None
        self.c.end_txn(tid, pid, epoch, commit, self.version, self.d.now_ms,
                       lambda result: self._answered(tid, result))
        if fenced and txn is not None and before is not None:
            started = txn.state.is_prepare or (txn.pending is not None and txn.pending.is_prepare)
            was = before[0].is_prepare or (before[1] is not None and before[1].is_prepare)
            assert was or not started, (tid, pid, epoch, before, txn)
        self._collect()
        while markers and self.outstanding:
            self.write_markers(0)

    # --- the coordinator's world ------------------------------------------------------------

    @rule(ms=st.sampled_from([1, 1000, TIMEOUT_MS // 2, TIMEOUT_MS + 10_000]))
    def advance(self, ms: int) -> None:
        self.d.advance(ms)
        self._collect()

    @rule(hold=st.booleans())
    def hold_writes(self, hold: bool) -> None:
        self.d.storage.hold = hold
        if not hold:
            self.release()

    @rule(fail=st.booleans())
    def fail_writes(self, fail: bool) -> None:
        """Appends fail (the ISR is below min.insync.replicas) until told otherwise."""
        self.d.storage.fail_with = ErrorCode.not_enough_replicas if fail else None

    @rule()
    def release(self) -> None:
        while self.d.storage.held:
            self.d.storage.release()
            self._collect()

    @rule(index=st.integers(0, 3))
    def write_markers(self, index: int) -> None:
        """The markers of one decided transaction are written (maybe from a deposed coordinator
        epoch: then they must be ignored)."""
        if not self.outstanding:
            return
        markers = self.outstanding.pop(index % len(self.outstanding))
        current = self.epochs[self.c.partition_for(markers.transactional_id)]
        if markers.coordinator_epoch == current:
            self.reported[markers.transactional_id] = markers.commit
        self.c.markers_written(markers, self.d.now_ms)
        self._collect()

    @rule(partition=st.integers(0, PARTITIONS - 1), new_coordinator=st.booleans())
    def move_partition(self, partition: int, new_coordinator: bool) -> None:
        """The partition's leadership moves: writes in flight complete (they were replicated),
        the old coordinator resigns, the next coordinator epoch loads it. With
        ``new_coordinator`` every partition moves to a new coordinator (a broker restart)."""
        self.d.storage.hold = False
        self.d.storage.fail_with = None
        self.release()
        for p in range(PARTITIONS) if new_coordinator else [partition]:
            self.epochs[p] += 1
        if new_coordinator:
            for p in range(PARTITIONS):
                self.c.unload_partition(p)
            self.d.coordinator = TransactionCoordinator(
                self.d.config, self.d.storage, self.d.new_producer_id, self.d.now_ms)
            for p in range(PARTITIONS):
                self.c.load_partition(p, self.epochs[p], self.d.now_ms)
        else:
            self.c.unload_partition(partition, self.epochs[partition] - 1)
            self.c.load_partition(partition, self.epochs[partition], self.d.now_ms)
        self._collect()

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def epochs_never_go_back(self) -> None:
        for tid, handed in self.sessions.items():
            txn = self.c.metadata(tid)
            if handed:
                assert txn is not None, tid
                assert (txn.producer_id, txn.producer_epoch) >= handed[-1], (tid, txn, handed)

    def _loaded(self) -> Iterator[tuple[str, TransactionMetadata, list[TxnMarkers]]]:
        """Each known id, its metadata and its outstanding markers at its current epoch."""
        for tid in IDS:
            txn = self.c.metadata(tid)
            if txn is not None:
                epoch = self.epochs[self.c.partition_for(tid)]
                yield tid, txn, [m for m in self.outstanding
                                 if m.transactional_id == tid and m.coordinator_epoch == epoch]

    @invariant()
    def one_transaction_per_id(self) -> None:
        for _, txn, outstanding in self._loaded():
            if txn.partitions:
                assert txn.state in (S.ONGOING, S.PREPARE_COMMIT, S.PREPARE_ABORT), txn
            assert len(outstanding) <= 1, outstanding

    @invariant()
    def prepare_then_markers_then_complete(self) -> None:
        for tid, txn, outstanding in self._loaded():
            previous = self.last_state.get(tid)
            complete = (S.COMPLETE_COMMIT, S.COMPLETE_ABORT)
            if txn.state in (S.EMPTY, S.ONGOING):
                self.reported.pop(tid, None)  # no decision yet: its markers are still to come
            elif txn.state.is_prepare:
                commit = txn.state is S.PREPARE_COMMIT
                # Output and not yet reported, or reported (none to report for a TV2 abort with
                # no partition) and CompleteX being written or waiting for a retry.
                reported = self.reported.get(tid) == commit or not txn.partitions
                assert ([m.commit for m in outstanding] == [commit]
                        or (reported and txn.pending is not None)), (tid, txn)
            elif txn.state in complete and previous is not txn.state:
                # Entered CompleteX (maybe within one step from Ongoing): only once its markers
                # were reported written, or (TV2) an abort with no transaction open, which has
                # no partition to mark.
                empty_abort = (self.version == 2 and txn.state is S.COMPLETE_ABORT
                               and previous in (S.EMPTY, S.COMPLETE_COMMIT, None))
                assert empty_abort or self.reported.get(tid) == (txn.state is S.COMPLETE_COMMIT), (tid, txn)
            if previous is not None and previous.is_prepare:
                assert txn.state is previous or txn.state in complete, (tid, previous, txn)
            self.last_state[tid] = txn.state


TestTransactionMachine = TransactionMachine.TestCase
TestTransactionMachine.settings = settings(TestTransactionMachine.settings, stateful_step_count=60,
                                           max_examples=300, deadline=None)
