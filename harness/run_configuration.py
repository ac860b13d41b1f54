"""The configuration a history was recorded under, read from its header or stated by the user.

``kconform check`` judges anomalies the way a chaos campaign does only if it knows what the run
promised (specs/claims.py): ``acks=1`` makes a lost write a hazard, not a violation. A chaos
campaign writes its settings into the history's ``meta`` (``settings``, ``topic_configs``,
``replication_factor``, ``groups``, ``durable_target``), so its history carries them; for any
other history the user states them with ``--config KEY=VALUE`` in Kafka's names, and those win
over the header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from specs.claims import Configuration
from specs.delivery import CommitPoint
from specs.produce import Acks, DurabilityConfig, ProducerConfig, ProducerConfigError

KEYS = ("acks", "enable.idempotence", "replication.factor", "min.insync.replicas", "unclean.leader.election.enable")
"""What ``--config`` may set (Kafka's producer and topic configuration names)."""
RESTARTING_FAULTS = ("kill", "restart", "wipe")
"""Faults that restart a broker process: a broker keeping its records in memory loses them."""
COMMIT_POINTS = {"commit-after": CommitPoint.AFTER_PROCESSING, "commit-before": CommitPoint.BEFORE_PROCESSING}
"""The consumer modes a history's ``meta.groups`` names, and when each commits."""


class ConfigurationError(ValueError):
    """A stated configuration Kafka would refuse, or a key or value kconform does not know."""


def from_meta(meta: Mapping[str, Any]) -> dict[str, str]:
    """The settings a history's header records (empty when it records none)."""
    out: dict[str, str] = {}
    workload = meta.get("settings", {}).get("workload", {}) if isinstance(meta.get("settings"), Mapping) else {}
    if "acks" in workload:
        out["acks"] = str(workload["acks"])
    if "idempotence" in workload:
        out["enable.idempotence"] = str(bool(workload["idempotence"])).lower()
    if "replication_factor" in meta:
        out["replication.factor"] = str(meta["replication_factor"])
    topic_configs = meta.get("topic_configs", {})
    for key in ("min.insync.replicas", "unclean.leader.election.enable"):
        if isinstance(topic_configs, Mapping) and key in topic_configs:
            out[key] = str(topic_configs[key])
    return out


def parse_stated(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` items as given to ``--config``; unknown keys are refused."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ConfigurationError(f"{item!r}: expected KEY=VALUE, e.g. acks=1")
        if key not in KEYS:
            raise ConfigurationError(f"{key!r} is not a setting kconform judges by; known: {', '.join(KEYS)}")
        out[key] = value
    return out


def configuration(settings: Mapping[str, str], meta: Mapping[str, Any], fault_kinds: Iterable[str]
                  ) -> Configuration:
    """The :class:`Configuration` of ``settings`` (Kafka's defaults for what they leave out:
    acks=all, idempotence on, replication factor 3, min.insync.replicas 1, clean elections), with
    the consumer groups, target durability, transactions (``meta.transactions``, true when the
    run has transactions to judge) and Kafka Streams application (``meta.streams``) the header
    names and the faults the history ran."""
    try:
        acks = Acks({"-1": "all"}.get(settings.get("acks", "all"), settings.get("acks", "all")))
    except ValueError:
        raise ConfigurationError(f"acks={settings['acks']}: expected 0, 1, all or -1") from None
    idempotence = _bool(settings, "enable.idempotence", acks is Acks.ALL)
    rf = _int(settings, "replication.factor", 3)
    min_isr = _int(settings, "min.insync.replicas", 1)
    unclean = _bool(settings, "unclean.leader.election.enable", False)
    try:
        producer = ProducerConfig(acks=acks, enable_idempotence=idempotence)
    except ProducerConfigError as exc:
        raise ConfigurationError(str(exc)) from None
    groups = meta.get("groups", {}) if isinstance(meta.get("groups"), Mapping) else {}
    durable = meta.get("durable_target", True) is not False
    kinds = set(fault_kinds)
    return Configuration(producer, DurabilityConfig(acks, rf, min_isr, unclean), wipes_data="wipe" in kinds,
                         volatile_restarts=not durable and bool(kinds & set(RESTARTING_FAULTS)),
                         groups={g: COMMIT_POINTS[m] for g, m in groups.items() if m in COMMIT_POINTS},
                         transactions=meta.get("transactions") is True, streams=_streams_guarantee(meta))


def _streams_guarantee(meta: Mapping[str, Any]) -> str | None:
    """The processing.guarantee of the run's Kafka Streams application (``meta.streams``), if any."""
    streams = meta.get("streams")
    if not isinstance(streams, Mapping):
        return None
    return str(streams.get("processing.guarantee", "exactly_once_v2"))


def _bool(settings: Mapping[str, str], key: str, default: bool) -> bool:
    value = settings.get(key)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise ConfigurationError(f"{key}={value}: expected true or false")
    return value.lower() == "true"


def _int(settings: Mapping[str, str], key: str, default: int) -> int:
    value = settings.get(key)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"{key}={value}: expected a whole number of at least 1")
    return int(value)
