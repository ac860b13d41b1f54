"""Broker and topic configuration with Kafka's key names, defaults and precedence.

A broker starts from a server.properties-style file plus ``--override key=value`` pairs (overrides
win), exactly as ``kafka-server-start.sh --override`` does. Every key is checked against the table
below: an unknown key, a value of the wrong type or out of range fails start-up with a message
naming the key. Precedence rules follow Kafka's KafkaConfig:

* ``log.retention.ms`` wins over ``log.retention.minutes``, which wins over ``log.retention.hours``;
* ``log.roll.ms`` wins over ``log.roll.hours``;
* ``log.dirs`` wins over ``log.dir``; ``node.id`` and ``broker.id`` are synonyms;
* ``log.flush.interval.ms`` falls back to ``log.flush.scheduler.interval.ms``;
* ``advertised.listeners`` falls back to ``listeners``.

Deliberate differences from Kafka's defaults, for a tool that runs on developer machines and in
CI: listeners default to ``PLAINTEXT://127.0.0.1:9092`` (loopback, not every interface),
``node.id`` defaults to 0 and ``log.dir`` to ``/tmp/kconform-logs``; because a single node
holds one replica, ``offsets.topic.replication.factor`` defaults to 1 (Kafka: 3); and
``process.roles`` defaults to ``broker,controller`` (a standalone node is its own controller).

Topic-level keys (``retention.ms``, ``cleanup.policy``, ...) each have a broker synonym that
supplies their default; :func:`log_config_for_topic` resolves them into a
:class:`~reference_broker.log.config.LogConfig`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from reference_broker.log.config import NEVER, LogConfig


class ConfigError(ValueError):
    """A configuration key that is unknown or whose value is invalid; the message names it."""


# --- value types -----------------------------------------------------------------------------

Parser = Callable[[str], Any]


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return value == "true"


def _str(text: str) -> str:
    return text.strip()


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _at_least(minimum: int) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")

    return check


def _between(low: int, high: int) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")

    return check


def _ratio(value: Any) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value}")


def _one_of(*allowed: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        items = value if isinstance(value, tuple) else (value,)
        bad = [item for item in items if item not in allowed]
        if bad or not items:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {value!r}")

    return check


def _no_check(value: Any) -> None:
    return None


@attrs.frozen(slots=True)
class ConfigKey:
    """One configuration key: its type, Kafka default (None = unset) and documentation."""

    name: str
    parse: Parser
    default: str | None
    doc: str
    check: Callable[[Any], None] = _no_check


def _key(
    name: str, parse: Parser, default: str | None, doc: str, check: Callable[[Any], None] = _no_check
) -> tuple[str, ConfigKey]:
    return name, ConfigKey(name, parse, default, doc, check)


_DAY_MS = 24 * 3600 * 1000

BROKER_KEYS: dict[str, ConfigKey] = dict(
    [
        _key("node.id", _int, None, "This node's id (synonym: broker.id; defaults to 0)", _at_least(0)),
        _key("broker.id", _int, None, "Synonym of node.id", _at_least(0)),
        _key(
            "listeners",
            _list,
            "PLAINTEXT://127.0.0.1:9092",
            "Comma-separated NAME://HOST:PORT addresses to bind; port 0 picks a free port",
        ),
        _key(
            "advertised.listeners",
            _list,
            None,
            "Addresses given to clients in Metadata, per listener name; defaults to listeners",
        ),
        _key(
            "listener.security.protocol.map",
            _list,
            "PLAINTEXT:PLAINTEXT",
            "Listener name to security protocol; only PLAINTEXT is supported",
        ),
        _key("log.dir", _str, "/tmp/kconform-logs", "Data directory, used when log.dirs is unset"),
        _key("log.dirs", _list, None, "Data directories (the first one is used)"),
        _key("num.partitions", _int, "1", "Partitions of an auto-created topic", _at_least(1)),
        _key(
            "default.replication.factor",
            _int,
            "1",
            "Replication factor of an auto-created topic",
            _at_least(1),
        ),
        _key("auto.create.topics.enable", _bool, "true", "Create unknown topics on Metadata/Produce"),
        _key("delete.topic.enable", _bool, "true", "Allow DeleteTopics"),
        _key("log.segment.bytes", _int, str(1024**3), "Maximum size of one segment", _at_least(14)),
        _key("log.roll.ms", _int, None, "Roll a segment after this age (wins over log.roll.hours)", _at_least(1)),
        _key("log.roll.hours", _int, "168", "Roll a segment after this many hours", _at_least(1)),
        _key("log.retention.bytes", _int, "-1", "Delete old segments beyond this partition size (-1: no limit)"),
        _key("log.retention.ms", _int, None, "Delete segments older than this (-1: keep forever); wins over minutes and hours"),
        _key("log.retention.minutes", _int, None, "Retention in minutes; wins over hours"),
        _key("log.retention.hours", _int, "168", "Retention in hours"),
        _key(
            "log.retention.check.interval.ms",
            _int,
            "300000",
            "How often time and size retention runs",
            _at_least(1),
        ),
        _key(
            "log.cleanup.policy",
            _list,
            "delete",
            "delete, compact, or both",
            _one_of("delete", "compact"),
        ),
        _key("log.cleaner.enable", _bool, "true", "Run the log cleaner for compacted topics"),
        _key(
            "log.cleaner.delete.retention.ms",
            _int,
            str(_DAY_MS),
            "How long tombstones and transaction markers survive compaction",
            _at_least(0),
        ),
        _key("log.cleaner.min.compaction.lag.ms", _int, "0", "Records younger than this are not compacted", _at_least(0)),
        _key("log.cleaner.min.cleanable.ratio", _float, "0.5", "Dirty ratio that triggers compaction", _ratio),
        _key("log.cleaner.backoff.ms", _int, "15000", "How often the cleaner looks for partitions to compact", _at_least(0)),
        _key("message.max.bytes", _int, "1048588", "Largest record batch accepted", _at_least(0)),
        _key(
            "socket.request.max.bytes",
            _int,
            "104857600",
            "Largest request frame accepted; bigger ones close the connection",
            _at_least(1),
        ),
        _key("log.flush.interval.messages", _int, str(NEVER), "fsync after this many messages", _at_least(1)),
        _key("log.flush.interval.ms", _int, None, "fsync data older than this", _at_least(0)),
        _key("log.flush.scheduler.interval.ms", _int, str(NEVER), "How often the flusher checks", _at_least(0)),
        _key("log.index.interval.bytes", _int, "4096", "Bytes between offset index entries", _at_least(0)),
        _key("log.index.size.max.bytes", _int, str(10 * 1024 * 1024), "Maximum index size; a full index rolls the segment", _at_least(4)),
        _key(
            "log.message.timestamp.type",
            _str,
            "CreateTime",
            "CreateTime or LogAppendTime",
            _one_of("CreateTime", "LogAppendTime"),
        ),
        _key("compression.type", _str, "producer", "Only 'producer' (keep what the producer sent)", _one_of("producer")),
        _key("min.insync.replicas", _int, "1", "In-sync replicas an acks=all write needs (a single node is an ISR of 1)", _at_least(1)),
        _key("unclean.leader.election.enable", _bool, "false", "Allow a replica outside the ISR to become leader (used by clusters)"),
        # Replication (reference_broker.replication): followers fetch from leaders
        _key("replica.lag.time.max.ms", _int, "30000", "A follower that has not caught up with the leader's log end for this long leaves the ISR", _at_least(1)),
        _key("replica.fetch.wait.max.ms", _int, "500", "How long a follower's fetch waits at the leader for data (max_wait); keep it below replica.lag.time.max.ms", _at_least(0)),
        _key("replica.fetch.min.bytes", _int, "1", "Bytes a follower's fetch waits for (min_bytes)", _at_least(1)),
        _key("replica.fetch.max.bytes", _int, "1048576", "Bytes a follower fetches per partition (partition_max_bytes; a larger first batch still comes whole)", _at_least(0)),
        _key("replica.fetch.response.max.bytes", _int, "10485760", "Bytes a follower's fetch asks for in total (max_bytes)", _at_least(0)),
        _key("replica.fetch.backoff.ms", _int, "1000", "How long a follower waits after a failed fetch before fetching from that leader again", _at_least(0)),
        _key("replica.socket.timeout.ms", _int, "30000", "How long a follower waits for its leader's answer before reconnecting", _at_least(1)),
        _key("replica.high.watermark.checkpoint.interval.ms", _int, "5000", "How often each replica writes its high watermark to replication-offset-checkpoint", _at_least(1)),
        _key("log.segment.delete.delay.ms", _int, "60000", "Accepted for compatibility; segments are deleted at once", _at_least(0)),
        # Consumer groups (reference_broker.groups)
        _key("group.initial.rebalance.delay.ms", _int, "3000", "How long the first rebalance of an empty group waits for more members (KIP-134)", _at_least(0)),
        _key("group.min.session.timeout.ms", _int, "6000", "Smallest session.timeout.ms a member may ask for (else INVALID_SESSION_TIMEOUT)", _at_least(0)),
        _key("group.max.session.timeout.ms", _int, "1800000", "Largest session.timeout.ms a member may ask for (else INVALID_SESSION_TIMEOUT)", _at_least(0)),
        _key("group.max.size", _int, str(2**31 - 1), "Most members a group may have (else GROUP_MAX_SIZE_REACHED)", _at_least(1)),
        _key("offsets.topic.num.partitions", _int, "50", "Partitions of __consumer_offsets when it is created", _at_least(1)),
        _key("offsets.topic.replication.factor", _int, "1", "Replication factor of __consumer_offsets (Kafka: 3; a single node can only hold 1)", _at_least(1)),
        _key("offsets.topic.segment.bytes", _int, "104857600", "segment.bytes of __consumer_offsets", _at_least(14)),
        _key("offsets.retention.ms", _int, str(7 * _DAY_MS), "Committed offsets expire this long after their group became empty (KIP-211)", _at_least(1)),
        _key("offsets.retention.check.interval.ms", _int, "600000", "How often expired offsets are looked for", _at_least(1)),
        _key("offsets.commit.timeout.ms", _int, "5000", "How long an offset commit or a SyncGroup's group metadata waits for the ISR of its __consumer_offsets partition (COORDINATOR_NOT_AVAILABLE, resp. REBALANCE_IN_PROGRESS, after that)", _at_least(1)),
        _key("offset.metadata.max.bytes", _int, "4096", "Longest metadata string an offset commit may carry (else OFFSET_METADATA_TOO_LARGE)", _at_least(0)),
        # Transactions (reference_broker.transactions): the transaction coordinator
        _key("transaction.state.log.num.partitions", _int, "50", "Partitions of __transaction_state when it is created", _at_least(1)),
        _key("transaction.state.log.replication.factor", _int, "1", "Replication factor of __transaction_state (Kafka: 3; a single node can only hold 1)", _at_least(1)),
        _key("transaction.state.log.min.isr", _int, "1", "min.insync.replicas of __transaction_state (Kafka: 2; a single node can only have 1)", _at_least(1)),
        _key("transaction.state.log.segment.bytes", _int, "104857600", "segment.bytes of __transaction_state", _at_least(14)),
        _key("transaction.max.timeout.ms", _int, "900000", "Largest transaction.timeout.ms a producer may ask for (else INVALID_TRANSACTION_TIMEOUT)", _at_least(1)),
        _key("transaction.abort.timed.out.transaction.cleanup.interval.ms", _int, "10000", "How often transactions open for longer than their timeout are looked for and aborted", _at_least(1)),
        _key("transactional.id.expiration.ms", _int, str(7 * _DAY_MS), "A transactional id with no transaction for this long is forgotten", _at_least(1)),
        _key("transaction.remove.expired.transaction.cleanup.interval.ms", _int, "3600000", "How often expired transactional ids are looked for", _at_least(1)),
        _key(
            "kconform.transaction.version",
            _int,
            "2",
            "The transaction protocol, as Kafka's transaction.version feature level: 0 or 1 "
            "(KIP-98's, an epoch per producer session) or 2 (KIP-890 part 2, the epoch bumped by "
            "every EndTxn of clients that use it)",
            _between(0, 2),
        ),
        _key(
            "producer.id.expiration.ms",
            _int,
            str(_DAY_MS),
            "How long a partition keeps an idle idempotent producer's state (counted from its "
            "last batch's timestamp); after that a continuing sequence gets UNKNOWN_PRODUCER_ID",
            _at_least(1),
        ),
        _key(
            "producer.id.expiration.check.interval.ms",
            _int,
            "600000",
            "How often expired producer state is removed",
            _at_least(1),
        ),
        # Clusters: roles, the controller, broker liveness (KRaft's keys, KIP-500/KIP-631)
        _key(
            "process.roles",
            _list,
            "broker,controller",
            "broker,controller: a standalone node that is its own controller (combined mode); "
            "broker: a broker of a cluster whose controller is controller.quorum.voters; "
            "controller: the controller of a cluster",
            _one_of("broker", "controller"),
        ),
        _key(
            "controller.quorum.voters",
            _list,
            None,
            "The controller as ID@HOST:PORT (one voter); required when process.roles=broker. "
            "Each broker may name a different address for it (a proxy, for fault injection)",
        ),
        _key(
            "controller.listener.names",
            _list,
            "CONTROLLER",
            "Listener names a controller (process.roles=controller) serves the controller APIs on",
        ),
        _key(
            "inter.broker.listener.name",
            _str,
            "PLAINTEXT",
            "Listener whose registered address other brokers use to reach this one for "
            "replication (unless kconform.replica.peer.addresses says otherwise)",
        ),
        _key(
            "broker.session.timeout.ms",
            _int,
            "9000",
            "A broker that sends no heartbeat for this long is fenced by the controller, which "
            "moves leadership of its partitions to other in-sync replicas",
            _at_least(1),
        ),
        _key(
            "broker.heartbeat.interval.ms",
            _int,
            "2000",
            "How often a broker heartbeats to the controller (and reports its metadata offset)",
            _at_least(1),
        ),
        _key(
            "controlled.shutdown.enable",
            _bool,
            "true",
            "On SIGTERM, a broker of a cluster first asks the controller to move leadership away "
            "(for at most broker.session.timeout.ms), then stops",
        ),
        _key(
            "kconform.replica.peer.addresses",
            _list,
            None,
            "Not a Kafka key. ID@HOST:PORT per peer broker: the address this broker uses to reach "
            "broker ID for replication, instead of its registered inter.broker.listener.name "
            "address (one address per directed link, for fault injection)",
        ),
    ]
)


@attrs.frozen(slots=True)
class TopicKey:
    """A topic-level key and the broker key that supplies its default."""

    name: str
    broker_synonym: str
    kafka_type: str  # ConfigDef type shown by DescribeConfigs: BOOLEAN, STRING, INT, LONG, DOUBLE, LIST
    parse: Parser
    check: Callable[[Any], None] = _no_check


TOPIC_KEYS: dict[str, TopicKey] = {
    key.name: key
    for key in [
        TopicKey("cleanup.policy", "log.cleanup.policy", "LIST", _list, _one_of("delete", "compact")),
        TopicKey("retention.ms", "log.retention.ms", "LONG", _int),
        TopicKey("retention.bytes", "log.retention.bytes", "LONG", _int),
        TopicKey("segment.bytes", "log.segment.bytes", "INT", _int, _at_least(14)),
        TopicKey("segment.ms", "log.roll.ms", "LONG", _int, _at_least(1)),
        TopicKey("delete.retention.ms", "log.cleaner.delete.retention.ms", "LONG", _int, _at_least(0)),
        TopicKey("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", "LONG", _int, _at_least(0)),
        TopicKey("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", "DOUBLE", _float, _ratio),
        TopicKey("max.message.bytes", "message.max.bytes", "INT", _int, _at_least(0)),
        TopicKey("flush.messages", "log.flush.interval.messages", "LONG", _int, _at_least(1)),
        TopicKey("flush.ms", "log.flush.interval.ms", "LONG", _int, _at_least(0)),
        TopicKey("index.interval.bytes", "log.index.interval.bytes", "INT", _int, _at_least(0)),
        TopicKey("segment.index.bytes", "log.index.size.max.bytes", "INT", _int, _at_least(4)),
        TopicKey(
            "message.timestamp.type",
            "log.message.timestamp.type",
            "STRING",
            _str,
            _one_of("CreateTime", "LogAppendTime"),
        ),
        TopicKey("file.delete.delay.ms", "log.segment.delete.delay.ms", "LONG", _int, _at_least(0)),
        TopicKey("compression.type", "compression.type", "STRING", _str, _one_of("producer")),
        TopicKey("min.insync.replicas", "min.insync.replicas", "INT", _int, _at_least(1)),
        TopicKey("unclean.leader.election.enable", "unclean.leader.election.enable", "BOOLEAN", _bool),
    ]
}


# --- properties files ------------------------------------------------------------------------

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    return re.sub(
        r"\\(u[0-9a-fA-F]{4}|.)",
        lambda m: chr(int(m.group(1)[1:], 16))
        if m.group(1).startswith("u") and len(m.group(1)) == 5
        else _ESCAPES.get(m.group(1), m.group(1)),
        text,
    )


def parse_properties(text: str, source: str = "<properties>") -> dict[str, str]:
    """Parse Java .properties text (``#``/``!`` comments, ``=``/``:``/space separators,
    backslash line continuations and escapes)."""
    result: dict[str, str] = {}
    logical = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if not logical and (not stripped or stripped[0] in "#!"):
            continue
        # An odd number of trailing backslashes continues the line.
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:
            logical += stripped[:-1]
            continue
        logical += stripped
        match = re.match(r"((?:\\.|[^=:\s\\])+)\s*[=:\s]?\s*(.*)$", logical)
        if match is None:
            raise ConfigError(f"{source}: cannot parse line {logical!r}")
        result[_unescape(match.group(1))] = _unescape(match.group(2))
        logical = ""
    if logical:
        raise ConfigError(f"{source}: file ends inside a continued line")
    return result


def parse_override(text: str) -> tuple[str, str]:
    """Split one ``--override key=value``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--override {text!r}: expected key=value")
    return key.strip(), value


