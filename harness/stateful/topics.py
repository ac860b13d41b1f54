"""Fresh topics for the state machines' examples, created ahead in batches when that is cheaper.

Every example, and every replay Hypothesis makes while shrinking a failure, starts on fresh
topics, so a shrink of several hundred replays creates several hundred topics. Creating one
was about half the cost of an example: 143 ms of 275 ms on a 3-node Apache Kafka 4.4.0 (the
controller's commit, then waiting until the leader serves it), 30-55 ms of 90-107 ms on the
reference broker (thirteen fsyncs). Kafka's controller creates sixteen topics in one
CreateTopics request for the price of one (72 ms against 76 ms, measured), so a
:class:`TopicPool` creates topics ahead, several per request, and hands each out once.

It batches only where that pays: the first two requests create one topic each (the first
CreateTopics of a fresh broker is often slow, so the cheaper of the two is the baseline), the
next two topics, and the size keeps doubling (up to :data:`MAX_BATCH`) only while a topic costs
less than three quarters of what it cost in the batch before; when it stops paying, the pool
settles on the previous size. The reference broker's cost is per topic (its fsyncs), so there
the pool settles on one topic per request and creates nothing ahead. A pool leaves at most one
unused batch per topic shape behind (topics nobody wrote to), on a broker the machines already
leave their topics on.

A topic taken from the pool is as fresh as one created in the step: nobody has written to it,
and its CreateTopics answer and the partitions Metadata showed are checked by the step that
takes it.

The pool remembers every topic it created, and :meth:`TopicPool.delete_all` deletes them when
the run is over: a sweep of many runs against one broker otherwise piles up thousands of
partitions (the reference broker refused CreateTopics with INVALID_PARTITIONS after fourteen
seeds of a sweep, its open-file budget spent).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Mapping

import attrs

from harness.session import SessionError, UnsupportedApi, WireSession

MAX_BATCH = 8
AMORTIZES = 0.75  # grow while a topic costs less than this share of its cost in the batch before

Shape = tuple[int, tuple[tuple[str, str], ...]]  # partitions, sorted configs


@attrs.frozen
class CreatedTopic:
    """One topic as created: CreateTopics' error for it, the partitions Metadata showed."""

    name: str
    partitions: int
    configs: dict[str, str]
    error: str
    seen_partitions: int


class TopicPool:
    """Topics by shape (partitions, configs), created ahead in growing batches when the broker
    creates many for the price of one."""

    def __init__(self, prefix: str = "km-t") -> None:
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self._names = itertools.count()
        self._ready: dict[Shape, list[CreatedTopic]] = {}
        self.batch = 1
        self._alone_s: list[float] = []  # what the first topics, created alone, cost
        self._per_topic_s = 0.0  # what a topic cost in the last batch that paid
        self._growing = True
        self.requests = 0
        self.created = 0
        self.names: list[str] = []  # every topic created, handed out or not

    def take(self, session: WireSession, partitions: int, configs: Mapping[str, str]) -> CreatedTopic:
        """A topic nobody has used, created (now or ahead) with ``partitions`` and ``configs``."""
        shape: Shape = (partitions, tuple(sorted(configs.items())))
        ready = self._ready.setdefault(shape, [])
        if not ready:
            ready.extend(self._create(session, partitions, dict(configs)))
        return ready.pop(0)

    def _create(self, session: WireSession, partitions: int, configs: dict[str, str]) -> list[CreatedTopic]:
        count = self.batch
        names = [f"{self.prefix}-{next(self._names)}" for _ in range(count)]
        started = time.perf_counter()
        self.names += names
        answers = session.create_topics({name: (partitions, configs) for name in names})
        self._learn(count, time.perf_counter() - started)
        self.requests += 1
        self.created += count
        return [CreatedTopic(name, partitions, configs, *answers[name]) for name in names]

    def delete_all(self, session: WireSession) -> int:
        """Delete every topic the pool created (best effort); how many are left behind."""
        names, self.names = self.names, []
        self._ready.clear()
        if not names:
            return 0
        try:
            errors = session.delete_topics(names)
        except (SessionError, UnsupportedApi):
            return len(names)
        return sum(1 for name in names if errors.get(name) not in ("NONE", "UNKNOWN_TOPIC_OR_PARTITION"))

    def _learn(self, count: int, seconds: float) -> None:
        """Grow the batch while batching pays (timings are noisy: a wrong guess costs speed,
        never correctness)."""
        if not self._growing:
            return
        if count == 1:
            self._alone_s.append(seconds)
            if len(self._alone_s) == 2:
                self._per_topic_s, self.batch = min(self._alone_s), 2
        elif seconds / count < AMORTIZES * self._per_topic_s:
            self._per_topic_s, self.batch = seconds / count, min(MAX_BATCH, count * 2)
        else:
            self.batch, self._growing = count // 2, False
