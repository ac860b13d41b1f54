"""The fault catalogue: every fault a campaign can inject, what it needs, what it stresses.

This table is the single source of truth for fault names (``--faults``), for which faults a
target supports, and for docs/faults.md (a test checks the page names every fault here).
``chaos.nemesis`` implements each family; ``chaos.schedule`` draws them.

Families:

* ``partition``: network partitions, cut by disabling the proxies of the paths between the
  sides (connections closed, new ones refused): a node alone, the current leader of a
  partition, the controller, a minority/majority split, a bridge, one way only; or clients cut
  from the leader of a partition;
* ``link``: a Toxiproxy toxic on every path into and out of a node: latency with jitter, a
  bandwidth limit, a slicer, a black hole (timeout toxic: bytes are swallowed, nothing is
  closed), reset_peer (connections reset), limit_data (connections closed after N bytes);
* ``process``: SIGKILL then restart, SIGSTOP then SIGCONT, a clean stop then start, or SIGKILL
  with the data wiped then start (a replaced disk; unsafe, opt-in);
* ``client``: a consumer crashes at its worst moment (between its commit and its processing,
  whichever comes second), or a consume-transform-produce processor in the middle of its
  transaction, and a new one takes its place when the fault ends; a transactional producer
  turns zombie (frozen mid-transaction, replaced, then woken); or a Kafka Streams instance's
  JVM is SIGKILLed and a new instance takes its place when the fault ends.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

# What a fault needs from the environment (checked before a campaign starts).
PEER_LINKS = "peer-links"  # proxied broker-to-broker and broker-to-controller paths
CONTROLLER_NODE = "controller"  # a controller node to aim at (separate, or the active one in KRaft combined mode)
CLIENT_LINKS = "client-links"  # proxied client-to-broker paths
PROCESS = "process-control"  # the harness runs the processes
GROUP_CONSUMERS = "group-consumers"  # the workload has consumers in a group
TRANSACTIONAL_PRODUCERS = "transactional-producers"  # the workload's producers are transactional
PROCESSORS = "processors"  # the workload has consume-transform-produce processors
REPLICATED = "replicated"  # several brokers (leadership can move)
STREAMS = "streams"  # the workload runs Kafka Streams instances (--streams)


@attrs.frozen
class FaultKind:
    name: str
    family: str
    summary: str
    stresses: str  # the Kafka promise it puts under stress
    needs: frozenset[str]
    unsafe: bool = False  # never drawn unless named explicitly; voids durability claims
    target: str = "node"  # what `FaultSpec.target` names: node, leader, consumer, processor, producer, streams, none


def _k(name: str, family: str, summary: str, stresses: str, needs: set[str], *, unsafe: bool = False,
       target: str = "node") -> FaultKind:
    return FaultKind(name, family, summary, stresses, frozenset(needs), unsafe, target)


FAULTS: Mapping[str, FaultKind] = {k.name: k for k in (
    _k("isolate-node", "partition", "cut one node (a broker or the controller) off from every other node; "
       "clients still reach it", "leader fencing, ISR shrink, no acknowledged write lost on failover",
       {PEER_LINKS}),
    _k("isolate-leader", "partition", "cut the current leader of a partition (resolved from Metadata when the "
       "fault starts) off from the other brokers and the controller; clients still reach it",
       "a deposed leader cannot get acks=all writes acknowledged (zombie fencing); acks=1 writes it takes are lost",
       {PEER_LINKS, REPLICATED}, target="leader"),
    _k("isolate-controller", "partition", "cut the controller off from every broker",
       "nothing committed is lost while no election can happen", {PEER_LINKS, CONTROLLER_NODE}, target="none"),
    _k("split", "partition", "a minority of the nodes on one side, the majority on the other",
       "the majority side elects and commits; the minority cannot commit acks=all writes", {PEER_LINKS}),
    _k("bridge", "partition", "two halves that cannot reach each other, and one node that reaches both "
       "(Jepsen's bridge)", "elections and ISR changes with a node that sees both sides", {PEER_LINKS}),
    _k("one-way", "partition", "some nodes cannot open connections to the others, which still reach them",
       "followers that cannot fetch while their leader reaches them (asymmetric failure)", {PEER_LINKS}),
    _k("cut-client-leader", "partition", "clients cannot reach the current leader of a partition; the "
       "brokers are fine", "producers retry and time out without losing or duplicating (idempotence)",
       {CLIENT_LINKS}, target="leader"),
    _k("latency", "link", "latency with jitter on every path into and out of a node",
       "timeouts and retries: no duplicate with idempotence, no reordering", {CLIENT_LINKS}),
    _k("bandwidth", "link", "a bandwidth limit (KB/s) on every path into and out of a node",
       "slow replication and slow clients: the high watermark, ISR shrink", {CLIENT_LINKS}),
    _k("slicer", "link", "every path into and out of a node delivers data in small slices with delays",
       "framing of requests split across many TCP segments", {CLIENT_LINKS}),
    _k("black-hole", "link", "every path into and out of a node swallows data without closing anything "
       "(timeout toxic 0)", "request timeouts with outcomes unknown (info), then recovery",
       {CLIENT_LINKS}),
    _k("reset-peer", "link", "connections into and out of a node are reset (TCP RST) after a delay",
       "reconnects mid-request: retried produces stay exactly once with idempotence", {CLIENT_LINKS}),
    _k("limit-data", "link", "connections into and out of a node are closed after N bytes",
       "requests cut in the middle: no partial batch is ever appended", {CLIENT_LINKS}),
    _k("kill", "process", "SIGKILL a node (or the current leader), start it again when the fault ends",
       "acknowledged writes survive a crash (acks=all, min.insync.replicas=2)", {PROCESS}),
    _k("pause", "process", "SIGSTOP a node (or the current leader), SIGCONT when the fault ends",
       "a frozen leader is replaced and fenced when it wakes (zombie)", {PROCESS}),
    _k("restart", "process", "stop a node cleanly (SIGTERM), start it again when the fault ends",
       "controlled shutdown moves leadership without loss", {PROCESS}),
    _k("wipe", "process", "SIGKILL a broker and delete its data, start it empty when the fault ends "
       "(a replaced disk)", "KIP-966: a replica that lost its disk must not be elected leader",
       {PROCESS}, unsafe=True),
    _k("consumer-crash", "client", "a group consumer crashes between its commit and its processing; "
       "a new member replaces it when the fault ends",
       "commit before processing is at-most-once (loss), after is at-least-once (duplicates)",
       {GROUP_CONSUMERS}, target="consumer"),
    _k("zombie-producer", "client", "a transactional producer freezes in the middle of a transaction and a "
       "new instance with its transactional id replaces it; when the fault ends the frozen one wakes, "
       "sends the rest and commits", "KIP-98 fencing: a zombie's late writes and commit are refused and "
       "nothing it wrote becomes visible", {TRANSACTIONAL_PRODUCERS}, target="producer"),
    _k("streams-kill", "client", "SIGKILL a Kafka Streams instance's JVM mid-transaction; a new instance (new "
       "state directory) starts when the fault ends",
       "exactly_once_v2: the dead instance's open transaction is aborted, its tasks move, no input is lost or "
       "processed twice (KIP-447)", {STREAMS}, target="streams"),
    _k("processor-crash", "client", "a consume-transform-produce processor crashes in the middle of its "
       "transaction (after its sends and offsets, before the commit); a new instance with the same "
       "transactional id replaces it when the fault ends",
       "KIP-447: the new instance fences the old one and its open transaction is aborted, so each input is "
       "processed exactly once", {PROCESSORS}, target="processor"),
)}

FAMILIES = ("partition", "link", "process", "client")


def unknown_faults(names: list[str]) -> list[str]:
    return [n for n in names if n not in FAULTS]
