"""One Toxiproxy proxy per directed network path, so that any partition shape can be cut.

Theory of operation. A campaign puts a proxy on every path it may want to break:

* ``clients -> bJ``: what broker J *advertises* to clients (Kafka clients bypass a proxy
  unless the broker tells them its address: the seed's advertised-listener scenario);
* ``bI -> bJ``: broker I fetching from broker J (replication), one proxy per direction;
* ``bI -> controller``: broker I's registration, heartbeats and metadata fetches (in a KRaft
  cluster in combined mode, where every node is also a controller, ``bI -> bJ`` of kind
  ``controller``: Raft traffic to node J's controller and heartbeats when J is active).

Nodes are named ``b<id>`` (brokers) and ``controller``; ``clients`` stands for every client of
the campaign. A path is a :class:`ProxyLink` keyed by its (source, target, kind): two nodes
may be joined by several paths (replication and controller traffic of combined nodes). A fault cuts a
path by disabling its proxy (its connections are closed, new ones refused) or slows it with a
toxic; several faults may hold the same path down at once, so disabling is counted per fault
and a path comes back only when no fault holds it any more.

:meth:`Topology.heal` is the way out of everything: every proxy enabled, every toxic removed
(``POST /reset`` when the server is ours, otherwise proxy by proxy, so that other users of a
shared server are left alone). :meth:`Topology.close` deletes every proxy it created.

For a launched reference cluster, :meth:`Topology.cluster_link_address` is the
``link_address`` hook of ``launch.reference_cluster.ReferenceCluster``: the cluster asks it for
every link before anything starts, and it answers with a new proxy's listen address.
:meth:`Topology.combined_link_address` is the same hook for clusters whose controllers live in
the broker nodes (``launch.kafka_cluster.KafkaCluster``): a controller link leads to a node.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType

import attrs

from chaos.toxiproxy import ToxiproxyControl
from harness.targets.proxied import CLIENTS, CONTROLLER, broker_name
from launch.reference_cluster import Address, Link, LinkKind
from launch.toxiproxy import ToxiproxyError

_NAMES = itertools.count(1)


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host, int(port)


@attrs.frozen
class ProxyLink:
    """One proxied, directed path: ``source`` connects to ``target`` through ``proxy``."""

    source: str
    target: str
    kind: str  # "client", "replication" or "controller"
    proxy: str  # the Toxiproxy proxy's name
    listen: str  # HOST:PORT the proxy listens on (what the source is told)
    upstream: str  # HOST:PORT of the real target

    def __str__(self) -> str:
        return f"{self.source}->{self.target}"


class Topology:
    """The proxies of one campaign on one Toxiproxy server; a context manager (closes them)."""

    def __init__(self, control: ToxiproxyControl, *, owns_server: bool = False,
                 prefix: str | None = None) -> None:
        self.control = control
        self.owns_server = owns_server
        self.prefix = prefix or f"kconform-{os.getpid()}-{next(_NAMES)}"
        self.links: dict[tuple[str, str, str], ProxyLink] = {}  # (source, target, kind) -> path
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}  # disabled path's proxy -> faults holding it

    # --- building ------------------------------------------------------------------------------

    def add(self, source: str, target: str, kind: str, upstream: str,
            listen: str = "127.0.0.1:0") -> ProxyLink:
        """Create the proxy of path ``source -> target`` (``listen`` port 0: a free one)."""
        key = (source, target, kind)
        if key in self.links:
            raise ValueError(f"the {kind} path {source}->{target} already has a proxy")
        suffix = "" if not any(s == source and t == target for s, t, _ in self.links) else f"-{kind}"
        name = f"{self.prefix}-{source}-to-{target}{suffix}"
        info = self.control.create_proxy(name, upstream, listen)
        link = ProxyLink(source, target, kind, name, info.listen, upstream)
        self.links[key] = link
        return link

    def cluster_link_address(self, link: Link, address: Address) -> Address:
        """``ReferenceCluster``'s ``link_address``: a proxy for ``link``, upstream ``address``."""
        target = CONTROLLER if link.kind is LinkKind.CONTROLLER else broker_name(link.target)
        source = CLIENTS if link.source is None else broker_name(link.source)
        kind = {LinkKind.CLIENT: "client", LinkKind.CONTROLLER: "controller",
                LinkKind.REPLICATION: "replication"}[link.kind]
        proxy = self.add(source, target, kind, f"{address[0]}:{address[1]}")
        return _address(proxy.listen)

    def combined_link_address(self, link: Link, address: Address, listen: str = "127.0.0.1:0") -> Address:
        """The ``link_address`` hook for combined broker+controller nodes (KRaft combined
        mode): ``Link(CONTROLLER, i, j)`` is the path ``bI -> bJ`` of kind ``controller``,
        beside the replication path ``bI -> bJ``; isolating node J cuts both. ``listen``: the
        proxy's address (port 0: Toxiproxy picks one)."""
        source = CLIENTS if link.source is None else broker_name(link.source)
        kind = {LinkKind.CLIENT: "client", LinkKind.CONTROLLER: "controller",
                LinkKind.REPLICATION: "replication"}[link.kind]
        proxy = self.add(source, broker_name(link.target), kind, f"{address[0]}:{address[1]}", listen)
        return _address(proxy.listen)

    def name_targets(self, names: Mapping[str, str]) -> None:
        """Rename the targets of the paths by their proxies' listen addresses (``names``:
        listen address -> node name), for brokers someone else runs, whose ids are learnt only
        through the proxies; paths to no named node are forgotten."""
        renamed = {}
        for (source, _target, kind), link in self.links.items():
            node = names.get(link.listen)
            if node is not None:
                renamed[(source, node, kind)] = attrs.evolve(link, target=node)
        self.links = renamed

    # --- looking at it -------------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        """Every server node some path leads to or from (brokers, the controller)."""
        names = {n for link in self.links.values() for n in (link.source, link.target) if n != CLIENTS}
        return sorted(names, key=lambda n: (n == CONTROLLER, len(n), n))

    def link(self, source: str, target: str, kind: str | None = None) -> ProxyLink | None:
        """The path ``source -> target`` (of ``kind``, or the first one)."""
        for (s, t, k), link in sorted(self.links.items()):
            if s == source and t == target and kind in (None, k):
                return link
        return None

    def between(self, sources: Iterable[str], targets: Iterable[str]) -> list[ProxyLink]:
        """The paths from any of ``sources`` to any of ``targets`` (directed)."""
        src, dst = set(sources), set(targets)
        return [link for (s, t, _), link in sorted(self.links.items()) if s in src and t in dst]

    def touching(self, node: str) -> list[ProxyLink]:
        """Every path into or out of ``node``."""
        return [link for (s, t, _), link in sorted(self.links.items()) if node in (s, t)]

    # --- faults --------------------------------------------------------------------------------

    def hold_down(self, links: Iterable[ProxyLink], fault: str) -> None:
        """Disable these paths on behalf of ``fault`` (already disabled ones stay so)."""
        for link in links:
            key = link.proxy
            with self._lock:
                holders = self._held.setdefault(key, set())
                first = not holders
                holders.add(fault)
            if first:
                self.control.set_enabled(link.proxy, False)

    def release(self, links: Iterable[ProxyLink], fault: str) -> None:
        """``fault`` no longer holds these paths down; enable those nobody else holds."""
        for link in links:
            key = link.proxy
            with self._lock:
                holders = self._held.get(key, set())
                holders.discard(fault)
                last = not holders
                if last:
                    self._held.pop(key, None)
            if last:
                self.control.set_enabled(link.proxy, True)

    def add_toxic(self, link: ProxyLink, toxic: str, attributes: dict[str, int | float],
                  stream: str, name: str, toxicity: float = 1.0) -> None:
        self.control.add_toxic(link.proxy, toxic, attributes, stream=stream, toxicity=toxicity, name=name)

    def remove_toxic(self, link: ProxyLink, name: str) -> None:
        self.control.remove_toxic(link.proxy, name)

    def heal(self) -> None:
        """Every path enabled, every toxic removed."""
        with self._lock:
            self._held.clear()
        if self.owns_server:
            self.control.reset()
            return
        ours = {link.proxy for link in self.links.values()}
        for name, info in self.control.proxies().items():
            if name not in ours:
                continue
            if not info.enabled:
                self.control.set_enabled(name, True)
            for toxic in self.control.toxics(name):
                self.control.remove_toxic(name, toxic)

    def close(self) -> None:
        """Delete every proxy this topology created (errors are ignored: the server may be
        gone already)."""
        for link in list(self.links.values()):
            try:
                self.control.delete_proxy(link.proxy)
            except ToxiproxyError:
                pass

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def describe(self) -> list[dict[str, str]]:
        """Every path with its proxy, for reports."""
        return [{"path": str(link), "kind": link.kind, "proxy": link.proxy, "listen": link.listen,
                 "upstream": link.upstream} for link in self.links.values()]
