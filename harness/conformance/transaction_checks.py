"""Protocol checks of transactions (KIP-98): the coordinator's APIs and error codes, and what a
transaction does to the log (markers, the last stable offset, the aborted-transaction list).

Each check plays a transactional producer at the wire level
(:class:`~harness.wire_transactions.WireTransaction`): it finds the transaction coordinator
(FindCoordinator key type 1), and sends InitProducerId, AddPartitionsToTxn, transactional
Produce batches and EndTxn itself, so that every answer is seen as the broker gave it. Markers are written by the coordinator after EndTxn is answered, so
checks that read them wait (up to the session's timeout) for the last stable offset to move.
"""

from __future__ import annotations

import time

from harness.conformance.context import CheckContext, CheckSkipped, expect
from harness.conformance.protocol_checks import _topic
from harness.conformance.registry import check
from harness.error_names import error_name
from harness.session import LATEST, TRANSACTION_KEY, FetchResult, JoinAnswer, WireSession, pauses
from harness.targets.base import CONSUMER_GROUPS, CREATE_TOPICS, TRANSACTIONS
from harness.wire import WireClient
from harness.wire_transactions import FENCED, READ_COMMITTED, TP, WireTransaction
from reference_broker.groups.testing import consumer_assignment, consumer_subscription
from reference_broker.protocol.api_keys import ApiKey

# Kafka looks for timed-out transactions every 10 s (its default cleanup interval).
TIMEOUT_ABORT_WAIT_S = 40.0


def _open(ctx: CheckContext, s: WireSession, timeout_ms: int = 60_000) -> WireTransaction:
    txn = WireTransaction(s, ctx.name("txn"), timeout_ms)
    error = txn.init()
    expect(error == "NONE", f"InitProducerId for transactional id {txn.id}: {error}")
    return txn


def _committed_fetch(s: WireSession, tp: TP, offset: int = 0) -> FetchResult:
    """A read_committed Fetch. It waits up to 1 ms rather than 0: what max_wait 0 does is the
    business of the fetch-max-wait-zero check, not of these."""
    return s.fetch(*tp, offset, isolation=READ_COMMITTED, max_wait_ms=1)


def _stable(s: WireSession, tp: TP, until: str) -> FetchResult:
    """A read_committed Fetch from offset 0, repeated until the last stable offset has reached
    the high watermark (the markers are written after EndTxn is answered)."""
    deadline = time.monotonic() + s.timeout_s
    for pause in pauses(0.01, 0.2):
        fetched = _committed_fetch(s, tp)
        if fetched.error != "NONE" or fetched.last_stable_offset >= fetched.high_watermark:
            return fetched
        expect(time.monotonic() < deadline,
               f"{tp[0]}-{tp[1]}: the last stable offset stays at {fetched.last_stable_offset} below the high "
               f"watermark {fetched.high_watermark} {until}")
        time.sleep(pause)
    raise AssertionError("unreachable")


def _started(ctx: CheckContext, s: WireSession, partitions: int = 2) -> tuple[str, WireTransaction, list[TP]]:
    """A topic and a transaction with one record batch in each of its partitions."""
    topic = _topic(ctx, s, partitions)
    txn = _open(ctx, s)
    tps = [(topic, p) for p in range(partitions)]
    added = txn.add_partitions(tps)
    expect(set(added.values()) == {"NONE"}, f"AddPartitionsToTxn {tps}: {added}")
    for tp in tps:
        sent = txn.send(*tp, [f"{txn.id}-{tp[1]}-{i}".encode() for i in range(2)])
        expect((sent.error, sent.base_offset) == ("NONE", 0), f"transactional Produce to {tp}: {sent.error} at "
               f"{sent.base_offset}")
    return topic, txn, tps


@check("transaction-commit", requires=[CREATE_TOPICS, TRANSACTIONS],
       rule="KIP-98: records of an open transaction are below no read_committed reader's reach (the last stable "
            "offset stays at the transaction's first offset, ListOffsets latest under read_committed answers it); "
            "after EndTxn(commit) a COMMIT marker follows them in every partition and the last stable offset "
            "reaches the high watermark")
