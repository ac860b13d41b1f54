"""The interface over Apache Kafka's own Java client (kafka-clients), hosted in a JVM per client.

Why: Kafka is tested with its Java client, so it is the reference for what a client library may
do. A duplicate or a loss seen with librdkafka (confluent-kafka) or kafka-python can be the
library's own bug; running the same workload, or the same chaos fault schedule, with ``--client
java`` tells a client bug apart from a broker bug.

How: each :class:`JavaProducer` / :class:`JavaConsumer` starts one JVM running
``harness/clients/java/KconformClient.java`` (our own single-file program hosting one
KafkaProducer or one KafkaConsumer) and talks to it with JSON lines over its stdin and stdout;
the file describes the protocol. The program is built once into a cache directory keyed by a
hash of its sources, the Kafka version and the JDK (``$KCONFORM_JAVA_CLIENT_CACHE``, default
``<project>/.cache/java-client/<version>-<hash>/``), under a file lock so parallel pytest
workers build it once: ``javac`` compiles it into a jar, and a training run saves the classes
a client loads into a class-data-sharing archive that makes each later JVM start faster. The
Kafka version whose ``kafka-clients`` jar is used is ``$KCONFORM_JAVA_CLIENT_VERSION``, else the ``kafka`` target's
default (:func:`launch.kafka_jars.default_version`); its jars are fetched on demand like the
``kafka`` target's. A missing ``java``, ``javac`` (needed only to compile once) or jars raises
:class:`ClientUnavailable` saying what to install.

Threads: a reader thread per JVM takes every line of its stdout. Replies go to the caller that
waits for them (each wait is bounded); the producer's acknowledgements complete their sends
from that thread (the base class's ``done`` callbacks; the history recorder is thread-safe). A
second thread drains the JVM's stderr (Kafka's WARN+ log lines) into a short tail that error
messages quote, and into the ``harness.clients.java`` logger at DEBUG.

No JVM outlives its Python object: ``close`` asks the program to close its client and exit, and
kills it after a bound; a ``weakref.finalize`` (run at garbage collection and at interpreter
exit) kills it otherwise; the JVM runs in its own session (Ctrl-C reaches only Python, which
then closes it) and exits by itself when its stdin closes, i.e. when the Python process is gone.
"""

from __future__ import annotations

import base64
import collections
import fcntl
import functools
import hashlib
import itertools
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
import weakref
import zipfile
from pathlib import Path
from typing import IO, Any

import attrs

from harness.clients.base import (
    TP,
    ClientError,
    ClientUnavailable,
    ConsumedRecord,
    Consumer,
    ConsumerSettings,
    DeliveryCallback,
    Producer,
    ProducerSettings,
)
from launch import kafka_jars

VERSION_ENV = "KCONFORM_JAVA_CLIENT_VERSION"
CACHE_ENV = "KCONFORM_JAVA_CLIENT_CACHE"
PROJECT_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "java-client"
SOURCE_DIR = Path(__file__).resolve().parent / "java"
MAIN_CLASS = "KconformClient"
SOURCES = (f"{MAIN_CLASS}.java", "log4j2.properties", "log4j.properties")
BUILD_FORMAT = "2"  # bump when the build's command line changes (part of the cache key)
JAVA_RELEASE = "11"  # what kafka-clients 3.x and 4.x need; any JDK from 11 on can compile and run it
COMPILE_TIMEOUT_S = 300.0

# A client needs little memory; C1 only and the serial collector start a JVM fastest. No
# hsperfdata file in /tmp (it would be left behind by a killed JVM). The JVM's own log (e.g. a
# class-data-sharing warning) goes to stdout by default: it must go to stderr, stdout is the protocol.
JVM_OPTIONS = ("-Xmx256m", "-Xms32m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
               "-Xlog:disable", "-Xlog:all=warning:stderr", "-Djava.awt.headless=true")

START_TIMEOUT_S = 60.0  # JVM start and client construction (slow under a loaded parallel test run)
REPLY_MARGIN_S = 30.0  # on top of an operation's own bound, before the JVM is declared hung
CLOSE_TIMEOUT_S = 10.0  # the Java client's own close bound (then it aborts what is in flight)
EXIT_WAIT_S = 5.0  # for the JVM to exit after closing, before it is killed
COMMIT_TIMEOUT_S = 30.0
COMMITTED_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 30.0  # assign, subscribe, seek: local bookkeeping in the Java consumer
TRANSACTION_CALL_ATTEMPTS = 3  # a transactional call that timed out is made again (KafkaProducer asks it)

