"""Fetching Apache Kafka's jars: versions, the generated pom, the cache and its error messages.

The real fetch from Maven Central is exercised by ``scripts/setup`` and by the kafka target's
tests; these are the quick parts around it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from launch import kafka_jars


def test_versions() -> None:
    assert kafka_jars.parse_version("4.4.0") == (4, 4, 0)
    assert kafka_jars.parse_version("3.9.2") == (3, 9, 2)
    for bad in ("3.6.0", "2.8.1", "4.4", "latest", "5.0.0"):
        with pytest.raises(kafka_jars.KafkaJarsError, match="not supported"):
            kafka_jars.parse_version(bad)
    assert kafka_jars.DEFAULT_VERSION in kafka_jars.KNOWN_VERSIONS


def test_version_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kafka_jars.VERSION_ENV, "3.9.2")
    assert kafka_jars.default_version() == "3.9.2"
    monkeypatch.delenv(kafka_jars.VERSION_ENV)
    assert kafka_jars.default_version() == kafka_jars.DEFAULT_VERSION


def test_each_line_gets_its_own_logging_binding() -> None:
    four = {a.artifact for a in kafka_jars.artifacts("4.4.0")}
    three = {a.artifact for a in kafka_jars.artifacts("3.9.2")}
    assert four == {"kafka_2.13", "log4j-slf4j-impl", "log4j-core"}
    assert three == {"kafka_2.13", "reload4j", "slf4j-reload4j"}
    pom = kafka_jars.pom("4.4.0")
    assert "<artifactId>kafka_2.13</artifactId><version>4.4.0</version>" in pom


def test_a_missing_version_says_how_to_fetch_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kafka_jars.CACHE_ENV, str(tmp_path))
    assert not kafka_jars.is_installed("4.4.0")
    with pytest.raises(kafka_jars.KafkaJarsError, match="python -m launch.kafka_jars 4.4.0"):
        kafka_jars.classpath("4.4.0")
    monkeypatch.setattr("launch.kafka_jars.shutil.which", lambda name: None)
    with pytest.raises(kafka_jars.KafkaJarsError, match="Maven"):
        kafka_jars.ensure("4.4.0")


def test_an_installed_version_is_reused_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kafka_jars.CACHE_ENV, str(tmp_path))
    libs = tmp_path / "4.4.0" / "libs"
    libs.mkdir(parents=True)
    for name in ("kafka_2.13-4.4.0.jar", "kafka-clients-4.4.0.jar"):
        (libs / name).write_bytes(b"")
    monkeypatch.setattr("launch.kafka_jars.shutil.which", lambda name: None)  # no Maven needed
    assert kafka_jars.ensure("4.4.0") == libs
    assert kafka_jars.classpath("4.4.0").split(":") == sorted(str(p) for p in libs.glob("*.jar"))


def test_kafka_streams_has_its_own_classpath_without_rocksdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kafka-streams with the version's logging binding, beside the broker's jars, rocksdbjni
    left out; reused without Maven once there, and a clear error without Maven."""
    monkeypatch.setenv(kafka_jars.CACHE_ENV, str(tmp_path))
    cp = kafka_jars.streams_classpath("4.4.0")
    assert {a.artifact for a in cp.wanted} == {"kafka-streams", "log4j-slf4j-impl", "log4j-core"}
    assert cp.where == tmp_path / "4.4.0" / "streams" and cp.excluded == ("rocksdbjni",)
    assert "<artifactId>kafka-streams</artifactId><version>4.4.0</version>" in kafka_jars.pom(
        "4.4.0", cp.wanted, cp.what)
    monkeypatch.setattr("launch.kafka_jars.shutil.which", lambda name: None)
    with pytest.raises(kafka_jars.KafkaJarsError, match="Maven .* Kafka Streams 4.4.0"):
        kafka_jars.ensure_streams("4.4.0")
    cp.libs.mkdir(parents=True)
    (cp.libs / "kafka-streams-4.4.0.jar").write_bytes(b"")
    assert kafka_jars.ensure_streams("4.4.0") == cp.libs
    assert not kafka_jars.is_installed("4.4.0")  # the broker's jars are another classpath
