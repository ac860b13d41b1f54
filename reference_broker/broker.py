"""The broker's state and its topic operations, with no sockets and no clock of its own.

:class:`Broker` owns the data directory: the node identity (``meta.properties``), the topic
catalogue and one :class:`~reference_broker.log.PartitionLog` per partition. Request handlers
(:mod:`reference_broker.handlers`) call the operations here; the asyncio driver
(:mod:`reference_broker.server`) passes the time in and schedules the periodic work (retention,
compaction, time-based flushes).
"""

from __future__ import annotations

import base64
import logging
import os
import resource
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from reference_broker.config import (
    BrokerConfig,
    ConfigError,
    log_config_for_topic,
    parse_properties,
    topic_config_value,
    validate_topic_configs,
)
from reference_broker.groups import OFFSETS_TOPIC, GroupConfig, GroupCoordinator, TopicOffsetsLog
from reference_broker.log import PartitionLog
from reference_broker.replication import Partition
from reference_broker.producers import ProducerIdAllocator
from reference_broker.records import RecordError
from reference_broker.topics import TopicCatalogue, TopicRecord, validate_topic_name

log = logging.getLogger(__name__)

META_PROPERTIES = "meta.properties"

# Reference-broker guards, not Kafka rules (Kafka accepts any positive partition count). Without
# them one CreateTopics or CreatePartitions asking for 2**31-1 partitions makes this node create
# directories until the disk or the clock runs out. Every partition also keeps files open (the
# .log, .index and .timeindex of at least its active segment), so the node refuses partitions
# beyond what its open-file limit can hold: running out of descriptors would stop it accepting
# connections from every client, not just the one asking.
MAX_PARTITIONS_PER_TOPIC = 10_000
FILES_PER_PARTITION = 3
FILE_HEADROOM = 512  # descriptors kept for sockets, rolled segments and the catalogue


