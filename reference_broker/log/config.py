"""The settings one partition log obeys, already resolved from broker defaults and topic overrides.

The log package sees only this object; how Kafka's broker keys (``log.segment.bytes``) map to
topic keys (``segment.bytes``) and which of ``log.retention.ms|minutes|hours`` wins is settled in
:mod:`reference_broker.config` before a log ever opens.
"""

from __future__ import annotations

import attrs

UNLIMITED = -1
NEVER = 2**63 - 1  # Kafka's Long.MAX_VALUE, the "never" of flush intervals


@attrs.frozen(slots=True)
class LogConfig:
    """Kafka's topic-level log settings, named after the topic keys."""

    segment_bytes: int = 1024 * 1024 * 1024  # segment.bytes
    segment_ms: int = 7 * 24 * 3600 * 1000  # segment.ms
    retention_bytes: int = UNLIMITED  # retention.bytes
    retention_ms: int = 7 * 24 * 3600 * 1000  # retention.ms; -1 keeps forever
    cleanup_policy: frozenset[str] = frozenset({"delete"})  # cleanup.policy
    delete_retention_ms: int = 24 * 3600 * 1000  # delete.retention.ms (tombstone and marker lifetime)
    min_compaction_lag_ms: int = 0  # min.compaction.lag.ms
    min_cleanable_dirty_ratio: float = 0.5  # min.cleanable.dirty.ratio
    max_message_bytes: int = 1048588  # max.message.bytes
    flush_messages: int = NEVER  # flush.messages
    flush_ms: int = NEVER  # flush.ms
    index_interval_bytes: int = 4096  # index.interval.bytes
    segment_index_bytes: int = 10 * 1024 * 1024  # segment.index.bytes
    message_timestamp_type: str = "CreateTime"  # message.timestamp.type

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy
