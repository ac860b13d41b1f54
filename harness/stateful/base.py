"""What every kconform state machine shares: its target, its wire session, its history.

Each machine is a Hypothesis ``RuleBasedStateMachine`` whose rules talk to a real broker and
compare every answer with `specs` (the online check). Rules finish their I/O before they
return, so nothing happens between steps and a replay does what the original run did
(docs/architecture.md, principle 11). Each example starts on fresh, uniquely named topics and groups, so examples do
not see each other's data.

Every machine also records what it did and saw as a history (``self.history``, docs/history-
format.md); when a run fails, the runner hands the failing example's history to the offline
checkers, which name the anomaly (lost-write, inconsistent-offsets, ...).

Examples are cheap to replay, because shrinking replays hundreds of them: the runner gives
every example of a run one wire session (``shared_session``: no new connection, ApiVersions
and leader lookups per example), and fresh topics come from a :class:`~harness.stateful.topics.
TopicPool` that creates them ahead in batches where the broker makes that cheaper.
"""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from hypothesis.stateful import RuleBasedStateMachine

from harness.history.write import HistoryBuilder
from harness.session import WireSession
from harness.stateful.topics import CreatedTopic, TopicPool


class ModelMismatch(AssertionError):
    """The broker answered something the model does not allow."""


def expect(condition: bool, message: str) -> None:
    """Fail the step with ``message`` (the Kafka rule and what was seen) unless ``condition``."""
    if not condition:
        raise ModelMismatch(message)


class KafkaMachine(RuleBasedStateMachine):
    """Base of the machines: a wire session to the target and a history per example.

    ``bootstrap`` and ``capabilities`` are set on a subclass by the runner; when they are None
    the machine uses :func:`harness.stateful.target.current` (plain pytest / HypoFuzz runs).
    """

    bootstrap: ClassVar[str | None] = None
    capabilities: ClassVar[frozenset[str] | None] = None
    target_name: ClassVar[str] = "?"
    steps_run: ClassVar[int] = 0
    last_history: ClassVar[HistoryBuilder | None] = None
    # Set by the runner for a run: one session for every example (the runner closes it).
    shared_session: ClassVar[WireSession | None] = None
    topic_pool: ClassVar[TopicPool | None] = None

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        bootstrap, caps = cls.bootstrap, cls.capabilities
        if bootstrap is None or caps is None:
            from harness.stateful.target import current

            target = current()
            bootstrap, caps = target.bootstrap, target.capabilities
            cls.target_name = target.name
        self.caps: frozenset[str] = caps
        self._own_session = cls.shared_session is None
        self.session = cls.shared_session or WireSession(bootstrap, timeout_s=20.0,
                                                         client_id=f"kconform-{cls.__name__}")
        if cls.topic_pool is None:
            cls.topic_pool = TopicPool()
        self.pool: TopicPool = cls.topic_pool
        self.steps_taken = 0
        self.run_id = uuid.uuid4().hex[:8]
        self._names = itertools.count()
        self._values = itertools.count()
        self.history = HistoryBuilder({"machine": cls.__name__, "target": cls.target_name})
        cls.last_history = self.history

    def has(self, capability: str) -> bool:
        return capability in self.caps

    def name(self, kind: str) -> str:
        """A topic or group name unique to this example."""
        return f"km-{kind}-{self.run_id}-{next(self._names)}"

    def value(self) -> str:
        """A written value unique to this example."""
        return f"v{self.run_id}-{next(self._values)}"

    def step(self) -> None:
        """Count one rule execution (for steps-per-second figures), and tell the session which
        step its requests belong to (a differential session names it when targets differ)."""
        type(self).steps_run += 1
        self.steps_taken += 1
        frame = sys._getframe(1)
        while frame.f_code.co_name.startswith("_") and frame.f_back is not None:
            frame = frame.f_back  # a helper such as _create: name the rule that called it
        self.session.label = f"step {self.steps_taken} ({frame.f_code.co_name})"

    def checking(self, invariant: str) -> None:
        """Tell the session that the requests to come check ``invariant`` after the last step."""
        self.session.label = f"after step {self.steps_taken} (invariant {invariant})"

    def new_topic(self, partitions: int, configs: Mapping[str, str]) -> CreatedTopic:
        """A fresh topic from the run's pool (CreateTopics' answer and Metadata's partitions in it)."""
        return self.pool.take(self.session, partitions, configs)

    def teardown(self) -> None:
        self.cleanup()
        if self._own_session:
            self.session.close()

    def cleanup(self) -> None:
        """Release what the example holds on the broker (group members, ...)."""


def describe(value: Any) -> str:
    """A short repr for failure messages."""
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."
