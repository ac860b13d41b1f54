"""The broker's typed calls to its controller.

A broker asks the controller for five things of its own (BrokerRegistration, BrokerHeartbeat,
AlterPartition, AllocateProducerIds; KIP-631, KIP-497, KIP-730) and forwards four admin requests
it may not answer itself (CreateTopics, DeleteTopics, CreatePartitions, IncrementalAlterConfigs;
KIP-590). Each method here builds the kio request class of the version the controller speaks
(the highest in :data:`~reference_broker.protocol.api_versions.CONTROLLER_API_VERSIONS`; a test
holds the two together) and sends it over the broker's
:class:`~reference_broker.controller_channel.ControllerChannel`. The callback gets the kio
response of the same version, or None when the controller could not be reached.

Arguments are plain Python values; the kio wrapper types (``BrokerId``, ``i32``, ...) are applied
here, so callers neither build dicts nor know the wire versions.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterable, Sequence

from kio.schema.allocate_producer_ids.v0.request import AllocateProducerIdsRequest
from kio.schema.allocate_producer_ids.v0.response import AllocateProducerIdsResponse
from kio.schema.alter_partition.v3 import request as alter_partition
from kio.schema.alter_partition.v3.response import AlterPartitionResponse
from kio.schema.broker_heartbeat.v1.request import BrokerHeartbeatRequest
from kio.schema.broker_heartbeat.v1.response import BrokerHeartbeatResponse
from kio.schema.broker_registration.v4 import request as broker_registration
from kio.schema.broker_registration.v4.response import BrokerRegistrationResponse
from kio.schema.create_partitions.v3 import request as create_partitions
from kio.schema.create_partitions.v3.response import CreatePartitionsResponse
from kio.schema.create_topics.v7 import request as create_topics
from kio.schema.create_topics.v7.response import CreateTopicsResponse
from kio.schema.delete_topics.v6 import request as delete_topics
from kio.schema.delete_topics.v6.response import DeleteTopicsResponse
from kio.schema.incremental_alter_configs.v1 import request as alter_configs
from kio.schema.incremental_alter_configs.v1.response import IncrementalAlterConfigsResponse
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i8, i16, i32, i32Timedelta, i64, u16

from reference_broker.controller_channel import ControllerChannel

PLAINTEXT = 0  # SecurityProtocol id in BrokerRegistration listeners

# Forwarded admin requests as plain values: what the broker's handlers take from a client's
# request of any version and pass on at the controller's version.
NewTopic = create_topics.CreatableTopic
NewPartitions = create_partitions.CreatePartitionsTopic
ConfigChange = alter_configs.AlterConfigsResource

def new_topic(name: str, partitions: int, replication_factor: int,
              assignments: Iterable[tuple[int, Sequence[int]]] = (),
              configs: Iterable[tuple[str, str | None]] = ()) -> NewTopic:
    """A topic to create: ``assignments`` are (partition, replicas) pairs (manual placement)."""
    return create_topics.CreatableTopic(
        name=TopicName(name), num_partitions=i32(partitions), replication_factor=i16(replication_factor),
        assignments=tuple(create_topics.CreatableReplicaAssignment(
            partition_index=i32(index), broker_ids=tuple(BrokerId(b) for b in replicas))
            for index, replicas in assignments),
        configs=tuple(create_topics.CreatableTopicConfig(name=key, value=value) for key, value in configs),
    )


def new_partitions(name: str, count: int, assignments: Iterable[Sequence[int]] | None = None) -> NewPartitions:
    """Grow topic ``name`` to ``count`` partitions (``assignments``: replicas of each new one)."""
    return create_partitions.CreatePartitionsTopic(
        name=TopicName(name), count=i32(count),
        assignments=None if assignments is None else tuple(
            create_partitions.CreatePartitionsAssignment(broker_ids=tuple(BrokerId(b) for b in replicas))
            for replicas in assignments),
    )


def config_change(resource_type: int, resource_name: str,
                  changes: Iterable[tuple[str, int, str | None]]) -> ConfigChange:
    """IncrementalAlterConfigs of one resource: (name, operation, value) triples."""
    return alter_configs.AlterConfigsResource(
        resource_type=i8(resource_type), resource_name=resource_name,
        configs=tuple(alter_configs.AlterableConfig(name=name, config_operation=i8(operation), value=value)
                      for name, operation, value in changes),
    )


class ControllerClient:
    """Typed requests to the controller over ``channel``, as broker ``node_id``."""

    def __init__(self, channel: ControllerChannel, node_id: int) -> None:
        self.channel = channel
        self.node_id = node_id

    # --- the broker's own requests -------------------------------------------------------------

    def register(self, cluster_id: str, incarnation_id: uuid.UUID,
                 listeners: Iterable[tuple[str, str, int]],
                 callback: Callable[[BrokerRegistrationResponse | None], None], now_ms: int) -> None:
        """BrokerRegistration with (listener name, host, port) of every advertised listener."""
        self.channel.send(broker_registration.BrokerRegistrationRequest(
            broker_id=BrokerId(self.node_id), cluster_id=cluster_id, incarnation_id=incarnation_id,
            listeners=tuple(broker_registration.Listener(
                name=name, host=host, port=u16(port), security_protocol=i16(PLAINTEXT))
                for name, host, port in listeners),
            features=(), rack=None, log_dirs=(), previous_broker_epoch=i64(-1),
        ), callback, now_ms)

    def heartbeat(self, broker_epoch: int, metadata_offset: int, want_shut_down: bool,
                  callback: Callable[[BrokerHeartbeatResponse | None], None], now_ms: int) -> None:
        self.channel.send(BrokerHeartbeatRequest(
            broker_id=BrokerId(self.node_id), broker_epoch=i64(broker_epoch),
            current_metadata_offset=i64(metadata_offset), want_fence=False, want_shut_down=want_shut_down,
        ), callback, now_ms)

    def alter_partition(self, broker_epoch: int, topic_id: uuid.UUID, index: int, leader_epoch: int,
                        partition_epoch: int, new_isr: Sequence[int],
                        callback: Callable[[AlterPartitionResponse | None], None], now_ms: int) -> None:
        """AlterPartition of one partition's ISR, as its leader at the given epochs."""
        self.channel.send(alter_partition.AlterPartitionRequest(
            broker_id=BrokerId(self.node_id), broker_epoch=i64(broker_epoch),
            topics=(alter_partition.TopicData(topic_id=topic_id, partitions=(alter_partition.PartitionData(
                partition_index=i32(index), leader_epoch=i32(leader_epoch),
                new_isr_with_epochs=tuple(alter_partition.BrokerState(broker_id=BrokerId(n), broker_epoch=i64(-1))
                                          for n in new_isr),
                leader_recovery_state=i8(0), partition_epoch=i32(partition_epoch),
            ),)),),
        ), callback, now_ms)

    def allocate_producer_ids(self, broker_epoch: int,
                              callback: Callable[[AllocateProducerIdsResponse | None], None],
                              now_ms: int) -> None:
        self.channel.send(AllocateProducerIdsRequest(broker_id=BrokerId(self.node_id), broker_epoch=i64(broker_epoch)),
                   callback, now_ms)

    # --- forwarded admin requests (KIP-590) ----------------------------------------------------

    def create_topics(self, topics: Iterable[NewTopic], timeout: datetime.timedelta, validate_only: bool,
                      callback: Callable[[CreateTopicsResponse | None], None], now_ms: int) -> None:
        self.channel.send(create_topics.CreateTopicsRequest(
            topics=tuple(topics), timeout=i32Timedelta.parse(timeout), validate_only=validate_only,
        ), callback, now_ms)

    def delete_topics(self, topics: Iterable[tuple[str | None, uuid.UUID | None]], timeout: datetime.timedelta,
                      callback: Callable[[DeleteTopicsResponse | None], None], now_ms: int) -> None:
        """DeleteTopics by (name, topic id) pairs: a name (no id, or the zero id), or an id. The zero
        id is sent as None, which is what it decodes to, so a local and a remote controller see the
        same request."""
        self.channel.send(delete_topics.DeleteTopicsRequest(
            topics=tuple(delete_topics.DeleteTopicState(
                name=None if name is None else TopicName(name),
                topic_id=None if topic_id is None or topic_id.int == 0 else topic_id)
                for name, topic_id in topics),
            timeout=i32Timedelta.parse(timeout),
        ), callback, now_ms)

    def create_partitions(self, topics: Iterable[NewPartitions], timeout: datetime.timedelta,
                          validate_only: bool, callback: Callable[[CreatePartitionsResponse | None], None],
                          now_ms: int) -> None:
        self.channel.send(create_partitions.CreatePartitionsRequest(
            topics=tuple(topics), timeout=i32Timedelta.parse(timeout), validate_only=validate_only,
        ), callback, now_ms)

    def incremental_alter_configs(self, resources: Iterable[ConfigChange], validate_only: bool,
                                  callback: Callable[[IncrementalAlterConfigsResponse | None], None],
                                  now_ms: int) -> None:
        self.channel.send(alter_configs.IncrementalAlterConfigsRequest(
            resources=tuple(resources), validate_only=validate_only,
        ), callback, now_ms)
