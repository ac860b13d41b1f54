"""The checkers' index of a history: one pass over the events builds every table they share.

Theory of operation. Values are unique per run, so a write is named by its value and every read
joins to exactly one write. The pass keeps, with plain dicts and tuples (it runs over millions
of records):

- `sent`: value -> its send invocation event, `completions`: send invocation index -> its
  completion event, `acked`: the values of `ok` sends, `failed`: those of `fail` sends.
  `write(value)` gives a `Write` (who sent it, its outcome, where it landed) built from them
  on demand: the checkers look at few writes one by one, so none is built in the pass;
- `at_offset`: (topic, partition, offset) -> the first value seen there (by an ack or a read),
  its first event and its first read there, and `offset_conflicts` for every position seen
  holding more than one value;
- `value_conflicts` for every value seen at more than one position (a value's position is its
  acknowledged one, or before its acknowledgement the first one it was read at);
- `first_read`: value -> the first poll event that returned it;
- per consumer and partition, a *run*: successive reads with no seek, assign, subscribe,
  rebalance or failed/unknown poll in between (any of those can legitimately move the
  position). Within a run the pass records every forward jump (`gaps`, the raw material of
  poll-skip and lost-write) and every step back or repeat (`backsteps`, nonmonotonic-poll);
- reads at or past the high watermark (or LSO) the same poll reported (`uncommitted_reads`);
- per producer and partition, its `ok` sends as (invoke index, offset, completion index);
- commits, resets, committed-offset reads, group assignment observations, drains, faults, and
  which polls were made by members of which group (for the delivery guarantees);
- transactions (`txn`): each send micro-operation is a write like a `send` (its value is in
  `sent`, named by the transaction's invocation; a committed one is acknowledged, with its
  offset), each poll micro-operation a read of the transaction's process (a transaction that did
  not certainly commit ends the run: the client seeks back after an abort). Their polls are not a
  group's deliveries (an aborted transaction's are not deliveries at all): the transactional
  checkers judge consume-transform-produce groups. The index also lists the transactions, the
  read_committed polls and the `stable-offsets` observations for the transactional checkers.

Events not yet completed at the end of the history are treated like `info`: unknown outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from harness.history._gc import no_gc
from harness.history.format import READ_COMMITTED, HistoryError
from specs.transactions import Outcome, outcome_of

if TYPE_CHECKING:
    from harness.history.load import History

TP = tuple[str, int]
TPO = tuple[str, int, int]

NEVER = 1 << 62  # "no completion": later than every event index


class Write:
    """One send: its invocation, outcome (`ok`, `fail`, `info`, or None while pending) and position.

    A send of a transaction (`txn` is True) is named by the transaction's invocation and
    completion; its outcome is the transaction's: `ok` when it committed, `fail` when it certainly
    did not, `info` when unknown."""

    __slots__ = ("value", "process", "invoke", "topic", "partition", "key", "status", "offset", "completion",
                 "txn")

    def __init__(self, invoke: dict[str, Any], completion: dict[str, Any] | None) -> None:
        v = invoke["value"]
        self.value: str = v["value"]
        self.process: str = invoke["process"]
        self.invoke: int = invoke["index"]
        self.topic: str = v["topic"]
        self.partition: int | None = v["partition"]
        self.key: str | None = v["key"]
        self.status: str | None = None
        self.offset: int | None = None
        self.completion: int | None = None
        self.txn = False
        if completion is not None:
            self.status = completion["type"]
            self.completion = completion["index"]
            if self.status == "ok":
                done = completion["value"]
                self.topic, self.partition, self.offset = done["topic"], done["partition"], done["offset"]

    @classmethod
    def of_txn(cls, value: str, invoke: dict[str, Any], completion: dict[str, Any] | None) -> Write:
        """The send of `value` by the transaction `invoke` (completed by `completion`, if it was)."""
        w = cls.__new__(cls)
        done = (completion or {}).get("value", {}).get("ops")
        # The completed micro-operation says where it went; the intended one what was asked.
        op = _txn_send(done, value) or _txn_send(invoke["value"]["ops"], value) or ["send", "", None, None, value]
        w.value, w.process, w.invoke, w.txn = value, invoke["process"], invoke["index"], True
        w.topic, w.partition, w.key, w.offset = op[1], op[2], op[3], None
        w.completion = None if completion is None else completion["index"]
        outcome = outcome_of(None if completion is None else completion["type"],
                             None if completion is None else completion["value"].get("outcome"))
        w.status = {Outcome.COMMITTED: "ok", Outcome.ABORTED: "fail"}.get(
            outcome, None if completion is None else "info")
        if outcome is Outcome.COMMITTED:
            w.offset = op[5] if len(op) == 6 else None
        return w

    @property
    def acked(self) -> bool:
        return self.status == "ok"


def _txn_send(ops: list[list[Any]] | None, value: str) -> list[Any] | None:
    """The send micro-operation of `value` among `ops`."""
    for op in ops or ():
        if op[0] == "send" and op[4] == value:
            return op
    return None


class Commit:
    """One OffsetCommit operation (any outcome)."""

    __slots__ = ("group", "generation", "member", "process", "invoke", "completion", "status", "offsets")

    def __init__(self, group: str, generation: int | None, member: str | None, process: str,
                 invoke: int, offsets: list[list[Any]]) -> None:
        self.group, self.generation, self.member, self.process = group, generation, member, process
        self.invoke, self.offsets = invoke, offsets
        self.completion: int | None = None
        self.status: str | None = None


class Drain:
    """A completed drain: the process read its scope up to the end between `invoke` and `completion`."""

    __slots__ = ("process", "invoke", "completion", "topics", "partitions", "group")

    def __init__(self, process: str, invoke: int, topics: frozenset[str] | None,
                 partitions: frozenset[TP] | None, group: str | None) -> None:
        self.process, self.invoke, self.topics, self.partitions = process, invoke, topics, partitions
        self.group = group
        self.completion = NEVER

    def covers(self, topic: str, partition: int) -> bool:
        if self.partitions is not None:
            return (topic, partition) in self.partitions
        return self.topics is None or topic in self.topics


T = TypeVar("T")


@attrs.frozen
class DerivedView(Generic[T]):
    """The name of a view checkers derive from the index, with its type: ``DerivedView[list[Write]]
    ("acked-unread")``."""

    name: str


class HistoryIndex:
    """The tables described in the module docstring; build with `HistoryIndex.build(history)`."""

    def __init__(self) -> None:
        self.sent: dict[str, dict[str, Any]] = {}
        self.completions: dict[int, dict[str, Any]] = {}
        self.failed: list[str] = []
        # position -> [first value seen there, its first event, first read of it there or -1]
        self.at_offset: dict[TPO, list[Any]] = {}
        self.offset_conflicts: dict[TPO, dict[str, int]] = {}
        # value -> (position, event) where it was first read, while it is not acknowledged
        self.read_before_ack: dict[str, tuple[TPO, int]] = {}
        self.value_conflicts: dict[str, dict[TPO, int]] = {}
        self.first_read: dict[str, int] = {}
        self.acked: set[str] = set()  # values of the `ok` sends (set algebra with first_read is fast)
        # (topic, partition, from offset, to offset, from event, to event, process)
        self.gaps: list[tuple[str, int, int, int, int, int, str]] = []
        self.backsteps: list[tuple[str, int, int, int, int, int, str]] = []
        # (topic, partition, offset, bound, "high watermark" | "last stable offset", poll event)
        self.uncommitted_reads: list[tuple[str, int, int, int, str, int]] = []
        self.producer_sends: dict[tuple[str, str, int], list[tuple[int, int, int]]] = {}
        self.commits: list[Commit] = []
        # (group, topic, partition) -> [(start event, end event)] during which a reset may apply
        self.resets: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
        # (group, topic, partition, offset, invoke, completion)
        self.committed_reads: list[tuple[str, str, int, int, int, int]] = []
        # (group, generation, topic, partition) -> {member: first event}
        self.owners: dict[tuple[str, int, str, int], dict[str, int]] = {}
        self.drains: list[Drain] = []
        # (group, poll completion, process, whether its records are known): ok polls, and `info`
        # polls (which may have delivered records nobody recorded) of group members, in order.
        self.group_polls: list[tuple[str, int, str, bool]] = []
        self.group_topics: dict[str, set[str]] = {}
        self.group_reset_policy: dict[str, str] = {}
        self.faults: list[int] = []
        self.txns: list[int] = []  # transaction invocations, in order
        self.read_committed_polls: list[int] = []  # ok polls whose invocation asked for read_committed
        self.stable_offsets: list[int] = []  # `stable-offsets` observations
        # value -> (position, event) of a transaction's send whose offset is known, any outcome
        self.txn_landed: dict[str, tuple[TPO, int]] = {}
        self._derived: dict[str, Any] = {}  # views checkers derive and share, by DerivedView key
        self.polls = 0
        self.records_read = 0

    def derived(self, key: DerivedView[T], compute: Callable[[], T]) -> T:
        """The view ``key`` names, computed once (by the first checker that needs it) and
        shared with the others."""
        if key.name not in self._derived:
            self._derived[key.name] = compute()
        value: T = self._derived[key.name]
        return value

    @classmethod
    def build(cls, history: History) -> HistoryIndex:
        """The index of a whole history."""
        index = cls()
        feed = index.feeder(history.source)
        with no_gc():
            feed(history.raw)
            feed(None)
        return index

    def feeder(self, source: str) -> Callable[[list[dict[str, Any]] | None], None]:
        """A function to build this index batch by batch, in order (the loader feeds it each
        batch while the batch is still in the CPU cache); feed None to finish."""
        scan = self._scan(source)
        next(scan)

        def feed(batch: list[dict[str, Any]] | None) -> None:
            try:
                scan.send(batch)
            except StopIteration:
                pass

        return feed

    def _scan(self, source: str) -> Generator[None, list[dict[str, Any]] | None, None]:  # noqa: C901
        """The one pass, as a coroutine receiving batches of events (None: the end)."""
        sent = self.sent
        completions = self.completions
        invocations: dict[int, str] = {}  # send invocation index -> value, while it is open

        def raw_value_of(invoke: int) -> str:
            return invocations.pop(invoke)
        acked_add = self.acked.add
        landed = self._landed
        runs: dict[str, dict[TP, list[int]]] = {}
        read = self._reader(runs)
        open_commits: dict[int, Commit] = {}
        open_resets: dict[int, dict[str, Any]] = {}
        open_fetches: dict[int, dict[str, Any]] = {}
        open_drains: dict[int, Drain] = {}
        read_committed: set[int] = set()  # open poll invocations that asked for read_committed
        open_txns: dict[int, dict[str, Any]] = {}
        proc_group: dict[str, str] = {}
        records_read = 0
        polls = 0

        while True:
            batch = yield
            if batch is None:
                break
            for e in batch:
                typ = e["type"]
                f = e["f"]
                if typ == "invoke" and f == "poll":
                    if e["value"] and e["value"].get("isolation_level") == READ_COMMITTED:
                        read_committed.add(e["index"])
                    continue
                idx = e["index"]
                process = e["process"]
                v = e["value"]
                if f == "poll":
                    if read_committed and e["invoke"] in read_committed:
                        read_committed.discard(e["invoke"])
                        if typ == "ok":
                            self.read_committed_polls.append(idx)
                    if typ == "ok":
                        polls += 1
                        records = v["records"]
                        if not records:
                            continue
                        records_read += len(records)
                        group = proc_group.get(process)
                        if group is not None:
                            self.group_polls.append((group, idx, process, True))
                        top = read(records, idx, process)
                        hws = v.get("high_watermarks")
                        if hws:
                            for bound in hws:
                                if bound[2] <= top:  # some record may be at or past it
                                    self._check_bounds(records, hws, "high watermark", idx)
                                    break
                        lsos = v.get("last_stable_offsets")
                        if lsos:
                            self._check_bounds(records, lsos, "last stable offset", idx)
                    else:
                        # A failed or unknown poll may have moved the position (or consumed records
                        # that were never recorded): the next read starts a new run.
                        runs.pop(process, None)
                        if typ == "info" and process in proc_group:
                            self.group_polls.append((proc_group[process], idx, process, False))
                elif f == "send":
                    if typ == "invoke":
                        val = v["value"]
                        if val in sent:
                            raise self._repeated(source, idx, "value.value", val, sent[val])
                        sent[val] = e
                        invocations[idx] = val
                        continue
                    inv = e["invoke"]
                    completions[inv] = e
                    if typ != "ok" and typ != "fail":
                        invocations.pop(inv, None)
                    if typ == "ok":
                        t, p, o = v["topic"], v["partition"], v["offset"]
                        val = raw_value_of(inv)
                        acked_add(val)
                        landed(val, (t, p, o), idx)
                        pkey = (process, t, p)
                        lst = self.producer_sends.get(pkey)
                        if lst is None:
                            self.producer_sends[pkey] = [(inv, o, idx)]
                        else:
                            lst.append((inv, o, idx))
                    elif typ == "fail":
                        self.failed.append(raw_value_of(inv))
                elif f == "txn":
                    if typ == "invoke":
                        self.txns.append(idx)
                        open_txns[idx] = e
                        for op in v["ops"]:
                            if op[0] == "send":
                                if op[4] in sent:
                                    raise self._repeated(source, idx, "value.ops", op[4], sent[op[4]])
                                sent[op[4]] = e
                        continue
                    inv = e["invoke"]
                    completions[inv] = e
                    invocation = open_txns.pop(inv)
                    committed = typ == "ok" and v["outcome"] == "commit"
                    for op in v.get("ops", ()):
                        if op[0] == "send":
                            val = op[4]
                            known = sent.get(val)
                            if known is None:
                                # Decided while it ran (a consume-transform-produce output).
                                sent[val] = invocation
                            elif known is not invocation:
                                raise self._repeated(source, idx, "value.ops", val, known)
                            if op[5] is not None:
                                key = (op[1], op[2], op[5])
                                if committed:
                                    acked_add(val)
                                self.txn_landed[val] = (key, idx)
                                landed(val, key, idx)
                        elif op[0] == "poll" and op[1]:
                            records_read += len(op[1])
                            read(op[1], idx, process)
                    if not committed:
                        runs.pop(process, None)  # its client seeks back to the committed offsets
                elif f == "seek":
                    if typ == "invoke":
                        prun = runs.get(process)
                        if prun is not None:
                            prun.pop((v["topic"], v["partition"]), None)
                        group = proc_group.get(process)
                        if group is not None:
                            # A member seeking may then commit a lower offset on purpose.
                            self.resets.setdefault((group, v["topic"], v["partition"]), []).append((idx, idx))
                elif f in ("assign", "subscribe"):
                    if typ == "invoke":
                        runs.pop(process, None)
                        if f == "subscribe":
                            group = v["group"]
                            proc_group[process] = group
                            self.group_topics.setdefault(group, set()).update(v["topics"])
                            self.group_reset_policy[group] = v.get("auto_offset_reset", "latest")
                elif f == "rebalance":
                    runs.pop(process, None)
                    group = v["group"]
                    proc_group.setdefault(process, group)
                    self._own(group, v.get("generation"), v.get("member"), v["partitions"], idx)
                elif f == "assignment":
                    self._own(v["group"], v["generation"], v["member"], v["partitions"], idx)
                elif f == "commit":
                    if typ == "invoke":
                        c = Commit(v["group"], v.get("generation"), v.get("member"), process, idx, v["offsets"])
                        open_commits[idx] = c
                        self.commits.append(c)
                    else:
                        c = open_commits.pop(e["invoke"])
                        c.status, c.completion = typ, idx
                elif f == "reset":
                    if typ == "invoke":
                        open_resets[idx] = v
                    else:
                        inv = e["invoke"]
                        req = open_resets.pop(inv)
                        if typ != "fail":
                            end = idx if typ == "ok" else NEVER
                            for t, p, _o in req["offsets"]:
                                self.resets.setdefault((req["group"], t, p), []).append((inv, end))
                elif f == "committed":
                    if typ == "invoke":
                        open_fetches[idx] = v
                    else:
                        inv = e["invoke"]
                        req = open_fetches.pop(inv)
                        if typ == "ok":
                            for t, p, o in v["offsets"]:
                                self.committed_reads.append((req["group"], t, p, o, inv, idx))
                elif f == "drain":
                    if typ == "invoke":
                        topics = v.get("topics")
                        parts = v.get("partitions")
                        open_drains[idx] = Drain(process, idx,
                                              None if topics is None else frozenset(topics),
                                              None if parts is None else frozenset((t, p) for t, p in parts),
                                              proc_group.get(process))
                    else:
                        d = open_drains.pop(e["invoke"])
                        if typ == "ok":
                            d.completion = idx
                            self.drains.append(d)
                elif f == "fault":
                    self.faults.append(idx)
                elif f == "stable-offsets":
                    self.stable_offsets.append(idx)
        # Reset intervals still open at the end (pending resets) may apply at any time.
        for inv, req in open_resets.items():
            for t, p, _o in req["offsets"]:
                self.resets.setdefault((req["group"], t, p), []).append((inv, NEVER))
        self.records_read = records_read
        self.polls = polls

    def _reader(self, runs: dict[str, dict[TP, list[int]]]) -> Callable[[list[list[Any]], int, str], int]:
        """The function that indexes the records one read returned (a poll, or a transaction's
        poll micro-operation), continuing the reader's runs; it returns the highest offset read."""
        at_offset = self.at_offset
        new_pair = self._new_pair
        first_read = self.first_read
        gaps_append = self.gaps.append
        backsteps_append = self.backsteps.append
        offset_conflict = self._offset_conflict

        def read(records: list[list[Any]], idx: int, process: str) -> int:
            prun = runs.get(process)
            if prun is None:
                prun = runs[process] = {}
            top = -1
            cur_t: str | None = None
            cur_p = -1
            run: list[int] = []
            for t, p, o, _k, val in records:
                key = (t, p, o)
                seen = at_offset.get(key)
                if seen is None:
                    at_offset[key] = [val, idx, idx]
                    new_pair(key, val, idx)
                    if val not in first_read:
                        first_read[val] = idx
                elif seen[2] < 0 or seen[0] != val:
                    # Only acknowledged so far, or another value: the slow path. (A value already
                    # read at this position needs nothing: the fast path.)
                    if seen[0] != val:
                        offset_conflict(key, seen, val, idx)
                        new_pair(key, val, idx)
                    else:
                        seen[2] = idx
                    if val not in first_read:
                        first_read[val] = idx
                if o > top:
                    top = o
                if p != cur_p or t != cur_t:
                    cur_t, cur_p = t, p
                    tp = (t, p)
                    found = prun.get(tp)
                    if found is None:
                        run = prun[tp] = [o, idx]
                        continue
                    run = found
                last = run[0]
                if o != last + 1:
                    if o > last:
                        gaps_append((t, p, last, o, run[1], idx, process))
                    else:
                        backsteps_append((t, p, last, o, run[1], idx, process))
                run[0] = o
                run[1] = idx
            return top

        return read

    @staticmethod
    def _repeated(source: str, idx: int, field: str, value: str, earlier: dict[str, Any]) -> HistoryError:
        return HistoryError(source, idx + 2, field, f"value {value!r} was already sent by event {earlier['index']}; "
                                                    f"every written value must be unique within a run")

    def _landed(self, val: str, key: TPO, idx: int) -> None:
        """`val` is at `key`, as the completion `idx` of its send said."""
        seen = self.at_offset.get(key)
        if seen is None:
            self.at_offset[key] = [val, idx, -1]
        elif seen[0] != val:
            self._offset_conflict(key, seen, val, idx)
        if self.read_before_ack:
            other = self.read_before_ack.pop(val, None)
            if other is not None and other[0] != key:
                self._value_conflict(val, other, key, idx)

    def _offset_conflict(self, key: TPO, seen: list[Any], val: str, idx: int) -> None:
        known = self.offset_conflicts.get(key)
        if known is None:
            self.offset_conflicts[key] = {seen[0]: seen[1], val: idx}
        elif val not in known:
            known[val] = idx

    def _new_pair(self, key: TPO, val: str, idx: int) -> None:
        """A read of `val` at a position where it was not seen before: is it somewhere else too?"""
        landed = self.txn_landed.get(val) if self.txn_landed else None
        if landed is not None:
            if landed[0] != key:
                self._value_conflict(val, landed, key, idx)
            return
        if val in self.acked:
            done = self.completions[self.sent[val]["index"]]
            v = done["value"]
            home = (v["topic"], v["partition"], v["offset"])
            if home != key:
                self._value_conflict(val, (home, done["index"]), key, idx)
            return
        other = self.read_before_ack.get(val)
        if other is None:
            self.read_before_ack[val] = (key, idx)
        elif other[0] != key:
            self._value_conflict(val, other, key, idx)

    def write(self, value: str) -> Write | None:
        """The send of `value` (None when the history has no send of it)."""
        invoke = self.sent.get(value)
        if invoke is None:
            return None
        if invoke["f"] == "txn":
            return Write.of_txn(value, invoke, self.completions.get(invoke["index"]))
        return Write(invoke, self.completions.get(invoke["index"]))

    def partitions(self) -> set[TP]:
        """The partitions some acknowledged send (or a transaction's send) landed in."""
        return ({(t, p) for _proc, t, p in self.producer_sends}
                | {(t, p) for (t, p, _o), _e in self.txn_landed.values()})

    def _value_conflict(self, val: str, pos: tuple[TPO, int], key: TPO, idx: int) -> None:
        known = self.value_conflicts.get(val)
        if known is None:
            self.value_conflicts[val] = {pos[0]: pos[1], key: idx}
        elif key not in known:
            known[key] = idx

    def _check_bounds(self, records: list[list[Any]], bounds: list[list[Any]], what: str, idx: int) -> None:
        limit = {(t, p): b for t, p, b in bounds}
        for t, p, o, _k, _v in records:
            b = limit.get((t, p))
            if b is not None and o >= b:
                self.uncommitted_reads.append((t, p, o, b, what, idx))

    def _own(self, group: str, generation: int | None, member: str | None,
             partitions: list[list[Any]], idx: int) -> None:
        if generation is None or member is None:
            return
        for t, p in partitions:
            members = self.owners.setdefault((group, generation, t, p), {})
            members.setdefault(member, idx)

    def known_offsets(self) -> dict[TP, list[int]]:
        """Per partition, the sorted offsets known to hold a record (acknowledged or read);
        computed once, shared by the checks (do not change the lists)."""
        return self.derived(KNOWN_OFFSETS, self._known_offsets)

    def _known_offsets(self) -> dict[TP, list[int]]:
        out: dict[TP, list[int]] = {}
        for t, p, o in self.at_offset:
            lst = out.get((t, p))
            if lst is None:
                out[(t, p)] = [o]
            else:
                lst.append(o)
        for lst in out.values():
            lst.sort()
        return out


KNOWN_OFFSETS: DerivedView[dict[TP, list[int]]] = DerivedView("known-offsets")