# --- listeners -------------------------------------------------------------------------------


def _bracketed(host: str) -> str:
    """A host as it is written before ``:PORT`` (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def _parse_endpoint(text: str, key: str, prefix: str, host: str, form: str, lowest_port: int) -> tuple[str, str, int]:
    """``<prefix>HOST:PORT`` (HOST in brackets when it is an IPv6 address): the prefix's group,
    the host and the port, or a ConfigError naming ``key`` and the ``form`` expected."""
    match = re.fullmatch(prefix + r"(\[[^\]]*\]|" + host + r"):(\d+)", text.strip())
    if match is None:
        raise ConfigError(f"{key}: {text!r} is not of the form {form}")
    port = int(match.group(3))
    if not lowest_port <= port <= 65535:
        raise ConfigError(f"{key}: port {port} in {text!r} is out of range")
    return match.group(1), match.group(2).strip("[]"), port


@attrs.frozen(slots=True)
class Listener:
    """One ``NAME://HOST:PORT`` entry of ``listeners`` or ``advertised.listeners``."""

    name: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.name}://{_bracketed(self.host)}:{self.port}"


def parse_listener(text: str, key: str) -> Listener:
    # Port 0: bind a free port (listeners); an empty host: every interface.
    name, host, port = _parse_endpoint(text, key, r"([A-Za-z0-9_]+)://", r"[^:/]*", "NAME://HOST:PORT", 0)
    return Listener(name.upper(), host, port)


