"""``kconform conform --seeds``: the suite once per seed, a line per seed, then a table.

A state machine explores what its seed draws, so one seed passing says little about the next;
a sweep runs the same checks (on the same started targets) under many seeds and reports every
seed that failed with the command that reruns exactly that seed. The seeds are either a range
(``--seeds 100-149``) or a count drawn from a master seed (``--seeds 50``): the master is
``--seed`` or random, and printed, so a sweep is as replayable as a single run. ``--shard K/N``
keeps one CI runner's share of them (chaos campaigns shard the same way, chaos/sweep.py).

Only the state machines draw from the seed; the other checks run the same way under every seed
and so catch what varies from run to run anyway (timing, client libraries' behaviour).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from harness.conformance.runner import FAIL, SuiteResult, run_suite, write_reports
from harness.targets.base import Target

MAX_SEEDS = 10_000


class SeedsError(ValueError):
    """A ``--seeds`` value that names no seeds (the message says what is accepted)."""


def drawn(text: str) -> bool:
    """Whether ``--seeds text`` is a count (seeds drawn from the master seed), not a range."""
    return text.strip().isdigit()


def parse_seeds(text: str, master: int) -> list[int]:
    """``"N"``: N distinct seeds drawn from ``random.Random(master)``; ``"A-B"``: A to B inclusive;
    ``"A,B,C"``: those seeds (``"A,"``: seed A alone, not a count)."""
    value = text.strip()
    if "," in value:
        listed = [part.strip() for part in value.split(",") if part.strip()]
        if not listed or not all(part.isdigit() for part in listed) or len(listed) > MAX_SEEDS:
            raise SeedsError(f"--seeds {value}: a list of seeds is whole numbers separated by commas, e.g. 5,9,13")
        return list(dict.fromkeys(int(part) for part in listed))
    span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", value)
    if span:
        low, high = int(span[1]), int(span[2])
        if low > high or high - low + 1 > MAX_SEEDS:
            raise SeedsError(f"--seeds {value}: a range A-B needs A <= B and at most {MAX_SEEDS} seeds")
        return list(range(low, high + 1))
    if not value.isdigit() or not 1 <= int(value) <= MAX_SEEDS:
        raise SeedsError(f"--seeds {value}: give a count N (1 to {MAX_SEEDS}), a range A-B or a list A,B,C, "
                         "e.g. 50, 100-149 or 5,9,13")
    return random.Random(master).sample(range(1 << 31), int(value))


class ShardError(ValueError):
    """A ``--shard`` value that names no share of the seeds."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"``: this runner is shard K of N (1 <= K <= N)."""
    index, sep, total = text.strip().partition("/")
    if not sep or not index.isdigit() or not total.isdigit() or not 1 <= int(index) <= int(total):
        raise ShardError(f"--shard {text}: expected K/N with 1 <= K <= N, e.g. --shard 3/20")
    return int(index), int(total)


def shard_of(seeds: Sequence[int], index: int, total: int) -> list[int]:
    """The seeds of shard ``index`` of ``total``: every ``total``-th, from the ``index``-th."""
    return list(seeds[index - 1 :: total])


@attrs.frozen
class SeedRun:
    """The suite's result under one seed."""

    seed: int
    result: SuiteResult

    @property
    def failed(self) -> list[str]:
        return [o.name for o in self.result.outcomes if o.status == FAIL]


def run_sweep(target: Target, seeds: Sequence[int], *, report_dir: Path | None = None,
              on_seed: Callable[[SeedRun], None] | None = None, **suite: Any) -> list[SeedRun]:
    """Run the suite (``suite``: run_suite's keywords, seed excepted) once per seed on the
    started ``target``; with ``report_dir``, each seed's report goes to ``seed-<seed>/``. An
    interrupted seed ends the sweep; its partial run is the last one returned."""
    runs = []
    for seed in seeds:
        folder = report_dir / f"seed-{seed}" if report_dir is not None else None
        result = run_suite(target, seed=seed, report_dir=folder, **suite)
        if folder is not None:
            write_reports(result, folder)
        run = SeedRun(seed, result)
        runs.append(run)
        if on_seed is not None:
            on_seed(run)
        if result.interrupted:
            break
    return runs


def seed_line(run: SeedRun, index: int, total: int) -> str:
    """One line for a finished seed."""
    c = run.result.counts()
    verdict = "VALID" if run.result.valid else "INVALID"
    failed = f"; failed: {', '.join(run.failed)}" if run.failed else ""
    return (f"seed {run.seed} ({index}/{total}): {verdict}, {c['pass']} passed, {c['fail']} failed, "
            f"{c['skip']} skipped in {run.result.seconds:.1f} s{failed}")


def sweep_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """seed, result, seconds, failed checks: one row per seed (``rows``: sweep.json's ``runs``)."""
    width = max([len(str(r["seed"])) for r in rows] + [4])
    lines = [f"{'seed':>{width}}  {'result':<7}  {'seconds':>7}  failed checks"]
    for r in rows:
        lines.append(f"{r['seed']:>{width}}  {'pass' if r['valid'] else 'FAIL':<7}  {r['seconds']:>7.1f}  "
                     f"{', '.join(r['failed']) or '-'}")
    return "\n".join(lines)


def sweep_failures(runs: Sequence[SeedRun]) -> str:
    """Every failed check of every seed: its witness and the command that reruns it."""
    out = []
    for r in runs:
        for o in r.result.outcomes:
            if o.status != FAIL:
                continue
            witness = (o.witness or "").strip().replace("\n", "\n    ")
            out.append(f"seed {r.seed}: FAIL {o.name}: {witness}\n  reproduce: {o.reproduce}")
    return "\n".join(out)


def sweep_json(runs: Sequence[SeedRun], *, seconds: float, spec: str, master: int | None) -> dict[str, Any]:
    """``sweep.json``: the seeds, each one's verdict, failed checks and reproduction commands."""
    return {
        "valid": all(r.result.valid for r in runs),
        "interrupted": bool(runs) and runs[-1].result.interrupted,
        "seeds": spec, "master_seed": master, "seconds": round(seconds, 1),
        "runs": [{"seed": r.seed, "valid": r.result.valid, "seconds": round(r.result.seconds, 1),
                  "summary": r.result.counts(), "failed": r.failed,
                  "reproduce": [o.reproduce for o in r.result.outcomes if o.status == FAIL],
                  "report": f"seed-{r.seed}/"} for r in runs],
    }
