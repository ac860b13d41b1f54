"""Transaction checker benchmark: load and check a synthetic valid transactional history of 1M operations.

Generates the history with the simulated correct transactional workload
(harness.history.simulate_transactions: interleaved producer transactions, consume-transform-produce
workers, read_committed and read_uncommitted readers, LSO samples, a final drain), seeded and
printed so a run can be replayed, writes it as a JSONL file, then times loading (parse, validate,
index) and checking (every anomaly check, the transactional ones included) separately, with the
cyclic GC paused as `kconform check` does, and judges the result against Kafka's default
configuration: a valid history has no violation, only the hazards Kafka allows (G0, G-single).
Prints figures, asserts nothing.

    .venv/bin/python benchmarks/transaction_checker.py [--operations 1000000] [--seed N] [--keep PATH]
    .venv/bin/python benchmarks/transaction_checker.py --history PATH   # time a kept history again
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.checkers import TRANSACTIONAL, check  # noqa: E402
from harness.checkers.judgement import judge  # noqa: E402
from harness.history import HistoryWriter, load_history  # noqa: E402
from harness.history._gc import no_gc  # noqa: E402
from harness.history.simulate_transactions import TxnSimConfig, simulate_transactions  # noqa: E402
from specs.claims import Configuration, claims_for  # noqa: E402


def generate(path: Path, operations: int, seed: int) -> None:
    config = TxnSimConfig(operations=operations, producers=8, workers=4, readers=3, input_partitions=8,
                          output_partitions=8, max_sends=4, max_poll=8)
    clock = iter(range(1_000_000, 1 << 62, 1_000))
    with HistoryWriter(path, {"seed": seed, "generator": "benchmarks/transaction_checker.py"},
                       clock=lambda: next(clock), flush=False) as writer:
        simulate_transactions(writer, random.Random(seed), config)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--operations", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="write the history here and keep it")
    parser.add_argument("--history", type=Path, default=None, help="check this kept history instead")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    with tempfile.TemporaryDirectory(prefix="kconform-bench-") as tmp:
        path = args.history or args.keep or Path(tmp) / "history.jsonl"
        t0 = time.perf_counter()
        if args.history is None:
            print(f"seed {seed} (replay with --seed {seed})", flush=True)
            generate(path, args.operations, seed)
        t1 = time.perf_counter()
        with no_gc():  # as `kconform check` does: see harness/check_cli.py
            c1 = time.process_time()
            history = load_history(path)
            t2, c2 = time.perf_counter(), time.process_time()
            report = check(history)
            t3, c3 = time.perf_counter(), time.process_time()
        ops = history.operations
        if args.history is not None:
            print(f"{path}: seed {history.meta.get('seed')}")
        print(f"operations {ops}, events {len(history)}, transactions {len(history.index.txns)}, "
              f"records read {history.index.records_read}, {path.stat().st_size / 1e6:.0f} MB")
        print(f"generate {t1 - t0:.1f} s, load+index {t2 - t1:.2f} s (cpu {c2 - c1:.2f} s), check {t3 - t2:.2f} s "
              f"(cpu {c3 - c2:.2f} s), total {t3 - t1:.2f} s: {ops / (t3 - t1):,.0f} ops/s, "
              f"{ops / (t3 - t2):,.0f} ops/s checking alone")
        for name in TRANSACTIONAL:
            r = report.result(name)
            print(f"  {name:<26} {'skip: ' + r.skipped if r.skipped else r.count}")
        verdict = judge(report, claims_for(Configuration(transactions=True)))
        broken = {**verdict.violations, **verdict.unjudged}
        hazards = {p: n for p, n in verdict.hazards.items() if n}
        print(f"verdict: {'VIOLATED ' + str(broken) if broken else 'valid'}; hazards Kafka allows: {hazards}")


if __name__ == "__main__":
    main()
