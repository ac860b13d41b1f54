"""One partition replica hosted by this broker: its role, high watermark, ISR and leader epochs.

Theory of operation (Kafka's Partition and ReplicaManager with KRaft, KIP-101, KIP-279, KIP-497,
KIP-595's truncation on fetch). Sans-I/O: inputs are metadata changes, follower fetches, fetch
responses, controller answers and clock ticks; outputs are return values and a few callbacks the
broker wires (``alter_isr``, ``on_high_watermark``).

**Roles.** The cluster metadata decides who leads at which *leader epoch*; the broker applies it
with :meth:`Partition.become_leader` / :meth:`Partition.become_follower`. Metadata older than
what the partition already knows (a lower partition epoch) is ignored.

**Leader.** Appends stamp the leader epoch into every batch (:meth:`append_as_leader`), and the
leader epoch cache records where the epoch starts. The leader serves its followers' fetches
(:meth:`read_for_follower`): a follower's fetch offset *is* its log end offset (LEO), since it
fetches exactly where its log ends. The **high watermark** (HW) is the smallest LEO over the
ISR, the leader's included; it only moves forward. Consumers read below it only, and an acks=all
produce is answered once the HW passes its last offset (:meth:`wait_for_commit`).

**ISR.** A follower leaves the ISR when it has not caught up with the leader's LEO for
``replica.lag.time.max.ms`` (measured as Kafka's ReplicaState does: the last time it fetched at
the leader's LEO, or at the LEO the leader had at its previous fetch). A follower outside the
ISR joins it once its LEO reaches both the HW and the start of the leader's epoch (so it holds
everything this leader may have committed). The leader never changes the ISR itself: it
proposes the change to the controller (``alter_isr``), one at a time and tagged with the
leader and partition epochs it saw, and adopts it when the controller answers or the metadata
arrives. While a change is in flight the HW is computed over the *maximal* ISR (the committed
ISR plus any replica being added), so the HW never counts on a shrink the controller has not
accepted, and never ignores a replica the controller may already list.

**Follower.** It fetches from the leader at its LEO, sending the epoch of its last record
(``last_fetched_epoch``). The leader checks that epoch against its own cache and answers with a
*diverging epoch* (the largest epoch it knows <= the follower's and where that epoch ends in the
leader's log) when the follower's log has records the leader does not. After a leader change the
follower first asks OffsetForLeaderEpoch for its latest epoch. Either way it truncates to where
the logs diverge (:meth:`on_epoch_end_offset`, Kafka's getOffsetTruncationState), never to its
HW (KIP-101: that loses committed records). Its HW is ``min(leader's HW, own LEO)`` and never
moves back, except when truncation (possible only after an unclean election) cuts below it.

**Safety, in short.** A record below the HW is on every member of the maximal ISR; the
controller elects only ISR members (unless unclean election is enabled) and the ISR it holds is
always a subset of the leader's maximal ISR; a new leader keeps its whole log and every
follower truncates only what disagrees with the leader's epochs. So every replica agrees with
the leader below its own HW, and acknowledged (acks=all) records survive clean elections. A
deposed leader that has not heard of its replacement cannot commit anything: its followers
fetch from the new leader (with the new epoch, which it would refuse), and the controller
refuses its ISR changes (stale leader epoch).

**Durability of the HW.** The HW is written to ``replication-offset-checkpoint`` in the
partition directory every ``replica.high.watermark.checkpoint.interval.ms`` and on close; a
restarted replica starts from ``min(checkpoint, LEO)``, which is never above the true HW (a
lost or torn checkpoint counts as 0).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from pathlib import Path

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.log import AppendResult, LogError, OffsetOutOfRangeError, PartitionLog
from reference_broker.log.checkpoint import read_offset, write_offset_unsynced
from reference_broker.log.leader_epochs import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
from reference_broker.producers import AppendOrigin
from reference_broker.records import BatchHeader, EndTransactionMarker, scan_valid_prefix

log = logging.getLogger(__name__)

HIGH_WATERMARK_CHECKPOINT = "replication-offset-checkpoint"
NO_LEADER = -1
NO_EPOCH = -1  # a request field "current_leader_epoch" that is not set
UNKNOWN_OFFSET = -1


class Role(enum.Enum):
    LEADER = "leader"
    FOLLOWER = "follower"


class ReplicationError(Exception):
    """A request this replica refuses with a Kafka error (``error``)."""

    def __init__(self, error: ErrorCode, message: str = "") -> None:
        super().__init__(message or error.name)
        self.error = error
        self.message = message


@attrs.frozen(slots=True)
class ReplicationConfig:
    """The broker keys a partition replica obeys (Kafka's names and defaults)."""

    replica_lag_time_max_ms: int = 30_000  # replica.lag.time.max.ms
    high_watermark_checkpoint_interval_ms: int = 5_000  # replica.high.watermark.checkpoint.interval.ms
    # How long to wait before re-sending an ISR change whose outcome is unknown (Kafka retries
    # AlterPartition after a short backoff while it keeps the change pending).
    isr_change_retry_backoff_ms: int = 500

    @classmethod
    def from_broker(cls, get: Callable[[str], object]) -> ReplicationConfig:
        """The settings from broker config keys (``get`` is BrokerConfig.get)."""
        return cls(
            replica_lag_time_max_ms=int(str(get("replica.lag.time.max.ms"))),
            high_watermark_checkpoint_interval_ms=int(
                str(get("replica.high.watermark.checkpoint.interval.ms"))
            ),
        )


# --- what flows in and out -------------------------------------------------------------------


@attrs.frozen(slots=True)
class IsrChange:
    """An ISR change a leader proposes to the controller (AlterPartition, KIP-497)."""

    topic: str
    partition: int
    leader_id: int
    leader_epoch: int
    partition_epoch: int
    new_isr: tuple[int, ...]


@attrs.frozen(slots=True)
class PartitionState:
    """A partition as the controller now has it (an AlterPartition answer)."""

    leader: int
    leader_epoch: int
    partition_epoch: int
    isr: tuple[int, ...]


@attrs.frozen(slots=True)
class FollowerRead:
    """The leader's answer to one partition of a follower's fetch."""

    records: bytes
    high_watermark: int
    log_start_offset: int
    log_end_offset: int
    diverging_epoch: tuple[int, int] | None = None  # (epoch, end offset) when logs diverge


@attrs.frozen(slots=True)
class EpochQuery:
    """A follower's OffsetForLeaderEpoch question: where does ``epoch`` end in the leader's log?"""

    leader_id: int
    current_leader_epoch: int
    epoch: int


@attrs.frozen(slots=True)
class FetchPosition:
    """What a follower's next fetch for this partition carries."""

    leader_id: int
    current_leader_epoch: int
    fetch_offset: int
    last_fetched_epoch: int
    log_start_offset: int


class FollowerFetchState(enum.Enum):
    TRUNCATING = "truncating"  # must find where its log diverges from the leader's first
    FETCHING = "fetching"


@attrs.define(slots=True)
class _ReplicaState:
    """What a leader knows of one follower (Kafka's ReplicaState)."""

    log_end_offset: int = UNKNOWN_OFFSET
    last_caught_up_ms: int = 0
    last_fetch_leader_log_end_offset: int = UNKNOWN_OFFSET
    last_fetch_ms: int = 0


CommitCallback = Callable[[ErrorCode], None]


@attrs.define(slots=True)
class _CommitWaiter:
    required_offset: int  # the HW that commits the append: its last offset + 1
    min_insync_replicas: int
    deadline_ms: int
    leader_epoch: int
    callback: CommitCallback


# Errors after which the controller certainly did not apply an ISR change (Kafka's
# handleAlterPartitionError): the proposal is dropped. Other errors either say our view is stale
# (the metadata will bring the truth) or leave the outcome unknown (the change is re-sent); in
# both cases the proposal stays pending, so the HW keeps counting the maximal ISR.
_ISR_CHANGE_NOT_APPLIED = frozenset(
    {ErrorCode.ineligible_replica, ErrorCode.operation_not_attempted, ErrorCode.invalid_request}
)
_ISR_CHANGE_STALE = frozenset(
    {ErrorCode.fenced_leader_epoch, ErrorCode.invalid_update_version, ErrorCode.unknown_topic_or_partition,
     ErrorCode.unknown_topic_id, ErrorCode.stale_broker_epoch, ErrorCode.not_leader_or_follower}
)  # fmt: skip


class Partition:
    """A replica of ``topic``-``index`` on this broker; see the module docstring."""

    def __init__(
        self,
        topic: str,
        index: int,
        log: PartitionLog,
        *,
        node_id: int = -1,
        config: ReplicationConfig | None = None,
        now_ms: int = 0,
    ) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self.node_id = node_id
        self.config = config or ReplicationConfig()
        self.role = Role.FOLLOWER
        self.leader_id = NO_LEADER
        self.leader_epoch = -1
        self.partition_epoch = -1
        self.replicas: tuple[int, ...] = ()
        self.isr: tuple[int, ...] = ()
        # Set by the broker: propose an ISR change to the controller; called when the HW moves.
        self.alter_isr: Callable[[IsrChange], None] | None = None
        self.on_high_watermark: Callable[[Partition], None] | None = None
        self._high_watermark = self._bounded_hw(self._read_hw_checkpoint() or 0)
        self._hw_checkpointed = self._high_watermark
        self._next_hw_checkpoint_ms = now_ms + self.config.high_watermark_checkpoint_interval_ms
        # leader state
        self._followers: dict[int, _ReplicaState] = {}
        self._epoch_start_offset = 0
        self._pending_isr: IsrChange | None = None
        self._resend_isr_at_ms: int | None = None
        self._waiters: list[_CommitWaiter] = []
        # follower state
        self.fetch_state = FollowerFetchState.TRUNCATING

    def __repr__(self) -> str:
        return (
            f"Partition({self.topic}-{self.index} {self.role.value} leader={self.leader_id} "
            f"epoch={self.leader_epoch} isr={self.isr} hw={self._high_watermark} "
            f"leo={self.log.log_end_offset})"
        )

    # --- offsets ---------------------------------------------------------------------------------

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @property
    def last_stable_offset(self) -> int:
        """Where read_committed consumers stop: the log's last stable offset under this
        replica's high watermark (Kafka's UnifiedLog.lastStableOffset)."""
        return self.log.last_stable_offset(self._high_watermark)

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def isr_size(self) -> int:
        return max(1, len(self.isr))

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """The committed ISR plus any replica a pending change is adding (Kafka's maximalIsr)."""
        pending = self._pending_isr
        if pending is None:
            return self.isr
        return self.isr + tuple(r for r in pending.new_isr if r not in self.isr)

    @property
    def pending_isr_change(self) -> IsrChange | None:
        return self._pending_isr

    def follower_log_end_offset(self, replica: int) -> int:
        state = self._followers.get(replica)
        return state.log_end_offset if state is not None else UNKNOWN_OFFSET

    def _bounded_hw(self, offset: int) -> int:
        return max(self.log.log_start_offset, min(offset, self.log.log_end_offset))

    @property
    def _hw_path(self) -> Path:
        return self.log.directory / HIGH_WATERMARK_CHECKPOINT

    # --- roles -----------------------------------------------------------------------------------

    def become_leader(
        self, node_id: int, leader_epoch: int, partition_epoch: int,
        replicas: tuple[int, ...], isr: tuple[int, ...], now_ms: int,
    ) -> bool:
        """Lead at ``leader_epoch`` (metadata says so); returns whether this starts a new
        leadership (a new leader epoch) rather than an ISR update of the current one."""
        if self._stale(leader_epoch, partition_epoch):
            return False
        if (self.role is Role.LEADER and leader_epoch == self.leader_epoch
                and partition_epoch == self.partition_epoch):
            return False  # a repeat of what we know (perhaps from an AlterPartition answer)
        new_leadership = self.role is not Role.LEADER or leader_epoch != self.leader_epoch
        self.node_id = node_id
        self.leader_id = node_id
        self.partition_epoch = partition_epoch
        self.replicas = tuple(replicas)
        self.isr = tuple(isr)
        self._pending_isr = None
        self._resend_isr_at_ms = None
        if new_leadership:
            self._fail_waiters(ErrorCode.not_leader_or_follower)
            self.role = Role.LEADER
            self.leader_epoch = leader_epoch
            leo = self.log.log_end_offset
            self._epoch_start_offset = leo
            self.log.leader_epochs.assign(leader_epoch, leo)
            # Kafka's resetReplicaState for a new leader: follower LEOs are unknown until they
            # fetch from us; ISR members get a full lag window to do so.
            self._followers = {
                replica: _ReplicaState(
                    last_caught_up_ms=now_ms if replica in self.isr else 0,
                    last_fetch_leader_log_end_offset=leo,
                    last_fetch_ms=now_ms,
                )
                for replica in self.replicas
                if replica != node_id
            }
            log.info("%s-%d: leader at epoch %d from offset %d, ISR %s", self.topic, self.index,
                     leader_epoch, leo, list(self.isr))
        else:
            for replica in self.replicas:
                if replica != node_id:
                    self._followers.setdefault(replica, _ReplicaState())
            for replica in list(self._followers):
                if replica not in self.replicas:
                    del self._followers[replica]
        self._maybe_advance_hw()
        return new_leadership

    def become_follower(
        self, leader_id: int, leader_epoch: int, partition_epoch: int,
        replicas: tuple[int, ...], isr: tuple[int, ...], now_ms: int,
    ) -> bool:
        """Follow ``leader_id`` (NO_LEADER: the partition is offline); returns whether the
        leader or its epoch changed, i.e. whether the fetcher must start over."""
        if self._stale(leader_epoch, partition_epoch):
            return False
        changed = (
            self.role is not Role.FOLLOWER
            or leader_id != self.leader_id
            or leader_epoch != self.leader_epoch
        )
        self.partition_epoch = partition_epoch
        self.replicas = tuple(replicas)
        self.isr = tuple(isr)
        if changed:
            if self.role is Role.LEADER:
                log.info("%s-%d: no longer leader (epoch %d, now led by %d)", self.topic,
                         self.index, leader_epoch, leader_id)
            self._fail_waiters(ErrorCode.not_leader_or_follower)
            self.role = Role.FOLLOWER
            self.leader_id = leader_id
            self.leader_epoch = leader_epoch
            self._followers.clear()
            self._pending_isr = None
            self._resend_isr_at_ms = None
            # Find where our log diverges from the new leader's before fetching (KIP-101).
            self.fetch_state = FollowerFetchState.TRUNCATING
        return changed

    def _stale(self, leader_epoch: int, partition_epoch: int) -> bool:
        return partition_epoch < self.partition_epoch or leader_epoch < self.leader_epoch

    def check_leader(self, current_leader_epoch: int = NO_EPOCH, require_leader: bool = True) -> None:
        """Raise unless a request naming ``current_leader_epoch`` may be served here (KIP-320
        fencing first, then leadership, in Kafka's order)."""
        if current_leader_epoch != NO_EPOCH and current_leader_epoch != self.leader_epoch:
            if current_leader_epoch > self.leader_epoch:
                raise ReplicationError(
                    ErrorCode.unknown_leader_epoch,
                    f"{self.topic}-{self.index} is at leader epoch {self.leader_epoch}, "
                    f"the request names {current_leader_epoch}",
                )
            raise ReplicationError(
                ErrorCode.fenced_leader_epoch,
                f"{self.topic}-{self.index} is at leader epoch {self.leader_epoch}, "
                f"the request names {current_leader_epoch}",
            )
        if require_leader and self.role is not Role.LEADER:
            raise ReplicationError(
                ErrorCode.not_leader_or_follower,
                f"this broker does not lead {self.topic}-{self.index} (leader: {self.leader_id})",
            )

    # --- leader: appends and commits ----------------------------------------------------------

    def append_as_leader(
        self, records: bytearray, headers: list[BatchHeader], now_ms: int,
        origin: AppendOrigin = AppendOrigin.CLIENT,
    ) -> AppendResult:
        """Append a validated record set as leader, stamping the leader epoch (``origin``: who
        wrote it, see producers.AppendOrigin)."""
        if self.role is not Role.LEADER:
            self.check_leader()
        result = self.log.append(records, headers, now_ms, self.leader_epoch, origin)
        self._maybe_advance_hw()
        return result

    def append_marker(
        self, producer_id: int, producer_epoch: int, marker: EndTransactionMarker, now_ms: int
    ) -> AppendResult:
        """Append a transaction marker as leader (WriteTxnMarkers), stamping the leader epoch;
        it replicates to the followers like any batch."""
        if self.role is not Role.LEADER:
            self.check_leader()
        result = self.log.append_marker(
            producer_id, producer_epoch, marker, now_ms, self.leader_epoch
        )
        self._maybe_advance_hw()
        return result

    def check_min_isr(self, min_insync_replicas: int) -> None:
        """acks=all refuses to append while the ISR is smaller than min.insync.replicas."""
        if len(self.isr) < min_insync_replicas:
            raise ReplicationError(
                ErrorCode.not_enough_replicas,
                f"the ISR of {self.topic}-{self.index} has {len(self.isr)} member(s) "
                f"{list(self.isr)}, fewer than min.insync.replicas={min_insync_replicas}",
            )

    def wait_for_commit(
        self, required_offset: int, min_insync_replicas: int, deadline_ms: int,
        callback: CommitCallback,
    ) -> bool:
        """Call ``callback(error)`` once the HW reaches ``required_offset`` (an acks=all append's
        last offset + 1): NONE, or NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR has meanwhile
        shrunk below ``min_insync_replicas``; NOT_LEADER_OR_FOLLOWER if leadership is lost first
        (the append may be truncated); REQUEST_TIMED_OUT at ``deadline_ms``. Returns True when
        it was answered at once (the callback has run)."""
        waiter = _CommitWaiter(required_offset, min_insync_replicas, deadline_ms,
                               self.leader_epoch, callback)
        if self.role is not Role.LEADER:
            callback(ErrorCode.not_leader_or_follower)
            return True
        if self._high_watermark >= required_offset:
            callback(self._commit_outcome(waiter))
            return True
        self._waiters.append(waiter)
        return False

    def _commit_outcome(self, waiter: _CommitWaiter) -> ErrorCode:
        if len(self.maximal_isr) < waiter.min_insync_replicas:
            return ErrorCode.not_enough_replicas_after_append
        return ErrorCode.none

    def _complete_waiters(self) -> None:
        if not self._waiters:
            return
        hw = self._high_watermark
        done = [w for w in self._waiters if w.required_offset <= hw]
        if done:
            self._waiters = [w for w in self._waiters if w.required_offset > hw]
            for waiter in done:
                waiter.callback(self._commit_outcome(waiter))

    def _fail_waiters(self, error: ErrorCode) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(error)

    @property
    def pending_commits(self) -> int:
        return len(self._waiters)

    # --- leader: followers ---------------------------------------------------------------------

    def read_for_follower(
        self, replica_id: int, fetch_offset: int, last_fetched_epoch: int,
        current_leader_epoch: int, max_bytes: int, now_ms: int, min_one_batch: bool = True,
    ) -> FollowerRead:
        """Serve one partition of a follower's fetch: records up to the LEO (not the HW), or
        the diverging epoch when the follower's last fetched epoch does not fit our log.

        The fetch offset counts as the follower's LEO (unless the logs diverge), which may move
        the HW and bring the follower back into the ISR. Raises ReplicationError (fencing, not
        leader, unknown replica) or OffsetOutOfRangeError.
        """
        self.check_leader(current_leader_epoch)
        state = self._followers.get(replica_id)
        if state is None:
            raise ReplicationError(
                ErrorCode.not_leader_or_follower,
                f"broker {replica_id} is not a replica of {self.topic}-{self.index} "
                f"(replicas: {list(self.replicas)})",
            )
        plog = self.log
        if last_fetched_epoch != NO_EPOCH and fetch_offset >= plog.log_start_offset:
            # KIP-595 style truncation on fetch (Kafka 2.7+ followers), as Kafka's
            # Partition.readRecords: an epoch we cannot place is out of range.
            epoch, end = self.end_offset_for_epoch(last_fetched_epoch)
            if epoch == UNDEFINED_EPOCH or end == UNDEFINED_EPOCH_OFFSET:
                raise OffsetOutOfRangeError(fetch_offset, plog.log_start_offset,
                                            plog.log_end_offset)
            if epoch < last_fetched_epoch or end < fetch_offset:
                return FollowerRead(b"", self._high_watermark, plog.log_start_offset,
                                    plog.log_end_offset, (epoch, end))
        data = plog.read(fetch_offset, max_bytes, upper_bound=None, min_one_batch=min_one_batch)
        self._update_follower(replica_id, state, fetch_offset, now_ms)
        return FollowerRead(data.records, self._high_watermark, plog.log_start_offset,
                            plog.log_end_offset)

    def _update_follower(
        self, replica_id: int, state: _ReplicaState, fetch_offset: int, now_ms: int
    ) -> None:
        leader_leo = self.log.log_end_offset
        # Kafka's ReplicaState.updateFetchState: caught up now, or caught up with where the
        # leader was at the follower's previous fetch.
        if fetch_offset >= leader_leo:
            state.last_caught_up_ms = max(state.last_caught_up_ms, now_ms)
        elif fetch_offset >= state.last_fetch_leader_log_end_offset:
            state.last_caught_up_ms = max(state.last_caught_up_ms, state.last_fetch_ms)
        state.log_end_offset = fetch_offset
        state.last_fetch_leader_log_end_offset = leader_leo
        state.last_fetch_ms = now_ms
        self._maybe_expand_isr(replica_id, state)
        self._maybe_advance_hw()

    def _maybe_expand_isr(self, replica_id: int, state: _ReplicaState) -> None:
        if self._pending_isr is not None or replica_id in self.isr:
            return
        leo = state.log_end_offset
        if leo >= self._high_watermark and leo >= self._epoch_start_offset:
            self._propose_isr(self.isr + (replica_id,))

    def _out_of_sync_replicas(self, now_ms: int) -> list[int]:
        leader_leo = self.log.log_end_offset
        lag = self.config.replica_lag_time_max_ms
        out = []
        for replica in self.isr:
            state = self._followers.get(replica)
            if replica == self.node_id or state is None:
                continue
            if state.log_end_offset != leader_leo and now_ms - state.last_caught_up_ms > lag:
                out.append(replica)
        return out

    def _maybe_advance_hw(self) -> bool:
        if self.role is not Role.LEADER:
            return False
        new_hw = self.log.log_end_offset
        isr = self.isr if self._pending_isr is None else self.maximal_isr
        if len(isr) > 1:
            me = self.node_id
            followers = self._followers
            for replica in isr:
                if replica != me:
                    state = followers.get(replica)
                    new_hw = min(new_hw, state.log_end_offset if state else UNKNOWN_OFFSET)
        if new_hw <= self._high_watermark:
            return False
        self._set_high_watermark(new_hw)
        return True

    def _set_high_watermark(self, offset: int) -> None:
        self._high_watermark = offset
        self.log.on_high_watermark_updated(offset)
        self._complete_waiters()
        if self.on_high_watermark is not None:
            self.on_high_watermark(self)

    # --- leader: ISR changes through the controller --------------------------------------------

    def _propose_isr(self, new_isr: tuple[int, ...]) -> None:
        if self.alter_isr is None:
            return  # nobody to ask (a stand-alone broker): the ISR stays as it is
        change = IsrChange(self.topic, self.index, self.node_id, self.leader_epoch,
                           self.partition_epoch, new_isr)
        self._pending_isr = change
        self._resend_isr_at_ms = None
        log.info("%s-%d: proposing ISR %s (was %s) at leader epoch %d, partition epoch %d",
                 self.topic, self.index, list(new_isr), list(self.isr), self.leader_epoch,
                 self.partition_epoch)
        self.alter_isr(change)

    def complete_isr_change(
        self, change: IsrChange, error: ErrorCode | None, state: PartitionState | None, now_ms: int
    ) -> None:
        """The controller's answer to ``change``: the partition as it now stands, or an error
        (connection failures and timeouts are REQUEST_TIMED_OUT)."""
        if change is not self._pending_isr:
            return  # superseded by metadata or a newer proposal
        if error is None or error is ErrorCode.none:
            if (state is not None and state.leader == self.node_id
                    and state.leader_epoch == self.leader_epoch
                    and state.partition_epoch >= self.partition_epoch):
                self.isr = tuple(state.isr)
                self.partition_epoch = state.partition_epoch
                self._pending_isr = None
                self._maybe_advance_hw()
            # Otherwise the answer describes another leadership: the metadata will follow.
            return
        if error in _ISR_CHANGE_NOT_APPLIED:
            log.info("%s-%d: ISR change to %s refused (%s)", self.topic, self.index,
                     list(change.new_isr), error.name)
            self._pending_isr = None
            self._maybe_advance_hw()
        elif error in _ISR_CHANGE_STALE:
            log.info("%s-%d: ISR change to %s refused (%s); waiting for metadata", self.topic,
                     self.index, list(change.new_isr), error.name)
        else:
            # Outcome unknown: keep it pending (the controller may have applied it) and re-send.
            self._resend_isr_at_ms = now_ms + self.config.isr_change_retry_backoff_ms

    # --- follower ------------------------------------------------------------------------------

    def follower_request(self) -> EpochQuery | FetchPosition | None:
        """What the fetcher should send the leader for this partition next (None: nothing)."""
        if self.role is not Role.FOLLOWER or self.leader_id == NO_LEADER:
            return None
        plog = self.log
        latest = plog.leader_epochs.latest_epoch
        if self.fetch_state is FollowerFetchState.TRUNCATING:
            if plog.log_end_offset == plog.log_start_offset and latest == UNDEFINED_EPOCH:
                self.fetch_state = FollowerFetchState.FETCHING  # nothing to truncate
            else:
                # Without epochs of our own, ask for the leader's current epoch: the answer is
                # its LEO, and nothing past it can be right (Kafka's pre-KIP-101 fallback).
                epoch = latest if latest != UNDEFINED_EPOCH else self.leader_epoch
                return EpochQuery(self.leader_id, self.leader_epoch, epoch)
        return FetchPosition(self.leader_id, self.leader_epoch, plog.log_end_offset, latest,
                             plog.log_start_offset)

    def on_epoch_end_offset(
        self, query: EpochQuery, error: ErrorCode, epoch: int, end_offset: int, now_ms: int
    ) -> None:
        """The leader's OffsetForLeaderEpoch answer to ``query``: truncate where we diverge."""
        if not self._current_follower_request(query.leader_id, query.current_leader_epoch):
            return
        if self.fetch_state is not FollowerFetchState.TRUNCATING or error is not ErrorCode.none:
            return
        if self._truncate_to_divergence(epoch, end_offset):
            self.fetch_state = FollowerFetchState.FETCHING

    def on_fetch_response(
        self, request: FetchPosition, error: ErrorCode, high_watermark: int, log_start_offset: int,
        records: bytes | memoryview, diverging_epoch: tuple[int, int] | None, now_ms: int,
    ) -> int:
        """Apply the leader's answer to a fetch made with ``request``; returns the bytes appended.

        Stale answers (sent before a role change, or for an offset the log no longer ends at)
        are ignored. Raises LogError/RecordError when the leader sent unusable data.
        """
        if not self._current_follower_request(request.leader_id, request.current_leader_epoch):
            return 0
        plog = self.log
        if request.fetch_offset != plog.log_end_offset:
            return 0
        if error is ErrorCode.offset_out_of_range:
            if request.fetch_offset < log_start_offset:
                log.info("%s-%d: log ends at %d, below the leader's log start %d: starting over",
                         self.topic, self.index, plog.log_end_offset, log_start_offset)
                plog.truncate_fully_and_start_at(log_start_offset, now_ms)
                self._high_watermark = self._bounded_hw(self._high_watermark)
            else:
                self.fetch_state = FollowerFetchState.TRUNCATING  # we are ahead of the leader
            return 0
        if error is not ErrorCode.none:
            return 0
        if diverging_epoch is not None:
            self._truncate_to_divergence(*diverging_epoch)
            return 0
        appended = 0
        if records:
            appended = self._append_fetched(records, now_ms)
        new_hw = min(high_watermark, plog.log_end_offset)
        if new_hw > self._high_watermark:
            self._high_watermark = new_hw
        # The leader's DeleteRecords and retention move our log start too (never past our HW).
        target = min(log_start_offset, self._high_watermark)
        if target > plog.log_start_offset:
            plog.delete_records_before(target)
        return appended

    def _current_follower_request(self, leader_id: int, leader_epoch: int) -> bool:
        return (self.role is Role.FOLLOWER and self.leader_id == leader_id
                and self.leader_epoch == leader_epoch)

    def _append_fetched(self, records: bytes | memoryview, now_ms: int) -> int:
        # Fetched data is checked like recovered data (CRC, framing), not like produced data:
        # the cleaner keeps batches emptied by compaction, which validate_batches would refuse.
        headers, valid = scan_valid_prefix(records)
        if not headers:
            raise LogError(f"{self.topic}-{self.index}: the leader sent no intact batch "
                           f"({len(records)} bytes)")
        plog = self.log
        leo = plog.log_end_offset
        skip = 0
        while skip < len(headers) and headers[skip].next_offset <= leo:
            skip += 1  # already held (cannot happen with our own leader; harmless)
        headers = headers[skip:]
        if not headers:
            return 0
        if headers[0].base_offset < leo:
            # A batch straddling our LEO: the leader's batch boundaries differ from ours, so the
            # records from its base offset on are replaced by the leader's.
            self.truncate_to(headers[0].base_offset)
        start = headers[0].position
        view = memoryview(records)[start:valid]
        rebased = [attrs.evolve(h, position=h.position - start) for h in headers]
        plog.append_as_follower(view, rebased, now_ms)
        return valid - start

    def _truncate_to_divergence(self, leader_epoch: int, leader_end_offset: int) -> bool:
        """Kafka's getOffsetTruncationState: truncate given the leader's (epoch, end offset)
        for our latest epoch; returns whether truncation is complete."""
        plog = self.log
        leo = plog.log_end_offset
        if leader_end_offset == UNDEFINED_EPOCH_OFFSET:
            # The leader knows nothing of our epoch: fall back to our HW (only a leader without
            # any epoch answers so; ours always has its own).
            self.truncate_to(self._high_watermark)
            return True
        if leader_epoch == UNDEFINED_EPOCH:
            self.truncate_to(min(leader_end_offset, leo))
            return True
        own_epoch, own_end = plog.leader_epochs.end_offset_for(leader_epoch, leo)
        if own_end == UNDEFINED_EPOCH_OFFSET:
            # We have no epoch at or below the leader's answer.
            self.truncate_to(min(leader_end_offset, leo))
            return True
        if own_epoch != leader_epoch:
            # We do not know the epoch the leader named: cut to the end of our largest epoch
            # below it and ask again with that one.
            self.truncate_to(min(own_end, leo))
            return False
        self.truncate_to(min(own_end, leader_end_offset, leo))
        return True

    def truncate_to(self, offset: int) -> None:
        """Remove everything from ``offset`` on (the batch holding it goes whole)."""
        plog = self.log
        if offset >= plog.log_end_offset:
            plog.truncate_to(offset)  # trims an epoch that wrote nothing from the cache
            return
        before = plog.log_end_offset
        plog.truncate_to(offset)
        if self._high_watermark > plog.log_end_offset:
            # Only possible after an unclean election: committed records are being discarded.
            log.warning("%s-%d: truncating to %d, below the high watermark %d", self.topic,
                        self.index, plog.log_end_offset, self._high_watermark)
            self._high_watermark = plog.log_end_offset
        log.info("%s-%d: truncated from %d to %d", self.topic, self.index, before,
                 plog.log_end_offset)

    # --- OffsetForLeaderEpoch ----------------------------------------------------------------

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(largest epoch <= ``epoch``, where it ends in our log), or (-1, -1) when unknown."""
        return self.log.leader_epochs.end_offset_for(epoch, self.log.log_end_offset)

    # --- time ------------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Timers: ISR shrink, re-sending an unanswered ISR change, acks=all timeouts, and the
        HW checkpoint."""
        if self.role is Role.LEADER:
            if self._pending_isr is None:
                out = self._out_of_sync_replicas(now_ms)
                if out:
                    log.info("%s-%d: replica(s) %s out of sync for more than %d ms", self.topic,
                             self.index, out, self.config.replica_lag_time_max_ms)
                    self._propose_isr(tuple(r for r in self.isr if r not in out))
            elif self._resend_isr_at_ms is not None and now_ms >= self._resend_isr_at_ms:
                self._resend_isr_at_ms = None
                if self.alter_isr is not None:
                    self.alter_isr(self._pending_isr)
        if self._waiters:
            expired = [w for w in self._waiters if w.deadline_ms <= now_ms]
            if expired:
                self._waiters = [w for w in self._waiters if w.deadline_ms > now_ms]
                for waiter in expired:
                    waiter.callback(ErrorCode.request_timed_out)
        if now_ms >= self._next_hw_checkpoint_ms:
            self._next_hw_checkpoint_ms = now_ms + self.config.high_watermark_checkpoint_interval_ms
            self.checkpoint_high_watermark()

    def checkpoint_high_watermark(self) -> None:
        """Write the HW to replication-offset-checkpoint if it moved. Unlike Kafka's checkpoint
        files it is not fsynced (it is rewritten every few seconds for every partition whose HW
        moved, on the event loop): after a power loss it may be older, torn or missing, which
        only means a lower HW to start from, never a higher one."""
        if self._high_watermark != self._hw_checkpointed and write_offset_unsynced(
                self._hw_path, self._high_watermark):
            self._hw_checkpointed = self._high_watermark

    def _read_hw_checkpoint(self) -> int | None:
        try:
            return read_offset(self._hw_path)
        except (LogError, OSError):
            return None  # torn or unreadable: start from the log start, the safe side

    def close(self) -> None:
        """Answer waiting produces, checkpoint the HW and close the log."""
        self._fail_waiters(ErrorCode.not_leader_or_follower)
        self.checkpoint_high_watermark()
        self.log.close()

    def delete(self) -> None:
        """The partition is gone (DeleteTopics, or reassigned away): remove its directory."""
        self._fail_waiters(ErrorCode.not_leader_or_follower)
        self.role = Role.FOLLOWER
        self.leader_id = NO_LEADER
        self.log.delete()
