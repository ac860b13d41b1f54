"""The consumer-group machine: join, sync, heartbeat, leave, commit and fetch offsets.

Theory of operation. The machine owns one group over one three-partition topic and keeps the
coordinator's state as `specs.groups.GroupModel` (generation, assignment, committed offsets).
Members join and leave; every membership change is a complete rebalance done in one step: all
members send JoinGroup at once (on their own connections, as real consumers would), the leader
computes Kafka's RangeAssignor (`specs.groups.range_assign`) and everyone sends SyncGroup. The
broker may need more than one round to settle (a member arriving while the others already
joined starts another rebalance), and the model accepts that; what it checks is Kafka's
protocol guide and KIP-394 semantics:

- each completed rebalance has one generation for all members, higher than any before;
- SyncGroup hands each member exactly what the leader assigned (no partition owned twice);
- Heartbeat and OffsetCommit with a stale generation are ``ILLEGAL_GENERATION``, from an
  unknown member ``UNKNOWN_MEMBER_ID``; a commit without membership (generation -1) is accepted
  only while the group is empty (the "simple consumer" and admin-reset path);
- OffsetFetch returns exactly what was last committed (-1 for never), checked after every step.

Commits by members only move forward, so the recorded history stays free of legitimate
regressions; moving back is done as an admin reset while the group is empty, recorded as one.
"""

from __future__ import annotations

import asyncio

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from harness.session import JoinAnswer
from harness.stateful.base import KafkaMachine, describe, expect
from harness.wire import WireClient
from reference_broker.groups.testing import consumer_assignment, consumer_subscription, decode_assignment
from specs.groups import GroupModel, range_assign, split_brain
from specs.types import GenerationId, MemberId, Offset, PartitionId, TopicPartition

PARTITIONS = 3
MAX_MEMBERS = 3
REBALANCE_ROUNDS = 5
REBALANCE_TIMEOUT_MS = 10_000  # what members ask for; Kafka completes a join within it


@attrs.define
class MachineMember:
    """A group member the machine drives over its own connection (not the broker's Member)."""

    member_id: str
    connection: WireClient
    process: str