def transaction_commit(ctx: CheckContext) -> None:
    """An open transaction holds the last stable offset back; its commit releases it whole."""
    s = ctx.session()
    _, txn, tps = _started(ctx, s)
    for tp in tps:
        open_view = _committed_fetch(s, tp)
        expect((open_view.high_watermark, open_view.last_stable_offset, len(open_view.records)) == (2, 0, 0),
               f"{tp} with the transaction open: high watermark {open_view.high_watermark}, last stable offset "
               f"{open_view.last_stable_offset}, {len(open_view.records)} records read_committed; expected 2, 0, 0")
        latest = s.list_offsets(*tp, LATEST, isolation=READ_COMMITTED)
        expect(latest.offset == 0, f"ListOffsets latest read_committed of {tp} with the transaction open: "
               f"{latest.offset}, expected the last stable offset 0")
    error = txn.end(commit=True)
    expect(error == "NONE", f"EndTxn(commit): {error}")
    for tp in tps:
        done = _stable(s, tp, "after the commit")
        expect(done.high_watermark == 3, f"{tp} after the commit: high watermark {done.high_watermark}, expected "
               "3 (two records and the COMMIT marker)")
        expect([r.offset for r in done.records] == [0, 1], f"{tp} read_committed after the commit: offsets "
               f"{[r.offset for r in done.records]}, expected [0, 1]")
        expect(not done.aborted, f"{tp}: a committed transaction listed as aborted: {done.aborted}")
        control = [b for b in done.batches if b.is_control]
        expect(len(control) == 1 and control[0].base_offset == 2,
               f"{tp}: control batches {[(b.base_offset, b.is_control) for b in done.batches]}; expected one marker at 2")


@check("transaction-abort", requires=[CREATE_TOPICS, TRANSACTIONS],
       rule="KIP-98: after EndTxn(abort) an ABORT marker ends the transaction, the last stable offset passes it, "
            "and a read_committed Fetch lists the transaction (producer id, first offset) in aborted_transactions "
            "so that clients drop its records; a later committed transaction is not listed")
def transaction_abort(ctx: CheckContext) -> None:
    """An aborted transaction is listed in read_committed fetches; a committed one after it is not."""
    s = ctx.session()
    topic, txn, tps = _started(ctx, s, partitions=1)
    error = txn.end(commit=False)
    expect(error == "NONE", f"EndTxn(abort): {error}")
    tp = tps[0]
    aborted = _stable(s, tp, "after the abort")
    expect(aborted.high_watermark == 3, f"{tp} after the abort: high watermark {aborted.high_watermark}, "
           "expected 3 (two records and the ABORT marker)")
    expect(aborted.aborted == ((txn.producer_id, 0),), f"{tp} read_committed after the abort: aborted_transactions "
           f"{aborted.aborted}, expected [({txn.producer_id}, 0)]")
    added = txn.add_partitions([tp])
    expect(added == {tp: "NONE"}, f"AddPartitionsToTxn for the next transaction: {added}")
    sent = txn.send(*tp, [b"after-abort"])
    expect((sent.error, sent.base_offset) == ("NONE", 3), f"next transaction's batch: {sent.error} at {sent.base_offset}")
    expect(txn.end(commit=True) == "NONE", "EndTxn(commit) of the next transaction failed")
    later = _stable(s, tp, "after the second transaction's commit")
    expect(later.aborted == ((txn.producer_id, 0),), f"{tp} from offset 0 after a commit: aborted_transactions "
           f"{later.aborted}, expected only the aborted one")
    expect(_committed_fetch(s, tp, 4).aborted == (),
           f"{topic}: a fetch past the aborted transaction still lists it")


@check("transaction-fencing", requires=[CREATE_TOPICS, TRANSACTIONS],
       rule="KIP-98 and KIP-588: InitProducerId of a transactional id keeps its producer id and bumps its epoch; "
            "AddPartitionsToTxn and EndTxn with the older epoch are PRODUCER_FENCED (v2+), and its open "
            "transaction is aborted")
def transaction_fencing(ctx: CheckContext) -> None:
    """A new instance of a transactional id fences the old one and aborts its transaction."""
    s = ctx.session()
    _, zombie, tps = _started(ctx, s, partitions=1)
    successor = WireTransaction(s, zombie.id)
    error = successor.init()
    expect(error == "NONE", f"InitProducerId of the second instance: {error}")
    expect(successor.producer_id == zombie.producer_id and successor.epoch > zombie.epoch,
           f"second instance: producer id {successor.producer_id} epoch {successor.epoch}; expected producer id "
           f"{zombie.producer_id} with an epoch above {zombie.epoch}")
    added = zombie.add_partitions(tps)
    expect(set(added.values()) == {"PRODUCER_FENCED"}, f"AddPartitionsToTxn v3 with the fenced epoch: {added}")
    ended = zombie.end(commit=True)
    expect(ended == "PRODUCER_FENCED", f"EndTxn v4 with the fenced epoch: {ended}")
    aborted = _stable(s, tps[0], "after the fence")
    expect(aborted.aborted == ((zombie.producer_id, 0),),
           f"the fenced instance's transaction: aborted_transactions {aborted.aborted}, expected it aborted")


