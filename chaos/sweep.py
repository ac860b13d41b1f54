"""``kconform chaos --seeds``: many campaigns, one per seed, on one machine or spread over CI runners.

A campaign explores what its seed draws, so confidence comes from many seeds. ``--seeds 1-400``
names them (or ``--seeds 50``: fifty drawn from the printed master seed), ``--shard 3/20`` keeps
this runner's share (every 20th seed, starting with the 3rd, so shards get even shares whatever
the range), and ``--jobs N`` runs N campaigns at once. Each campaign runs in a process of its
own (``kconform chaos`` on the campaign's settings, saved as ``seed-<seed>/settings.json``), so
its cluster, Toxiproxy server, ports and temporary directories are its own, and its output goes
to ``seed-<seed>/output.txt`` beside its report. When every campaign has ended the folders are
merged (chaos/report_merge.py): results.json, junit.xml and index.html in the sweep's folder.

Ctrl-C stops every running campaign (each cleans up after itself) and still merges what
finished.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from chaos.campaign import CampaignSettings

SETTINGS_FILE = "settings.json"
OUTPUT_FILE = "output.txt"
POLL_S = 0.2


@attrs.frozen
class SeedOutcome:
    """How one campaign of the sweep ended: its exit code and how long it took."""

    seed: int
    exit_code: int
    seconds: float
    folder: Path


def worst_exit(codes: Sequence[int]) -> int:
    """The sweep's exit code: a broker violation (1) first, then a client fault (3), a campaign
    that could not run or tested nothing (2), an interruption (130); 0 when every one held."""
    for code in (1, 3, 2, 130):
        if code in codes:
            return code
    return 0 if all(c == 0 for c in codes) else 2


def run_sweep(settings: CampaignSettings, seeds: Sequence[int], report_dir: Path, jobs: int,
              on_done: Callable[[SeedOutcome, int, int], None]) -> tuple[list[SeedOutcome], bool]:
    """One campaign per seed (``settings`` with that seed), ``jobs`` at a time; ``on_done`` is
    told of each as it ends (with how many have ended and how many there are). Returns the
    campaigns that ended, and whether the sweep was interrupted (Ctrl-C: the running ones are
    stopped, those not started are not run)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if jobs > 1:
        # One Toxiproxy server per campaign: a shared one would mix the campaigns' proxies.
        env.pop("KCONFORM_TOXIPROXY_URL", None)
    pending = list(seeds)
    running: dict[int, tuple[subprocess.Popen[bytes], float, Path]] = {}
    done: list[SeedOutcome] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                seed = pending.pop(0)
                folder = report_dir / f"seed-{seed}"
                shutil.rmtree(folder, ignore_errors=True)  # an earlier sweep's report must not be merged as this one's
                folder.mkdir(parents=True)
                (folder / SETTINGS_FILE).write_text(json.dumps(attrs.evolve(settings, seed=seed).to_json(), indent=2))
                with open(folder / OUTPUT_FILE, "wb") as output:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "chaos.entry", "chaos", "--settings", str(folder / SETTINGS_FILE),
                         "--report", str(folder)],
                        stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                        start_new_session=True)
                running[seed] = (process, time.monotonic(), folder)
            time.sleep(POLL_S)
            for seed, (process, started, folder) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[seed]
                outcome = SeedOutcome(seed, code, time.monotonic() - started, folder)
                done.append(outcome)
                on_done(outcome, len(done), len(seeds))
    except KeyboardInterrupt:
        # Each campaign stops itself on SIGINT (every process and proxy it started), as on Ctrl-C.
        for process, _started, _folder in running.values():
            try:
                os.killpg(process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        for seed, (process, started, folder) in running.items():
            try:
                code = process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
            done.append(SeedOutcome(seed, 130, time.monotonic() - started, folder))
        return done, True
    return done, False
