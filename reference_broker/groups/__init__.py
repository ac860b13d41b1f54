"""Consumer groups: the group coordinator and committed offsets (``__consumer_offsets``).

:mod:`~reference_broker.groups.coordinator` is the state machine (read its theory of operation
first), :mod:`~reference_broker.groups.group` the per-group bookkeeping,
:mod:`~reference_broker.groups.log_format` the records of the internal topic and
:mod:`~reference_broker.groups.storage` where they are kept.
"""

from reference_broker.groups.coordinator import (
    GroupConfig,
    GroupCoordinator,
    JoinRequest,
    JoinResult,
    LeavingMember,
    SyncResult,
)
from reference_broker.groups.group import GroupState
from reference_broker.groups.log_format import OFFSETS_TOPIC, OffsetValue, partition_for
from reference_broker.groups.storage import MemoryOffsetsLog, OffsetsLog, TopicOffsetsLog

__all__ = [
    "OFFSETS_TOPIC",
    "GroupConfig",
    "GroupCoordinator",
    "GroupState",
    "JoinRequest",
    "JoinResult",
    "LeavingMember",
    "MemoryOffsetsLog",
    "OffsetValue",
    "OffsetsLog",
    "SyncResult",
    "TopicOffsetsLog",
    "partition_for",
]
