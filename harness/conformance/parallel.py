"""``kconform conform --seeds ... --jobs N``: a seed sweep split over N processes on one machine.

A sweep runs the suite once per seed against one started target; to use more cores, the seeds
are dealt out round-robin to N parts, and each part is an ordinary ``kconform conform --seeds
A,B,C`` in a process of its own with its own target (its own broker processes, ports and
directories), writing its report to ``part-<k>/``. Each part prints its seed lines as it goes;
when all have ended their ``sweep.json`` files are combined into one table, one list of failed
checks with the commands that rerun them, and one ``sweep.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def deal(seeds: Sequence[int], jobs: int) -> list[list[int]]:
    """The seeds dealt round-robin to ``jobs`` parts (none empty)."""
    return [part for part in (list(seeds[k::jobs]) for k in range(jobs)) if part]


def run_parts(args: Sequence[str], seeds: Sequence[int], jobs: int, report_dir: Path | None
              ) -> tuple[list[dict[str, Any]], list[str], bool]:
    """Run ``kconform conform ARGS --seeds <part>`` for each part at once; the combined runs
    (each with its part's report folder), a note for each part that ended without a report, and
    whether the sweep was interrupted."""
    root = report_dir if report_dir is not None else Path(tempfile.mkdtemp(prefix="kconform-sweep-"))
    parts = deal(seeds, jobs)
    processes = []
    for k, part in enumerate(parts, 1):
        folder = root / f"part-{k}"
        shutil.rmtree(folder, ignore_errors=True)  # an earlier sweep's part must not be read as this one's
        folder.mkdir(parents=True)
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "conform", *args, "--seeds", ",".join(map(str, part)) + ",",
             "--report", str(folder)],
            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True))
    interrupted = False
    try:
        for process in processes:
            process.wait()
    except KeyboardInterrupt:
        interrupted = True
        for process in processes:  # each part reports what it finished and stops its target
            try:
                os.killpg(process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        for process in processes:
            process.wait()
    runs: list[dict[str, Any]] = []
    problems = []
    try:
        for k, process in enumerate(processes, 1):
            sweep = root / f"part-{k}" / "sweep.json"
            if not sweep.exists():
                problems.append(f"part {k} (seeds {', '.join(map(str, parts[k - 1]))}) ended with exit "
                                f"{process.returncode} and no report")
                continue
            body = json.loads(sweep.read_text())
            interrupted = interrupted or bool(body.get("interrupted"))
            for run in body["runs"]:
                runs.append({**run, "report": f"part-{k}/{run['report']}"})
    finally:
        if report_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    order = {seed: i for i, seed in enumerate(seeds)}
    runs.sort(key=lambda r: order.get(r["seed"], len(seeds)))
    return runs, problems, interrupted