@attrs.frozen(slots=True)
class NodeAddress:
    """One ``ID@HOST:PORT`` entry of ``controller.quorum.voters`` or
    ``kconform.replica.peer.addresses``."""

    node_id: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.node_id}@{_bracketed(self.host)}:{self.port}"


def parse_node_address(text: str, key: str) -> NodeAddress:
    node, host, port = _parse_endpoint(text, key, r"(\d+)@", r"[^:@/]+", "ID@HOST:PORT", 1)
    return NodeAddress(int(node), host, port)


# --- the resolved broker configuration -------------------------------------------------------


@attrs.frozen(slots=True)
class BrokerConfig:
    """Validated broker settings; ``values`` holds every key explicitly set, parsed."""

    values: Mapping[str, Any]

    def get(self, key: str) -> Any:
        if key in self.values:
            return self.values[key]
        spec = BROKER_KEYS[key]
        return None if spec.default is None else spec.parse(spec.default)

    def is_set(self, key: str) -> bool:
        return key in self.values

    @property
    def node_id(self) -> int:
        for key in ("node.id", "broker.id"):
            if key in self.values:
                return int(self.values[key])
        return 0

    @property
    def log_dir(self) -> str:
        dirs = self.get("log.dirs")
        return str(dirs[0]) if dirs else str(self.get("log.dir"))

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return tuple(parse_listener(item, "listeners") for item in self.get("listeners"))

    @property
    def advertised_listeners(self) -> tuple[Listener, ...]:
        raw = self.get("advertised.listeners")
        if not raw:
            return self.listeners
        return tuple(parse_listener(item, "advertised.listeners") for item in raw)

    # --- cluster roles and addresses ---------------------------------------------------------

    @property
    def process_roles(self) -> frozenset[str]:
        return frozenset(self.get("process.roles"))

    @property
    def is_combined(self) -> bool:
        """A standalone node that is its own controller (process.roles=broker,controller)."""
        return self.process_roles == {"broker", "controller"}

    @property
    def is_broker_only(self) -> bool:
        return self.process_roles == {"broker"}

    @property
    def is_controller_only(self) -> bool:
        return self.process_roles == {"controller"}

    @property
    def controller_voter(self) -> NodeAddress | None:
        """The controller named by controller.quorum.voters (one voter), if set."""
        voters = self.get("controller.quorum.voters")
        if not voters:
            return None
        return parse_node_address(voters[0], "controller.quorum.voters")

    @property
    def replica_peer_addresses(self) -> dict[int, tuple[str, int]]:
        """kconform.replica.peer.addresses: node id -> (host, port) to reach it for replication."""
        entries = self.get("kconform.replica.peer.addresses") or ()
        addresses = (parse_node_address(e, "kconform.replica.peer.addresses") for e in entries)
        return {a.node_id: (a.host, a.port) for a in addresses}

    @property
    def controller_listener_names(self) -> tuple[str, ...]:
        return tuple(name.upper() for name in self.get("controller.listener.names"))

    @property
    def log_retention_ms(self) -> int:
        if self.is_set("log.retention.ms"):
            return int(self.values["log.retention.ms"])
        if self.is_set("log.retention.minutes"):
            return int(self.values["log.retention.minutes"]) * 60_000
        return int(self.get("log.retention.hours")) * 3_600_000

    @property
    def log_roll_ms(self) -> int:
        if self.is_set("log.roll.ms"):
            return int(self.values["log.roll.ms"])
        return int(self.get("log.roll.hours")) * 3_600_000

    @property
    def log_flush_interval_ms(self) -> int:
        if self.is_set("log.flush.interval.ms"):
            return int(self.values["log.flush.interval.ms"])
        return int(self.get("log.flush.scheduler.interval.ms"))

    def synonym_is_set(self, broker_key: str) -> bool:
        """Whether the operator set this key or one of the keys it takes precedence over."""
        family = {
            "log.retention.ms": ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
            "log.roll.ms": ("log.roll.ms", "log.roll.hours"),
            "log.flush.interval.ms": ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
        }.get(broker_key, (broker_key,))
        return any(self.is_set(key) for key in family)

    def broker_default(self, broker_key: str) -> Any:
        """The value a topic key inherits from its broker synonym, with precedence applied."""
        resolved = {
            "log.retention.ms": lambda: self.log_retention_ms,
            "log.roll.ms": lambda: self.log_roll_ms,
            "log.flush.interval.ms": lambda: self.log_flush_interval_ms,
        }
        if broker_key in resolved:
            return resolved[broker_key]()
        return self.get(broker_key)


