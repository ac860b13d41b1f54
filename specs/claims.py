"""What a configuration promises: which anomalies Kafka rules out, and why the others may happen.

A checker finds anomalies; whether one is a broken promise or an accepted risk depends on how
the run was configured. ``acks=1`` loses acknowledged writes when a leader dies before its
followers fetched them, and Kafka says so; the same loss under ``acks=all`` with
``min.insync.replicas=2`` and clean elections is a broken promise. :func:`claims_for` turns a
:class:`Configuration` into :class:`Claims`: every property (an anomaly name, or
``at-least-once[GROUP]`` / ``at-most-once[GROUP]`` per consumer group) either claimed, with the
settings that make Kafka promise it, or not claimed, with the reason it may happen. A chaos
campaign and ``kconform check`` judge what they find against the same claims.

The rules:

- aborted-read, read-uncommitted, group-split-brain: promised under every configuration.
- Durability (lost-write, unseen, inconsistent-offsets, poll-skip, nonmonotonic-poll, and
  committed-offset-regression, since a log that loses records hands their offsets to others):
  promised only with ``acks=all``, clean elections and ``min.insync.replicas`` of at least
  ``min(2, replication factor)`` (:func:`specs.produce.tolerated_broker_failures`, Kafka
  documentation 4.7), and only while no fault deletes a broker's data and no broker that keeps
  records in memory restarts.
- duplicate and nonmonotonic-send: promised when the producer cannot append a retry twice or
  out of order (:func:`specs.produce.may_duplicate`, :func:`specs.produce.may_reorder`:
  idempotence, KIP-98) and the log is durable (the producer state that drops a resent batch is
  lost with the records).
- A group committing after processing gives at-least-once over durable writes; committing
  before processing gives at-most-once over durable, idempotent writes
  (:func:`specs.delivery.guarantee_of`, Kafka documentation 4.6).
- A run with transactions (``Configuration.transactions``) is also judged on them: G1b and
  lso-above-hw are promised under every configuration (a read_committed reader never sees an
  open transaction's records, the LSO never passes the high watermark: KIP-98); torn-transaction,
  exactly-once-processing, lso-past-open-transaction and hanging-transaction are durability
  properties (a lossy log loses records, markers and committed offsets, and reuses offsets, so an
  offset seen at one time may hold another record later; a lost coordinator state can leave a
  transaction open for ever); G0, G1c and G-single are never
  promised (``specs.transactions.KAFKA_ALLOWS``: Kafka's transactions do not isolate writes, and
  read_committed is no snapshot). A run without transactions lists none of them.
- A run with a Kafka Streams application (``Configuration.streams``, its processing.guarantee)
  is also judged on streams-exactly-once: each input record reflected once in the read_committed
  output and in the state. Promised with exactly_once_v2 (KIP-447, KIP-129) as a durability
  property like exactly-once-processing (a lossy log loses input, output, changelog records and
  committed offsets); never with at_least_once (a crash between writing the output and
  committing the offsets processes records again).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from specs.delivery import CommitPoint, Guarantee, guarantee_of
from specs.produce import Acks, DurabilityConfig, ProducerConfig, may_duplicate, may_reorder
from specs.transactions import KAFKA_ALLOWS

EVERY_CONFIGURATION = ("aborted-read", "read-uncommitted", "group-split-brain")
DURABILITY = ("lost-write", "unseen", "inconsistent-offsets", "poll-skip", "nonmonotonic-poll")
TRANSACTIONAL = ("G1b", "lso-above-hw")
"""Promised for transactions under every configuration."""
TRANSACTIONAL_DURABILITY = ("torn-transaction", "exactly-once-processing", "lso-past-open-transaction",
                            "hanging-transaction")
"""Promised for transactions when the log is durable."""
STREAMS = "streams-exactly-once"
"""Promised for a Kafka Streams application with exactly_once_v2 when the log is durable."""


@attrs.frozen
class Configuration:
    """The settings a run's promises depend on."""

    producer: ProducerConfig = ProducerConfig()
    durability: DurabilityConfig = DurabilityConfig()
    wipes_data: bool = False  # a fault deletes a broker's data
    volatile_restarts: bool = False  # a broker that keeps records in memory is restarted
    groups: Mapping[str, CommitPoint] = attrs.field(factory=dict)  # consumer group -> when it commits
    transactions: bool = False  # the run has transactions (or LSO observations) to judge
    streams: str | None = None  # the processing.guarantee of the run's Kafka Streams application, if any

    def describe(self) -> str:
        """The settings, as Kafka names them."""
        p, d = self.producer, self.durability
        return (f"acks={p.acks.value}, enable.idempotence={str(p.enable_idempotence).lower()}, "
                f"replication.factor={d.replication_factor}, min.insync.replicas={d.min_insync_replicas}, "
                f"unclean.leader.election.enable={str(d.unclean_leader_election_enable).lower()}")