log = logging.getLogger("harness.clients.java")


# --- finding Java and the jars, compiling the bridge ---------------------------------------------

def client_version() -> str:
    """The Kafka release whose kafka-clients jar the ``java`` client runs."""
    return os.environ.get(VERSION_ENV) or kafka_jars.default_version()


def cache_root() -> Path:
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else PROJECT_CACHE


def describe(version: str | None = None) -> str:
    """``"java (Apache Kafka kafka-clients 4.4.0)"``, from the jar's file name (no JVM started)."""
    version = version or client_version()
    jars = sorted(kafka_jars.libs_dir(version).glob("kafka-clients-*.jar"))
    if not jars:
        return f"java (Apache Kafka kafka-clients {version}, not fetched yet)"
    return f"java (Apache Kafka kafka-clients {jars[0].name[len('kafka-clients-'):-len('.jar')]})"


_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')
_INSTALL = "Debian: apt-get install openjdk-17-jdk-headless; or set JAVA_HOME"


def _tool(name: str) -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / name).is_file():
        return str(Path(home) / "bin" / name)
    return shutil.which(name)


@attrs.frozen
class Java:
    path: str
    version: str  # the first line of ``java -version``, e.g. 'openjdk version "17.0.15" 2025-04-15'


@functools.cache
def find_java() -> Java:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH, Java 11 or later (checked once per process)."""
    java = _tool("java")
    if java is None:
        raise ClientUnavailable(f"the java client needs Java 11 or later and `java` is not installed ({_INSTALL})")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClientUnavailable(f"{java} -version failed: {exc}") from exc
    text = (out.stderr + out.stdout).strip()
    match = _JAVA_VERSION.search(text)
    major = int(match[1]) if match else 0
    if major == 1 and match and match[2]:
        major = int(match[2])  # "1.8.0" is Java 8
    if major < 11:
        raise ClientUnavailable(f"{java} is Java {major or '?'}; the java client needs Java 11 or later ({_INSTALL})")
    return Java(java, text.splitlines()[0] if text else "")


JAR = "kconform-client.jar"
ARCHIVE = "classes.jsa"


@attrs.frozen
class Program:
    """One of kconform's single-file Java programs, built and cached the same way."""

    main_class: str
    jar: str
    prefix: str = ""  # of its build directories in the cache (beside the version and hash)
    train: bool = True  # a training run (``--train ADDRESS``) makes a class-data-sharing archive

    @property
    def sources(self) -> tuple[str, ...]:
        """Its source file, then the logging configurations copied beside the jar."""
        return (f"{self.main_class}.java", *SOURCES[1:])


CLIENT = Program(MAIN_CLASS, JAR)
"""The client bridge."""


@attrs.frozen
class JavaRuntime:
    """What it takes to start a program: a java binary, the built program, Kafka's jars."""

    java: str
    build: Path  # the build directory: the program's jar, the logging configurations, the archive
    libs: Path
    version: str
    program: Program = CLIENT

    @property
    def jar(self) -> Path:
        return self.build / self.program.jar

    @property
    def archive(self) -> Path | None:
        """The class-data-sharing archive, when the build could make one."""
        path = self.build / ARCHIVE
        return path if path.is_file() else None

    def command(self, *args: str, archive: bool = True) -> list[str]:
        """The java command line running the program (with ``args``)."""
        sharing = [f"-XX:SharedArchiveFile={self.archive}"] if archive and self.archive is not None else []
        return [self.java, *JVM_OPTIONS, *sharing,
                f"-XX:ErrorFile={self.build.parent / 'hs_err_pid%p.log'}",
                f"-Dlog4j2.configurationFile={self.build / 'log4j2.properties'}",
                f"-Dlog4j.configuration={(self.build / 'log4j.properties').as_uri()}",
                # The same class path, character for character, when the archive is made and used.
                "-cp", f"{self.jar}{os.pathsep}{self.libs / '*'}", self.program.main_class, *args]


def source_hash(version: str, java: Java, program: Program = CLIENT) -> str:
    """The cache key's hash: the program's sources, the Kafka version, the JDK (the archive is
    only valid for the JVM that made it), the build format."""
    digest = hashlib.sha256()
    for name in program.sources:
        digest.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes() + b"\0")
    digest.update(f"{version}\0{java.path}\0{java.version}\0{BUILD_FORMAT}\0{JAVA_RELEASE}".encode())
    return digest.hexdigest()[:16]