def partition_budget() -> int:
    """How many partitions this process can keep open under its RLIMIT_NOFILE soft limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 2**31 - 1
    return max(0, (soft - FILE_HEADROOM) // FILES_PER_PARTITION)


class BrokerError(Exception):
    """An operation refused with a Kafka error code (``error`` is kio's ErrorCode name)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _partition_dir(root: Path, topic: str, index: int) -> Path:
    return root / f"{topic}-{index}"


class Broker:
    """A single reference broker node over one data directory."""

    def __init__(self, config: BrokerConfig, now_ms: int) -> None:
        self.config = config
        self.node_id = config.node_id
        self.data_dir = Path(config.log_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_id = self._load_identity()
        self.topics = TopicCatalogue(self.data_dir)
        # InitProducerId's ids (KIP-98), reserved in blocks persisted in the data directory.
        self.producer_ids = ProducerIdAllocator.in_directory(self.data_dir)
        self._producer_id_expiration_ms = int(config.get("producer.id.expiration.ms"))
        self._producer_expiry_interval_ms = int(
            config.get("producer.id.expiration.check.interval.ms")
        )
        self._next_producer_expiry_ms = now_ms + self._producer_expiry_interval_ms
        self._partitions: dict[tuple[str, int], Partition] = {}
        # listener name -> port actually bound (differs from the configured one for port 0)
        self.bound_ports: dict[str, int] = {}
        for record in self.topics:
            for index in range(record.partitions):
                self._open_partition(record, index, now_ms)
        # The group coordinator; it rebuilds groups and committed offsets from __consumer_offsets.
        self.groups = GroupCoordinator(
            GroupConfig.from_broker(config.get), TopicOffsetsLog(self), now_ms
        )

    # --- identity --------------------------------------------------------------------------

    def _load_identity(self) -> str:
        """Read or write meta.properties; refuse a directory that belongs to another node."""
        path = self.data_dir / META_PROPERTIES
        if path.exists():
            props = parse_properties(path.read_text(), str(path))
            stored = int(props.get("node.id", "-1"))
            if stored != self.node_id:
                raise ConfigError(
                    f"log.dirs: {self.data_dir} belongs to node.id {stored}, "
                    f"but this broker is node.id {self.node_id}"
                )
            return props["cluster.id"]
        cluster_id = _new_cluster_id()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"version=1\ncluster.id={cluster_id}\nnode.id={self.node_id}\n")
        os.replace(tmp, path)
        return cluster_id

    def advertised_endpoint(self, listener: str) -> tuple[str, int]:
        """(host, port) clients are told to use for ``listener`` (advertised.listeners)."""
        for adv in self.config.advertised_listeners:
            if adv.name == listener:
                port = adv.port or self.bound_ports.get(listener, 0)
                if not self.config.is_set("advertised.listeners"):
                    port = self.bound_ports.get(listener, port)
                return adv.host, port
        # A listener without an advertised entry of its own advertises the first one.
        first = self.config.advertised_listeners[0]
        return first.host, first.port or self.bound_ports.get(first.name, 0)

    # --- partitions ------------------------------------------------------------------------

    def _open_partition(self, record: TopicRecord, index: int, now_ms: int) -> Partition:
        directory = _partition_dir(self.data_dir, record.name, index)
        plog = PartitionLog.open(
            directory,
            log_config_for_topic(self.config, record.configs),
            now_ms,
            producer_id_expiration_ms=self._producer_id_expiration_ms,
        )
        partition = Partition(record.name, index, plog)
        partition.become_leader(self.node_id, 0, 0, (self.node_id,), (self.node_id,), now_ms)
        self._partitions[(record.name, index)] = partition
        return partition

    def partition(self, topic: str, index: int) -> Partition | None:
        return self._partitions.get((topic, index))

    def partitions(self) -> Iterator[Partition]:
        return iter(list(self._partitions.values()))

    # --- topic operations ------------------------------------------------------------------

    def check_new_topic(
        self, name: str, partitions: int, replication_factor: int, configs: Mapping[str, str | None]
    ) -> dict[str, str]:
        """Validate a CreateTopics entry; returns the effective config overrides."""
        try:
            validate_topic_name(name)
        except ValueError as exc:
            raise BrokerError("invalid_topic_exception", str(exc)) from None
        if self.topics.get(name) is not None:
            raise BrokerError("topic_already_exists", f"Topic '{name}' already exists.")
        if partitions <= 0:
            raise BrokerError("invalid_partitions", f"Number of partitions must be positive, got {partitions}.")
        self._check_partition_limits(partitions, partitions)
        if replication_factor <= 0:
            raise BrokerError(
                "invalid_replication_factor",
                f"Replication factor must be positive, got {replication_factor}.",
            )
        if replication_factor > 1:
            raise BrokerError(
                "invalid_replication_factor",
                f"Replication factor: {replication_factor} larger than available brokers: 1.",
            )
        try:
            return validate_topic_configs(configs)
        except ConfigError as exc:
            raise BrokerError("invalid_config", str(exc)) from None

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: Mapping[str, str],
        now_ms: int,
    ) -> TopicRecord:
        record = self.topics.add(name, partitions, replication_factor, dict(configs))
        for index in range(partitions):
            self._open_partition(record, index, now_ms)
        log.info("created topic %s with %d partition(s)", name, partitions)
        return record

    def auto_create_topic(self, name: str, now_ms: int) -> TopicRecord:
        if name == OFFSETS_TOPIC:
            # Created as Kafka creates it: compacted, offsets.topic.* settings.
            error = self.groups.ensure_storage(now_ms)
            record = self.topics.get(name)
            if error is not None or record is None:
                raise BrokerError("coordinator_not_available", f"cannot create {name}")
            return record
        partitions = int(self.config.get("num.partitions"))
        replication_factor = int(self.config.get("default.replication.factor"))
        self.check_new_topic(name, partitions, replication_factor, {})
        return self.create_topic(name, partitions, replication_factor, {}, now_ms)

    def min_insync_replicas(self, topic: str) -> int:
        record = self.topics.get(topic)
        overrides = record.configs if record is not None else {}
        return int(topic_config_value(self.config, overrides, "min.insync.replicas"))

    @property
    def auto_create_enabled(self) -> bool:
        return bool(self.config.get("auto.create.topics.enable"))

    def delete_topic(self, name: str) -> TopicRecord:
        if not self.config.get("delete.topic.enable"):
            raise BrokerError("topic_deletion_disabled", "Topic deletion is disabled.")
        record = self.topics.remove(name)
        if name != OFFSETS_TOPIC:
            self.groups.remove_topic_offsets(name)
        for index in range(record.partitions):
            partition = self._partitions.pop((name, index), None)
            if partition is not None:
                partition.log.delete()
            else:
                shutil.rmtree(_partition_dir(self.data_dir, name, index), ignore_errors=True)
        log.info("deleted topic %s", name)
        return record

    def _check_partition_limits(self, topic_total: int, new: int) -> None:
        """Refuse partition counts past the reference-broker guards (see MAX_PARTITIONS_PER_TOPIC)."""
        if topic_total > MAX_PARTITIONS_PER_TOPIC:
            raise BrokerError(
                "invalid_partitions",
                f"{topic_total} partitions requested; the reference broker allows at most "
                f"{MAX_PARTITIONS_PER_TOPIC} per topic.",
            )
        budget = partition_budget()
        if len(self._partitions) + new > budget:
            raise BrokerError(
                "invalid_partitions",
                f"{new} new partition(s) would bring this node to {len(self._partitions) + new}, "
                f"more than the {budget} its open-file limit (ulimit -n) can keep open.",
            )

    def add_partitions(self, name: str, total: int, now_ms: int, validate_only: bool) -> None:
        record = self.topics.get(name)
        if record is None:
            raise BrokerError("unknown_topic_or_partition", f"Topic '{name}' does not exist.")
        if total <= record.partitions:
            raise BrokerError(
                "invalid_partitions",
                f"Topic currently has {record.partitions} partitions, which is higher than or "
                f"equal to the requested {total}.",
            )
        self._check_partition_limits(total, total - record.partitions)
        if validate_only:
            return
        first_new = record.partitions
        self.topics.set_partitions(name, total)
        for index in range(first_new, total):
            self._open_partition(record, index, now_ms)

    def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> None:
        record = self.topics.get(name)
        assert record is not None
        self.topics.set_configs(name, dict(configs))
        new_config = log_config_for_topic(self.config, record.configs)
        for index in range(record.partitions):
            partition = self._partitions.get((name, index))
            if partition is not None:
                partition.log.update_config(new_config)

    # --- periodic work ---------------------------------------------------------------------

    def run_retention(self, now_ms: int) -> int:
        """Apply time and size retention to every partition; returns segments removed."""
        return sum(
            partition.log.apply_retention(now_ms, partition.high_watermark)
            for partition in self.partitions()
        )

    def run_cleaner(self, now_ms: int) -> None:
        """Compact every partition whose cleanup.policy includes compact."""
        if self.config.get("log.cleaner.enable"):
            for partition in self.partitions():
                if partition.log.needs_compaction(now_ms):
                    try:
                        partition.log.compact(now_ms)
                    except RecordError as exc:
                        # Produce stores compressed batches without decompressing them, so one
                        # whose body does not decode is first found here. Skip that partition
                        # (it stays as it is) rather than stopping compaction of all the others.
                        log.error("cannot compact %s-%d: %s", partition.topic, partition.index, exc)

    def tick(self, now_ms: int) -> None:
        """Advance the core's timers; the driver calls it every few tens of milliseconds."""
        self.expire_producers(now_ms)
        self.groups.tick(now_ms)

    def expire_producers(self, now_ms: int) -> None:
        """Every producer.id.expiration.check.interval.ms, forget idempotent producers idle for
        producer.id.expiration.ms (Kafka's periodic removeExpiredProducers)."""
        if now_ms < self._next_producer_expiry_ms:
            return
        self._next_producer_expiry_ms = now_ms + self._producer_expiry_interval_ms
        for partition in self.partitions():
            expired = partition.log.remove_expired_producers(now_ms)
            if expired:
                log.info("%s-%d: producer id(s) %s expired", partition.topic, partition.index,
                         ", ".join(map(str, expired)))

    def flush_due(self, now_ms: int) -> None:
        for partition in self.partitions():
            partition.log.maybe_flush(now_ms)

    def close(self) -> None:
        for partition in self.partitions():
            partition.log.close()
        self._partitions.clear()
