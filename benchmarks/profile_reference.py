"""Profile the reference broker under one throughput workload and print its hot spots.

Run from the repository root::

    .venv/bin/python benchmarks/profile_reference.py produce-1k
    .venv/bin/python benchmarks/profile_reference.py unbatched --messages 20000 --top 30

The broker runs as its own process, exactly as in ``throughput.py``, but under ``python -m
cProfile``; the workload is ``throughput.py``'s produce or consume code. The broker is stopped with
SIGTERM (a clean shutdown, so cProfile writes its file) and the functions with the most own time
and the most cumulative time are printed. ``--keep FILE`` keeps the raw profile for snakeviz or
pstats.
"""

from __future__ import annotations

import argparse
import io
import pstats
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import LARGE, SMALL, consume, create_topic, produce  # noqa: E402

from launch.broker_process import BrokerProcess  # noqa: E402

SCENARIOS = ("produce-100", "produce-1k", "consume-100", "consume-1k", "unbatched")


class ProfiledBroker(BrokerProcess):
    """A reference broker process started under cProfile, writing its profile on clean exit."""

    def __init__(self, profile_path: Path) -> None:
        super().__init__(log_level="WARNING")
        self.profile_path = profile_path

    def command(self) -> list[str]:
        cmd = super().command()
        return [cmd[0], "-m", "cProfile", "-o", str(self.profile_path), *cmd[1:]]


def run_scenario(bootstrap: str, scenario: str, messages: int, seconds: float) -> str:
    size = LARGE if scenario.endswith("1k") else SMALL
    create_topic(bootstrap, "profile", 1)
    if scenario == "unbatched":
        result = produce(bootstrap, "profile", messages, SMALL, "1", seconds, per_request=1)
        return f"{result.messages} msgs, {result.msgs_per_s:,.0f} msgs/s (under the profiler)"
    produced = produce(bootstrap, "profile", messages, size, "1", seconds)
    if scenario.startswith("produce"):
        return f"{produced.messages} msgs, {produced.msgs_per_s:,.0f} msgs/s (under the profiler)"
    result = consume(bootstrap, "profile", 1, produced.messages, size, seconds)
    return f"{result.messages} msgs, {result.msgs_per_s:,.0f} msgs/s (produce included in the profile)"


def hot_spots(profile: Path, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(profile), stream=out)
    stats.strip_dirs()
    out.write("=== by own time (tottime) ===\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write("=== by cumulative time ===\n")
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument(
        "--messages", type=int, default=None,
        help="default: 500000 (100 B), 200000 (1 KiB), 20000 (unbatched)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", type=Path, default=None, help="copy the raw cProfile output here")
    args = parser.parse_args(argv)
    messages = args.messages or {"unbatched": 20_000, "produce-1k": 200_000, "consume-1k": 200_000}.get(
        args.scenario, 500_000
    )
    scratch = Path(tempfile.mkdtemp(prefix="kconform-profile-"))
    try:
        profile = scratch / "broker.prof"
        with ProfiledBroker(profile) as broker:
            summary = run_scenario(broker.bootstrap, args.scenario, messages, args.seconds)
            code = broker.stop()  # SIGTERM: clean shutdown, cProfile writes the file
        if not profile.exists():
            print(f"no profile written (broker exit status {code})", file=sys.stderr)
            return 1
        print(f"{args.scenario}: {summary}")
        print(hot_spots(profile, args.top))
        if args.keep is not None:
            shutil.copy(profile, args.keep)
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
