"""A Hypothesis state machine: simulated consumers join, sync, heartbeat, commit, leave, go
silent, restart (static members), while the clock moves and the coordinator restarts.

Checked after every step:

* generation ids never decrease, also across coordinator restarts;
* within one generation no partition is owned by two members (group split-brain), and every
  member's assignment is the one the leader sent for that generation;
* while Stable, the coordinator's members hold exactly the leader's assignment of the current
  generation (only one generation's assignment is active);
* OffsetFetch returns, per partition, the last offset whose commit succeeded, and only members
  of the current generation have commits accepted.
"""

from __future__ import annotations

from typing import TypeVar

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from kio.schema.errors import ErrorCode

from reference_broker.groups import GroupState
from reference_broker.groups.coordinator import JoinResult, SyncResult
from reference_broker.groups.testing import (
    TEST_CONFIG,
    CoordinatorDriver,
    Reply,
    consumer_assignment,
    consumer_subscription,
    decode_assignment,
)

TOPIC = "t"
PARTITIONS = 6
SESSION_MS = 10_000
# Static members usually run with long sessions (KIP-345), longer than the rebalance timeout
# here, so they can miss a whole rebalance and stay members with a stale generation.
STATIC_SESSION_MS = 45_000
PROTOCOLS = (("roundrobin", consumer_subscription([TOPIC])),)
CONFIG = attrs.evolve(
    TEST_CONFIG,
    initial_rebalance_delay_ms=100,
    # No expiry during a run: the model keeps every committed offset.
    offsets_retention_ms=2**62,
    offsets_retention_check_interval_ms=2**62,
)

T = TypeVar("T")


def _take_answer(reply: Reply[T] | None) -> tuple[T | None, Reply[T] | None]:
    """A parked request's answer (None: "no response") and the request still parked: itself
    while it has no answer, else None."""
    if reply is None or not reply.done:
        return None, reply
    return reply.calls[0], None


