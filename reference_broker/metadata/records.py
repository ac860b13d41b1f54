"""The records of the cluster metadata log, the single source of truth of a reference cluster.

As in KRaft (KIP-500, KIP-631), the controller never tells a broker what to do: it appends
records to the metadata log, and every broker replays the log into a
:class:`~reference_broker.metadata.image.MetadataImage` and acts on what changed (become
leader, become follower, stop serving a deleted topic). The records are KRaft's, simplified:

* ``RegisterBroker`` / ``FenceBroker`` / ``UnfenceBroker``: broker liveness (a fenced broker is
  registered but not allowed to lead: it missed heartbeats, or has just started);
* ``TopicRecord`` / ``RemoveTopic``: topics, with their ids and config overrides;
* ``PartitionRecord``: the full state of one partition after a change (replicas, ISR, leader,
  leader epoch, partition epoch). KRaft logs deltas (PartitionChangeRecord); logging the whole
  state costs a few bytes more and leaves nothing to get wrong when replaying;
* ``ProducerIdsRecord``: the next block of producer ids the controller may hand out.

Records are stored as JSON values in ordinary record batches, so the metadata log is a
:class:`~reference_broker.log.PartitionLog` like any other and brokers read it with Fetch.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

NO_LEADER = -1


@attrs.frozen(slots=True)
class Endpoint:
    """One advertised listener of a broker."""

    listener: str
    host: str
    port: int


@attrs.frozen(slots=True)
class RegisterBroker:
    """A broker registered (KIP-631 RegisterBrokerRecord): its incarnation, epoch and listeners."""

    node_id: int
    broker_epoch: int
    incarnation_id: str
    endpoints: tuple[Endpoint, ...]


@attrs.frozen(slots=True)
class FenceBroker:
    """The controller fenced a broker (it missed heartbeats, or is new and not caught up): it
    leads nothing and leaves every ISR."""

    node_id: int
    broker_epoch: int


@attrs.frozen(slots=True)
class UnfenceBroker:
    """The controller unfenced a broker: it has caught up with the metadata log and heartbeats."""

    node_id: int
    broker_epoch: int


@attrs.frozen(slots=True)
class TopicRecord:
    """A topic created, or its configuration changed (the latest record wins)."""

    name: str
    topic_id: uuid.UUID
    configs: tuple[tuple[str, str], ...] = ()


@attrs.frozen(slots=True)
class RemoveTopic:
    """A topic deleted: brokers delete its partitions and their data."""

    topic_id: uuid.UUID


@attrs.frozen(slots=True)
class PartitionRecord:
    """The complete state of one partition; each change appends a new one."""

    topic_id: uuid.UUID
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int

    @property
    def online(self) -> bool:
        return self.leader != NO_LEADER


@attrs.frozen(slots=True)
class ProducerIdsRecord:
    """The next producer id block a broker may be given (KIP-730)."""

    next_producer_id: int


MetadataRecord = (
    RegisterBroker | FenceBroker | UnfenceBroker | TopicRecord | RemoveTopic | PartitionRecord
    | ProducerIdsRecord
)

_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (RegisterBroker, FenceBroker, UnfenceBroker, TopicRecord, RemoveTopic,
                PartitionRecord, ProducerIdsRecord)
}


class MetadataRecordError(ValueError):
    """A metadata log value that does not decode as one of the records above."""


def _to_json(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Endpoint):
        return [value.listener, value.host, value.port]
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    return value


def encode(record: MetadataRecord) -> bytes:
    fields = {a.name: _to_json(getattr(record, a.name)) for a in attrs.fields(type(record))}
    return json.dumps({"type": type(record).__name__, **fields}, separators=(",", ":")).encode()


def _field_value(name: str, raw: Any) -> Any:
    if name == "topic_id":
        return uuid.UUID(raw)
    if name == "endpoints":
        return tuple(Endpoint(str(listener), str(host), int(port)) for listener, host, port in raw)
    if name == "configs":
        return tuple((str(key), str(value)) for key, value in raw)
    if isinstance(raw, list):
        return tuple(raw)
    return raw


def decode(data: bytes) -> MetadataRecord:
    try:
        raw = json.loads(data)
        cls = _TYPES[raw.pop("type")]
        record: MetadataRecord = cls(**{k: _field_value(k, v) for k, v in raw.items()})
    except (ValueError, KeyError, TypeError) as exc:
        raise MetadataRecordError(f"undecodable metadata record {data[:120]!r}: {exc}") from exc
    return record


def configs_tuple(configs: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(configs.items()))