def _write_marker(s: WireSession, producer_id: int, epoch: int, commit: bool, tp: TP) -> str:
    """WriteTxnMarkers of one marker to ``tp``'s leader, as a transaction coordinator sends it
    (coordinator epoch 0, the lowest a coordinator has, so that a real coordinator's later
    markers are never fenced by it); the partition's error."""
    response = s.call(ApiKey.WRITE_TXN_MARKERS, {"markers": [{
        "producer_id": producer_id, "producer_epoch": epoch, "transaction_result": commit, "coordinator_epoch": 0,
        "transaction_version": 0, "topics": [{"name": tp[0], "partition_indexes": [tp[1]]}]}]},
        address=s.leader(*tp))
    return error_name(response.markers[0].topics[0].partitions[0].error_code)


@check("transaction-markers", requires=[CREATE_TOPICS, TRANSACTIONS],
       rule="KIP-98 (WriteTxnMarkers, from the transaction coordinator to partition leaders): a COMMIT marker of a "
            "producer's open transaction is appended as a control batch and makes its records readable to "
            "read_committed consumers; a marker whose producer epoch is older than the partition's for that "
            "producer is INVALID_PRODUCER_EPOCH and appends nothing (a late marker from before a fence, the shape "
            "of KAFKA-17754)")
def transaction_markers(ctx: CheckContext) -> None:
    """Partition leaders append the coordinator's markers, and refuse one from an older epoch."""
    s = ctx.session()
    _, txn, tps = _started(ctx, s, partitions=1)
    tp, old_epoch = tps[0], txn.epoch
    written = _write_marker(s, txn.producer_id, old_epoch, True, tp)
    expect(written == "NONE", f"WriteTxnMarkers COMMIT of {tp} (producer {txn.producer_id}, epoch {old_epoch}): "
           f"{written}")
    done = _stable(s, tp, "after the COMMIT marker")
    expect((done.high_watermark, [r.offset for r in done.records]) == (3, [0, 1]),
           f"{tp} read_committed after the COMMIT marker: high watermark {done.high_watermark}, offsets "
           f"{[r.offset for r in done.records]}; expected 3 (two records and the marker) and [0, 1]")
    # The coordinator never heard EndTxn: a second instance fences the first and has it aborted,
    # which writes a marker of the bumped epoch to the partition.
    successor = WireTransaction(s, txn.id)
    expect(successor.init() == "NONE", "InitProducerId of the second instance failed")
    fenced = _stable(s, tp, "after the fence")
    late = _write_marker(s, txn.producer_id, old_epoch, False, tp)
    expect(late == "INVALID_PRODUCER_EPOCH", f"WriteTxnMarkers ABORT with epoch {old_epoch}, older than the fence's "
           f"{successor.epoch}: {late}, expected INVALID_PRODUCER_EPOCH")
    after = _committed_fetch(s, tp)
    expect(after.high_watermark == fenced.high_watermark, f"{tp}: the refused marker moved the high watermark "
           f"from {fenced.high_watermark} to {after.high_watermark}")


def _member(s: WireSession, conn: WireClient, group: str, topic: str, member_id: str = "") -> JoinAnswer:
    """Join ``group`` (a new member when ``member_id`` is empty, else a rejoin) and sync, the
    member alone owning partition 0 of ``topic``."""
    joined = s.run(s.ajoin(conn, group, member_id, consumer_subscription([topic]), session_ms=10_000,
                           rebalance_ms=10_000))
    expect(joined.error == "NONE", f"JoinGroup of {group}: {joined.error}")
    error, _ = s.run(s.async_sync(conn, group, joined.generation, joined.member_id,
                                  {joined.member_id: consumer_assignment({topic: [0]})}))
    expect(error == "NONE", f"SyncGroup of {group} in generation {joined.generation}: {error}")
    return joined


