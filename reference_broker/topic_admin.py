"""A broker's part in creating topics: validation, the guards of this reference broker, and
asking the controller (KIP-590 forwarding; auto-creation on Metadata and Produce).

Topics are created by the controller; a broker validates what it can answer at once (topic
name, partition count, replication factor, configs) and forwards the rest. Two topics are
created on a client's behalf: any topic a Metadata or Produce request names when
``auto.create.topics.enable`` is set (``num.partitions``, ``default.replication.factor``), and
``__consumer_offsets`` when a group first needs a coordinator (compacted, with the
``offsets.topic.*`` settings), ``__transaction_state`` when a transactional id first does
(``transaction.state.log.*``). While that is under way, or impossible (its replication factor
above the live brokers), the coordinator's requests get COORDINATOR_NOT_AVAILABLE, as in Kafka.
"""

from __future__ import annotations

import datetime
import logging
import resource
from collections.abc import Callable, Mapping

import attrs
from kio.schema.create_topics.v7.response import CreateTopicsResponse
from kio.schema.errors import ErrorCode

from reference_broker.config import BrokerConfig, ConfigError, topic_config_value, validate_topic_configs
from reference_broker.controller_client import ControllerClient, new_topic
from reference_broker.groups import OFFSETS_TOPIC
from reference_broker.topics import TopicsView, validate_topic_name
from reference_broker.transactions import TRANSACTION_STATE_TOPIC

log = logging.getLogger(__name__)

# Reference-broker guards, not Kafka rules (Kafka accepts any positive partition count). Without
# them one CreateTopics or CreatePartitions asking for 2**31-1 partitions makes this node create
# directories until the disk or the clock runs out. Every partition also keeps files open (the
# .log, .index and .timeindex of at least its active segment), so the node refuses partitions
# beyond what its open-file limit can hold: running out of descriptors would stop it accepting
# connections from every client, not just the one asking.
MAX_PARTITIONS_PER_TOPIC = 10_000
FILES_PER_PARTITION = 3
FILE_HEADROOM = 512  # descriptors kept for sockets, rolled segments and the metadata log
# How long a forwarded admin request waits for this broker's metadata to show its effect.
METADATA_WAIT_MS = 5000
METADATA_WAIT = datetime.timedelta(milliseconds=METADATA_WAIT_MS)
# The internal topics a broker creates on first use, and the prefix of their settings
# (<prefix>.num.partitions, .replication.factor, .segment.bytes).
INTERNAL_TOPICS = {OFFSETS_TOPIC: "offsets.topic", TRANSACTION_STATE_TOPIC: "transaction.state.log"}


