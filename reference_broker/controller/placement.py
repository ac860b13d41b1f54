"""Where the replicas of a new partition go.

Kafka's rack-unaware assignment (AdminUtils.assignReplicasToBrokers) spreads leaders evenly by
starting partition p's replica list at broker ``start + p`` and taking the following brokers.
Kafka draws ``start`` at random; here it is derived from the topic name so that a cluster run
from a seed places replicas the same way every time.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence


class PlacementError(ValueError):
    """More replicas asked for than there are brokers (INVALID_REPLICATION_FACTOR)."""


def assign_replicas(
    topic: str, first_partition: int, count: int, replication_factor: int, brokers: Sequence[int]
) -> list[tuple[int, ...]]:
    """Replica lists for partitions ``first_partition .. first_partition + count - 1``."""
    nodes = sorted(brokers)
    if replication_factor > len(nodes):
        raise PlacementError(
            f"Replication factor: {replication_factor} larger than available brokers: {len(nodes)}."
        )
    start = zlib.crc32(topic.encode()) % len(nodes)
    return [
        tuple(nodes[(start + p + j) % len(nodes)] for j in range(replication_factor))
        for p in range(first_partition, first_partition + count)
    ]
