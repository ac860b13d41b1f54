"""The ``external`` target: a broker someone else runs, reached through ``--bootstrap``.

The harness has no process control over it and does not know its configuration, so checks
that need either are skipped. Its protocol capabilities come from its ApiVersions answer; add
what the harness cannot see (e.g. ``replication`` for a multi-broker cluster) with
``extra_capabilities``. Checks create their own uniquely named topics and groups, so several
runs (and several pytest-xdist workers) can share one external cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Self

from harness.targets.base import ALL_CAPABILITIES, TargetError, TargetOptions
from harness.targets.proxied import (
    CLIENTS,
    ChaosEnvironmentError,
    Links,
    PartitionLeadership,
    ProxiedTarget,
    broker_name,
)


def parse_bootstrap(bootstrap: str) -> str:
    """Validate ``HOST:PORT[,HOST:PORT...]``; raise TargetError naming the bad part."""
    parts = [p.strip() for p in bootstrap.split(",") if p.strip()]
    if not parts:
        raise TargetError("--bootstrap needs HOST:PORT[,HOST:PORT...], got nothing")
    for part in parts:
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise TargetError(f"--bootstrap: {part!r} is not HOST:PORT")
    return ",".join(parts)


def parse_proxies(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """``LISTEN=UPSTREAM`` pairs (both ``HOST:PORT``), validated."""
    out = []
    for pair in pairs:
        listen, sep, upstream = pair.partition("=")
        for part in (listen, upstream):
            host, colon, port = part.rpartition(":")
            if not sep or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ChaosEnvironmentError(f"--proxy {pair!r}: expected LISTEN=UPSTREAM, both HOST:PORT "
                                            "(e.g. 127.0.0.1:19092=127.0.0.1:9092)")
        out.append((listen, upstream))
    return out


class ExternalTarget(ProxiedTarget):
    """A running broker or cluster at ``bootstrap``.

    Behind proxies (a chaos campaign) only client paths can be proxied, and only if the brokers
    *advertise the proxies*: the user gives ``LISTEN=UPSTREAM`` pairs (``--proxy``), the harness
    creates a proxy listening on LISTEN that forwards to UPSTREAM, and each broker must advertise
    its LISTEN (docs/chaos.md explains how). No process control.
    """

    name = "external"
    launched: ClassVar[bool] = False

    @classmethod
    def from_options(cls, options: TargetOptions) -> Self:
        if not options.bootstrap:
            raise TargetError("--target external needs --bootstrap HOST:PORT[,HOST:PORT...]")
        return cls(options.bootstrap, options.capabilities)

    @classmethod
    def behind(cls, links: Links, options: TargetOptions) -> Self:
        if options.proxies:
            bootstrap = ",".join(listen for listen, _ in options.proxies)
        elif options.bootstrap:
            bootstrap = options.bootstrap
        else:
            raise TargetError("--target external needs --proxy LISTEN=UPSTREAM for each broker (see docs/chaos.md)")
        target = cls(bootstrap, options.capabilities)
        target._links = links
        target._proxies = list(options.proxies)
        return target

    def __init__(self, bootstrap: str, extra_capabilities: Iterable[str] = ()) -> None:
        super().__init__()
        self._bootstrap = parse_bootstrap(bootstrap)
        extra = frozenset(extra_capabilities)
        unknown = sorted(extra - set(ALL_CAPABILITIES))
        if unknown:
            raise TargetError(f"unknown capabilities {unknown}; known: {', '.join(ALL_CAPABILITIES)}")
        self.extra_capabilities = extra
        self._links: Links | None = None
        self._proxies: list[tuple[str, str]] = []
        self._upstreams: dict[str, str] = {}  # node name -> real HOST:PORT (behind proxies)

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    def declared_capabilities(self) -> frozenset[str]:
        return self.extra_capabilities

    def _start(self) -> None:
        # Nothing to launch: start() probes ApiVersions, which fails clearly if unreachable.
        if self._links is not None:
            self._find_brokers(self._links)

    def _find_brokers(self, links: Links) -> None:
        """Create the proxies, then learn which broker is behind which: ask Metadata through the
        proxies and match what each broker advertises; a broker that does not advertise a proxy
        cannot be cut, so that is refused."""
        from harness.session import SessionError, WireSession

        created: dict[str, str] = {}
        for listen, upstream in self._proxies:
            links.add(CLIENTS, f"proxy-{len(created)}", "client", upstream, listen)
            created[listen] = upstream
        try:
            with WireSession(self._bootstrap, timeout_s=10.0) as session:
                response = session.metadata([])
        except (SessionError, OSError) as exc:
            raise TargetError(f"the external brokers do not answer Metadata at {self._bootstrap}: {exc}") from exc
        advertised = {f"{b.host}:{b.port}": int(b.node_id) for b in response.brokers}
        unproxied = sorted(set(advertised) - set(created))
        if self._proxies and unproxied:
            raise TargetError(
                f"brokers advertise {', '.join(unproxied)}, which no --proxy listens on: clients would "
                "bypass the proxies. Make every broker advertise its proxy's LISTEN address "
                "(advertised.listeners), see docs/chaos.md")
        if self._proxies:
            names = {listen: broker_name(nid) for listen, nid in advertised.items()}
            self._upstreams = {names[listen]: upstream for listen, upstream in created.items() if listen in names}
            links.name_targets(names)
        else:  # no proxies: no network faults, but leaders can still be looked up
            self._upstreams = {broker_name(nid): address for address, nid in advertised.items()}

    @property
    def broker_nodes(self) -> list[str]:
        return sorted(self._upstreams, key=lambda name: int(name[1:]))

    def node_addresses(self) -> dict[str, str]:
        return dict(self._upstreams)

    def partition_views(self, topic: str, partition: int) -> list[PartitionLeadership]:
        from harness.session import SessionError, WireSession

        views = []
        for upstream in self._upstreams.values():
            try:
                with WireSession(upstream, timeout_s=3.0) as session:
                    response = session.metadata([topic])
            except (SessionError, OSError):
                continue
            for t in response.topics:
                for p in t.partitions:
                    if t.name == topic and int(p.partition_index) == partition:
                        leader = int(p.leader_id)
                        views.append(PartitionLeadership(
                            broker_name(leader) if leader >= 0 else None, int(p.leader_epoch),
                            tuple(broker_name(int(r)) for r in p.replica_nodes),
                            tuple(broker_name(int(r)) for r in p.isr_nodes)))
        return views

    def _stop(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "bootstrap": self._bootstrap}
