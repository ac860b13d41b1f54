"""Cluster start benchmark: time from launching a reference cluster to ready.

Starts a controller and N brokers as real processes (ReferenceCluster, as `kconform cluster`
does), several times, and prints for each run the time until every process printed its ready
line and the time until the cluster is ready: every broker unfenced and every partition of
`__consumer_offsets` (Kafka's default of 50 partitions, replication factor min(3, N)) led, as
every broker sees it. Prints figures, asserts nothing. Target: a 3-broker cluster ready in
under 2 seconds.

    .venv/bin/python benchmarks/cluster_start.py [--brokers 3] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reference_broker.cluster import ReferenceCluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--offsets-partitions", type=int, default=50,
                        help="offsets.topic.num.partitions (Kafka's default: 50)")
    args = parser.parse_args()
    overrides = {"offsets.topic.num.partitions": str(args.offsets_partitions)}
    print(f"{args.brokers} brokers + 1 controller, __consumer_offsets with "
          f"{args.offsets_partitions} partitions, RF {min(3, args.brokers)}")
    print(f"{'run':>3} {'processes up s':>14} {'ready s':>8} {'stop s':>7}")
    ready_times = []
    for run in range(1, args.runs + 1):
        started = time.perf_counter()
        with ReferenceCluster(args.brokers, overrides, log_level="WARNING") as cluster:
            up = time.perf_counter()
            cluster.wait_ready()
            ready = time.perf_counter()
        stopped = time.perf_counter()
        ready_times.append(ready - started)
        print(f"{run:>3} {up - started:>14.3f} {ready - started:>8.3f} {stopped - ready:>7.3f}")
    print(f"start to ready: min {min(ready_times):.3f} s, median "
          f"{statistics.median(ready_times):.3f} s, max {max(ready_times):.3f} s")


if __name__ == "__main__":
    main()
