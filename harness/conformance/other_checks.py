"""Checks that need process control or several brokers, and the state machines."""

from __future__ import annotations

from harness.conformance.context import CheckContext, CheckFailed, expect
from harness.conformance.protocol_checks import _produce, _read, _topic, _values
from harness.conformance.registry import check
from harness.stateful.base import KafkaMachine
from harness.stateful.group_machine import GroupMachine
from harness.stateful.log_machine import LogMachine
from harness.stateful.runner import run_machine
from harness.stateful.txn_machine import TransactionMachine
from harness.targets.base import (
    CONSUMER_GROUPS,
    CREATE_TOPICS,
    DURABLE_STORAGE,
    PROCESS_CONTROL,
    REPLICATION,
    TRANSACTIONS,
)


@check("stateful-log", kind="stateful", requires=[CREATE_TOPICS], differential=True,
       rule="Kafka documentation 1.1 and 4.7, KIP-74, KIP-98, KIP-107, KIP-734 (see harness/stateful/"
            "log_machine.py): produce, fetch and list offsets agree with the model of the log after every step")
def stateful_log(ctx: CheckContext) -> None:
    """The partition-log state machine finds no step where the target disagrees with the model."""
    _run(ctx, LogMachine)


@check("stateful-groups", kind="stateful", requires=[CREATE_TOPICS, CONSUMER_GROUPS],
       rule="Kafka protocol guide (group APIs), KIP-394: rebalances, generation fencing and committed "
            "offsets agree with the model of the group after every step")
def stateful_groups(ctx: CheckContext) -> None:
    """The consumer-group state machine finds no step where the target disagrees with the model."""
    _run(ctx, GroupMachine)


@check("stateful-transactions", kind="stateful", requires=[CREATE_TOPICS, TRANSACTIONS],
       rule="KIP-98, KIP-588 and KIP-890 part 1 (see harness/stateful/txn_machine.py): interleaved transactions, "
            "zombies and plain writes; every transaction's markers land at the end of each of its partitions, the "
            "last stable offset is the first offset of the oldest open transaction, a read_committed consumer keeps "
            "exactly the committed and non-transactional records below it, and a fenced producer is refused "
            "(transactional offset commits, KIP-447, are not driven)")
def stateful_transactions(ctx: CheckContext) -> None:
    """The transaction state machine finds no step where the target disagrees with the model."""
    _run(ctx, TransactionMachine)


def _run(ctx: CheckContext, machine: type[KafkaMachine]) -> None:
    run = run_machine(machine, ctx.target, seed=ctx.seed, examples=ctx.examples, steps=ctx.steps,
                      shrink_seconds=ctx.shrink_seconds, against=ctx.against)
    ctx.details.update(examples=ctx.examples, steps_per_example=ctx.steps, steps=run.steps,
                       seconds=round(run.seconds, 2), steps_per_second=round(run.steps_per_second, 1),
                       topics_created=run.topics_created, shrink_stopped=run.shrink_stopped)
    if run.passed:
        return
    ctx.details["reproduction"] = run.reproduction
    ctx.details["flaky"] = run.flaky
    prefix = (f"FLAKY: the failure did not replay from seed {ctx.seed}; " if run.flaky else "")
    raise CheckFailed(f"{prefix}{run.failure}", run.anomalies)


@check("restart-keeps-acknowledged-writes", kind="process",
       requires=[CREATE_TOPICS, PROCESS_CONTROL, DURABLE_STORAGE, CONSUMER_GROUPS],
       rule="Kafka documentation 4.7 and 4.6: acknowledged records and committed offsets survive a clean "
            "broker restart")
def restart_keeps_writes(ctx: CheckContext) -> None:
    """After a clean restart every acknowledged record and committed offset is still there."""
    s = ctx.session()
    topic = _topic(ctx, s)
    group = ctx.name("g")
    written = _values("durable", 30)
    _produce(s, topic, written[:10])
    _produce(s, topic, written[10:])
    answer = s.offset_commit(group, {(topic, 0): 12})
    expect(answer == {(topic, 0): "NONE"}, f"OffsetCommit of offset 12 for {topic}-0 by group {group}: {answer}")
    s.close()
    ctx.target.restart()
    after = ctx.session(timeout_s=30)
    got = [r.value for r in _read(after, topic, 0, 0, 30)]
    expect(got == written, f"after a clean restart the log holds {len(got)} of the 30 acknowledged records "
           f"(first differences: {[(i, a, b) for i, (a, b) in enumerate(zip(got, written)) if a != b][:3]})")
    committed = after.offset_fetch(group, [(topic, 0)])[(topic, 0)][0]
    expect(committed == 12, f"after a clean restart the committed offset is {committed}, was 12")


@check("replicated-topic", kind="protocol", requires=[CREATE_TOPICS, REPLICATION],
       rule="Kafka documentation 4.7 (Replication): a topic created with replication factor N has N replicas, "
            "all in sync when healthy, and an acks=all write is acknowledged once they all have it")
def replicated_topic(ctx: CheckContext) -> None:
    """A topic with replication factor min(3, brokers) has that many in-sync replicas and takes acks=all."""
    s = ctx.session(timeout_s=30)
    brokers = len(s.metadata([]).brokers)
    rf = min(3, brokers)
    topic = ctx.name("rf")
    error = s.create_topic(topic, 2, replication_factor=rf, configs={"min.insync.replicas": str(min(2, rf))})
    expect(error == "NONE", f"CreateTopics with replication factor {rf} on {brokers} brokers: {error}")
    meta = [t for t in s.metadata([topic]).topics if t.name == topic][0]
    for p in meta.partitions:
        expect(len(p.replica_nodes) == rf and len(p.isr_nodes) == rf,
               f"partition {p.partition_index}: replicas {list(p.replica_nodes)}, ISR {list(p.isr_nodes)}, "
               f"expected {rf} of each")
    base = _produce(s, topic, _values("rf", 5))
    got = [r.value for r in _read(s, topic, 0, base, base + 5)]
    if got != _values("rf", 5):
        raise CheckFailed(f"acks=all records read back as {got}")
