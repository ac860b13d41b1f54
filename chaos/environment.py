"""The broker under a campaign, with its proxies: a target plus its topology.

An :class:`Environment` is a started target (a ``harness.targets.proxied.ProxiedTarget``) whose
network paths go through the proxies of a :class:`~chaos.topology.Topology`; the campaign, the
nemeses and the observer ask the target (``env.target``) for what every target answers:

* its server nodes by name (``b1``, ``b2``, ..., ``controller``) and the client address;
* process control per node (SIGKILL, SIGSTOP/SIGCONT, clean stop and start, wiped data) when
  the harness launched the processes;
* who leads a partition *now* and which nodes hold its replicas, read from Metadata at the
  brokers' real addresses (around the proxies), so that a fault aimed at "the leader" hits the
  broker that leads when it starts;
* waiting for the cluster to recover after the faults are healed.

What differs between targets (how the reference cluster, Apache Kafka, Tansu and brokers
someone else runs put their paths behind proxies, name their nodes and find leaders) is each
target's own, in ``harness/targets/``; :data:`ENVIRONMENTS` lists every target that can run
behind proxies (``harness.targets.TARGETS``), so nothing here names one.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import attrs

from chaos.topology import Topology
from harness.targets import TARGETS
from harness.targets.base import TargetError, TargetOptions
from harness.targets.proxied import (
    PartitionLeadership,
    ProxiedTarget,
    freshest,
)

# Timing for campaigns, on the reference cluster and on Kafka alike: failures are noticed in
# 1.5 s instead of Kafka's 9 s (a broker is fenced after 9 s without a heartbeat, a follower
# leaves the ISR after 30 s, backs off 1 s after a fetch error and waits 30 s for a fetch
# answer), so a campaign of a few tens of seconds sees many failovers. Each target adds its own
# (``campaign_timing``); every key can be overridden (--override).
CAMPAIGN_TIMING: Mapping[str, str] = {
    "broker.session.timeout.ms": "1500",
    "broker.heartbeat.interval.ms": "300",
    "replica.lag.time.max.ms": "3000",
    "replica.fetch.wait.max.ms": "200",
    "replica.fetch.backoff.ms": "100",
    "replica.socket.timeout.ms": "3000",
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.num.partitions": "3",
}

ENVIRONMENTS: Mapping[str, type[ProxiedTarget]] = {
    name: kind for name, kind in TARGETS.items() if issubclass(kind, ProxiedTarget)
}
"""Every target a chaos campaign runs against, by name."""


class Environment:
    """A started target behind its proxies; see the module docstring. A context manager."""

    def __init__(self, target: ProxiedTarget, topology: Topology) -> None:
        self.target = target
        self.topology = topology

    def start(self) -> Environment:
        self.target.start()
        return self

    def close(self) -> None:
        self.target.stop()

    def partition_state(self, topic: str, partition: int) -> PartitionLeadership | None:
        """The view of the running broker that knows the newest leader epoch."""
        return freshest(self.target.partition_views(topic, partition))

    # --- process control, by node name (what the nemesis does to a node) ----------------------------

    def kill(self, node: str) -> None:
        self.target.node_process(node).kill()

    def pause(self, node: str) -> None:
        self.target.node_process(node).pause()

    def resume(self, node: str) -> None:
        self.target.node_process(node).resume()

    def stop(self, node: str) -> None:
        self.target.node_process(node).stop()

    def start_node(self, node: str) -> None:
        self.target.start_node(node)

    def wipe(self, node: str) -> None:
        self.target.wipe_node(node)

    def running(self, node: str) -> bool:
        return self.target.node_running(node)

    def describe(self) -> dict[str, Any]:
        return {**self.target.describe(), "nodes": self.target.nodes, "bootstrap": self.target.bootstrap,
                "proxies": self.topology.describe()}

    def __enter__(self) -> Environment:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def make_environment(target: str, topology: Topology, options: TargetOptions) -> Environment:
    """An environment by target name (not started). A target whose brokers the harness
    configures gets the campaign timing under the user's overrides."""
    kind = ENVIRONMENTS.get(target)
    if kind is None:
        raise TargetError(f"chaos campaigns run against {', '.join(ENVIRONMENTS)}, not {target!r}")
    if kind.configures_brokers:
        options = attrs.evolve(options, overrides={**CAMPAIGN_TIMING, **kind.campaign_timing, **options.overrides})
    return Environment(kind.behind(topology, options), topology)

