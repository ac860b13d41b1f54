"""Instances of kconform's Kafka Streams application, each a JVM, recorded into a history.

Why: a Kafka Streams application with ``processing.guarantee=exactly_once_v2`` (KIP-447) is
what most consume-transform-produce deployments run; whether its exactly-once promise holds on
a broker is the question an application owner asks. ``harness/clients/java/KconformStreams.java``
(our own single-file program) reads an input topic and writes, for every input record, an
output record naming it and the per-partition count kept in its state store; the output is read
by read_committed readers like any other topic, and ``harness.checkers.streams`` judges it.

How: the program is built and cached like the Java client bridge (``java_client.Program``), and
runs on Kafka Streams' jars, fetched on demand beside the broker's (``launch.kafka_jars
--streams``, rocksdbjni left out: the store is in memory). Each :class:`StreamsInstance` writes
its configuration and state directory into a temporary directory of its own, starts one JVM in
its own session (Ctrl-C reaches only Python) and reads its events (JSON lines on stdout): every
time the instance is RUNNING with a set of input partitions it is recorded as a ``rebalance``
observation of the application's group (``partitions`` its active input partitions), and its
closing as a ``rebalance`` to nothing; :meth:`StreamsInstance.processing` says what it processes
now (None while it is not RUNNING). ``close`` closes its stdin (the program then closes
Streams and exits), kills it after a bound, and removes its directory; a ``weakref.finalize``
kills it at garbage collection and interpreter exit; and the JVM exits by itself when its stdin
closes, i.e. when the Python process is gone. ``kill`` is a SIGKILL of the JVM: a crash, which
exactly-once must survive (the instance's open transaction is aborted, its tasks move).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any

import attrs

from harness.clients.base import ClientUnavailable
from harness.clients.java_client import JavaRuntime, Program, build, client_version, find_java
from harness.history.write import Recorder
from launch import kafka_jars

PROGRAM = Program("KconformStreams", "kconform-streams.jar", prefix="streams-", train=False)
EXIT_WAIT_S = 30.0  # the program closes Streams within 20 s, then exits
KILL_WAIT_S = 5.0

log = logging.getLogger("harness.clients.java_streams")


def runtime(version: str | None = None) -> JavaRuntime:
    """Java, Kafka Streams ``version``'s jars (default: the java client's version; fetched if
    missing) and the built program; ClientUnavailable naming what to install when one is missing."""
    version = version or client_version()
    java = find_java()
    try:
        libs = kafka_jars.ensure_streams(version)
    except kafka_jars.KafkaJarsError as exc:
        raise ClientUnavailable(f"the Kafka Streams workload needs Kafka Streams {version}'s jars: {exc}") from exc
    try:
        built = build(version, libs, java, PROGRAM)
    except RuntimeError as exc:
        raise ClientUnavailable(f"the Kafka Streams application could not be built: {exc}") from exc
    return JavaRuntime(java.path, built, libs, version, PROGRAM)


GUARANTEES = ("exactly_once_v2", "at_least_once")
"""The processing.guarantee values the workload runs with (exactly_once_v2 is what it checks;
at_least_once is the control, whose crashes duplicate output)."""


def describe(version: str | None = None, guarantee: str = GUARANTEES[0]) -> str:
    """``"kafka-streams 4.4.0 (exactly_once_v2)"``, for the history's ``meta.clients``."""
    return f"kafka-streams {version or client_version()} ({guarantee})"


