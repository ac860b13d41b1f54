"""What a target is: a broker under test, how to start and stop it, and what it can do.

A check declares the capabilities it needs; a target declares the ones it has. The suite runs
a check only on a target that has them all, and reports every other check as *skipped* with
the missing capabilities as the reason, never as passed (docs/architecture.md, principle 5).

Some capabilities are facts about how the harness runs the target (it launched the process, so
it can kill it; it runs several brokers, so topics can be replicated). Others are protocol
features, read from the target's ApiVersions answer at start (`capabilities_from_api_versions`)
so a target that does not offer InitProducerId is not asked to dedupe idempotent resends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import attrs

# --- capability names --------------------------------------------------------------------------

CREATE_TOPICS = "create-topics"
"""Topics can be created with CreateTopics (partitions and topic configs)."""
CONSUMER_GROUPS = "consumer-groups"
"""FindCoordinator, JoinGroup/SyncGroup/Heartbeat/LeaveGroup and OffsetCommit/OffsetFetch."""
IDEMPOTENCE = "idempotence"
"""Idempotent producers: InitProducerId and per-partition sequence numbers (KIP-98)."""
TRANSACTIONS = "transactions"
"""Transactional producers (AddPartitionsToTxn, EndTxn, ... : KIP-98)."""
DELETE_RECORDS = "delete-records"
"""DeleteRecords moves the log start offset (KIP-107)."""
TOPIC_IDS = "topic-ids"
"""Topics have ids (KIP-516): Metadata v10+ returns them, Fetch v13+ addresses topics by id."""
MAX_TIMESTAMP = "list-offsets-max-timestamp"
"""ListOffsets v7+ answers the MAX_TIMESTAMP spec (-3, KIP-734)."""
PROCESS_CONTROL = "process-control"
"""The harness runs the broker processes: it can stop, kill, pause and restart them."""
DURABLE_STORAGE = "durable-storage"
"""Acknowledged records survive a clean restart (the target stores them on disk)."""
REPLICATION = "replication"
"""Several brokers: topics can have a replication factor above one."""
COMPACTION = "compaction"
"""Topics with cleanup.policy=compact are compacted."""
BROKER_CONFIG = "broker-config"
"""The harness chooses the broker's configuration (e.g. short group delays)."""

ALL_CAPABILITIES: tuple[str, ...] = (
    CREATE_TOPICS, CONSUMER_GROUPS, IDEMPOTENCE, TRANSACTIONS, DELETE_RECORDS, TOPIC_IDS,
    MAX_TIMESTAMP, PROCESS_CONTROL, DURABLE_STORAGE, REPLICATION, COMPACTION, BROKER_CONFIG,
)

_GROUP_APIS = (8, 9, 10, 11, 12, 13, 14)
_TXN_APIS = (24, 25, 26, 28)


def capabilities_from_api_versions(versions: Mapping[int, tuple[int, int]]) -> frozenset[str]:
    """The protocol capabilities an ApiVersions answer (api key -> (min, max)) shows."""
    caps: set[str] = set()
    if 19 in versions:
        caps.add(CREATE_TOPICS)
    if all(k in versions for k in _GROUP_APIS):
        caps.add(CONSUMER_GROUPS)
    if 22 in versions:
        caps.add(IDEMPOTENCE)
    if all(k in versions for k in _TXN_APIS):
        caps.add(TRANSACTIONS)
    if 21 in versions:
        caps.add(DELETE_RECORDS)
    if versions.get(3, (0, -1))[1] >= 10 and versions.get(1, (0, -1))[1] >= 13:
        caps.add(TOPIC_IDS)
    if versions.get(2, (0, -1))[1] >= 7:
        caps.add(MAX_TIMESTAMP)
    return frozenset(caps)


