"""``kconform roundtrip``: produce N unique messages, read them back, verify, write a report.

The smallest end-to-end check of a broker: every acknowledged message must come back once, at
contiguous offsets from where the topic started, byte for byte. By default it launches a
reference broker in a temporary directory; ``--bootstrap`` points it at any running broker.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import click

from harness.verdicts import colour_verdict, verdict_word
from launch.broker_process import BrokerProcess

TIMEOUT_S = 60.0


@attrs.frozen
class RoundTripResult:
    bootstrap: str
    topic: str
    produced: int
    acknowledged: int
    consumed: int
    first_offset: int
    problems: tuple[str, ...]
    produce_seconds: float
    consume_seconds: float

    @property
    def valid(self) -> bool:
        return not self.problems and self.acknowledged == self.produced == self.consumed


@contextlib.contextmanager
def _target(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    with BrokerProcess() as broker:
        click.echo(f"started reference broker at {broker.bootstrap} (data in {broker.data_dir})")
        yield broker.bootstrap


def _produce(bootstrap: str, topic: str, count: int) -> tuple[dict[int, bytes], float]:
    from confluent_kafka import Producer

    acked: dict[int, bytes] = {}
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            acked[msg.offset()] = msg.value()

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    started = time.monotonic()
    with click.progressbar(range(count), label="producing", file=sys.stderr) as bar:
        for i in bar:
            while True:
                try:
                    producer.produce(topic, key=str(i % 64).encode(),
                                     value=f"roundtrip-{i:09d}".encode(), partition=0,
                                     on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
    if producer.flush(TIMEOUT_S):
        errors.append("producer could not deliver everything within the timeout")
    if errors:
        raise click.ClickException(f"produce failed: {errors[0]} ({len(errors)} errors)")
    return acked, time.monotonic() - started


def _consume(bootstrap: str, topic: str, start: int, count: int) -> tuple[list[tuple[int, bytes]], float]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kconform-roundtrip",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, start)])
    out: list[tuple[int, bytes]] = []
    started = time.monotonic()
    deadline = started + TIMEOUT_S
    with click.progressbar(length=count, label="consuming", file=sys.stderr) as bar:
        while len(out) < count and time.monotonic() < deadline:
            batch = consumer.consume(10_000, 0.5)
            for msg in batch:
                if msg.error() is None:
                    out.append((int(msg.offset() or 0), msg.value() or b""))
            bar.update(len(batch))
    consumer.close()
    return out, time.monotonic() - started


def run_roundtrip(bootstrap: str, topic: str, count: int) -> RoundTripResult:
    acked, produce_s = _produce(bootstrap, topic, count)
    first = min(acked, default=0)
    consumed, consume_s = _consume(bootstrap, topic, first, count)
    problems = []
    offsets = [offset for offset, _ in consumed]
    if offsets != list(range(first, first + len(offsets))):
        problems.append("consumed offsets are not contiguous")
    wrong = [offset for offset, value in consumed if acked.get(offset) != value]
    if wrong:
        problems.append(f"{len(wrong)} records differ from what was acknowledged, first at offset {wrong[0]}")
    return RoundTripResult(bootstrap, topic, count, len(acked), len(consumed), first,
                           tuple(problems), produce_s, consume_s)


@click.command("roundtrip")
@click.option("--messages", "count", type=click.IntRange(1, 10_000_000), default=10_000,
              show_default=True, help="How many messages to produce and read back.")
@click.option("--topic", default="kconform-roundtrip", show_default=True)
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help="Check this running broker instead of launching a reference broker.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("reports/roundtrip"), show_default=True,
              help="Folder for results.json and summary.txt.")
def roundtrip_command(count: int, topic: str, bootstrap: str | None, report_dir: Path) -> None:
    """Produce unique messages with confluent-kafka (acks=all), read them back and verify that
    every acknowledged message returns once, at contiguous offsets, unchanged.

    Exits 0 when the round trip is clean, 1 when it is not.
    """
    with _target(bootstrap) as address:
        result = run_roundtrip(address, topic, count)
    report_dir.mkdir(parents=True, exist_ok=True)
    payload = {**attrs.asdict(result), "valid": result.valid}
    (report_dir / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    summary = (
        f"{verdict_word(result.valid)}: {result.acknowledged}/{result.produced} "
        f"acknowledged, {result.consumed} read back from offset {result.first_offset} "
        f"(produce {result.produced / max(result.produce_seconds, 1e-9):,.0f} msg/s, "
        f"consume {result.consumed / max(result.consume_seconds, 1e-9):,.0f} msg/s)"
        + "".join(f"\n  - {problem}" for problem in result.problems)
    )
    (report_dir / "summary.txt").write_text(summary + "\n")
    click.echo(colour_verdict(summary))
    click.echo(f"report written to {report_dir}/")
    sys.exit(0 if result.valid else 1)
