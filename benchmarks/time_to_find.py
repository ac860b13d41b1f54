"""How fast kconform finds a known bug, from a cold start: the figures of docs/findings.md.

One *trial* runs a kconform command (a chaos campaign or a conformance check) as a user would,
a fresh process each time, with seeds ``S``, ``S+1``, ... until its report shows the finding or
the trial's budget runs out; its time to find is the wall time of every run it took, cluster or
broker starts included. Several trials (``--trials``, different first seeds) give the median.

What counts as found (``--expect``):

- ``anomaly:NAME[:BLAME[:CAUSE]]``: a chaos report (results.json) has an anomaly ``NAME`` whose
  attribution is ``BLAME`` (broker, client, unattributed) and ``CAUSE``, e.g.
  ``anomaly:duplicate:client:epoch-bump-resend`` (librdkafka #4953);
- ``check:NAME``: a conformance report (results.json) says check ``NAME`` failed.

``--absent`` turns it around for a control: every run must *not* show the finding (e.g. the
Java client under the same faults), and the figure is how many runs did.

Examples::

    .venv/bin/python benchmarks/time_to_find.py --trials 5 --expect anomaly:duplicate:client:epoch-bump-resend \\
        -- kconform chaos --target kafka --campaign epoch-bump-duplicates --duration 24
    .venv/bin/python benchmarks/time_to_find.py --trials 10 --absent --expect anomaly:duplicate \\
        -- kconform chaos --target kafka --campaign epoch-bump-duplicates --duration 24 --client java
    .venv/bin/python benchmarks/time_to_find.py --trials 5 --expect check:topic-ids \\
        -- kconform conform --target tansu --checks topic-ids

The command gets ``--seed`` and ``--report`` added; ``kconform`` means this checkout's
``.venv/bin/kconform``. Prints one line per run and a summary; writes nothing else but the
reports, in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def found(results: dict[str, Any], expect: str) -> bool:
    """Whether a report (results.json) shows the expected finding."""
    kind, _, rest = expect.partition(":")
    if kind == "check":
        return bool(results.get("checks", {}).get(rest) == "fail")
    if kind != "anomaly":
        raise SystemExit(f"--expect {expect!r}: give anomaly:NAME[:BLAME[:CAUSE]] or check:NAME")
    name, *attribution = rest.split(":")
    for witnesses in results.get("witnesses", {}).values():
        for w in witnesses:
            if w.get("name") != name:
                continue
            a = w.get("attribution") or {}
            if attribution[:1] and a.get("blame") != attribution[0]:
                continue
            if attribution[1:2] and a.get("cause") != attribution[1]:
                continue
            return True
    return False


def run_once(command: list[str], seed: int, report: Path,
             timeout_s: float) -> tuple[float, dict[str, Any], int, str]:
    """Run the command once (a fresh process); wall seconds, its results.json, exit status and
    the last line it printed on stderr (why it could not run, when it could not)."""
    started = time.monotonic()
    try:
        done = subprocess.run([*command, "--seed", str(seed), "--report", str(report)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout_s,
                              check=False)
        status, last = done.returncode, (done.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        status, last = -1, f"no verdict within {timeout_s:.0f} s"
    seconds = time.monotonic() - started
    try:
        results = json.loads((report / "results.json").read_text())
    except (OSError, ValueError):
        results = {}
    return seconds, results, status, last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5, help="trials (default 5); each from a cold start")
    parser.add_argument("--first-seed", type=int, default=1000, help="seed of the first run (default 1000)")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="seconds a trial may take before it counts as not found (default 600)")
    parser.add_argument("--expect", required=True, help="anomaly:NAME[:BLAME[:CAUSE]] or check:NAME")
    parser.add_argument("--absent", action="store_true",
                        help="a control: each trial is one run, which must not show the finding")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- kconform ... (without --seed, --report)")
    args = parser.parse_args()
    command = [c for c in args.command if c != "--"]
    if not command:
        parser.error("give the command after --, e.g. -- kconform chaos --campaign epoch-bump-duplicates")
    if command[0] == "kconform":
        command[0] = str(ROOT / ".venv" / "bin" / "kconform")
    scratch = Path(tempfile.mkdtemp(prefix="kconform-time-to-find-"))
    times: list[float] = []
    misses = 0
    runs = 0
    errors = 0
    seed = args.first_seed
    try:
        for trial in range(1, args.trials + 1):
            spent = 0.0
            campaigns = 0
            hit = False
            failed_runs = 0
            while spent < args.budget:
                report = scratch / f"run-{seed}"
                seconds, results, status, last = run_once(command, seed, report, args.budget)
                shutil.rmtree(report, ignore_errors=True)
                spent += seconds
                campaigns += 1
                runs += 1
                seed += 1
                if not results:
                    # The run could not run (exit 2): its time counts, the trial goes on.
                    errors += 1
                    failed_runs += 1
                    print(f"trial {trial} seed {seed - 1}: exit {status} after {seconds:.1f} s, could not run: "
                          f"{last}", flush=True)
                    if failed_runs >= 3:
                        break
                    continue
                hit = found(results, args.expect)
                print(f"trial {trial} seed {seed - 1}: exit {status} after {seconds:.1f} s, "
                      f"{'FOUND' if hit else 'not found'} (outcome {results.get('outcome', results.get('valid'))}, "
                      f"anomalies {results.get('anomalies', {})})", flush=True)
                if args.absent or hit:
                    break
            if failed_runs >= 3:
                print(f"trial {trial}: abandoned, the command could not run three times", flush=True)
            elif args.absent:
                misses += 0 if hit else 1
            elif hit:
                times.append(spent)
                print(f"trial {trial}: found after {campaigns} run(s), {spent:.1f} s from a cold start", flush=True)
            else:
                print(f"trial {trial}: NOT found within {spent:.1f} s ({campaigns} run(s))", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("")
    print(f"command: {' '.join(command)}")
    if errors:
        print(f"{errors} run(s) could not run (exit 2; their time is counted in their trial)")
    if args.absent:
        print(f"control: {misses} of {args.trials} run(s) without {args.expect} "
              f"({args.trials - misses} showed it)")
        return 0 if misses == args.trials else 1
    if times:
        print(f"time to find {args.expect}: median {statistics.median(times):.1f} s, min {min(times):.1f} s, "
              f"max {max(times):.1f} s over {len(times)} of {args.trials} trial(s) ({runs} run(s) in all)")
    else:
        print(f"{args.expect} not found in any of {args.trials} trial(s)")
    return 0 if len(times) == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
