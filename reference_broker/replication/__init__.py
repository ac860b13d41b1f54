"""Replication: a partition's role (leader or follower), its high watermark and ISR."""

from reference_broker.replication.partition import Partition, Role

__all__ = ["Partition", "Role"]