@check("transaction-offsets", requires=[CREATE_TOPICS, CONSUMER_GROUPS, TRANSACTIONS],
       rule="KIP-98 and KIP-447: AddOffsetsToTxn joins the group to the transaction; offsets sent by "
            "TxnOffsetCommit are invisible to OffsetFetch until the transaction commits (with require_stable the "
            "partition answers UNSTABLE_OFFSET_COMMIT meanwhile), visible after the commit, dropped by an abort; "
            "TxnOffsetCommit v3 with a stale generation is ILLEGAL_GENERATION and from an unknown member "
            "UNKNOWN_MEMBER_ID")
def transaction_offsets(ctx: CheckContext) -> None:
    """Offsets committed in a transaction count only if it commits; zombies are fenced by generation."""
    s = ctx.session(timeout_s=20)
    topic = _topic(ctx, s)
    tp = (topic, 0)
    group = ctx.name("g")
    conn = s.run(s.connect(s.coordinator(group)))
    try:
        member = _member(s, conn, group, topic)
        txn = _open(ctx, s)
        expect(txn.add_offsets(group) == "NONE", "AddOffsetsToTxn of the first transaction failed")
        sent = txn.commit_offsets(group, {tp: 5}, member.generation, member.member_id)
        expect(sent == {tp: "NONE"}, f"TxnOffsetCommit of offset 5 in generation {member.generation}: {sent}")
        pending = s.offset_fetch(group, [tp])[tp]
        expect(pending[0] == -1, f"OffsetFetch with the transaction open: offset {pending[0]}, expected -1 "
               "(nothing committed yet)")
        stable = s.offset_fetch(group, [tp], require_stable=True)[tp]
        expect(stable[2] == "UNSTABLE_OFFSET_COMMIT", f"OffsetFetch require_stable with the transactional commit "
               f"pending: {stable[2]} (offset {stable[0]}), expected UNSTABLE_OFFSET_COMMIT")
        expect(txn.end(commit=True) == "NONE", "EndTxn(commit) of the first transaction failed")
        expect(_stable_offsets(s, group, tp) == 5, "the committed transaction's offset 5 is not visible")

        expect(txn.add_offsets(group) == "NONE", "AddOffsetsToTxn of the second transaction failed")
        sent = txn.commit_offsets(group, {tp: 9}, member.generation, member.member_id)
        expect(sent == {tp: "NONE"}, f"TxnOffsetCommit of offset 9: {sent}")
        expect(txn.end(commit=False) == "NONE", "EndTxn(abort) of the second transaction failed")
        expect(_stable_offsets(s, group, tp) == 5, "the aborted transaction's offset 9 became visible")

        again = _member(s, conn, group, topic, member.member_id)
        expect(again.generation > member.generation, f"rejoin: generation {again.generation} after "
               f"{member.generation}")
        expect(txn.add_offsets(group) == "NONE", "AddOffsetsToTxn of the third transaction failed")
        stale = txn.commit_offsets(group, {tp: 12}, member.generation, member.member_id)
        expect(stale == {tp: "ILLEGAL_GENERATION"}, f"TxnOffsetCommit with the old generation {member.generation}: "
               f"{stale}, expected ILLEGAL_GENERATION (KIP-447)")
        unknown = txn.commit_offsets(group, {tp: 12}, again.generation, "no-such-member")
        expect(unknown == {tp: "UNKNOWN_MEMBER_ID"}, f"TxnOffsetCommit of an unknown member: {unknown}")
        expect(txn.end(commit=True) == "NONE", "EndTxn(commit) of the third transaction failed")
        expect(_stable_offsets(s, group, tp) == 5, "a refused TxnOffsetCommit changed the committed offset")
    finally:
        s.run(conn.close())


def _stable_offsets(s: WireSession, group: str, tp: TP) -> int:
    """The committed offset once no transactional commit is pending (require_stable retried)."""
    deadline = time.monotonic() + s.timeout_s
    for pause in pauses(0.01, 0.2):
        offset, _, error = s.offset_fetch(group, [tp], require_stable=True)[tp]
        if error != "UNSTABLE_OFFSET_COMMIT" or time.monotonic() > deadline:
            expect(error == "NONE", f"OffsetFetch require_stable of {group}: {error}")
            return offset
        time.sleep(pause)
    raise AssertionError("unreachable")


