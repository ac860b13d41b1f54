"""The transactional ids this node coordinates and their records (Kafka's
TransactionStateManager): which ``__transaction_state`` partitions are loaded at which
coordinator epoch, appending a transition and applying it once replicated, loading and unloading
a partition, and finding timed-out transactions and expired transactional ids.

* The coordinator epoch of a partition is the leader epoch of its ``__transaction_state``
  partition when this node became its leader (KIP-98). It goes into every marker, so a partition
  leader refuses markers from a deposed coordinator, and a write that completes after the
  partition was unloaded and loaded again (another epoch) is not applied: NOT_COORDINATOR.
* While a partition loads, its ids get COORDINATOR_LOAD_IN_PROGRESS; a partition not loaded
  here gets NOT_COORDINATOR (the client looks the coordinator up again).
* Loading replays the partition (the last record of a key wins, a tombstone deletes), then
  every transaction found in PrepareCommit or PrepareAbort has its markers written again: the
  outcome was decided and replicated, but its markers may not all have been written.
* A failed append clears the pending state (no transition happened) unless the caller asks to
  retry it, and the append error becomes what the client acts on (see :data:`APPEND_ERRORS`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.transactions.config import TransactionConfig
from reference_broker.transactions.log_format import (
    TRANSACTION_STATE_TOPIC,
    FormatError,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    partition_for,
)
from reference_broker.transactions.metadata import TransactionMetadata, TxnTransit
from reference_broker.transactions.state import TransactionState
from reference_broker.transactions.storage import TransactionStateLog

log = logging.getLogger(__name__)

_S = TransactionState

# TransactionStateManager.appendTransactionToLog's updateCacheCallback: what a failed append to
# __transaction_state becomes for the client (REQUEST_TIMED_OUT too, so that it retries).
APPEND_ERRORS = {
    ErrorCode.unknown_topic_or_partition: ErrorCode.coordinator_not_available,
    ErrorCode.not_enough_replicas: ErrorCode.coordinator_not_available,
    ErrorCode.not_enough_replicas_after_append: ErrorCode.coordinator_not_available,
    ErrorCode.request_timed_out: ErrorCode.coordinator_not_available,
    ErrorCode.not_leader_or_follower: ErrorCode.not_coordinator,
    ErrorCode.kafka_storage_error: ErrorCode.not_coordinator,
    ErrorCode.message_too_large: ErrorCode.unknown_server_error,
    ErrorCode.record_list_too_large: ErrorCode.unknown_server_error,
}

ErrorCallback = Callable[[ErrorCode], None]


@attrs.define(slots=True)
class PartitionEntry:
    """The loaded transactional ids of one ``__transaction_state`` partition."""

    coordinator_epoch: int
    transactions: dict[str, TransactionMetadata] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Owned:
    """A transactional id's metadata with the coordinator epoch of its partition."""

    coordinator_epoch: int
    metadata: TransactionMetadata