def partition_budget() -> int:
    """How many partitions this process can keep open under its RLIMIT_NOFILE soft limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 2**31 - 1
    return max(0, (soft - FILE_HEADROOM) // FILES_PER_PARTITION)


class BrokerError(Exception):
    """An operation refused with a Kafka error (``error``)."""

    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


@attrs.define
class TopicAdmin:
    """Topic validation and creation for one broker; see the module docstring.

    ``hosted_partitions`` counts the partitions this node keeps open (for the open-file guard);
    ``local`` is true when the controller answers synchronously (combined mode).
    """

    config: BrokerConfig
    topics: TopicsView
    client: ControllerClient
    local: bool
    hosted_partitions: Callable[[], int]
    _auto_creating: set[str] = attrs.field(factory=set, init=False)

    @property
    def auto_create_enabled(self) -> bool:
        return bool(self.config.get("auto.create.topics.enable"))

    def min_insync_replicas(self, topic: str) -> int:
        record = self.topics.get(topic)
        overrides = record.configs if record is not None else {}
        return int(topic_config_value(self.config, overrides, "min.insync.replicas"))

    def check_partition_limits(self, topic_total: int, new: int) -> None:
        """Refuse partition counts past the reference-broker guards (MAX_PARTITIONS_PER_TOPIC,
        and what this node's open-file limit can keep open)."""
        if topic_total > MAX_PARTITIONS_PER_TOPIC:
            raise BrokerError(
                ErrorCode.invalid_partitions,
                f"{topic_total} partitions requested; the reference broker allows at most "
                f"{MAX_PARTITIONS_PER_TOPIC} per topic.",
            )
        budget = partition_budget()
        hosted = self.hosted_partitions()
        if hosted + new > budget:
            raise BrokerError(
                ErrorCode.invalid_partitions,
                f"{new} new partition(s) would bring this node to {hosted + new}, "
                f"more than the {budget} its open-file limit (ulimit -n) can keep open.",
            )

    def check_new_topic(
        self, name: str, partitions: int, replication_factor: int, configs: Mapping[str, str | None]
    ) -> dict[str, str]:
        """Validate a new topic before asking the controller; returns the effective overrides."""
        try:
            validate_topic_name(name)
        except ValueError as exc:
            raise BrokerError(ErrorCode.invalid_topic_exception, str(exc)) from None
        if self.topics.get(name) is not None:
            raise BrokerError(ErrorCode.topic_already_exists, f"Topic '{name}' already exists.")
        if partitions <= 0:
            raise BrokerError(ErrorCode.invalid_partitions,
                              f"Number of partitions must be positive, got {partitions}.")
        self.check_partition_limits(partitions, partitions)
        if replication_factor <= 0:
            raise BrokerError(
                ErrorCode.invalid_replication_factor,
                f"Replication factor must be positive, got {replication_factor}.",
            )
        try:
            return validate_topic_configs(configs)
        except ConfigError as exc:
            raise BrokerError(ErrorCode.invalid_config, str(exc)) from None

    def request_topic_creation(
        self, name: str, partitions: int, replication_factor: int, configs: Mapping[str, str],
        now_ms: int, callback: Callable[[ErrorCode, str], None] | None = None,
    ) -> None:
        """Ask the controller to create a topic; ``callback(error, message)`` gets its answer
        (at once in combined mode, where the topic then exists)."""

        def answered(response: CreateTopicsResponse | None) -> None:
            if response is None:
                error, message = ErrorCode.request_timed_out, "the controller did not answer"
            else:
                result = response.topics[0]
                error, message = ErrorCode(result.error_code), result.error_message or ""
            if callback is not None:
                callback(error, message)

        topic = new_topic(name, partitions, replication_factor, configs=configs.items())
        self.client.create_topics([topic], METADATA_WAIT, False, answered, now_ms)

    def auto_create_topic(self, name: str, now_ms: int) -> None:
        """Create a topic a client asked for (Metadata, Produce) with the broker defaults.
        Raises BrokerError when it cannot be created; returns once it exists (combined mode)
        or once its creation has been asked for (a remote controller: the client retries)."""
        if name in INTERNAL_TOPICS:
            # Created as Kafka creates it: compacted, with its own settings.
            error = self.ensure_internal_topic(name, now_ms)
            if error is not None and not self.local:
                return
            if error is not None:
                raise BrokerError(ErrorCode.coordinator_not_available, f"cannot create {name}")
            return
        partitions = int(self.config.get("num.partitions"))
        replication_factor = int(self.config.get("default.replication.factor"))
        self.check_new_topic(name, partitions, replication_factor, {})
        if name in self._auto_creating:
            return
        outcome: list[tuple[ErrorCode, str]] = []

        def answered(error: ErrorCode, message: str) -> None:
            self._auto_creating.discard(name)
            if error not in (ErrorCode.none, ErrorCode.topic_already_exists):
                log.info("auto-creation of topic %r failed: %s %s", name, error.name, message)
            outcome.append((error, message))

        self._auto_creating.add(name)
        self.request_topic_creation(name, partitions, replication_factor, {}, now_ms, answered)
        if outcome and outcome[0][0] not in (ErrorCode.none, ErrorCode.topic_already_exists):
            raise BrokerError(*outcome[0])

    def ensure_offsets_topic(self, now_ms: int) -> ErrorCode | None:
        """Create ``__consumer_offsets`` if it does not exist (see :meth:`ensure_internal_topic`)."""
        return self.ensure_internal_topic(OFFSETS_TOPIC, now_ms)

    def ensure_internal_topic(self, name: str, now_ms: int) -> ErrorCode | None:
        """Create the internal topic ``name`` (:data:`INTERNAL_TOPICS`) if it does not exist;
        None once it exists, else COORDINATOR_NOT_AVAILABLE (it cannot be created, or its
        creation is under way)."""
        if self.topics.get(name) is not None:
            return None
        if name not in self._auto_creating:
            prefix = INTERNAL_TOPICS[name]
            config = self.config
            wanted = {
                "cleanup.policy": "compact",
                "segment.bytes": str(config.get(f"{prefix}.segment.bytes")),
                "compression.type": "producer",
            }
            if name == TRANSACTION_STATE_TOPIC:
                # TransactionLogConfig: its own min ISR, and never an unclean leader (a lost
                # record could resurrect a fenced producer or lose a decided outcome).
                wanted["min.insync.replicas"] = str(config.get("transaction.state.log.min.isr"))
                wanted["unclean.leader.election.enable"] = "false"

            def answered(error: ErrorCode, message: str) -> None:
                self._auto_creating.discard(name)
                if error not in (ErrorCode.none, ErrorCode.topic_already_exists):
                    # Kafka answers COORDINATOR_NOT_AVAILABLE while it cannot create the topic
                    # (for instance a replication factor above the live brokers).
                    log.warning("cannot create %s: %s", name, message or error.name)

            self._auto_creating.add(name)
            self.request_topic_creation(
                name, int(config.get(f"{prefix}.num.partitions")),
                int(config.get(f"{prefix}.replication.factor")), wanted, now_ms, answered,
            )
        return None if self.topics.get(name) is not None else ErrorCode.coordinator_not_available