def launched_capabilities(brokers: int) -> frozenset[str]:
    """What a target whose brokers the harness launches itself (the reference broker, Apache
    Kafka) has: process control, storage on disk, compaction, its configuration chosen by the
    harness, and replication once there is more than one broker."""
    caps = {PROCESS_CONTROL, DURABLE_STORAGE, COMPACTION, BROKER_CONFIG}
    if brokers > 1:
        caps.add(REPLICATION)
    return frozenset(caps)


class TargetError(RuntimeError):
    """The target could not be started or reached (the message says why and how to fix it)."""


@attrs.frozen
class TargetOptions:
    """What the command line says about the target (each kind takes what it needs)."""

    brokers: int = 1
    overrides: Mapping[str, str] = attrs.field(factory=dict)
    proxies: Sequence[tuple[str, str]] = ()
    bootstrap: str | None = None
    capabilities: Sequence[str] = ()
    version: str | None = None


Running = TypeVar("Running")


class Target:
    """A broker (or cluster) under test.

    Subclasses set :attr:`name`, implement :meth:`from_options`, :meth:`_start`, :meth:`_stop`
    and :attr:`bootstrap`, and declare their fixed capabilities in :meth:`declared_capabilities`.
    Use a target as a context manager; on exit (also on failure or Ctrl-C) everything it
    started is stopped and removed.
    """

    name: str = "target"
    launched: ClassVar[bool] = True
    """kconform starts it (else the user gives ``--bootstrap``, and ``--proxy`` for campaigns)."""
    takes_version: ClassVar[bool] = False
    """``--kafka-version`` picks its release (its ``version`` attribute says which)."""

    @classmethod
    def from_options(cls, options: TargetOptions) -> Self:
        """A target of this kind (not started) from the command line's options."""
        raise NotImplementedError

    def __init__(self) -> None:
        self._probed: frozenset[str] = frozenset()
        self._versions: dict[int, tuple[int, int]] = {}
        self._started = False

    # --- to implement --------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        raise NotImplementedError

    def declared_capabilities(self) -> frozenset[str]:
        """Capabilities that follow from how the harness runs this target."""
        return frozenset()

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Facts for reports (what runs, where, which version)."""
        return {"name": self.name, "bootstrap": self.bootstrap if self._started else None}

    # --- shared --------------------------------------------------------------------------------

    def _running(self, started: Running | None) -> Running:
        """``started`` (the process, cluster or proxy :meth:`_start` made), or the error saying
        this target is not started: what ``bootstrap`` and process control need first."""
        if started is None:
            raise TargetError(f"the {self.name} target is not started")
        return started

    @property
    def capabilities(self) -> frozenset[str]:
        """Declared capabilities plus the protocol features probed at start."""
        return self.declared_capabilities() | self._probed

    @property
    def api_versions(self) -> Mapping[int, tuple[int, int]]:
        return dict(self._versions)

    @property
    def started(self) -> bool:
        return self._started

    def missing(self, required: Iterable[str]) -> list[str]:
        """The required capabilities this target lacks."""
        caps = self.capabilities
        return sorted(c for c in required if c not in caps)

    def start(self) -> Self:
        if self._started:
            return self
        try:
            self._start()
            self._started = True
            self._probe()
        except BaseException:  # also Ctrl-C: never leave a half-started target behind
            self.stop()
            raise
        return self

    def _probe(self) -> None:
        from harness.session import SessionError, WireSession  # local: session imports kio

        try:
            with WireSession(self.bootstrap, timeout_s=10.0) as session:
                self._versions = dict(session.versions)
        except (SessionError, OSError) as exc:
            raise TargetError(f"{self.name} target at {self.bootstrap} does not answer ApiVersions: {exc}") from exc
        self._probed = capabilities_from_api_versions(self._versions)

    def stop(self) -> None:
        self._started = False
        self._stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- process control (targets with PROCESS_CONTROL override these) ------------------------

    def restart(self) -> None:
        """Stop every broker cleanly and start it again on the same address and data."""
        raise TargetError(f"the {self.name} target has no process control")

    def kill(self) -> None:
        raise TargetError(f"the {self.name} target has no process control")
