"""ListOffsets MAX_TIMESTAMP (KIP-734) and timestamp lookups, settled by Apache Kafka.

Each scenario is a request sequence with the answers Apache Kafka 3.9.2 and 4.4.0 gave (both
measured, the same): ties on the largest timestamp in one batch, across batches and across
segments; DeleteRecords past the record holding it and past part of its batch; a log emptied by
DeleteRecords; an empty partition; retention removing every segment; a timestamp lookup whose
first qualifying segment has nothing left at or after the log start. The same table is pinned
three times, so none can drift alone:

- against the model (`specs.offsets`), fast;
- against the reference broker, fast;
- against real Kafka, one single-node KRaft cluster per version (slow; skipped, with the
  reason, without Java or the jars).

Timestamps are written in seconds after T0; answers are (offset, timestamp) for MAX_TIMESTAMP
and the offset for a lookup. The brokers check retention every second here
(``log.retention.check.interval.ms``), so the retention scenario takes a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from harness.session import EARLIEST, MAX_TIMESTAMP, WireSession, make_batch
from harness.targets import KafkaTarget, ReferenceTarget, Target
from specs.log import LogModel, ModelRecord
from specs.offsets import StoredLog, list_offsets, max_timestamp
from specs.types import Offset
from tests.kafka_helpers import kafka_missing

T0 = 1_700_000_000_000
RETENTION_CHECK = {"log.retention.check.interval.ms": "1000"}
BIG = 600_000  # bytes of one record in the scenario that needs two segments of 1 MiB (Kafka 4's least)
WAIT_S = 60.0

Step = tuple[Any, ...]


def _produce(*stamps: int) -> Step:
    return ("produce", stamps)


def _big(*stamps: int) -> Step:
    return ("big", stamps)


def _delete(offset: int) -> Step:
    return ("delete", offset)


def _max(offset: int, stamp: int | None) -> Step:
    """MAX_TIMESTAMP answers ``offset`` with timestamp T0 + ``stamp`` s (None: -1)."""
    return ("max", (offset, stamp))


def _at(stamp: int, offset: int) -> Step:
    """A lookup of T0 + ``stamp`` s answers ``offset``."""
    return ("at", stamp, offset)


def _retention(start: int) -> Step:
    """Wait until retention has moved the log start to ``start`` (every segment expired)."""
    return ("retention", start)


# name -> (topic configs, offsets where the broker starts a new segment, steps)
SCENARIOS: dict[str, tuple[dict[str, str], tuple[int, ...], tuple[Step, ...]]] = {
    "one batch, one timestamp, DeleteRecords past its first record (seed 1828024342)": (
        {}, (), (_produce(0, 0, 0), _delete(1), _max(0, 0), _delete(3), _max(0, 0))),
    "one batch, the largest timestamp in the middle, DeleteRecords past it": (
        {}, (), (_produce(1, 5, 2), _max(1, 5), _delete(2), _max(1, 5), _delete(3), _max(1, 5),
                 _produce(3), _max(1, 5))),
    "ties across batches: the first batch's record": (
        {}, (), (_produce(5), _produce(5), _produce(1, 5), _max(0, 5), _delete(1), _max(0, 5),
                 _delete(2), _max(0, 5))),
    "ties inside batches: the first record of the first batch reaching it": (
        {}, (), (_produce(1, 5, 5), _produce(5, 5), _max(1, 5))),
    "a larger timestamp later, then DeleteRecords past it": (
        {}, (), (_produce(5), _produce(9, 2), _max(1, 9), _delete(2), _max(1, 9), _produce(4), _max(1, 9))),
    "an empty partition": ({}, (), (_max(-1, None),)),
    "a log DeleteRecords emptied: the answer is below the log start, lookups find nothing": (
        {}, (), (_produce(3, 7), _delete(2), _max(1, 7), _at(0, -1), _at(7, -1))),
    "retention removed every segment: nothing stored, then the new record": (
        {"retention.ms": "1000"}, (), (_produce(1, 2), _produce(3), _max(2, 3), _retention(3), _max(-1, None),
                                       _at(0, -1), _produce(0), _max(3, 0))),
    "a lookup commits to the first segment whose largest timestamp reaches it": (
        # segment.ms rolls on record timestamps: the batch at 7 s is over 1 s after the first
        {"segment.ms": "1000", "retention.ms": "-1"}, (2,),
        (_produce(5, 1), _produce(7), _max(2, 7), _delete(1), _at(4, -1), _at(6, 2), _at(0, 1), _max(2, 7))),
    "ties across segments: the first segment's record": (
        {"segment.bytes": "1048576", "retention.ms": "-1"}, (1, 2),
        (_big(5), _big(5), _max(0, 5), _produce(5), _max(0, 5))),
}


def _ts(stamp: int) -> int:
    return T0 + 1000 * stamp


def _observed(answer_offset: int, answer_timestamp: int) -> tuple[int, int | None]:
    return answer_offset, None if answer_timestamp < 0 else (answer_timestamp - T0) // 1000


def replay(session: WireSession, topic: str, configs: dict[str, str], steps: Sequence[Step]) -> list[Step]:
    """Run ``steps`` on a new topic; the observation steps with what the broker answered."""
    error = session.create_topic(topic, 1, configs=configs)
    assert error == "NONE", f"CreateTopics {topic} {configs}: {error}"
    seen: list[Step] = []
    for step in steps:
        if step[0] in ("produce", "big"):
            value = b"x" * BIG if step[0] == "big" else b"v"
            result = session.produce(topic, 0, make_batch([value] * len(step[1]), timestamps=[_ts(s) for s in step[1]]))
            assert result is not None and result.error == "NONE", result
        elif step[0] == "delete":
            assert session.delete_records(topic, 0, step[1]) == ("NONE", step[1])
        elif step[0] == "max":
            answer = session.list_offsets(topic, 0, MAX_TIMESTAMP)
            assert answer.error == "NONE", answer
            seen.append(("max", _observed(answer.offset, answer.timestamp)))
        elif step[0] == "at":
            answer = session.list_offsets(topic, 0, _ts(step[1]))
            assert answer.error == "NONE", answer
            seen.append(("at", step[1], answer.offset))
        elif step[0] == "retention":
            deadline = time.monotonic() + WAIT_S
            while session.list_offsets(topic, 0, EARLIEST).offset < step[1]:
                assert time.monotonic() < deadline, f"retention did not move the log start to {step[1]}"
                time.sleep(0.2)
    return seen


def expected(steps: Sequence[Step]) -> list[Step]:
    return [s for s in steps if s[0] in ("max", "at")]


def model(segment_starts: Sequence[int], steps: Sequence[Step]) -> list[Step]:
    """What `specs.offsets` says for the observation steps: the log (committed at once: acks
    all, one replica) and what is stored (DeleteRecords keeps the records in their segment,
    retention removes every segment; ``segment_starts`` says where the broker rolled)."""
    appended: list[tuple[Offset, ModelRecord]] = []
    start = stored_from = 0
    seen: list[Step] = []
    for step in steps:
        if step[0] in ("produce", "big"):
            base = len(appended)
            appended += [(Offset(base + i), ModelRecord(f"v{base + i}", timestamp=_ts(s))) for i, s in enumerate(step[1])]
        elif step[0] == "delete":
            start = max(start, step[1])
        elif step[0] == "retention":
            start = stored_from = step[1]
        records = tuple(r for o, r in appended if o >= start)
        log = LogModel(Offset(start), Offset(len(appended)), records)
        stored = [(o, r) for o, r in appended if o >= stored_from]
        bounds = [0, *segment_starts, len(appended)]
        segments = tuple(tuple((o, r) for o, r in stored if lo <= o < hi) for lo, hi in zip(bounds, bounds[1:]))
        view = StoredLog(tuple(s for s in segments if s))
        if step[0] == "max":
            stamp, offset = max_timestamp(log, stored=view)
            seen.append(("max", _observed(offset, stamp)))
        elif step[0] == "at":
            seen.append(("at", step[1], list_offsets(log, _ts(step[1]), stored=view)))
    return seen


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_model_answers_what_kafka_answered(name: str) -> None:
    _, segment_starts, steps = SCENARIOS[name]
    assert model(segment_starts, steps) == expected(steps)


def _replay_all(target: Target) -> dict[str, list[Step]]:
    out = {}
    with WireSession(target.bootstrap, timeout_s=30) as session:
        for i, (name, (configs, _, steps)) in enumerate(SCENARIOS.items()):
            out[name] = replay(session, f"max-ts-{i}-{int(time.time() * 1000)}", configs, steps)
    return out


def _compare(answers: dict[str, list[Step]]) -> None:
    wrong = {name: (got, expected(SCENARIOS[name][2])) for name, got in answers.items()
             if got != expected(SCENARIOS[name][2])}
    assert not wrong, "\n".join(f"{name}: answered {got}, Kafka answers {want}" for name, (got, want) in wrong.items())


def test_the_reference_broker_answers_what_kafka_answered() -> None:
    with ReferenceTarget(overrides=RETENTION_CHECK) as target:
        _compare(_replay_all(target))


@pytest.fixture(scope="module", params=["4.4.0", "3.9.2"])
def kafka(request: pytest.FixtureRequest) -> Iterator[KafkaTarget]:
    version: str = request.param
    reason = kafka_missing(version)
    if reason is not None:
        pytest.skip(reason)
    with KafkaTarget(version, brokers=1, overrides=RETENTION_CHECK) as target:
        yield target


@pytest.mark.slow
def test_apache_kafka_answers_as_pinned(kafka: KafkaTarget) -> None:
    """The table above is what Kafka answers; if a release changes, this says where."""
    _compare(_replay_all(kafka))