def build_dir(version: str, java: Java, program: Program = CLIENT) -> Path:
    return cache_root() / f"{program.prefix}{version}-{source_hash(version, java, program)}"


def _is_built(directory: Path, program: Program) -> bool:
    return (directory / program.jar).is_file() and (directory / "BUILT").is_file()


@functools.cache
def _build_lock() -> threading.Lock:
    return threading.Lock()


def _free_loopback_port() -> int:
    """A loopback port nothing listens on (the training run's "broker": every connection is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def build(version: str, libs: Path, java: Java, program: Program = CLIENT) -> Path:
    """The build directory of the program for ``version`` (built now if it is not in the cache).

    Building: javac compiles the program into a jar, the logging configurations are copied next
    to it, and a training run (``--train``) saves the classes a client loads into a
    class-data-sharing archive (``-XX:ArchiveClassesAtExit``, JDK 13+), which starts every later
    JVM faster (a ready client in about 0.4 s instead of 0.75 s on an idle 2-core machine). The
    archive is optional: a JDK that cannot make one just starts without it. Concurrent callers (threads, pytest
    workers) build once: a file lock, and the directory is filled under a temporary name."""
    target = build_dir(version, java, program)
    if _is_built(target, program):
        return target
    javac = _tool("javac")
    if javac is None:
        raise ClientUnavailable(
            f"the java client is compiled once with javac (a JDK, not only a JRE) and `javac` is not installed "
            f"({_INSTALL})")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(), open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _is_built(target, program):  # another process built it while we waited
                return target
            _build(target, version, libs, java, javac, program)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _build(target: Path, version: str, libs: Path, java: Java, javac: str, program: Program) -> None:
    partial = target.parent / f"{target.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    classes = partial / "classes"
    classes.mkdir(parents=True)
    try:
        command = [javac, "--release", JAVA_RELEASE, "-encoding", "UTF-8", "-nowarn", "-d", str(classes),
                   "-cp", str(libs / "*"), str(SOURCE_DIR / program.sources[0])]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"javac did not compile {program.sources[0]} in {COMPILE_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0:
            raise RuntimeError(f"javac could not compile {SOURCE_DIR / program.sources[0]} against "
                               f"Kafka {version}'s jars: {(done.stdout + done.stderr).strip()[-2000:]}")
        # A jar, not a directory: class-data sharing archives only classes from jars.
        with zipfile.ZipFile(partial / program.jar, "w", zipfile.ZIP_DEFLATED) as jar:
            for path in sorted(classes.rglob("*.class")):
                jar.write(path, path.relative_to(classes).as_posix())
        shutil.rmtree(classes)
        for name in program.sources[1:]:
            shutil.copyfile(SOURCE_DIR / name, partial / name)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)  # the archive records the jar's final path, so it is made there
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    if program.train:
        _train(JavaRuntime(java.path, target, libs, version, program))
    (target / "BUILT").write_text(" ".join(command) + "\n")


def _train(rt: JavaRuntime) -> None:
    """Make the class-data-sharing archive of a built program, or warn that there is none."""
    target = rt.build
    temporary = target / f"{ARCHIVE}.partial"
    train = rt.command("--train", f"127.0.0.1:{_free_loopback_port()}", archive=False)
    train.insert(1, f"-XX:ArchiveClassesAtExit={temporary}")
    with open(target / "train.log", "w") as out:
        try:
            trained = subprocess.run(train, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out,
                                     timeout=COMPILE_TIMEOUT_S).returncode == 0
        except subprocess.TimeoutExpired:
            trained = False
    if trained and temporary.is_file():
        temporary.rename(target / ARCHIVE)
    else:
        temporary.unlink(missing_ok=True)
        log.warning("no class-data-sharing archive for the java client (JVMs start slower); see %s",
                    target / "train.log")


def runtime(version: str | None = None) -> JavaRuntime:
    """Java, the jars of ``version`` (default :func:`client_version`; fetched if missing) and the
    built program; ClientUnavailable naming what to install when one is missing."""
    version = version or client_version()
    java = find_java()
    try:
        libs = kafka_jars.ensure(version)
    except kafka_jars.KafkaJarsError as exc:
        raise ClientUnavailable(f"the java client needs Apache Kafka {version}'s jars: {exc}") from exc
    for jar in ("kafka-clients", "jackson-databind"):
        if not any(libs.glob(f"{jar}-*.jar")):
            raise ClientUnavailable(f"{libs} has no {jar} jar; fetch Kafka {version} again "
                                    f"(remove {libs} and run `.venv/bin/python -m launch.kafka_jars {version}`)")
    return JavaRuntime(java.path, build(version, libs, java), libs, version)


# --- the bridge: one JVM, JSON lines ------------------------------------------------------------

class _Waiter:
    """A caller waiting for the reply to one command."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: dict[str, Any] | None = None


