"""Distinct types for the numbers that are easy to confuse: offsets, partitions, nodes, generations.

They are `NewType`s (free at run time) so mypy rejects passing a partition where an offset is
expected. `TopicPartition` names one partition of one topic, the unit every Kafka guarantee is
stated for ("ordering is guaranteed within a partition": Kafka documentation, section 1.1,
"Topics and Logs").
"""

from __future__ import annotations

from typing import NewType

import attrs

Offset = NewType("Offset", int)
"""A position in a partition log (Kafka documentation 1.1: "a sequential id number called the offset")."""

PartitionId = NewType("PartitionId", int)
"""The number of a partition within its topic."""

NodeId = NewType("NodeId", int)
"""A broker's `node.id` (KRaft) or `broker.id`."""

GenerationId = NewType("GenerationId", int)
"""A consumer group generation: incremented by the coordinator at every completed rebalance."""

MemberId = NewType("MemberId", str)
"""A consumer group member id as assigned by the coordinator (KIP-394)."""

NO_OFFSET = Offset(-1)
"""What Kafka answers for "no offset" (no committed offset, no record found by timestamp)."""


@attrs.frozen(order=True)
class TopicPartition:
    """One partition of one topic."""

    topic: str
    partition: PartitionId

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"
