"""One partition replica hosted by this broker, and the role the cluster metadata gives it.

The metadata image decides who leads each partition at which leader epoch; the broker applies
that decision with :meth:`Partition.become_leader` / :meth:`Partition.become_follower`. Until
replication lands, a partition is led by this node alone: its ISR is itself and its high
watermark is its log end offset.
"""

from __future__ import annotations

import enum

import attrs

from reference_broker.log import PartitionLog


class Role(enum.Enum):
    LEADER = "leader"
    FOLLOWER = "follower"


@attrs.define(slots=True)
class Partition:
    """A replica of ``topic``-``index`` on this broker."""

    topic: str
    index: int
    log: PartitionLog
    role: Role = Role.LEADER
    leader_id: int = -1
    leader_epoch: int = 0
    partition_epoch: int = 0
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()

    def become_leader(
        self, node_id: int, leader_epoch: int, partition_epoch: int,
        replicas: tuple[int, ...], isr: tuple[int, ...], now_ms: int,
    ) -> None:
        self.role = Role.LEADER
        self.leader_id = node_id
        self.leader_epoch = leader_epoch
        self.partition_epoch = partition_epoch
        self.replicas = replicas
        self.isr = isr

    def become_follower(
        self, leader_id: int, leader_epoch: int, partition_epoch: int,
        replicas: tuple[int, ...], isr: tuple[int, ...], now_ms: int,
    ) -> None:
        self.role = Role.FOLLOWER
        self.leader_id = leader_id
        self.leader_epoch = leader_epoch
        self.partition_epoch = partition_epoch
        self.replicas = replicas
        self.isr = isr

    @property
    def high_watermark(self) -> int:
        return self.log.log_end_offset

    @property
    def last_stable_offset(self) -> int:
        return self.high_watermark

    @property
    def isr_size(self) -> int:
        return max(1, len(self.isr))
