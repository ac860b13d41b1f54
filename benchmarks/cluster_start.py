"""Cluster start benchmark: time from launching a cluster to ready, reference beside Apache Kafka.

Starts, several times, a reference cluster (a controller and N brokers as real processes,
ReferenceCluster, as `kconform cluster` does) and an Apache Kafka cluster (N combined
broker+controller JVMs in KRaft mode, KafkaCluster, as the `kafka` target does: storage
formatted, then every JVM started), alternating the two, and prints for each run:

* processes up: every process answers (the reference brokers printed their ready line; every
  Kafka node answers ApiVersions on its client listener, which it does once unfenced);
* ready: every broker is live (Admin API DescribeCluster at every node for Kafka) and every
  partition of `__consumer_offsets` (Kafka's default of 50 partitions, replication factor
  min(3, N)) is led, as every broker sees it;
* stop: the time to end the processes and remove the data.

Prints figures, asserts nothing. Target for the reference cluster: ready in under 2 seconds.

    .venv/bin/python benchmarks/cluster_start.py [--brokers 3] [--runs 5] [--targets reference,kafka]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from launch import kafka_jars  # noqa: E402
from launch.kafka_cluster import KafkaCluster  # noqa: E402
from launch.reference_cluster import ReferenceCluster  # noqa: E402

TARGETS = ("reference", "kafka")


def launcher(target: str, brokers: int, overrides: dict[str, str], kafka_version: str) -> Any:
    if target == "reference":
        return ReferenceCluster(brokers, overrides, log_level="WARNING")
    return KafkaCluster(brokers, overrides, version=kafka_version, log_level="WARN")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--offsets-partitions", type=int, default=50,
                        help="offsets.topic.num.partitions (Kafka's default: 50)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: reference,kafka")
    parser.add_argument("--kafka-version", default=kafka_jars.default_version())
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not targets or set(targets) - set(TARGETS):
        parser.error(f"--targets: choose from {', '.join(TARGETS)}")
    if "kafka" in targets:
        kafka_jars.ensure(args.kafka_version, log=True)  # a first fetch is not start-up time
    overrides = {"offsets.topic.num.partitions": str(args.offsets_partitions)}
    print(f"{args.brokers} brokers (reference: + 1 controller; kafka {args.kafka_version}: combined "
          f"broker+controller nodes), __consumer_offsets with {args.offsets_partitions} partitions, "
          f"RF {min(3, args.brokers)}")
    print(f"{'target':>9} {'run':>3} {'processes up s':>14} {'ready s':>8} {'stop s':>7}")
    ready_times: dict[str, list[float]] = {t: [] for t in targets}
    for run in range(1, args.runs + 1):
        for target in targets if run % 2 else list(reversed(targets)):
            started = time.perf_counter()
            with launcher(target, args.brokers, overrides, args.kafka_version) as cluster:
                up = time.perf_counter()
                cluster.wait_ready()
                ready = time.perf_counter()
            stopped = time.perf_counter()
            ready_times[target].append(ready - started)
            print(f"{target:>9} {run:>3} {up - started:>14.3f} {ready - started:>8.3f} {stopped - ready:>7.3f}",
                  flush=True)
    for target, times in ready_times.items():
        print(f"{target}: start to ready: min {min(times):.3f} s, median {statistics.median(times):.3f} s, "
              f"max {max(times):.3f} s")


if __name__ == "__main__":
    main()
