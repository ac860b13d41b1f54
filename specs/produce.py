"""What a produce can have done to the log, given the producer's settings and what it was told.

Theory of operation. A producer learns one of three things about each record it sends:

- **definite success** (`ok`): the broker acknowledged it with an offset. With `acks=all` the
  record is on every in-sync replica; with `acks=1` only on the leader; with `acks=0` the client
  is told nothing, so "success" there means only that the record left the client (Kafka producer
  configuration, `acks`: "the offset given back for each record will always be set to -1").
- **definite failure** (`fail`): the record is certainly not in the log, e.g. the broker rejected
  it while validating it, before appending (`MESSAGE_TOO_LARGE`, `CORRUPT_MESSAGE`), or refused
  it because too few replicas were in sync (`NOT_ENOUGH_REPLICAS` is checked before the append).
- **indeterminate** (`info`): the record may or may not be in the log: a timeout, a dropped
  connection, `NOT_ENOUGH_REPLICAS_AFTER_APPEND`, or a retriable error after earlier attempts
  that may have been appended.

Because the real outcome is sometimes unknown, the model returns *sets of allowed outcomes*:
`allowed_copies` gives how many copies of a record the log may hold (0, 1, or more when a
non-idempotent producer retried a send that had in fact been appended: Kafka producer
configuration, `enable.idempotence`: "retries due to broker failures, etc., may write
duplicates of the retried message in the stream"). Idempotence (KIP-98) removes duplicates and
reordering for up to 5 in-flight requests per connection (KAFKA-5494).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import attrs

# Kafka's error names (org.apache.kafka.common.protocol.Errors). The broker rejects such a batch
# while validating its content, before any append, and would reject every retry of it the same
# way, so the record is certainly absent.
DETERMINISTIC_REJECTIONS = frozenset({
    "MESSAGE_TOO_LARGE",
    "RECORD_LIST_TOO_LARGE",
    "CORRUPT_MESSAGE",
    "INVALID_RECORD",
    "INVALID_REQUIRED_ACKS",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT",
    "INVALID_TOPIC_EXCEPTION",
})

# Errors a broker answers without appending the batch, but whose cause can change between
# attempts (leadership, ISR size, fencing, ACLs, the broker's clock). After a single attempt the
# record is absent; after retries an earlier attempt may have been appended.
NOT_APPENDED = frozenset({
    "NOT_LEADER_OR_FOLLOWER",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "LEADER_NOT_AVAILABLE",
    "NOT_ENOUGH_REPLICAS",
    "KAFKA_STORAGE_ERROR",
    "INVALID_TIMESTAMP",
    "INVALID_PRODUCER_EPOCH",
    "PRODUCER_FENCED",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "CONCURRENT_TRANSACTIONS",
})

# Errors that mean "appended, or maybe appended": the leader wrote the batch but could not
# confirm replication in time, or the answer never arrived.
MAYBE_APPENDED = frozenset({
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "REQUEST_TIMED_OUT",
    "NETWORK_EXCEPTION",
    "TIMEOUT",
    "DISCONNECTED",
})

# An idempotent producer retrying a batch the broker already has gets this; it means success
# (KIP-98: the broker recognises the sequence number and returns the original offset).
DUPLICATE_SEQUENCE = "DUPLICATE_SEQUENCE_NUMBER"


class Acks(enum.Enum):
    """The producer's `acks` setting."""

    NONE = "0"
    LEADER = "1"
    ALL = "all"


class Outcome(enum.Enum):
    """What the producer knows about one send; the values are the history's completion types."""

    SUCCESS = "ok"
    FAILURE = "fail"
    INDETERMINATE = "info"


class ProducerConfigError(ValueError):
    """A producer configuration Kafka itself refuses (the message names the rule)."""


def _check_idempotence(instance: ProducerConfig, _attribute: object, _value: object) -> None:
    # Kafka producer configuration, `enable.idempotence`: "Note that enabling idempotence
    # requires max.in.flight.requests.per.connection to be less than or equal to 5 ..., retries
    # to be greater than 0, and acks must be 'all'."
    if not instance.enable_idempotence:
        return
    if instance.acks is not Acks.ALL:
        raise ProducerConfigError("enable.idempotence=true requires acks=all")
    if instance.retries <= 0:
        raise ProducerConfigError("enable.idempotence=true requires retries > 0")
    if instance.max_in_flight > 5:
        raise ProducerConfigError(
            "enable.idempotence=true requires max.in.flight.requests.per.connection <= 5"
        )


@attrs.frozen
class ProducerConfig:
    """The producer settings that decide what a send can do (Kafka's defaults since 3.0, KIP-679)."""

    acks: Acks = Acks.ALL
    enable_idempotence: bool = True
    retries: int = 2147483647
    max_in_flight: int = attrs.field(default=5, validator=_check_idempotence)


