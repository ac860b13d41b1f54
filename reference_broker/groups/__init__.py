"""Consumer groups: the group coordinator and committed offsets (``__consumer_offsets``).

:mod:`~reference_broker.groups.coordinator` is the coordinator callers use (start there), over
:mod:`~reference_broker.groups.membership` (joins, syncs and rebalances: read its theory of
operation first), :mod:`~reference_broker.groups.offsets` (committed offsets) and
:mod:`~reference_broker.groups.persistence` (their records, and loading a partition's groups);
:mod:`~reference_broker.groups.group` is the per-group bookkeeping,
:mod:`~reference_broker.groups.config` the settings, :mod:`~reference_broker.groups.log_format`
the records of the internal topic and :mod:`~reference_broker.groups.storage` where they are
kept.
"""

from reference_broker.groups.config import GroupConfig
from reference_broker.groups.coordinator import GroupCoordinator
from reference_broker.groups.group import GroupState
from reference_broker.groups.log_format import OFFSETS_TOPIC, OffsetValue, partition_for
from reference_broker.groups.membership import JoinRequest, JoinResult, LeavingMember, SyncResult
from reference_broker.groups.storage import MemoryOffsetsLog, OffsetsLog, TopicOffsetsLog, TxnProducer

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
    "TxnProducer",
    "partition_for",
]