@attrs.define(eq=False)
class Client:
    """One simulated consumer process."""

    name: str
    instance_id: str | None
    member_id: str = ""
    generation: int = -1
    joining: Reply[JoinResult] | None = None
    joined: JoinResult | None = None  # answered, SyncGroup not sent yet
    syncing: Reply[SyncResult] | None = None
    assignment: frozenset[tuple[str, int]] | None = None
    needs_rejoin: bool = False
    dead: bool = False

    @property
    def owner(self) -> str:
        """Who owns an assignment: a static member's identity survives member-id changes."""
        return self.instance_id if self.instance_id is not None else self.member_id

    @property
    def busy(self) -> bool:
        return self.joining is not None or self.syncing is not None

    def reset(self) -> None:
        self.member_id, self.generation, self.joined, self.assignment = "", -1, None, None


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.driver = CoordinatorDriver(CONFIG)
        self.clients: list[Client] = []
        self.highest_generation = 0
        # generation -> owner -> partitions, as the leader sent it
        self.leader_assignments: dict[int, dict[str, frozenset[tuple[str, int]]]] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.instances = 0

    # --- helpers -----------------------------------------------------------------------------

    def live(self) -> list[Client]:
        return [c for c in self.clients if not c.dead]

    def pick(self, index: int, idle: bool = True) -> Client | None:
        candidates = [c for c in self.live() if not (idle and c.busy)]
        return candidates[index % len(candidates)] if candidates else None

    def settle(self) -> None:
        """Let clients react to every answer that has arrived."""
        for _ in range(3):
            for client in list(self.clients):
                self._on_join(client)
                self._on_sync(client)

    def _on_join(self, client: Client) -> None:
        result, client.joining = _take_answer(client.joining)
        if result is None:
            return
        if result.error == ErrorCode.member_id_required:
            client.member_id = result.member_id
            self._join(client)  # clients rejoin with the given id at once
        elif result.error == ErrorCode.fenced_instance_id:
            client.dead = True
        elif result.error == ErrorCode.unknown_member_id:
            client.reset()
        elif result.error == ErrorCode.none:
            assert result.generation_id >= self.highest_generation, "generation went back"
            self.highest_generation = result.generation_id
            client.member_id, client.generation = result.member_id, result.generation_id
            client.joined, client.assignment = result, None

    def _on_sync(self, client: Client) -> None:
        result, client.syncing = _take_answer(client.syncing)
        if result is None:
            return
        if result.error == ErrorCode.rebalance_in_progress:
            client.needs_rejoin = True
        elif result.error == ErrorCode.none:
            owned = frozenset(decode_assignment(result.assignment))
            sent = self.leader_assignments.get(client.generation)
            assert sent is not None, f"an assignment for generation {client.generation} nobody sent"
            assert owned == sent.get(client.owner, frozenset()), "not the leader's assignment"
            client.assignment = owned
        elif result.error == ErrorCode.fenced_instance_id:
            client.dead = True
        elif result.error == ErrorCode.unknown_member_id:
            client.reset()
        else:
            client.assignment = None

    # --- rules -------------------------------------------------------------------------------

    @initialize(statics=st.lists(st.booleans(), min_size=1, max_size=4))
    def start_group(self, statics: list[bool]) -> None:
        """Several consumers start together and settle into a first generation."""
        for static in statics:
            self.start_client(static)
        for _ in range(3 * len(statics)):
            self.advance(50)
            for index in range(len(statics)):
                self.poll(index)

    @precondition(lambda self: len(self.live()) < 5)
    @rule(static=st.booleans())
    def start_client(self, static: bool) -> None:
        instance = None
        if static:
            self.instances += 1
            instance = f"i{self.instances}"
        client = Client(f"c{len(self.clients)}", instance)
        self.clients.append(client)
        self._join(client)
        self.settle()

    @rule(index=st.integers(0, 10))
    def poll(self, index: int) -> None:
        """A client's poll loop takes its next protocol step, as client libraries do."""
        client = self.pick(index)
        if client is None:
            return
        if client.joined is not None:
            self._sync(client)
        elif client.generation < 0 or client.needs_rejoin:
            self._join(client)
        else:
            self._heartbeat(client)
        self.settle()

    def _join(self, client: Client) -> None:
        client.joined, client.needs_rejoin = None, False
        client.joining = self.driver.join(client.member_id, instance_id=client.instance_id,
                                          protocols=PROTOCOLS,
                                          session_ms=STATIC_SESSION_MS if client.instance_id
                                          else SESSION_MS,
                                          client_id=client.name)

    def _sync(self, client: Client) -> None:
        joined = client.joined
        assert joined is not None
        client.joined = None
        assignments: dict[str, bytes] = {}
        if joined.leader == joined.member_id and joined.members and not joined.skip_assignment:
            owners = {
                member_id: (instance if instance is not None else member_id)
                for member_id, instance, _ in joined.members
            }
            ordered = sorted(owners)
            plan: dict[str, list[int]] = {m: [] for m in ordered}
            for p in range(PARTITIONS):
                plan[ordered[p % len(ordered)]].append(p)
            sent = {owners[m]: frozenset((TOPIC, p) for p in ps) for m, ps in plan.items()}
            self.leader_assignments.setdefault(joined.generation_id, sent)
            assignments = {m: consumer_assignment({TOPIC: ps}) for m, ps in plan.items()}
        client.syncing = self.driver.sync(client.member_id, joined.generation_id, assignments,
                                          instance_id=client.instance_id)

    def _heartbeat(self, client: Client) -> None:
        error = self.driver.heartbeat(client.member_id, client.generation,
                                      instance_id=client.instance_id)
        if error == ErrorCode.unknown_member_id:
            client.reset()
        elif error == ErrorCode.illegal_generation:
            client.generation, client.assignment = -1, None
        elif error == ErrorCode.rebalance_in_progress:
            client.needs_rejoin = True
        elif error == ErrorCode.fenced_instance_id:
            client.dead = True

    @rule(index=st.integers(0, 10), partition=st.integers(0, PARTITIONS - 1),
          offset=st.integers(0, 1000))
    def commit(self, index: int, partition: int, offset: int) -> None:
        client = self.pick(index, idle=False)
        if client is None or client.generation < 0:
            return
        tp = (TOPIC, partition)
        group = self.driver.coordinator.group("g")
        current = group is not None and client.member_id in group.members and (
            client.generation == group.generation_id
        )
        result = self.driver.commit({tp: offset}, client.member_id, client.generation,
                                    instance_id=client.instance_id)
        if result[tp] == ErrorCode.none:
            assert current, "a commit from outside the current generation was accepted"
            self.committed[tp] = offset
        self.settle()

    @rule(index=st.integers(0, 10))
    def leave(self, index: int) -> None:
        client = self.pick(index)
        if client is None or not client.member_id:
            return
        self.driver.leave(client.member_id, instance_id=client.instance_id)
        client.dead = True
        self.settle()

    @rule(index=st.integers(0, 10))
    def crash(self, index: int) -> None:
        """A client process dies without a word; a static one comes back with its instance id."""
        client = self.pick(index, idle=False)
        if client is None:
            return
        client.dead = True
        if client.instance_id is not None:
            again = Client(f"c{len(self.clients)}", client.instance_id)
            self.clients.append(again)
            self._join(again)
        self.settle()

    @rule(ms=st.sampled_from([1, 50, 100, 1000, 4000, 11_000, 31_000, 46_000]))
    def advance(self, ms: int) -> None:
        self.driver.advance(ms)
        self.settle()

    @rule()
    def restart_coordinator(self) -> None:
        self.driver.restart()
        for client in self.clients:
            # Their connections closed: parked requests are lost and the clients retry.
            client.joining = client.syncing = None
        self.settle()

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def generation_never_decreases(self) -> None:
        group = self.driver.coordinator.group("g")
        if group is not None:
            assert group.generation_id >= self.highest_generation
            self.highest_generation = group.generation_id

    @invariant()
    def no_partition_owned_twice_in_a_generation(self) -> None:
        owners: dict[tuple[int, tuple[str, int]], str] = {}
        for client in self.clients:
            for tp in client.assignment or ():
                key = (client.generation, tp)
                assert owners.setdefault(key, client.owner) == client.owner, (
                    f"{tp} owned by {owners[key]} and {client.owner} in generation {key[0]}"
                )

    @invariant()
    def stable_group_holds_one_generations_assignment(self) -> None:
        group = self.driver.coordinator.group("g")
        if group is None or not group.is_(GroupState.STABLE):
            return
        sent = self.leader_assignments.get(group.generation_id)
        assert sent is not None
        seen: set[tuple[str, int]] = set()
        for member in group.members.values():
            owner = member.group_instance_id or member.member_id
            owned = decode_assignment(member.assignment)
            assert owned == sent.get(owner, frozenset())
            assert not owned & seen
            seen |= owned

    @invariant()
    def committed_offsets_are_as_committed(self) -> None:
        assert self.driver.committed() == self.committed


TestGroupMachine = GroupMachine.TestCase
TestGroupMachine.settings = settings(TestGroupMachine.settings, stateful_step_count=80)
