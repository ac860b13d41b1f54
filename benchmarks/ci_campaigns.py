"""CI campaign benchmark: how many chaos campaigns an hour one machine runs with ``--jobs``, and
how long ``kconform report merge`` takes for many shard folders.

1. Runs ``kconform chaos --seeds N --jobs J --duration D`` (real reference clusters, real
   Toxiproxy, real clients) and prints campaigns per hour from its wall time.
2. Copies one campaign's report folder into ``--folders`` shard folders (its results.json, with
   the seed changed) and times merging them.

Prints figures, asserts nothing.

    .venv/bin/python benchmarks/ci_campaigns.py [--seeds 4] [--jobs 2] [--duration 15] [--folders 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.report_merge import merge  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kconform-bench-ci-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "chaos.entry", "chaos", "--seeds", str(args.seeds), "--seed",
                              str(args.seed), "--jobs", str(args.jobs), "--duration", str(args.duration),
                              "--report", str(root / "sweep")], capture_output=True, text=True)
        wall = time.perf_counter() - started
        merged = json.loads((root / "sweep" / "results.json").read_text())
        print(f"{args.seeds} campaigns of {args.duration:g} s, --jobs {args.jobs}: {wall:.0f} s wall, "
              f"{3600 * args.seeds / wall:.0f} campaigns/hour; outcomes {merged['totals']['by_outcome']}; "
              f"exit {run.returncode}")
        for folder in sorted((root / "sweep").glob("seed-*")):
            if not (folder / "results.json").exists():  # a campaign that could not run: say why
                print(f"{folder.name} did not run; its output ends:\n"
                      + (folder / "output.txt").read_text(errors="replace")[-3000:])
        one = root / "sweep" / merged["campaigns"][0]["report"]
        shards = root / "shards"
        for k in range(args.folders):
            folder = shards / f"shard-{k % 20 + 1}" / f"seed-{k}"
            shutil.copytree(one, folder)
            results = json.loads((folder / "results.json").read_text())
            results["seed"] = k
            (folder / "results.json").write_text(json.dumps(results))
        started = time.perf_counter()
        merge([shards], root / "merged")
        print(f"merge of {args.folders} campaign folders in 20 shards: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