def _parse_value(key: str, raw: str, parse: Parser, check: Callable[[Any], None]) -> Any:
    try:
        value = parse(raw)
        check(value)
    except ValueError as exc:
        raise ConfigError(f"invalid value {raw!r} for configuration {key}: {exc}") from None
    return value


def load_broker_config(
    file_values: Mapping[str, str] | None = None,
    overrides: Iterable[tuple[str, str]] = (),
) -> BrokerConfig:
    """Merge a properties file with overrides (overrides win) and validate every key."""
    raw: dict[str, str] = dict(file_values or {})
    raw.update(dict(overrides))
    values: dict[str, Any] = {}
    for key, text in raw.items():
        spec = BROKER_KEYS.get(key)
        if spec is None:
            hint = " (a topic-level key: set it per topic, or use its broker synonym " + \
                f"{TOPIC_KEYS[key].broker_synonym})" if key in TOPIC_KEYS else ""
            raise ConfigError(f"unknown configuration {key}{hint}")
        values[key] = _parse_value(key, text, spec.parse, spec.check)
    config = BrokerConfig(values)
    _check_cross_key_rules(config)
    return config


def _check_cross_key_rules(config: BrokerConfig) -> None:
    if int(config.get("group.min.session.timeout.ms")) > int(config.get("group.max.session.timeout.ms")):
        raise ConfigError(
            "group.min.session.timeout.ms must not exceed group.max.session.timeout.ms"
        )
    if (
        config.is_set("node.id")
        and config.is_set("broker.id")
        and config.values["node.id"] != config.values["broker.id"]
    ):
        raise ConfigError("node.id and broker.id are synonyms but were given different values")
    listeners = config.listeners
    names = [listener.name for listener in listeners]
    if not listeners:
        raise ConfigError("listeners: at least one listener is required")
    if len(set(names)) != len(names):
        raise ConfigError(f"listeners: listener names must be unique, got {', '.join(names)}")
    protocols = dict(item.split(":", 1) for item in config.get("listener.security.protocol.map"))
    # As in KRaft (KafkaConfig.effectiveListenerSecurityProtocolMap), a controller listener
    # missing from the map is PLAINTEXT.
    defaults = {"PLAINTEXT": "PLAINTEXT", **dict.fromkeys(config.controller_listener_names,
                                                          "PLAINTEXT")}
    for name in names:
        if protocols.get(name, defaults.get(name)) != "PLAINTEXT":
            raise ConfigError(
                f"listeners: listener {name} is not mapped to PLAINTEXT in "
                "listener.security.protocol.map (only PLAINTEXT is supported)"
            )
    for adv in config.advertised_listeners:
        if adv.name not in names:
            raise ConfigError(
                f"advertised.listeners: {adv} names listener {adv.name}, which is not in listeners"
            )
        if adv.host in ("0.0.0.0", "::") and config.is_set("advertised.listeners"):
            raise ConfigError(
                f"advertised.listeners: {adv} advertises a wildcard address clients cannot reach"
            )
    _check_cluster_keys(config, names)
    _check_replica_fetch_keys(config)
    if not config.is_set("advertised.listeners"):
        for listener in listeners:
            if listener.host in ("0.0.0.0", "::", ""):
                raise ConfigError(
                    f"listeners: {listener} binds every interface, so advertised.listeners must "
                    "say which address clients should use"
                )


