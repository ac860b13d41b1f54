"""Produce throughput of a replicated reference cluster: acks=all with RF=3 against acks=1 with
RF=1, in one run.

Starts a reference cluster (``ReferenceCluster``: a controller and three broker processes on
loopback, as ``kconform cluster`` does), creates one single-partition topic per line and
produces ``--messages`` messages of ``--size`` bytes with one confluent-kafka Producer (default
batching, ``linger.ms=5``, no compression). The clock runs from the first ``produce()`` until
``flush()`` returns with every message acknowledged; the topic must then hold exactly the
messages sent. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/cluster_throughput.py [--messages 500000] [--size 100] [--repeat 3]

Lines:

* ``acks=1  RF=1``: the leader appends and answers; nothing is replicated;
* ``acks=1  RF=3``: the leader answers after its own append; two followers copy the log;
* ``acks=all RF=3`` (``min.insync.replicas=2``): the answer waits until both followers have
  fetched the batch and the high watermark has passed it (two follower round trips).

Every process (client, controller, three brokers) shares this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka import libversion as librdkafka_version  # noqa: E402
from confluent_kafka.admin import (
    AdminClient,  # noqa: E402
    NewTopic,  # type: ignore[attr-defined]  # noqa: E402
)

from launch.reference_cluster import ReferenceCluster  # noqa: E402

LINES = (("1", 1), ("1", 3), ("all", 3))


def create(cluster: ReferenceCluster, name: str, replication: int) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    configs = {"min.insync.replicas": "2"} if replication >= 2 else {}
    futures = admin.create_topics([NewTopic(name, 1, replication, config=configs)])
    futures[name].result(30)
    cluster.wait_for_leader(name, 0)


def produce(cluster: ReferenceCluster, topic: str, acks: str, count: int, size: int) -> float:
    """Seconds to produce ``count`` messages and have every one acknowledged."""
    producer = Producer({
        "bootstrap.servers": cluster.bootstrap, "acks": acks, "linger.ms": 5,
        "queue.buffering.max.messages": 1_000_000, "log_level": 3,
    })
    failures: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    payload = b"x" * size
    producer.produce(topic, payload, on_delivery=report)  # connect and learn the leader first
    producer.flush(30)
    started = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, payload, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.001)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    if remaining or failures:
        raise SystemExit(f"{topic}: {remaining} unacknowledged, {len(failures)} failed "
                         f"({failures[:1]})")
    return elapsed


def stored(cluster: ReferenceCluster, topic: str, expected: int, timeout_s: float = 30) -> bool:
    """Whether the topic comes to hold ``expected`` committed messages (with acks=1 the high
    watermark follows the followers, a little after the acknowledgements)."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "bench-check",
                         "log_level": 3})
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            if high - low == expected:
                return True
            if high - low > expected or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--size", type=int, default=100, help="value bytes per message")
    parser.add_argument("--repeat", type=int, default=3, help="runs per line (median shown)")
    args = parser.parse_args()
    print(f"reference cluster: 1 controller + 3 brokers on loopback; {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, librdkafka {librdkafka_version()[0]}")
    print(f"{args.messages} messages of {args.size} bytes per run, median of {args.repeat}")
    print(f"{'line':<14} {'msgs/s':>10} {'MB/s':>7} {'runs msgs/s':>30}")
    results: dict[str, float] = {}
    with ReferenceCluster(3, {"offsets.topic.num.partitions": "3"}, log_level="WARNING") as cluster:
        cluster.wait_ready()
        for acks, replication in LINES:
            rates = []
            for run in range(args.repeat):
                topic = f"bench-acks{acks}-rf{replication}-{run}"
                create(cluster, topic, replication)
                seconds = produce(cluster, topic, acks, args.messages, args.size)
                if not stored(cluster, topic, args.messages + 1):  # + the warm-up message
                    raise SystemExit(f"{topic} does not hold the messages sent")
                rates.append(args.messages / seconds)
            rate = statistics.median(rates)
            name = f"acks={acks} RF={replication}"
            results[name] = rate
            print(f"{name:<14} {rate:>10,.0f} {rate * args.size / 1e6:>7.2f} "
                  f"{' '.join(f'{r:,.0f}' for r in rates):>30}")
    base = results["acks=1 RF=1"]
    print(f"acks=all RF=3 runs at {results['acks=all RF=3'] / base:.0%} of acks=1 RF=1")


if __name__ == "__main__":
    main()