def _error(reply: dict[str, Any]) -> ClientError:
    return ClientError(str(reply["error"]), str(reply.get("message") or ""),
                       abortable=bool(reply.get("abortable")), fatal=bool(reply.get("fatal")))


class Bridge:
    """One JVM hosting one Java client; commands out, replies and events in (see the module
    docstring). Every wait is bounded; once the JVM is gone every call fails with DISCONNECTED
    and every send still unanswered completes with DISCONNECTED (its fate is unknown)."""

    def __init__(self, rt: JavaRuntime, role: str, config: dict[str, str], name: str) -> None:
        self.name = name
        self._lock = threading.Lock()  # waiters, pending, _gone
        self._write_lock = threading.Lock()
        self._ids = itertools.count(0)
        self._waiters: dict[int, _Waiter] = {}
        self.pending: dict[int, DeliveryCallback] = {}  # sends without their completion yet
        self._gone: str | None = None  # why the JVM can no longer answer
        self._closed = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=30)
        started = time.monotonic()
        try:
            self._proc = subprocess.Popen(rt.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
        except OSError as exc:
            raise ClientUnavailable(f"could not start {rt.java}: {exc}") from exc
        assert self._proc.stdin is not None and self._proc.stdout is not None and self._proc.stderr is not None
        self.pid = self._proc.pid
        self._stdin = self._proc.stdin
        # Writes wait with select(), bounded, rather than block: a hung JVM must not hang us.
        os.set_blocking(self._stdin.fileno(), False)
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True,
                                        name=f"kconform-{name}-stdout")
        self._drainer = threading.Thread(target=self._drain, args=(self._proc.stderr,), daemon=True,
                                         name=f"kconform-{name}-stderr")
        self._reader.start()
        self._drainer.start()
        try:
            reply = self.request({"op": "open", "role": role, "config": config}, START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise
        if "error" in reply:
            self.kill()
            raise ClientError(str(reply["error"]), f"the Java {role} could not start: {reply.get('message')}")
        self.kafka_version = str(reply.get("version"))
        self.start_seconds = time.monotonic() - started

    # --- I/O threads ---

    def _read(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                try:
                    message = json.loads(raw)
                except ValueError:
                    log.warning("%s: not a protocol line on stdout: %r", self.name, raw[:200])
                    continue
                try:
                    self._dispatch(message)
                except Exception:  # noqa: BLE001 - a failing callback must not stop the reader
                    log.exception("%s: handling %r failed", self.name, raw[:200])
        except (OSError, ValueError):
            pass  # the pipe was closed under us (kill)
        finally:
            self._lost("the Java client's JVM exited" + self._why())
            stream.close()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "re" in message:
            ident = int(message["re"])
            with self._lock:
                waiter = self._waiters.pop(ident, None)
                orphan = None if waiter is not None or "error" not in message else self.pending.pop(ident, None)
            if waiter is not None:
                waiter.reply = message
                waiter.event.set()
            elif orphan is not None:
                # A send whose caller stopped waiting was refused after all: it was not sent, but
                # the caller has moved on, so it completes like any other report.
                orphan(str(message["error"]), None, None)
        elif message.get("ev") == "ack":
            with self._lock:
                done = self.pending.pop(int(message["id"]), None)
            if done is not None:
                error = message.get("error")
                done(None if error is None else str(error), message.get("partition"), message.get("offset"))

    def _drain(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip()
                self.stderr_tail.append(line)
                log.debug("%s: %s", self.name, line)
        except (OSError, ValueError):
            pass
        finally:
            stream.close()

    def _why(self) -> str:
        code = self._proc.poll()
        tail = " | ".join(list(self.stderr_tail)[-5:])
        status = f" (exit status {code})" if code is not None else ""
        return status + (f"; its last log lines: {tail}" if tail else "")

    def _lost(self, reason: str) -> None:
        """The JVM is gone: fail every waiter, complete every pending send as DISCONNECTED."""
        with self._lock:
            if self._gone is None:
                self._gone = reason
            waiters, self._waiters = self._waiters, {}
            pending, self.pending = self.pending, {}
        for waiter in waiters.values():
            waiter.reply = {"error": "DISCONNECTED", "message": reason}
            waiter.event.set()
        for done in pending.values():
            try:
                done("DISCONNECTED", None, None)
            except Exception:  # noqa: BLE001
                log.exception("%s: completing a send failed", self.name)

    # --- commands ---

    def _write(self, line: bytes, deadline: float) -> None:
        if not self._write_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise ClientError("TIMEOUT", f"{self.name}: another command is still being written to the JVM")
        try:
            data = memoryview(line)
            while data:
                try:
                    written = os.write(self._stdin.fileno(), data)
                    data = data[written:]
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        # Half a command may be in the pipe: the protocol is broken, so is the JVM.
                        self.kill()
                        raise ClientError("TIMEOUT", f"{self.name}: the JVM stopped reading its commands") from None
                    select.select([], [self._stdin.fileno()], [], remaining)
                except (OSError, ValueError) as exc:
                    raise ClientError("DISCONNECTED", f"{self.name}: {self._gone or exc}") from None
        finally:
            self._write_lock.release()

    def request(self, command: dict[str, Any], timeout_s: float,
                done: DeliveryCallback | None = None) -> dict[str, Any]:
        """Send ``command`` and wait for its reply (at most ``timeout_s``): the reply (with
        ``error`` when the command failed). ClientError TIMEOUT when no reply came in time,
        DISCONNECTED when the JVM is gone. ``done``: the completion of a send, registered before
        the command is written (its acknowledgement can come before the reply)."""
        waiter = _Waiter()
        with self._lock:
            if self._gone is not None:
                raise ClientError("DISCONNECTED", f"{self.name}: {self._gone}")
            ident = next(self._ids)
            self._waiters[ident] = waiter
            if done is not None:
                self.pending[ident] = done
        deadline = time.monotonic() + timeout_s
        try:
            self._write(json.dumps({"id": ident, **command}, separators=(",", ":")).encode() + b"\n", deadline)
        except ClientError:
            with self._lock:
                self._waiters.pop(ident, None)
                self.pending.pop(ident, None)
            raise
        if not waiter.event.wait(max(0.0, deadline - time.monotonic())):
            with self._lock:
                self._waiters.pop(ident, None)
            if waiter.reply is None:  # (it may have come just now)
                raise ClientError("TIMEOUT", f"{self.name}: no answer to {command.get('op')} in {timeout_s:.0f} s")
        assert waiter.reply is not None
        if "error" in waiter.reply and done is not None:
            with self._lock:
                self.pending.pop(ident, None)
        return waiter.reply

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close the Java client (bounded by ``timeout_s``), let the JVM exit, kill it if it does not."""
        if self._closed:
            return
        self._closed = True
        try:
            self.request({"op": "close", "timeout_ms": int(timeout_s * 1000)}, timeout_s + REPLY_MARGIN_S)
        except ClientError:
            pass  # gone or hung: killed below
        try:
            self._proc.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        for thread in (self._reader, self._drainer):
            if thread is not threading.current_thread():
                thread.join(EXIT_WAIT_S)

    def kill(self) -> None:
        """SIGKILL the JVM (if still running) and reap it; safe to call more than once, from a
        finalizer too."""
        self._closed = True
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self._proc.wait(EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                warnings.warn(f"{self.name}: JVM {self._proc.pid} did not die after SIGKILL", stacklevel=2)
        try:
            self._stdin.close()
        except OSError:
            pass


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(data: str | None) -> bytes | None:
    return None if data is None else base64.b64decode(data)


def _config(values: dict[str, object]) -> dict[str, str]:
    """Java client configuration, as strings, without the None ones (the client's default)."""
    out = {}
    for key, value in values.items():
        if value is not None:
            out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


# --- producer -------------------------------------------------------------------------------------

def producer_config(bootstrap: str, s: ProducerSettings) -> dict[str, str]:
    """The Java producer's configuration for ``s``.

    The Java producer refuses ``delivery.timeout.ms < linger.ms + request.timeout.ms``: without
    a request timeout of its own, the request timeout is the Java default (30 s) cut to fit; an
    explicit one that does not fit is cut too, with a warning (what a request could do after the
    delivery timeout cannot matter: the record has expired by then). ``max.block.ms`` (how long
    ``send`` may wait for metadata or buffer space) is the delivery timeout, so every send
    completes within it; max.in.flight.requests.per.connection stays the default 5.
    """
    room = s.delivery_timeout_ms - s.linger_ms
    if room < 1:
        raise ValueError(f"delivery_timeout_ms ({s.delivery_timeout_ms}) must exceed linger_ms ({s.linger_ms}) "
                         "for the Java producer")
    request_timeout = min(30_000, room) if s.request_timeout_ms is None else s.request_timeout_ms
    if request_timeout > room:
        warnings.warn(f"the Java producer needs delivery.timeout.ms >= linger.ms + request.timeout.ms: "
                      f"request.timeout.ms {request_timeout} cut to {room}", stacklevel=3)
        request_timeout = room
    return _config({
        "bootstrap.servers": bootstrap, "client.id": s.client_id, "acks": s.acks,
        "enable.idempotence": s.idempotence, "linger.ms": s.linger_ms,
        "delivery.timeout.ms": s.delivery_timeout_ms, "request.timeout.ms": request_timeout,
        "max.block.ms": s.delivery_timeout_ms, "metadata.max.age.ms": s.metadata_max_age_ms,
        **({} if s.transactional_id is None else {
            "transactional.id": s.transactional_id, "transaction.timeout.ms": s.transaction_timeout_ms}),
    })


class _OnBridge:
    """What the Java producer and consumer share: each runs its client in a JVM of its own (a
    :class:`Bridge`), killed when the wrapper is garbage-collected without being closed."""

    _bridge: Bridge
    _finalizer: weakref.finalize[[], _OnBridge]

    def _open_bridge(self, role: str, config: dict[str, str], process: str) -> None:
        """Start the JVM of a ``role`` ("producer" or "consumer") with the client's ``config``."""
        self._bridge = Bridge(runtime(), role, config, f"java-{role}-{process}")
        self._finalizer = weakref.finalize(self, self._bridge.kill)

    @property
    def pid(self) -> int:
        """The JVM's process id."""
        return self._bridge.pid

    @property
    def start_seconds(self) -> float:
        """How long the JVM took to start and create the client."""
        return self._bridge.start_seconds

    def _close(self) -> None:
        self._bridge.close(CLOSE_TIMEOUT_S)
        self._finalizer.detach()

    def crash(self) -> None:
        """A real crash: SIGKILL the JVM (its client closes nothing, aborts nothing)."""
        self._bridge.kill()
        self._finalizer.detach()


class JavaProducer(_OnBridge, Producer):
    client = "java"

    def _open(self) -> None:
        config = producer_config(self.bootstrap, self.settings)
        self._max_block_s = int(config["max.block.ms"]) / 1000
        self._open_bridge("producer", config, self.process)

    def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None,
              done: DeliveryCallback) -> None:
        command = {"op": "send", "topic": topic, "partition": partition, "key": _b64(key), "value": _b64(value)}
        try:
            reply = self._bridge.request(command, self._max_block_s + REPLY_MARGIN_S, done)
        except ClientError as exc:
            if exc.error == "TIMEOUT":
                # The JVM holds the command but did not answer: the record may still be sent, so
                # it stays pending (its ack, or DISCONNECTED when the JVM goes, completes it).
                log.warning("%s", exc)
                return
            raise  # the command never reached a live JVM: certainly not sent
        if "error" in reply:
            # Refused by send() before the record reached the client's buffer: certainly not sent.
            raise _error(reply)

    def _init_transactions(self) -> None:
        self._transactional("init_transactions")

    def _begin_transaction(self) -> None:
        self._transactional("begin_transaction")

    def _end_transaction(self, commit: bool) -> None:
        self._transactional("commit_transaction" if commit else "abort_transaction")

    def _send_offsets(self, offsets: dict[TP, int], group_metadata: object) -> None:
        self._transactional("send_offsets", offsets=[[t, p, o] for (t, p), o in offsets.items()],
                            group=group_metadata)

    def _transactional(self, op: str, **fields: Any) -> None:
        """A transactional method of the Java producer; after a timeout the same call is made
        again, as its documentation asks, a few times."""
        for attempt in range(TRANSACTION_CALL_ATTEMPTS):
            reply = self._bridge.request({"op": op, **fields}, self._max_block_s + REPLY_MARGIN_S)
            if "error" not in reply:
                return
            if reply["error"] != "TIMEOUT" or attempt + 1 == TRANSACTION_CALL_ATTEMPTS:
                raise _error(reply)

    def _flush(self, timeout_s: float) -> int:
        try:
            self._bridge.request({"op": "flush"}, timeout_s)
        except ClientError:
            pass  # timed out, or the JVM is gone (its sends then completed as DISCONNECTED)
        return len(self._bridge.pending)


# --- consumer -------------------------------------------------------------------------------------

def consumer_config(bootstrap: str, group: str | None, s: ConsumerSettings) -> dict[str, str]:
    """The Java consumer's configuration: no auto-commit (the workload commits), the heartbeat
    a third of the session timeout (at most 3 s, as the other backends)."""
    return _config({
        "bootstrap.servers": bootstrap, "client.id": s.client_id, "group.id": group,
        "enable.auto.commit": False, "auto.offset.reset": s.auto_offset_reset,
        "isolation.level": s.isolation_level,
        "session.timeout.ms": s.session_timeout_ms,
        "heartbeat.interval.ms": max(1, min(3000, s.session_timeout_ms // 3)),
        "max.poll.records": s.max_poll_records, "metadata.max.age.ms": s.metadata_max_age_ms,
    })


class JavaConsumer(_OnBridge, Consumer):
    client = "java"

    def _open(self) -> None:
        self._open_bridge("consumer", consumer_config(self.bootstrap, self.group, self.settings), self.process)

    def _call(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        reply = self._bridge.request(command, timeout_s)
        # The rebalance listener ran inside this command (the Java consumer calls it only from
        # its own methods): apply the assignments first, in order, then the outcome.
        for event in reply.get("rebalances", ()):
            generation = event.get("generation")
            member = event.get("member")
            self._rebalanced([(str(t), int(p)) for t, p in event["partitions"]],
                             generation if isinstance(generation, int) and generation >= 0 else None,
                             member if isinstance(member, str) and member else None)
        if "error" in reply:
            raise _error(reply)
        return reply

    def _assign(self, partitions: list[TP], offsets: dict[TP, int]) -> None:
        self._call({"op": "assign", "partitions": [[t, p] for t, p in partitions],
                    "offsets": [[t, p, o] for (t, p), o in offsets.items()],
                    "reset": self.settings.auto_offset_reset}, CALL_TIMEOUT_S)

    def _subscribe(self, topics: list[str]) -> None:
        self._call({"op": "subscribe", "topics": topics}, CALL_TIMEOUT_S)

    def _seek(self, topic: str, partition: int, offset: int) -> None:
        self._call({"op": "seek", "topic": topic, "partition": partition, "offset": offset}, CALL_TIMEOUT_S)

    def _poll(self, timeout_s: float) -> list[ConsumedRecord]:
        reply = self._call({"op": "poll", "timeout_ms": int(timeout_s * 1000)}, timeout_s + REPLY_MARGIN_S)
        return [ConsumedRecord(str(t), int(p), int(o), _unb64(k), _unb64(v)) for t, p, o, k, v in reply["records"]]

    def _commit(self, offsets: dict[TP, int]) -> None:
        self._call({"op": "commit", "offsets": [[t, p, o] for (t, p), o in offsets.items()],
                    "timeout_ms": int(COMMIT_TIMEOUT_S * 1000)}, COMMIT_TIMEOUT_S + REPLY_MARGIN_S)

    def _group_metadata(self) -> object:
        """The Java consumer's ConsumerGroupMetadata as JSON, for the producer's JVM to rebuild."""
        reply = self._call({"op": "group_metadata"}, CALL_TIMEOUT_S)
        return {k: reply.get(k) for k in ("group_id", "generation_id", "member_id", "group_instance_id")}

    def _committed(self, partitions: list[TP]) -> dict[TP, int]:
        reply = self._call({"op": "committed", "partitions": [[t, p] for t, p in partitions],
                            "timeout_ms": int(COMMITTED_TIMEOUT_S * 1000)}, COMMITTED_TIMEOUT_S + REPLY_MARGIN_S)
        return {(str(t), int(p)): int(o) for t, p, o in reply["offsets"]}