def _check_replica_fetch_keys(config: BrokerConfig) -> None:
    """Kafka's KafkaConfig rule: a follower's fetch must be able to wait its full
    replica.fetch.wait.max.ms without looking lagging or timing out its own socket."""
    wait = int(config.get("replica.fetch.wait.max.ms"))
    for other in ("replica.lag.time.max.ms", "replica.socket.timeout.ms"):
        if wait > int(config.get(other)):
            raise ConfigError(
                f"replica.fetch.wait.max.ms ({wait}) must not be larger than {other} "
                f"({int(config.get(other))})"
            )


def _check_cluster_keys(config: BrokerConfig, listener_names: list[str]) -> None:
    """process.roles and the keys each role needs (KRaft's KafkaConfig checks, simplified)."""
    roles = config.process_roles
    voters = config.get("controller.quorum.voters") or ()
    for entry in voters:
        parse_node_address(entry, "controller.quorum.voters")
    if len(voters) > 1:
        raise ConfigError(
            "controller.quorum.voters: a reference cluster has a single controller, "
            f"got {len(voters)} voters"
        )
    _ = config.replica_peer_addresses  # parses every entry: a malformed one fails here
    if roles == {"broker"} and not voters:
        raise ConfigError(
            "controller.quorum.voters is required when process.roles=broker "
            "(the broker must know where the controller is)"
        )
    if roles == {"controller"} and not set(config.controller_listener_names) & set(listener_names):
        raise ConfigError(
            "listeners: a controller (process.roles=controller) needs a listener named in "
            f"controller.listener.names ({','.join(config.controller_listener_names)})"
        )
    if roles == {"broker", "controller"} and voters:
        voter = parse_node_address(voters[0], "controller.quorum.voters")
        if voter.node_id != config.node_id:
            raise ConfigError(
                "controller.quorum.voters: in combined mode (process.roles=broker,controller) "
                f"the node is its own controller, so the voter must be node {config.node_id}"
            )
    if roles == {"broker"}:
        if config.get("inter.broker.listener.name").upper() not in listener_names:
            raise ConfigError(
                f"inter.broker.listener.name: {config.get('inter.broker.listener.name')} is not "
                "a listener in listeners"
            )
        if set(config.controller_listener_names) & set(listener_names):
            raise ConfigError(
                "listeners: a broker (process.roles=broker) must not listen on a controller "
                "listener (controller.listener.names)"
            )
    if int(config.get("broker.heartbeat.interval.ms")) >= int(config.get("broker.session.timeout.ms")):
        raise ConfigError(
            "broker.heartbeat.interval.ms must be smaller than broker.session.timeout.ms"
        )