@attrs.frozen
class StreamsSettings:
    """One Streams application: its id (also its consumer group and its internal topics'
    prefix), its topics, and what it is configured with."""

    application_id: str
    bootstrap: str
    input_topic: str
    output_topic: str
    commit_interval_ms: int = 100  # how often a task commits its transaction (EOS default: 100)
    replication_factor: int = 1  # of its internal topics (the store's changelog)
    session_timeout_ms: int = 6000  # a killed instance's tasks move after this
    processing_guarantee: str = attrs.field(default=GUARANTEES[0], validator=attrs.validators.in_(GUARANTEES))

    def config(self, instance: str, state_dir: Path) -> dict[str, str]:
        """The Streams configuration (Kafka's names) of one instance."""
        return {
            "application.id": self.application_id, "bootstrap.servers": self.bootstrap,
            "client.id": f"{self.application_id}-{instance}",
            "processing.guarantee": self.processing_guarantee, "commit.interval.ms": str(self.commit_interval_ms),
            "num.stream.threads": "1", "state.dir": str(state_dir),
            "replication.factor": str(self.replication_factor),
            # The changelog is as durable as the campaign topic (KIP-98's guarantees need it).
            "topic.min.insync.replicas": str(min(2, self.replication_factor)),
            "consumer.session.timeout.ms": str(self.session_timeout_ms),
            "consumer.heartbeat.interval.ms": str(max(1, min(3000, self.session_timeout_ms // 3))),
            "metadata.max.age.ms": "1000",
            # KIP-441: an instance whose copy of a store lags its changelog by more than this is
            # given only a warm-up replica, and the active task after a probing rebalance
            # (probing.rebalance.interval.ms, at least a minute): longer than a campaign's end
            # waits, so a replacement started late would take no task. The store is in memory,
            # restored from the changelog by whoever gets the task however far it lags, so every
            # instance counts as caught up and tasks are shared at each rebalance.
            "acceptable.recovery.lag": str(2**63 - 1),
            # Streams 4.4 warns at every start until this is set (the default from 5.0); the
            # application has no global store, so it changes nothing else.
            "processing.exception.handler.global.enabled": "true",
            "kconform.input": self.input_topic, "kconform.output": self.output_topic, "kconform.instance": instance,
        }


def _kill(proc: subprocess.Popen[bytes], directory: Path) -> None:
    """SIGKILL the JVM's session if it still runs, reap it, remove its directory (also a finalizer)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("Streams JVM %d did not die after SIGKILL", proc.pid)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    shutil.rmtree(directory, ignore_errors=True)


class StreamsInstance:
    """One running instance of the application (a JVM), named ``process`` in the history."""

    def __init__(self, rt: JavaRuntime, settings: StreamsSettings, process: str, history: Recorder) -> None:
        self.settings = settings
        self.process = process
        self.history = history
        self.events: list[dict[str, Any]] = []  # every event the program reported, in order
        self.errors: list[str] = []  # exceptions its stream threads died of (each thread was replaced)
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=30)
        self._assigned: list[list[Any]] | None = None
        self._state: str | None = None  # KafkaStreams' state, from the program's last state event
        self.directory = Path(tempfile.mkdtemp(prefix=f"kconform-streams-{process}-"))
        config = settings.config(process, self.directory / "state")
        (self.directory / "streams.properties").write_text(
            "".join(f"{key}={_escape(value)}\n" for key, value in config.items()))
        try:
            self._proc = subprocess.Popen(rt.command(str(self.directory / "streams.properties")),
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          bufsize=0, start_new_session=True)
        except OSError as exc:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise ClientUnavailable(f"could not start {rt.java}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _kill, self._proc, self.directory)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True,
                                        name=f"kconform-streams-{process}-stdout")
        self._drainer = threading.Thread(target=self._drain, args=(self._proc.stderr,), daemon=True,
                                         name=f"kconform-streams-{process}-stderr")
        self._reader.start()
        self._drainer.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def _read(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                try:
                    event = json.loads(raw)
                except ValueError:
                    log.warning("%s: not an event line on stdout: %r", self.process, raw[:200])
                    continue
                self.events.append(event)
                self._record(event)
        except (OSError, ValueError):
            pass  # closed under us (kill)
        finally:
            self._assign([])
            self.stopped.set()

    def _record(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "state" and event.get("to") != "RUNNING":
            self._state = str(event.get("to"))
        if kind == "running":
            self._assign([[str(t), int(p)] for t, p in event["partitions"]])
            # Taken as RUNNING only now, with the partitions it runs with (the event that
            # follows the state change), so that processing() never pairs it with older ones.
            self._state = "RUNNING"
            self.running.set()
        elif kind == "state" and event.get("to") in ("PENDING_SHUTDOWN", "PENDING_ERROR", "ERROR"):
            self._assign([])
        elif kind == "error":
            self.errors.append(str(event.get("message")))
            log.warning("%s: a stream thread died: %s", self.process, event.get("message"))

    def _assign(self, partitions: list[list[Any]]) -> None:
        """Record the instance's input partitions when they change (a ``rebalance`` observation)."""
        if partitions != self._assigned and not (self._assigned is None and not partitions):
            self._assigned = partitions
            self.history.observe(self.process, "rebalance", group=self.settings.application_id,
                                 partitions=partitions)

    def _drain(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip()
                self.stderr_tail.append(line)
                log.debug("%s: %s", self.process, line)
        except (OSError, ValueError):
            pass

    def processing(self) -> list[list[Any]] | None:
        """The input partitions the instance processes now: those of its last RUNNING (``[]``:
        running without an active task); None while it is not RUNNING (starting, rebalancing,
        closing) or its JVM is gone."""
        if self._state != "RUNNING" or not self.alive:
            return None
        return list(self._assigned or [])

    def why(self) -> str:
        """The exit status and last log lines, for error messages."""
        code = self._proc.poll()
        tail = " | ".join(list(self.stderr_tail)[-5:])
        return (f"exit status {code}" if code is not None else "running") + (f"; last log lines: {tail}" if tail else "")

    def wait_running(self, timeout_s: float) -> bool:
        """Whether the instance reached RUNNING within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.running.wait(0.1):
            if time.monotonic() > deadline or not self.alive:
                return False
        return True

    def close(self) -> None:
        """Stop cleanly: close stdin (the program closes Streams, committing, and exits), kill
        it after :data:`EXIT_WAIT_S`, remove its directory."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("%s: the Streams JVM did not exit %.0f s after its stdin closed; killed", self.process,
                        EXIT_WAIT_S)
        self._finalizer()
        self._reader.join(KILL_WAIT_S)

    def kill(self) -> None:
        """SIGKILL the JVM (a crash: nothing is committed or closed), remove its directory."""
        self._finalizer()
        self._reader.join(KILL_WAIT_S)


def _escape(value: str) -> str:
    """A value for a Java properties file (backslashes are escapes there)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")