class GroupMachine(KafkaMachine):
    """Drive one consumer group through joins, leaves, heartbeats and commits."""

    def __init__(self) -> None:
        super().__init__()
        self.topic = ""
        self.group = ""
        self.tps: list[tuple[str, int]] = []
        self.model = GroupModel()
        self.members: dict[str, MachineMember] = {}
        self.processes = 0

    @initialize()
    def setup(self) -> None:
        self.step()
        created = self.new_topic(PARTITIONS, {})
        self.topic = created.name
        self.group = self.name("group")
        expect(created.error == "NONE" and created.seen_partitions == PARTITIONS,
               f"CreateTopics {self.topic} with {PARTITIONS} partitions: {created.error}, Metadata shows "
               f"{created.seen_partitions} partitions")
        self.tps = [(self.topic, p) for p in range(PARTITIONS)]
        self.model = GroupModel(committed={TopicPartition(self.topic, PartitionId(p)): Offset(-1)
                                           for p in range(PARTITIONS)})

    # --- membership ----------------------------------------------------------------------------

    @precondition(lambda self: len(self.members) < MAX_MEMBERS)
    @rule()
    def join_new_member(self) -> None:
        self.step()
        self.processes += 1
        process = f"member-{self.processes}"
        connection = self.session.run(self.session.connect(self.session.coordinator(self.group)))
        new = MachineMember("", connection, process)
        self._rebalance([*self.members.values(), new], f"member {process} joining")

    @precondition(lambda self: bool(self.members))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        self.step()
        member_id = data.draw(st.sampled_from(sorted(self.members)), label="member")
        member = self.members.pop(member_id)
        error = self.session.leave(self.group, member_id)
        self.session.run(member.connection.close())
        expect(error == "NONE", f"LeaveGroup of member {member_id}: {error}")
        if self.members:
            self._rebalance(list(self.members.values()), f"member {member_id} leaving")
        else:
            self.model = GroupModel(self.model.generation, {}, self.model.committed)

    @precondition(lambda self: bool(self.members))
    @rule()
    def rejoin_all(self) -> None:
        self.step()
        self._rebalance(list(self.members.values()), "every member rejoining")

    def _rebalance(self, members: list[MachineMember], why: str) -> None:
        """Join everyone, sync with the leader's range assignment; retry while the broker asks
        for another rebalance (as real consumers do)."""
        subscription = consumer_subscription([self.topic])
        history: list[str] = []
        for _round in range(REBALANCE_ROUNDS):
            joins = self.session.run(self._join_all(members, subscription, history))
            generation = joins[0].generation
            leaders = [r for r in joins if r.leader == r.member_id]
            expect(len(leaders) == 1, f"JoinGroup ({why}): {len(leaders)} members were told they lead: {history[-1]}")
            leader = leaders[0]
            listed = {m for m, _ in leader.members}
            expect(listed == {m.member_id for m in members},
                   f"JoinGroup ({why}): the leader was given members {sorted(listed)}, the group has "
                   f"{sorted(m.member_id for m in members)}")
            plan = range_assign([MemberId(m.member_id) for m in members], {self.topic: PARTITIONS})
            assignments = {m: consumer_assignment({self.topic: sorted(tp.partition for tp in tps)})
                           for m, tps in plan.items()}
            syncs = self.session.run(self._sync_all(members, generation, leader.member_id, assignments))
            sync_errors = {e for e, _ in syncs}
            if sync_errors != {"NONE"}:
                expect(sync_errors <= {"NONE", "REBALANCE_IN_PROGRESS"},
                       f"SyncGroup ({why}) in generation {generation}: {[e for e, _ in syncs]}")
                history.append(f"sync: {[e for e, _ in syncs]}")
                continue
            got = {MemberId(m.member_id): frozenset(TopicPartition(t, PartitionId(p)) for t, p in decode_assignment(a))
                   for m, (_, a) in zip(members, syncs)}
            expect(got == plan, f"SyncGroup ({why}) handed out {describe(got)}, the leader assigned {describe(plan)}")
            expect(not split_brain(got), f"generation {generation} gives partitions to two members: {split_brain(got)}")
            expect(generation > self.model.generation,
                   f"rebalance ({why}) completed with generation {generation}, not above the previous "
                   f"{self.model.generation}; each rebalance starts a new, higher generation")
            self.model = GroupModel(GenerationId(generation), plan, self.model.committed)
            self.members = {m.member_id: m for m in members}
            for m in members:
                self.history.observe(m.process, "rebalance", group=self.group, generation=generation,
                                     member=m.member_id,
                                     partitions=[[tp.topic, tp.partition] for tp in sorted(plan[MemberId(m.member_id)])])
            return
        expect(False, f"the group did not settle in {REBALANCE_ROUNDS} rebalance rounds ({why}): {history}")

    async def _join_all(self, members: list[MachineMember], subscription: bytes, history: list[str]) -> list[JoinAnswer]:
        """JoinGroup for every member until all are answered in one generation.

        New members first get their id (KIP-394). Then all join at once. A member whose join
        was answered while others still wait joins again: the broker started another rebalance
        (e.g. a new member arrived after the others completed one), and a real consumer would
        learn that from its heartbeat and rejoin.
        """
        for m in members:
            if not m.member_id:
                first = await self.session.ajoin_once(m.connection, self.group, "", subscription)
                expect(first.error in ("MEMBER_ID_REQUIRED", "NONE"),
                       f"JoinGroup of a new member without an id: {first.error}")
                m.member_id = first.member_id
                if first.error == "NONE":
                    m.member_id = first.member_id  # pre-KIP-394 brokers join at once; it joins again below
        def join(m: MachineMember) -> asyncio.Future[JoinAnswer]:
            return asyncio.ensure_future(self.session.ajoin(m.connection, self.group, m.member_id, subscription,
                                                            rebalance_ms=REBALANCE_TIMEOUT_MS))

        tasks = {i: join(m) for i, m in enumerate(members)}
        latest: dict[int, JoinAnswer] = {}
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + REBALANCE_TIMEOUT_MS / 1000 + 3
        try:
            while True:
                await asyncio.wait(list(tasks.values()), timeout=1.0)
                for i, task in tasks.items():
                    if task.done():
                        latest[i] = task.result()
                        if latest[i].member_id:
                            members[i].member_id = latest[i].member_id
                if all(t.done() for t in tasks.values()):
                    results = [latest[i] for i in range(len(members))]
                    history.append(", ".join(f"{r.error}/gen {r.generation}" for r in results))
                    if {r.error for r in results} == {"NONE"} and len({r.generation for r in results}) == 1:
                        return results
                    expect({r.error for r in results} <= {"NONE", "REBALANCE_IN_PROGRESS", "UNKNOWN_MEMBER_ID"},
                           f"JoinGroup answers: {history[-1]}")
                expect(loop.time() < deadline,
                       f"JoinGroup of {len(members)} member(s) all joining at once was not answered within "
                       f"{loop.time() - started:.0f} s, past the rebalance timeout of "
                       f"{REBALANCE_TIMEOUT_MS // 1000} s they asked for; the coordinator completes the join "
                       f"within it (KIP-134 caps the initial delay by it too). Answers so far: {history}")
                for i, task in list(tasks.items()):
                    if task.done():  # answered, but others wait in a newer rebalance: join again
                        tasks[i] = join(members[i])
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    async def _sync_all(self, members: list[MachineMember], generation: int, leader: str,
                        assignments: dict[MemberId, bytes]) -> list[tuple[str, bytes]]:
        return list(await asyncio.gather(*(
            self.session.async_sync(m.connection, self.group, generation, m.member_id,
                                    {str(k): v for k, v in assignments.items()} if m.member_id == leader else {})
            for m in members)))

    # --- heartbeats and commits ----------------------------------------------------------------

    @precondition(lambda self: bool(self.members))
    @rule(data=st.data(), kind=st.sampled_from(("current", "stale", "unknown")))
    def heartbeat(self, data: st.DataObject, kind: str) -> None:
        self.step()
        member_id = data.draw(st.sampled_from(sorted(self.members)), label="member")
        generation = int(self.model.generation) - (1 if kind == "stale" else 0)
        if kind == "unknown":
            member_id = f"unknown-{self.run_id}"
        error = self.session.heartbeat(self.group, generation, member_id)
        expected = {"current": "NONE", "stale": "ILLEGAL_GENERATION", "unknown": "UNKNOWN_MEMBER_ID"}[kind]
        expect(error == expected,
               f"Heartbeat of {kind} member {member_id} with generation {generation} (current "
               f"{self.model.generation}): {error}, expected {expected} (Kafka protocol guide, Heartbeat)")

    @precondition(lambda self: bool(self.members))
    @rule(data=st.data(), stale=st.booleans(), advance=st.integers(0, 50))
    def commit_as_member(self, data: st.DataObject, stale: bool, advance: int) -> None:
        self.step()
        member_id = data.draw(st.sampled_from(sorted(self.members)), label="member")
        tp = self.tps[data.draw(st.integers(0, PARTITIONS - 1), label="partition")]
        key = TopicPartition(tp[0], PartitionId(tp[1]))
        offset = max(self.model.committed[key], 0) + advance
        generation = GenerationId(self.model.generation - 1 if stale else self.model.generation)
        answer = self.model.commit(generation, MemberId(member_id), {key: Offset(offset)})
        invoke = self.history.invoke(self.members[member_id].process, "commit", group=self.group,
                                     offsets=[[tp[0], tp[1], offset]], generation=generation, member=member_id)
        errors = self.session.offset_commit(self.group, {tp: offset}, generation, member_id)
        error = errors.get(tp, "MISSING")
        if error == "NONE":
            self.history.ok(invoke)
        else:
            self.history.fail(invoke, error)
        expected = answer.error or "NONE"
        expect(error == expected,
               f"OffsetCommit of {tp[0]}-{tp[1]}={offset} by member {member_id} with generation {generation} "
               f"(current {self.model.generation}): {error}, expected {expected}; stale generations are fenced")
        self.model = answer.group

    @rule(data=st.data(), offset=st.integers(0, 500))
    def commit_without_membership(self, data: st.DataObject, offset: int) -> None:
        """A commit with generation -1 and no member id: an admin reset while the group is
        empty (it may move offsets back), refused while the group has members."""
        self.step()
        tp = self.tps[data.draw(st.integers(0, PARTITIONS - 1), label="partition")]
        empty = not self.members
        invoke = self.history.invoke("admin", "reset" if empty else "commit", group=self.group,
                                     offsets=[[tp[0], tp[1], offset]])
        error = self.session.offset_commit(self.group, {tp: offset}).get(tp, "MISSING")
        if error == "NONE":
            self.history.ok(invoke)
        else:
            self.history.fail(invoke, error)
        if empty:
            expect(error == "NONE", f"OffsetCommit of {tp[0]}-{tp[1]}={offset} with generation -1 to an empty "
                   f"group: {error}; Kafka accepts commits without membership while the group is empty")
            self.model = self.model.reset({TopicPartition(tp[0], PartitionId(tp[1])): Offset(offset)})
        else:
            expect(error in ("UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION"),
                   f"OffsetCommit of {tp[0]}-{tp[1]}={offset} with generation -1 and no member id while "
                   f"{len(self.members)} members are in the group: {error}; only members may commit then")

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def committed_offsets_as_committed(self) -> None:
        if not self.tps:
            return
        self.checking("committed_offsets_as_committed")
        invoke = self.history.invoke("checker", "committed", group=self.group, partitions=[list(tp) for tp in self.tps])
        got = self.session.offset_fetch(self.group, self.tps)
        self.history.ok(invoke, offsets=[[t, p, o] for (t, p), (o, _, _) in sorted(got.items())])
        for tp in self.tps:
            offset, _, error = got.get(tp, (-2, None, "MISSING"))
            want = self.model.committed[TopicPartition(tp[0], PartitionId(tp[1]))]
            expect(error == "NONE" and offset == want,
                   f"OffsetFetch {tp[0]}-{tp[1]} of group {self.group}: {error} offset {offset}, the last "
                   f"acknowledged commit was {want} (-1: none)")

    def cleanup(self) -> None:
        for member_id, member in list(self.members.items()):
            try:
                self.session.leave(self.group, member_id)
            except Exception:  # noqa: BLE001 - best effort: the session timeout removes it anyway
                pass
            try:
                self.session.run(member.connection.close())
            except Exception:  # noqa: BLE001
                pass
        self.members.clear()