@check("transaction-errors", requires=[CREATE_TOPICS, TRANSACTIONS],
       rule="KIP-98 (TransactionCoordinator): an unknown transactional id or a wrong producer id is "
            "INVALID_PRODUCER_ID_MAPPING; EndTxn with no transaction open is INVALID_TXN_STATE; a timeout above "
            "transaction.max.timeout.ms is INVALID_TRANSACTION_TIMEOUT; AddPartitionsToTxn of an unknown topic "
            "is UNKNOWN_TOPIC_OR_PARTITION for it and OPERATION_NOT_ATTEMPTED for the rest")
def transaction_errors(ctx: CheckContext) -> None:
    """The coordinator's error codes for requests that cannot be served."""
    s = ctx.session()
    topic = _topic(ctx, s)
    txn = _open(ctx, s)
    stranger = WireTransaction(s, ctx.name("never-initialised"))
    stranger.producer_id, stranger.epoch = txn.producer_id, txn.epoch
    unknown = stranger.add_partitions([(topic, 0)])
    expect(unknown == {(topic, 0): "INVALID_PRODUCER_ID_MAPPING"}, f"AddPartitionsToTxn of an unknown id: {unknown}")
    wrong = txn.end(commit=True, producer_id=txn.producer_id + 1)
    expect(wrong == "INVALID_PRODUCER_ID_MAPPING", f"EndTxn with another producer id: {wrong}")
    empty = txn.end(commit=True)
    expect(empty == "INVALID_TXN_STATE", f"EndTxn(commit) with no transaction open: {empty}")
    missing = ctx.name("missing")
    mixed = txn.add_partitions([(topic, 0), (missing, 0)])
    expect(mixed == {(topic, 0): "OPERATION_NOT_ATTEMPTED", (missing, 0): "UNKNOWN_TOPIC_OR_PARTITION"},
           f"AddPartitionsToTxn of a known and an unknown topic: {mixed}")
    too_long = WireTransaction(s, ctx.name("too-long")).init(timeout_ms=2**31 - 1)
    expect(too_long == "INVALID_TRANSACTION_TIMEOUT", f"InitProducerId with a timeout of 2^31-1 ms: {too_long}")


@check("transaction-timeout", requires=[CREATE_TOPICS, TRANSACTIONS],
       rule="KIP-98: a transaction open for longer than its transaction.timeout.ms is aborted by the coordinator "
            "(checked every transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by default), which "
            "fences its producer with an epoch bump")
def transaction_timeout(ctx: CheckContext) -> None:
    """A transaction left open past its timeout is aborted and its producer fenced."""
    s = ctx.session()
    topic = _topic(ctx, s)
    txn = WireTransaction(s, ctx.name("txn"), timeout_ms=1000)
    expect(txn.init() == "NONE", "InitProducerId failed")
    expect(txn.add_partitions([(topic, 0)]) == {(topic, 0): "NONE"}, "AddPartitionsToTxn failed")
    expect(txn.send(topic, 0, [b"stalled"]).error == "NONE", "transactional Produce failed")
    started = time.monotonic()
    while True:
        fetched = _committed_fetch(s, (topic, 0))
        if fetched.last_stable_offset >= fetched.high_watermark == 2:
            break
        waited = time.monotonic() - started
        expect(waited < TIMEOUT_ABORT_WAIT_S, f"{topic}-0: the transaction with a 1 s timeout is still open after "
               f"{waited:.0f} s (last stable offset {fetched.last_stable_offset}, high watermark "
               f"{fetched.high_watermark})")
        time.sleep(0.5)
    expect(fetched.aborted == ((txn.producer_id, 0),), f"the timed-out transaction: aborted_transactions "
           f"{fetched.aborted}, expected it aborted")
    late = txn.end(commit=True)
    expect(late in FENCED, f"EndTxn(commit) after the timeout abort: {late}; expected the producer fenced")


@check("transaction-admin", requires=[CREATE_TOPICS, TRANSACTIONS],
       rule="KIP-664: DescribeTransactions shows an open transaction's state, producer and partitions; "
            "ListTransactions filters by state and names unknown state filters; DescribeProducers shows the "
            "producer with the first offset of its open transaction")
