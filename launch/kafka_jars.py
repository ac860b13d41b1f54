"""Apache Kafka's jars, fetched from Maven Central once into a project-local cache.

The ``kafka`` target runs Kafka from its jars (no distribution tarball, no Docker): the
artifact ``org.apache.kafka:kafka_2.13`` with its runtime dependencies, plus a logging binding,
which Kafka's pom leaves to the distribution:

* 4.x logs through log4j 2 (``log4j-api`` and ``log4j-core`` come with ``kafka-server``), and
  talks SLF4J 1.7 (``slf4j-api`` 1.7.36), so the binding is ``log4j-slf4j-impl`` (the SLF4J 1.x
  one, as Kafka's own distribution ships);
* 3.x logs through reload4j with ``slf4j-reload4j`` (again what the 3.x distribution ships).

Layout of the cache (``$KCONFORM_KAFKA_CACHE``, default ``<project>/.cache/kafka``)::

    .cache/kafka/
      m2/                    Maven's local repository (plugins and downloaded artifacts)
      4.4.0/
        pom.xml              the generated pom Maven resolves
        libs/*.jar           the classpath: kafka_2.13, its runtime dependencies, the binding
        fetch.log            Maven's output of the fetch
        streams/             Kafka Streams (``python -m launch.kafka_jars --streams``)
          pom.xml, libs/*.jar, fetch.log
      3.9.2/ ...

The ``streams`` classpath is ``org.apache.kafka:kafka-streams`` with its runtime dependencies
(kafka-clients among them) and the same logging binding, for the Streams workload
(``harness/clients/java_streams.py``); ``rocksdbjni`` (about 60 MB of native libraries, needed
only by persistent state stores) is left out, since the workload's store is in memory.

A ``libs/`` appears only when the fetch succeeded completely (it is filled under a temporary name
and renamed), so a present ``libs/`` is always a whole classpath; concurrent fetches (pytest
workers, two terminals) are serialised by a lock file. ``scripts/setup`` fetches the default
version (and every one in ``$KCONFORM_KAFKA_VERSIONS``); the target fetches a missing version on
demand. Run by hand::

    .venv/bin/python -m launch.kafka_jars             # the default version (4.4.0)
    .venv/bin/python -m launch.kafka_jars 3.9.2       # the 3.x line
    .venv/bin/python -m launch.kafka_jars --streams   # Kafka Streams of the default version
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

DEFAULT_VERSION = "4.4.0"
"""The Kafka release the ``kafka`` target runs unless told otherwise (the latest 4.x)."""
KNOWN_VERSIONS: tuple[str, ...] = ("4.4.0", "3.9.2")
"""Versions kconform is tested with (any 3.7+ or 4.x release should work)."""
VERSION_ENV = "KCONFORM_KAFKA_VERSION"
VERSION_HELP = (f"Apache Kafka release of the kafka target, e.g. 3.9.2 (default: ${VERSION_ENV}, else {DEFAULT_VERSION}); "
                "its jars are fetched from Maven Central once.")
"""The one description of ``--kafka-version`` every command uses."""
CACHE_ENV = "KCONFORM_KAFKA_CACHE"
PROJECT_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "kafka"
FETCH_TIMEOUT_S = 900.0

_VERSION = re.compile(r"^(3|4)\.(\d+)\.(\d+)$")


class KafkaJarsError(RuntimeError):
    """The jars could not be found or fetched (the message says why and what to do)."""


@attrs.frozen
class Artifact:
    group: str
    artifact: str
    version: str

    def __str__(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


def parse_version(version: str) -> tuple[int, int, int]:
    """``"4.4.0"`` -> (4, 4, 0); a version kconform cannot run is a KafkaJarsError."""
    match = _VERSION.match(version)
    if match is None or (int(match[1]), int(match[2])) < (3, 7):
        raise KafkaJarsError(
            f"Kafka version {version!r} is not supported: give a release 3.7.0 or later, such as "
            f"{' or '.join(KNOWN_VERSIONS)} (KRaft combined mode with a static quorum)")
    return int(match[1]), int(match[2]), int(match[3])


def default_version() -> str:
    """``$KCONFORM_KAFKA_VERSION`` or :data:`DEFAULT_VERSION`."""
    return os.environ.get(VERSION_ENV) or DEFAULT_VERSION


def logging_binding(version: str) -> list[Artifact]:
    """The logging binding Kafka ``version``'s distribution ships (its poms leave it out)."""
    if parse_version(version)[0] >= 4:
        # log4j 2.25.5 is what kafka-server 4.4.0 depends on; the SLF4J 1.x binding matches
        # Kafka's slf4j-api 1.7.36 (the SLF4J 2 binding would not bind to it).
        return [Artifact("org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.5"),
                Artifact("org.apache.logging.log4j", "log4j-core", "2.25.5")]
    return [Artifact("ch.qos.reload4j", "reload4j", "1.2.25"), Artifact("org.slf4j", "slf4j-reload4j", "1.7.36")]


