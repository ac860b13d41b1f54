"""The broker settings the group coordinator obeys, and the length limit of the ids it stores.

Membership (:mod:`~reference_broker.groups.membership`), offsets
(:mod:`~reference_broker.groups.offsets`) and persistence
(:mod:`~reference_broker.groups.persistence`) each read a few of these; they live apart so that
none of those modules has to import another just for its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

# Ids go into int16-length strings of __consumer_offsets records; leave room for the member-id
# suffix ("-" and a UUID). Kafka would fail to serialize longer ones.
MAX_ID_BYTES = 32767 - 64


def too_long(text: str | None) -> bool:
    """Whether ``text`` cannot be stored in a ``__consumer_offsets`` record (see MAX_ID_BYTES)."""
    return text is not None and len(text.encode()) > MAX_ID_BYTES


@attrs.frozen(slots=True)
class GroupConfig:
    """The broker settings the coordinator obeys (Kafka's names in comments)."""

    min_session_timeout_ms: int = 6000  # group.min.session.timeout.ms
    max_session_timeout_ms: int = 1_800_000  # group.max.session.timeout.ms
    max_size: int = 2**31 - 1  # group.max.size
    initial_rebalance_delay_ms: int = 3000  # group.initial.rebalance.delay.ms
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000  # offsets.retention.ms
    offsets_retention_check_interval_ms: int = 600_000  # offsets.retention.check.interval.ms
    offset_metadata_max_bytes: int = 4096  # offset.metadata.max.bytes
    offsets_commit_timeout_ms: int = 5000  # offsets.commit.timeout.ms

    @classmethod
    def from_broker(cls, get: Callable[[str], Any]) -> GroupConfig:
        return cls(
            min_session_timeout_ms=int(get("group.min.session.timeout.ms")),
            max_session_timeout_ms=int(get("group.max.session.timeout.ms")),
            max_size=int(get("group.max.size")),
            initial_rebalance_delay_ms=int(get("group.initial.rebalance.delay.ms")),
            offsets_retention_ms=int(get("offsets.retention.ms")),
            offsets_retention_check_interval_ms=int(get("offsets.retention.check.interval.ms")),
            offset_metadata_max_bytes=int(get("offset.metadata.max.bytes")),
            offsets_commit_timeout_ms=int(get("offsets.commit.timeout.ms")),
        )