def transaction_admin(ctx: CheckContext) -> None:
    """The admin view of an open transaction."""
    s = ctx.session()
    if not all(s.supports(api) for api in (ApiKey.DESCRIBE_PRODUCERS, ApiKey.DESCRIBE_TRANSACTIONS,
                                           ApiKey.LIST_TRANSACTIONS)):
        raise CheckSkipped("the target does not offer DescribeProducers, DescribeTransactions and "
                           "ListTransactions (KIP-664)")
    topic, txn, tps = _started(ctx, s, partitions=1)
    coordinator = s.coordinator(txn.id, TRANSACTION_KEY)
    (state,) = s.call(ApiKey.DESCRIBE_TRANSACTIONS, {"transactional_ids": [txn.id]}, version=0,
                      address=coordinator).transaction_states
    expect((error_name(state.error_code), state.transaction_state, int(state.producer_id)) ==
           ("NONE", "Ongoing", txn.producer_id),
           f"DescribeTransactions: {error_name(state.error_code)} {state.transaction_state} producer "
           f"{state.producer_id}")
    expect([(t.topic, list(t.partitions)) for t in state.topics] == [(topic, [0])],
           f"DescribeTransactions partitions: {[(t.topic, list(t.partitions)) for t in state.topics]}")
    listed = s.call(ApiKey.LIST_TRANSACTIONS, {"state_filters": ["Ongoing", "NoSuchState"],
                                               "producer_id_filters": [txn.producer_id]},
                    version=0, address=coordinator)
    expect([t.transactional_id for t in listed.transaction_states] == [txn.id],
           f"ListTransactions Ongoing for producer {txn.producer_id}: "
           f"{[t.transactional_id for t in listed.transaction_states]}")
    expect(list(listed.unknown_state_filters) == ["NoSuchState"],
           f"ListTransactions unknown state filters: {list(listed.unknown_state_filters)}")
    producers = s.call(ApiKey.DESCRIBE_PRODUCERS, {"topics": [{"name": topic, "partition_indexes": [0]}]},
                       version=0, address=s.leader(topic, 0)).topics[0].partitions[0]
    active = [(int(p.producer_id), int(p.current_txn_start_offset)) for p in producers.active_producers]
    expect(active == [(txn.producer_id, 0)], f"DescribeProducers {topic}-0: {active}; expected "
           f"[({txn.producer_id}, 0)]")
    expect(txn.end(commit=False) == "NONE", "EndTxn(abort) failed")


@check("transaction-verification", requires=[CREATE_TOPICS, TRANSACTIONS],
       rule="KIP-890 part 1: a transactional batch for a partition the coordinator does not have in the producer's "
            "ongoing transaction must not start a transaction there (Kafka 3.6+ refuses it, TRANSACTION_ABORTABLE "
            "or INVALID_TXN_STATE; with transaction version 2 the leader adds the partition itself), and a fenced "
            "producer's batch is refused (INVALID_PRODUCER_EPOCH): else a transaction no coordinator will end "
            "holds the last stable offset back forever (a hanging transaction)")
def transaction_verification(ctx: CheckContext) -> None:
    """No hanging transaction from a batch outside the transaction, a late one, or a zombie's."""
    s = ctx.session()
    topic = _topic(ctx, s, partitions=3)
    txn = _open(ctx, s)
    expect(txn.add_partitions([(topic, 0)]) == {(topic, 0): "NONE"}, "AddPartitionsToTxn failed")
    expect(txn.send(topic, 0, [b"in"]).error == "NONE", "transactional Produce to an added partition failed")
    outside = txn.send(topic, 1, [b"outside"])
    expect(txn.end(commit=True) == "NONE", "EndTxn(commit) failed")
    # The committed transaction's epoch again, with no AddPartitionsToTxn: a late batch.
    late = txn.send(topic, 2, [b"late"])
    for name, result, tp in (("a batch for a partition never added", outside, (topic, 1)),
                             ("a batch sent after the commit", late, (topic, 2))):
        expect(result.error in ("NONE", "TRANSACTION_ABORTABLE", "INVALID_TXN_STATE"),
               f"{name}: {result.error}")
        if result.error == "NONE":
            # Accepted (transaction version 2 adds the partition): it must end with the transaction.
            if tp == (topic, 2):
                txn.end(commit=False)
            _stable(s, tp, f"after {name} was accepted: a hanging transaction")
        else:
            held = _committed_fetch(s, tp)
            expect(held.last_stable_offset == held.high_watermark,
                   f"{name} was refused ({result.error}) but {tp} holds an open transaction: last stable offset "
                   f"{held.last_stable_offset}, high watermark {held.high_watermark}")
    successor = WireTransaction(s, txn.id)
    expect(successor.init() == "NONE", "InitProducerId of a second instance failed")
    zombie = txn.send(topic, 1, [b"zombie"])
    expect(zombie.error in FENCED, f"the fenced instance's batch for a partition it never added: {zombie.error}")