def artifacts(version: str) -> list[Artifact]:
    """What Maven resolves for ``version``: the broker and the logging binding."""
    return [Artifact("org.apache.kafka", "kafka_2.13", version), *logging_binding(version)]


STREAMS_EXCLUDED = ("rocksdbjni",)
"""Runtime dependencies of kafka-streams left out of its classpath (only persistent stores need them)."""


def streams_artifacts(version: str) -> list[Artifact]:
    """What Maven resolves for Kafka Streams ``version``: kafka-streams and the logging binding."""
    return [Artifact("org.apache.kafka", "kafka-streams", version), *logging_binding(version)]


@attrs.frozen
class Classpath:
    """One cached classpath: what Maven resolves into ``<cache>/<version>/<sub>libs``, and the
    jar whose presence says the fetch completed."""

    version: str
    what: str  # for messages: "Apache Kafka 4.4.0"
    wanted: tuple[Artifact, ...]
    where: Path  # the directory holding pom.xml, fetch.log and libs/
    marker: str  # the jar's file name
    excluded: tuple[str, ...] = ()

    @property
    def libs(self) -> Path:
        return self.where / "libs"

    @property
    def installed(self) -> bool:
        return (self.libs / self.marker).is_file()


def broker_classpath(version: str) -> Classpath:
    return Classpath(version, f"Apache Kafka {version}", tuple(artifacts(version)), version_dir(version),
                     f"kafka_2.13-{version}.jar")


def streams_classpath(version: str) -> Classpath:
    return Classpath(version, f"Kafka Streams {version}", tuple(streams_artifacts(version)),
                     version_dir(version) / "streams", f"kafka-streams-{version}.jar", STREAMS_EXCLUDED)


def cache_root() -> Path:
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else PROJECT_CACHE


def version_dir(version: str) -> Path:
    return cache_root() / version


def libs_dir(version: str) -> Path:
    return version_dir(version) / "libs"


def is_installed(version: str) -> bool:
    return broker_classpath(version).installed


def classpath(version: str) -> str:
    """Every jar of ``version``'s cache, joined for ``java -cp`` (KafkaJarsError if missing)."""
    if not is_installed(version):
        raise KafkaJarsError(
            f"Apache Kafka {version} is not in {libs_dir(version)}; fetch it with "
            f"`.venv/bin/python -m launch.kafka_jars {version}` (or scripts/setup)")
    return os.pathsep.join(str(p) for p in sorted(libs_dir(version).glob("*.jar")))


def pom(version: str, wanted: Sequence[Artifact] | None = None, what: str | None = None) -> str:
    """The pom Maven resolves: ``wanted`` (default: the broker's :func:`artifacts`)."""
    deps = "\n".join(
        f"    <dependency><groupId>{a.group}</groupId><artifactId>{a.artifact}</artifactId>"
        f"<version>{a.version}</version></dependency>" for a in (wanted or artifacts(version)))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by kconform (launch/kafka_jars.py): {what or f"Apache Kafka {version}"} and a logging binding. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kconform</groupId>
  <artifactId>kafka-jars</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _why(output: str) -> str:
    """The useful lines of a failed Maven run."""
    lines = [line.strip() for line in output.splitlines() if "[ERROR]" in line]
    text = " ".join(lines[:3]) or output.strip()[-600:]
    return text[:900]