class TransactionStateManager:
    """The loaded partitions, by partition number, and the loads in progress."""

    def __init__(self, config: TransactionConfig, storage: TransactionStateLog) -> None:
        self.config = config
        self._storage = storage
        self._partitions = config.state_log_num_partitions
        self.cache: dict[int, PartitionEntry] = {}
        self.loading: set[tuple[int, int]] = set()  # (partition, coordinator epoch)

    def partition_for(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self._partitions)

    # --- lookups -------------------------------------------------------------------------------

    def get(self, transactional_id: str) -> ErrorCode | Owned | None:
        """The id's metadata, None if this node coordinates it but does not know it, or
        COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR (Kafka's getTransactionState)."""
        partition = self.partition_for(transactional_id)
        if any(p == partition for p, _ in self.loading):
            return ErrorCode.coordinator_load_in_progress
        entry = self.cache.get(partition)
        if entry is None:
            return ErrorCode.not_coordinator
        metadata = entry.transactions.get(transactional_id)
        return None if metadata is None else Owned(entry.coordinator_epoch, metadata)

    def put_if_absent(self, metadata: TransactionMetadata) -> ErrorCode | Owned:
        """Add a new id's metadata, unless one is there already (then that one)."""
        found = self.get(metadata.transactional_id)
        if found is not None:
            return found
        entry = self.cache[self.partition_for(metadata.transactional_id)]
        entry.transactions[metadata.transactional_id] = metadata
        return Owned(entry.coordinator_epoch, metadata)

    def all_loaded(self) -> Iterator[tuple[int, TransactionMetadata]]:
        """(coordinator epoch, metadata) of every loaded id."""
        for entry in self.cache.values():
            for metadata in entry.transactions.values():
                yield entry.coordinator_epoch, metadata

    # --- appending a transition ----------------------------------------------------------------

    def append(
        self, transactional_id: str, coordinator_epoch: int, transit: TxnTransit, now_ms: int,
        callback: ErrorCallback, retry_on_error: Callable[[ErrorCode], bool] = lambda _: False,
    ) -> None:
        """Write ``transit`` and, once replicated, apply it to the id's metadata; ``callback``
        gets NONE or the error for the client (Kafka's appendTransactionToLog)."""
        found = self.get(transactional_id)
        if isinstance(found, ErrorCode):
            callback(found)
            return
        if found is None or found.coordinator_epoch != coordinator_epoch:
            callback(ErrorCode.not_coordinator)
            return
        try:
            record = (encode_key(transactional_id),
                      encode_value(transit.value(), self.config.log_value_version))
        except FormatError as exc:  # an id too long for the record format
            log.warning("cannot encode the state of transactional id %s: %s", transactional_id[:100], exc)
            found.metadata.pending = None
            callback(ErrorCode.invalid_request)
            return

        def done(append_error: ErrorCode | None) -> None:
            error = ErrorCode.none if append_error is None else APPEND_ERRORS.get(append_error, append_error)
            now = self.get(transactional_id)
            if error is ErrorCode.none:
                if isinstance(now, ErrorCode):
                    error = now
                elif now is None or now.coordinator_epoch != coordinator_epoch:
                    error = ErrorCode.not_coordinator  # unloaded (and maybe loaded again) meanwhile
                else:
                    now.metadata.complete_transition(transit)
            elif isinstance(now, Owned) and now.coordinator_epoch == coordinator_epoch:
                if not retry_on_error(error):
                    now.metadata.pending = None
            callback(error)

        self._storage.append_committed(
            self.partition_for(transactional_id), [record], now_ms,
            now_ms + self.config.append_timeout_ms, done,
        )

    # --- expiring transactional ids ------------------------------------------------------------

    def remove_expired(self, now_ms: int) -> None:
        """transactional.id.expiration.ms: tombstone every id with no open transaction that has
        not changed for that long, and forget it once the tombstone is replicated (Kafka's
        removeExpiredTransactionalIds)."""
        for partition, entry in list(self.cache.items()):
            expired = [
                (metadata, metadata.prepare_dead())
                for metadata in entry.transactions.values()
                if metadata.pending is None and metadata.state.expiration_allowed
                and metadata.last_update_ms <= now_ms - self.config.transactional_id_expiration_ms
            ]
            if not expired:
                continue
            epoch = entry.coordinator_epoch

            def removed(error: ErrorCode | None, expired: list[tuple[TransactionMetadata, TxnTransit]]
                        = expired, partition: int = partition, epoch: int = epoch) -> None:
                current = self.cache.get(partition)
                for metadata, transit in expired:
                    if current is None:
                        continue
                    stored = current.transactions.get(metadata.transactional_id)
                    if stored is not metadata:
                        continue
                    if (error is None and current.coordinator_epoch == epoch
                            and metadata.pending is _S.DEAD
                            and metadata.producer_epoch == transit.producer_epoch):
                        del current.transactions[metadata.transactional_id]
                    else:
                        metadata.pending = None

            self._storage.append_committed(
                partition, [(encode_key(m.transactional_id), None) for m, _ in expired], now_ms,
                now_ms + self.config.append_timeout_ms, removed,
            )

    # --- which partitions are ours -------------------------------------------------------------

    def begin_loading(self, partition: int, coordinator_epoch: int) -> None:
        """This node leads ``partition`` from ``coordinator_epoch`` on; its ids answer
        COORDINATOR_LOAD_IN_PROGRESS until :meth:`load` has replayed it."""
        self.loading.add((partition, coordinator_epoch))

    def load(self, partition: int, coordinator_epoch: int) -> list[TransactionMetadata]:
        """Replay ``partition`` into the cache at ``coordinator_epoch`` (unless the load was
        cancelled by an unload); the transactions found in PrepareCommit / PrepareAbort, whose
        markers must be written again."""
        self.loading.add((partition, coordinator_epoch))
        loaded: dict[str, TransactionMetadata] = {}
        skipped = 0
        for key, value in self._storage.replay_partition(partition):
            try:
                transactional_id = decode_key(key)
                if value is None:
                    loaded.pop(transactional_id, None)
                else:
                    loaded[transactional_id] = TransactionMetadata.from_value(
                        transactional_id, decode_value(value))
            except FormatError as exc:
                skipped += 1
                log.warning("skipping undecodable %s-%d record: %s", TRANSACTION_STATE_TOPIC, partition, exc)
        if (partition, coordinator_epoch) not in self.loading:
            return []
        self.loading.discard((partition, coordinator_epoch))
        self.cache[partition] = PartitionEntry(coordinator_epoch, loaded)
        log.log(logging.INFO if loaded or skipped else logging.DEBUG,
                "coordinating the transactions of %s-%d at epoch %d (%d loaded, %d skipped)",
                TRANSACTION_STATE_TOPIC, partition, coordinator_epoch, len(loaded), skipped)
        return [m for m in loaded.values() if m.state.is_prepare]

    def unload(self, partition: int, coordinator_epoch: int | None = None) -> None:
        """Forget ``partition`` (another node leads it now): its loads in progress (of
        ``coordinator_epoch``, or all) and its cached ids."""
        self.loading = {
            (p, e) for p, e in self.loading
            if p != partition or (coordinator_epoch is not None and e != coordinator_epoch)
        }
        entry = self.cache.pop(partition, None)
        if entry is not None:
            log.info("no longer coordinating the transactions of %s-%d (%d unloaded)",
                     TRANSACTION_STATE_TOPIC, partition, len(entry.transactions))