@attrs.frozen(order=True)
class Copies:
    """How many copies of one sent record the log may hold: `low` to `high` (None: unbounded)."""

    low: int
    high: int | None

    def allows(self, count: int) -> bool:
        """Whether the log may hold exactly `count` copies."""
        return count >= self.low and (self.high is None or count <= self.high)


def classify(error: str | None, config: ProducerConfig, *, attempts: int | None = None) -> Outcome:
    """The outcome a producer may conclude from the final answer to a send.

    `error` is None for an acknowledgement, else Kafka's error name (or `TIMEOUT` /
    `DISCONNECTED` for client-side failures). `attempts` is how many times the record was sent
    when the client can tell (None: unknown, assume retries happened when `retries > 0`).
    """
    if error is None or error == DUPLICATE_SEQUENCE:
        # acks=0: the client does not wait for the broker, so it knows nothing.
        return Outcome.INDETERMINATE if config.acks is Acks.NONE else Outcome.SUCCESS
    if error in MAYBE_APPENDED:
        return Outcome.INDETERMINATE
    if error in DETERMINISTIC_REJECTIONS:
        # Every attempt carried the same batch and was rejected the same way.
        return Outcome.FAILURE
    single_attempt = attempts == 1 or (attempts is None and config.retries == 0)
    if error in NOT_APPENDED and single_attempt:
        return Outcome.FAILURE
    # An error after retries (an earlier attempt may have timed out after appending), or an
    # error the model does not know: never claim the record is absent.
    return Outcome.INDETERMINATE


def may_duplicate(config: ProducerConfig) -> bool:
    """Whether a retried send may be appended twice (no idempotence, retries enabled)."""
    return not config.enable_idempotence and config.retries > 0


def may_reorder(config: ProducerConfig) -> bool:
    """Whether a producer's sends to one partition may land out of order.

    Kafka producer configuration, `max.in.flight.requests.per.connection`: "if set to greater
    than 1 and enable.idempotence is set to false, there is a risk of message reordering after a
    failed send due to retries (i.e., if retries are enabled)". With idempotence the broker
    rejects out-of-sequence batches, so order holds (KIP-98, KAFKA-5494).
    """
    return not config.enable_idempotence and config.retries > 0 and config.max_in_flight > 1


def allowed_copies(outcome: Outcome, config: ProducerConfig) -> Copies:
    """How many copies of a record the log may hold right after the producer saw `outcome`.

    This is about what the send did, not about later data loss: whether an acknowledged record
    survives broker failures is `tolerated_broker_failures`.
    """
    many = None if may_duplicate(config) else 1
    if outcome is Outcome.FAILURE:
        return Copies(0, 0)
    if outcome is Outcome.SUCCESS:
        return Copies(1, many)
    return Copies(0, many)


@attrs.frozen
class DurabilityConfig:
    """The topic and broker settings that decide whether acknowledged records survive failures."""

    acks: Acks = Acks.ALL
    replication_factor: int = 3
    min_insync_replicas: int = 2
    unclean_leader_election_enable: bool = False


def tolerated_broker_failures(config: DurabilityConfig) -> int:
    """How many brokers may fail (not all at once) without losing an acknowledged record.

    With `acks=all` a record is acknowledged only once every in-sync replica has it, and the
    leader refuses writes while fewer than `min.insync.replicas` are in sync (Kafka topic
    configuration, `min.insync.replicas`), so an acknowledged record is on at least that many
    replicas. With unclean leader election disabled the new leader is always one of them (Kafka
    documentation 4.7). `acks=1` or `acks=0`, or an unclean election, can lose acknowledged
    records after a single failure. Kafka does not fsync every write by default, so all replicas
    crashing together (power loss) can lose acknowledged records whatever these settings are.
    """
    if config.acks is not Acks.ALL or config.unclean_leader_election_enable:
        return 0
    return max(0, min(config.min_insync_replicas, config.replication_factor) - 1)


def disallowed_copies(sent: Mapping[str, Outcome], log: Iterable[str], config: ProducerConfig) -> dict[str, int]:
    """The values whose number of copies in `log` no outcome allows: value -> copies found.

    `sent` is what each send's producer was told, `log` the values in the partition(s) (in any
    order). A value in the log that nobody sent is also reported. An acknowledged value missing
    from the log is reported with 0 copies: without a broker failure (see
    `tolerated_broker_failures`) nothing may take it away.
    """
    counts: dict[str, int] = {}
    for value in log:
        counts[value] = counts.get(value, 0) + 1
    bad = {value: n for value, n in counts.items() if value not in sent}
    for value, outcome in sent.items():
        n = counts.get(value, 0)
        if not allowed_copies(outcome, config).allows(n):
            bad[value] = n
    return bad
