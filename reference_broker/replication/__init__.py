"""Replication: a partition's role (leader or follower), its high watermark, ISR and leader
epochs, and (in the driver) the fetchers that copy leaders' logs to followers."""

from reference_broker.replication.partition import (
    EpochQuery,
    FetchPosition,
    FollowerFetchState,
    FollowerRead,
    IsrChange,
    Partition,
    PartitionState,
    ReplicationConfig,
    ReplicationError,
    Role,
)

__all__ = [
    "EpochQuery",
    "FetchPosition",
    "FollowerFetchState",
    "FollowerRead",
    "IsrChange",
    "Partition",
    "PartitionState",
    "ReplicationConfig",
    "ReplicationError",
    "Role",
]
