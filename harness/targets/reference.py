"""The ``reference`` target: the harness launches kconform's own reference broker.

It runs ``python -m reference_broker`` as a real process on a free loopback port with its own
data directory (removed on exit), exactly as users run it. The harness chooses its
configuration; by default only ``group.initial.rebalance.delay.ms`` is lowered to 0 (as Kafka's
own integration tests do) so group checks do not wait three seconds per new group; every other
key keeps Kafka's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from harness.targets.base import TargetError, TargetOptions
from harness.targets.proxied import CONTROLLER, ChaosEnvironmentError, ClusterTarget, Links
from launch.broker_process import BrokerProcess
from launch.reference_cluster import RESERVED_KEYS, ReferenceCluster

FAST_GROUPS: Mapping[str, str] = {"group.initial.rebalance.delay.ms": "0"}


class ReferenceTarget(ClusterTarget):
    """One reference broker process (``brokers=1``), or a controller and ``brokers`` broker
    processes (``launch.reference_cluster.ReferenceCluster``). Behind proxies (a chaos
    campaign) it is always a cluster, with every path proxied: client, broker-to-broker in both
    directions, broker-to-controller."""

    name = "reference"
    reserved_keys: ClassVar[frozenset[str]] = RESERVED_KEYS
    campaign_timing: ClassVar[Mapping[str, str]] = FAST_GROUPS

    @classmethod
    def from_options(cls, options: TargetOptions) -> Self:
        return cls(brokers=options.brokers)

    @classmethod
    def behind(cls, links: Links, options: TargetOptions) -> Self:
        return cls(options.brokers, options.overrides, link_address=links.cluster_link_address)

    def __init__(self, brokers: int = 1, overrides: Mapping[str, str] | None = None,
                 data_dir: Path | None = None, log_level: str = "WARNING",
                 link_address: Any | None = None) -> None:
        """``link_address`` (``launch.reference_cluster.LinkAddress``) redirects the cluster's
        network paths, e.g. through Toxiproxy proxies; with it even one broker runs as a
        cluster (a controller and the broker), so that every path has a link."""
        super().__init__()
        if brokers < 1:
            raise TargetError(f"a reference target needs at least one broker, not {brokers}")
        self.brokers = brokers
        self.link_address = link_address
        self.overrides = {**FAST_GROUPS, **(overrides or {})}
        self.data_dir = data_dir
        self.log_level = log_level
        self._broker: BrokerProcess | None = None
        self._cluster: ReferenceCluster | None = None

    @property
    def bootstrap(self) -> str:
        if self._cluster is not None:
            return str(self._cluster.bootstrap)
        return self._running(self._broker).bootstrap

    def _start(self) -> None:
        if self.brokers == 1 and self.link_address is None:
            self._broker = BrokerProcess(overrides=self.overrides, data_dir=self.data_dir,
                                         log_level=self.log_level)
            self._broker.start()
            return
        self._cluster = ReferenceCluster(self.brokers, overrides=self.overrides, base_dir=self.data_dir,
                                 log_level=self.log_level, link_address=self.link_address)
        self._cluster.start()
        self._cluster.wait_ready()

    def _stop(self) -> None:
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    @property
    def cluster(self) -> ReferenceCluster | None:
        """The ``ReferenceCluster`` of a multi-broker (or redirected) target, once started."""
        return self._cluster

    @property
    def nodes(self) -> list[str]:
        return [*self.broker_nodes, CONTROLLER]

    def wipe_node(self, node: str) -> None:
        if node == CONTROLLER:
            raise ChaosEnvironmentError("wiping the controller loses the cluster's metadata: not supported")
        super().wipe_node(node)

    @property
    def process(self) -> BrokerProcess | None:
        """The broker process of a single-node target."""
        return self._broker

    def restart(self) -> None:
        if self._cluster is not None:
            self._cluster.stop_all()
            self._cluster.start()
            self._cluster.wait_ready()
        else:
            self._running(self._broker).restart()

    def kill(self) -> None:
        if self._broker is not None:
            self._broker.kill()
        if self._cluster is not None:
            self._cluster.kill_all()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "brokers": self.brokers, "overrides": dict(self.overrides),
                "pids": [self._broker.pid] if self._broker is not None else
                [n.pid for n in self._cluster.nodes] if self._cluster is not None else []}
