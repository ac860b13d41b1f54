"""Choosing a partition leader, clean or unclean.

Kafka's rules (PartitionChangeBuilder in KRaft):

* **Clean election**: the first replica, in replica order, that is in the ISR and alive. Every
  ISR member has every committed record, so nothing acknowledged with acks=all is lost.
* **Unclean election** (``unclean.leader.election.enable=true``, topic or broker level): when no
  ISR member is alive, the first live replica outside the ISR becomes leader and the ISR shrinks
  to it. Records it never received are gone for good, including acknowledged ones: the seed's
  "message 3 never made it to broker 1".
* **No leader**: with unclean election off and no live ISR member, the partition goes offline
  (leader -1) and keeps its last ISR, so that the first ISR member to come back leads again
  without loss. The ISR is never shrunk to empty.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from reference_broker.metadata.records import NO_LEADER


@attrs.frozen(slots=True)
class Election:
    leader: int
    isr: tuple[int, ...]
    unclean: bool = False


def elect_leader(
    replicas: Sequence[int], isr: Sequence[int], live: Collection[int], unclean_allowed: bool
) -> Election:
    """The leader and ISR a partition gets, given which brokers are alive."""
    for replica in replicas:
        if replica in isr and replica in live:
            return Election(replica, _shrink_isr(isr, live))
    if unclean_allowed:
        for replica in replicas:
            if replica in live:
                return Election(replica, (replica,), unclean=True)
    return Election(NO_LEADER, tuple(isr))


def _shrink_isr(isr: Sequence[int], live: Collection[int]) -> tuple[int, ...]:
    """Drop dead brokers from the ISR, keeping at least one member (never an empty ISR)."""
    alive = tuple(node for node in isr if node in live)
    return alive or tuple(isr[:1])