# --- topic configuration ---------------------------------------------------------------------


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Check topic-level overrides; returns the non-null ones. Raises ConfigError naming the key."""
    result: dict[str, str] = {}
    for key, raw in configs.items():
        spec = TOPIC_KEYS.get(key)
        if spec is None:
            raise ConfigError(f"unknown topic configuration {key}")
        if raw is None:
            continue
        _parse_value(key, raw, spec.parse, spec.check)
        result[key] = raw.strip()
    return result


def topic_config_value(broker: BrokerConfig, overrides: Mapping[str, str], key: str) -> Any:
    spec = TOPIC_KEYS[key]
    if key in overrides:
        return spec.parse(overrides[key])
    return broker.broker_default(spec.broker_synonym)


def format_config_value(value: Any) -> str:
    """Render a parsed value the way Kafka's DescribeConfigs shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def log_config_for_topic(broker: BrokerConfig, overrides: Mapping[str, str]) -> LogConfig:
    def value(key: str) -> Any:
        return topic_config_value(broker, overrides, key)

    return LogConfig(
        segment_bytes=value("segment.bytes"),
        segment_ms=value("segment.ms"),
        retention_bytes=value("retention.bytes"),
        retention_ms=value("retention.ms"),
        cleanup_policy=frozenset(value("cleanup.policy")),
        delete_retention_ms=value("delete.retention.ms"),
        min_compaction_lag_ms=value("min.compaction.lag.ms"),
        min_cleanable_dirty_ratio=value("min.cleanable.dirty.ratio"),
        max_message_bytes=value("max.message.bytes"),
        flush_messages=value("flush.messages"),
        flush_ms=value("flush.ms"),
        index_interval_bytes=value("index.interval.bytes"),
        segment_index_bytes=value("segment.index.bytes"),
        message_timestamp_type=value("message.timestamp.type"),
    )
