"""Checker benchmark: load and check synthetic histories of 100k, 300k and 1M operations.

Generates each history with the simulated correct workload (harness.history.simulate: several
producers with pipelined sends and unknown outcomes, a consumer group with commits, seeks and
rebalances, a nemesis, a final drain), seeded and printed so a run can be replayed, writes it
as a JSONL file, then times loading (parse + validate + build the checkers' index, which the
loader does batch by batch) and checking (every anomaly check + the three delivery guarantees)
separately, both with the cyclic GC paused as `kconform check` does. Prints figures, asserts
nothing.

    .venv/bin/python benchmarks/checkers.py [--sizes 100000,300000,1000000] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.checkers import GUARANTEES, check  # noqa: E402
from harness.history import HistoryWriter, load_history  # noqa: E402
from harness.history._gc import no_gc  # noqa: E402
from harness.history.simulate import SimConfig, simulate  # noqa: E402


def generate(path: Path, operations: int, seed: int) -> None:
    # Weights per 1000 operations: a rebalance every ~1000 operations, a fault every ~100.
    config = SimConfig(operations=operations, producers=8, consumers=4, partitions=8, max_poll=8,
                       send=560, poll=340, commit=60, committed=10, seek=0, rebalance=1, fault=10,
                       list_offsets=9)
    clock = iter(range(1_000_000, 1 << 62, 1_000))
    with HistoryWriter(path, {"seed": seed, "generator": "benchmarks/checkers.py"},
                       clock=lambda: next(clock), flush=False) as writer:
        simulate(writer, random.Random(seed), config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"seed {seed} (replay with --seed {seed})")
    print(f"{'operations':>10} {'events':>9} {'records':>9} {'MB':>6} {'generate s':>10} {'load+index s':>12} "
          f"{'check s':>8} {'total s':>8} {'µs/op':>6}  result")
    with tempfile.TemporaryDirectory(prefix="kconform-bench-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"history-{size}.jsonl"
            t0 = time.perf_counter()
            generate(path, size, seed)
            t1 = time.perf_counter()
            with no_gc():  # as `kconform check` does: see harness/check_cli.py
                history = load_history(path)
                t2 = time.perf_counter()
                report = check(history, guarantees=list(GUARANTEES))
                t3 = time.perf_counter()
            ops = history.operations
            verdict = "valid" if report.valid else f"anomalies {dict(report.anomalies)}"
            print(f"{ops:>10} {len(history):>9} {history.index.records_read:>9} "
                  f"{path.stat().st_size / 1e6:>6.0f} {t1 - t0:>10.1f} {t2 - t1:>12.2f} {t3 - t2:>8.2f} "
                  f"{t3 - t1:>8.2f} {(t3 - t1) / ops * 1e6:>6.2f}  {verdict}", flush=True)
            del history, report
            path.unlink()


if __name__ == "__main__":
    main()