def ensure(version: str | None = None, *, log: bool = False) -> Path:
    """The ``libs`` directory of ``version`` (default :func:`default_version`), fetched from
    Maven Central first if it is not in the cache. Raises KafkaJarsError with the reason (no
    Java or Maven, Maven Central unreachable, an unknown version)."""
    version = version or default_version()
    parse_version(version)
    return fetch(broker_classpath(version), log=log)


def ensure_streams(version: str | None = None, *, log: bool = False) -> Path:
    """The ``libs`` directory of Kafka Streams ``version`` (default :func:`default_version`),
    fetched first if it is not in the cache (KafkaJarsError as :func:`ensure`)."""
    version = version or default_version()
    parse_version(version)
    return fetch(streams_classpath(version), log=log)


def fetch(cp: Classpath, *, log: bool = False) -> Path:
    """``cp``'s libs directory, fetched with Maven into the cache first if it is not there."""
    if cp.installed:
        return cp.libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaJarsError(
            f"Maven (mvn) is needed once to fetch {cp.what}'s jars from Maven Central and is not "
            "installed; install it (Debian: apt-get install maven) or run scripts/setup")
    root = cache_root()
    with _locked(root):
        if cp.installed:  # another process fetched it while we waited
            return cp.libs
        where = cp.where
        where.mkdir(parents=True, exist_ok=True)
        (where / "pom.xml").write_text(pom(cp.version, cp.wanted, cp.what))
        partial = where / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        if log:
            print(f"kconform: fetching {cp.what} ({cp.wanted[0]} and its runtime dependencies) from Maven "
                  f"Central into {where}", file=sys.stderr)
        command = [mvn, "-B", "-q", f"-Dmaven.repo.local={root / 'm2'}", "-f", str(where / "pom.xml"),
                   "dependency:copy-dependencies", f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
        if cp.excluded:
            command.append(f"-DexcludeArtifactIds={','.join(cp.excluded)}")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise KafkaJarsError(
                f"fetching {cp.what} from Maven Central did not finish in {FETCH_TIMEOUT_S:.0f} s "
                "(is Maven Central reachable from here?)") from exc
        output = (done.stdout or "") + (done.stderr or "")
        (where / "fetch.log").write_text(" ".join(command) + "\n" + output)
        if done.returncode != 0 or not (partial / cp.marker).is_file():
            shutil.rmtree(partial, ignore_errors=True)
            unreachable = any(s in output for s in ("UnknownHost", "Connection refused", "Connect timed out",
                                                    "Could not transfer", "Network is unreachable",
                                                    "transfer failed", "offline"))
            hint = ("Maven Central is not reachable from here: connect this machine (or set up a Maven mirror "
                    "in ~/.m2/settings.xml) and run it again" if unreachable else
                    f"is {cp.version} a released version of {cp.wanted[0].group}:{cp.wanted[0].artifact}?")
            raise KafkaJarsError(f"could not fetch {cp.what} from Maven Central: {hint}. "
                                 f"Maven said: {_why(output)} (full output in {where / 'fetch.log'})")
        shutil.rmtree(cp.libs, ignore_errors=True)
        partial.rename(cp.libs)
    return cp.libs


def size_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m launch.kafka_jars [--streams] [VERSION ...]``: fetch (once) and print where."""
    args = list(argv if argv is not None else sys.argv[1:])
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    streams = "--streams" in args
    versions = [a for a in args if a != "--streams"] or [default_version()]
    for version in versions:
        try:
            libs = ensure_streams(version, log=True) if streams else ensure(version, log=True)
        except KafkaJarsError as exc:
            print(f"kconform: {exc}", file=sys.stderr)
            return 1
        jars = list(libs.glob("*.jar"))
        what = "Kafka Streams" if streams else "Apache Kafka"
        print(f"{what} {version}: {len(jars)} jars, {size_bytes(libs) / 1e6:.0f} MB in {libs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
