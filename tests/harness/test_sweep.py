"""`kconform conform --seeds`: the suite once per seed, a line per seed, a table, exit 1 with
each failing seed's reproduction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.conformance.sweep import SeedsError, ShardError, parse_seeds, parse_shard, shard_of


def test_seeds_are_a_count_drawn_from_the_master_seed_or_a_range() -> None:
    """A count is drawn from the (printed) master seed, so the same master draws the same seeds."""
    drawn = parse_seeds("5", master=42)
    assert len(set(drawn)) == 5 and drawn == parse_seeds("5", master=42) != parse_seeds("5", master=43)
    assert parse_seeds("7-9", master=0) == [7, 8, 9]
    for bad in ("0", "9-7", "x", "1-", "-3"):
        with pytest.raises(SeedsError):
            parse_seeds(bad, master=0)


def test_a_sweep_that_passes_prints_a_line_per_seed_and_a_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["conform", "--checks", "stateful-log", "--seeds", "2", "--seed", "11",
                                       "--examples", "3", "--steps", "6", "--report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    seeds = parse_seeds("2", master=11)
    for i, seed in enumerate(seeds, 1):
        assert f"seed {seed} ({i}/2): VALID, 1 passed" in result.output
    assert "VALID: 2 of 2 seeds passed against reference" in result.output and "--seeds 2 --seed 11" in result.output
    report = json.loads((tmp_path / "sweep.json").read_text())
    assert report["valid"] and [r["seed"] for r in report["runs"]] == seeds
    assert (tmp_path / f"seed-{seeds[0]}" / "results.json").exists()


def test_a_sweep_with_failing_seeds_exits_1_with_each_seeds_command() -> None:
    """A wrong broker fails under every seed: each seed's line, the table, and per seed the
    command that reruns exactly it."""
    result = CliRunner().invoke(main, ["conform", "--target", "faulty-reorder", "--checks", "stateful-log",
                                       "--seeds", "5-6", "--examples", "10", "--steps", "10",
                                       "--shrink-seconds", "10"])
    assert result.exit_code == 1, result.output
    assert "INVALID: 0 of 2 seeds passed against faulty-reorder" in result.output
    for seed in (5, 6):
        assert f"seed {seed} (" in result.output and "FAIL" in result.output
        assert (f"reproduce: kconform conform --target faulty-reorder --checks stateful-log --seed {seed} "
                "--examples 10 --steps 10") in result.output


def test_bad_seeds_are_a_usage_error() -> None:
    assert CliRunner().invoke(main, ["conform", "--seeds", "3-1"]).exit_code == 2


def test_shards_split_the_seeds_evenly_without_overlap() -> None:
    """K/N takes every N-th seed from the K-th: together the shards are the seeds, once each."""
    seeds = list(range(1, 41))
    shards = [shard_of(seeds, k, 8) for k in range(1, 9)]
    assert shards[2] == [3, 11, 19, 27, 35]
    assert sorted(s for shard in shards for s in shard) == seeds
    assert {len(shard) for shard in shards} == {5}
    assert parse_shard("3/20") == (3, 20)
    for bad in ("0/4", "5/4", "3", "a/b", "3/"):
        with pytest.raises(ShardError, match="expected K/N"):
            parse_shard(bad)


def test_a_sharded_sweep_runs_only_its_share() -> None:
    """conform --seeds 1-5 --shard 2/2 runs seeds 2 and 4; --shard alone or an empty shard is a usage error."""
    result = CliRunner().invoke(main, ["conform", "--checks", "api-versions", "--seeds", "1-5", "--shard", "2/2"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines() if line.strip().endswith(" -")] == ["2", "4"]
    assert "VALID: 2 of 2 seeds" in result.output
    alone = CliRunner().invoke(main, ["conform", "--shard", "1/2"])
    assert alone.exit_code == 2 and "--shard and --jobs go with --seeds" in alone.output
    empty = CliRunner().invoke(main, ["conform", "--seeds", "3", "--shard", "4/4"])
    assert empty.exit_code == 2 and "is empty" in empty.output


def test_seeds_may_be_listed() -> None:
    assert parse_seeds("5, 9,13,9", master=0) == [5, 9, 13]
    assert parse_seeds("7,", master=0) == [7]  # one seed, where "7" alone would be a count
    with pytest.raises(SeedsError, match="whole numbers separated by commas"):
        parse_seeds("5,x", master=0)


def test_jobs_split_a_sweep_over_processes_and_combine_it(tmp_path: Path) -> None:
    """--jobs 2: the seeds dealt to two processes (each its own broker), one table, one sweep.json."""
    result = CliRunner().invoke(main, ["conform", "--checks", "stateful-log", "--examples", "2", "--steps", "5",
                                       "--seeds", "1-4", "--jobs", "2", "--report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "4 seeds in 2 parallel parts" in result.output and "VALID: 4 of 4 seeds passed" in result.output
    body = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["seed"] for r in body["runs"]] == [1, 2, 3, 4]
    assert {r["report"] for r in body["runs"]} == {"part-1/seed-1/", "part-2/seed-2/", "part-1/seed-3/",
                                                   "part-2/seed-4/"}
    assert all((tmp_path / r["report"] / "results.json").exists() for r in body["runs"])


def test_a_parallel_sweep_of_a_wrong_broker_fails_with_each_seeds_command() -> None:
    result = CliRunner().invoke(main, ["conform", "--target", "faulty-reorder", "--checks", "produce-offsets-contiguous",
                                       "--seeds", "1-2", "--jobs", "2"])
    assert result.exit_code == 1, result.output
    for seed in (1, 2):
        assert f"seed {seed}: FAIL produce-offsets-contiguous" in result.output
    assert "reproduce: kconform conform --target faulty-reorder" in result.output
    assert CliRunner().invoke(main, ["conform", "--jobs", "2"]).exit_code == 2