@attrs.frozen
class Claims:
    """What the configuration promises: property -> why it is (or is not) claimed."""

    claimed: dict[str, str]
    not_claimed: dict[str, str]


def why_not_durable(config: Configuration) -> list[str]:
    """Every reason an acknowledged write may be lost under ``config`` (empty: durable)."""
    d = config.durability
    why = []
    if d.acks is not Acks.ALL:
        why.append(f"acks={d.acks.value}: the leader acknowledges before its followers have the record, "
                   "so a failover loses what it had not replicated")
    if d.unclean_leader_election_enable:
        why.append("unclean.leader.election.enable=true: a replica outside the ISR may be elected "
                   "and everything it lacks is lost")
    if d.min_insync_replicas < min(2, d.replication_factor):
        why.append(f"min.insync.replicas={d.min_insync_replicas} with replication factor {d.replication_factor}: "
                   "one replica may acknowledge alone")
    if config.wipes_data:
        why.append("the schedule wipes a broker's data (unsafe fault)")
    if config.volatile_restarts:
        why.append("the target keeps records in memory and the schedule restarts it")
    return why


def claims_for(config: Configuration) -> Claims:
    """Kafka's promises under ``config`` (the rules in the module docstring)."""
    every = (*EVERY_CONFIGURATION, *TRANSACTIONAL) if config.transactions else EVERY_CONFIGURATION
    claimed = {name: "promised by Kafka under every configuration" for name in every}
    not_claimed: dict[str, str] = dict(KAFKA_ALLOWS) if config.transactions else {}
    lossy = "; ".join(why_not_durable(config))
    d, p = config.durability, config.producer
    for name in (*DURABILITY, *TRANSACTIONAL_DURABILITY) if config.transactions else DURABILITY:
        if lossy:
            not_claimed[name] = lossy
        else:
            claimed[name] = (f"acks=all, min.insync.replicas={d.min_insync_replicas}, replication factor "
                             f"{d.replication_factor}, clean elections only")
    if config.streams is not None and config.streams != "exactly_once_v2":
        not_claimed[STREAMS] = (f"processing.guarantee={config.streams}: a crash after the output is written and "
                                "before the input offsets are committed processes those records again")
    elif config.streams is not None and lossy:
        not_claimed[STREAMS] = lossy
    elif config.streams is not None:
        claimed[STREAMS] = (f"processing.guarantee=exactly_once_v2 over durable writes (acks=all, "
                            f"min.insync.replicas={d.min_insync_replicas}, clean elections)")
    if lossy:
        not_claimed["committed-offset-regression"] = lossy
    else:
        claimed["committed-offset-regression"] = "promised by Kafka whenever no acknowledged write is lost"
    exact = {"duplicate": not may_duplicate(p), "nonmonotonic-send": not may_reorder(p)}
    for name, safe in exact.items():
        if safe and not lossy:
            claimed[name] = "enable.idempotence=true: the broker drops resent batches and keeps their order"
        elif safe:
            not_claimed[name] = lossy + " (the producer state that drops resent batches is lost with the records)"
        else:
            not_claimed[name] = ("enable.idempotence=false: a send retried after a lost answer is appended "
                                 "again, and with several requests in flight retries can reorder")
    for group, point in sorted(config.groups.items()):
        least, most = f"at-least-once[{group}]", f"at-most-once[{group}]"
        if guarantee_of(point) is Guarantee.AT_LEAST_ONCE:
            if lossy:
                not_claimed[least] = lossy
            else:
                claimed[least] = "commits after processing, over durable writes"
            not_claimed[most] = "commits after processing: a crash before the commit redelivers"
        elif guarantee_of(point) is Guarantee.AT_MOST_ONCE:
            not_claimed[least] = "commits before processing: a crash after the commit loses records"
            if lossy or not exact["duplicate"]:
                not_claimed[most] = lossy or not_claimed["duplicate"]
            else:
                claimed[most] = "commits before processing, over durable, idempotent writes"
    return Claims(claimed, not_claimed)
