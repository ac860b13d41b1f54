"""The Kafka Streams part of a campaign's workload: instances of the exactly_once_v2 application.

Why apart from ``chaos.workload``: the producers and consumers there are threads driving client
libraries; a Streams instance is a JVM that runs by itself (``harness.clients.java_streams``).
This module starts ``--streams N`` instances (``s0``, ``s1``, ...) of one application reading
the campaign topic and writing ``<topic>-streams-out``, SIGKILLs one and starts its replacement
(``s0.2``) for the ``streams-kill`` fault, and finishes them: waits until every instance runs
with its share of the tasks (a replacement started late in the run joins the group and takes
tasks before the application is closed), then until the application has committed past every
input record (both bounded), closes every instance and records the
application's committed offsets (a ``committed`` operation of process ``streams``), which
``streams-exactly-once`` judges the output against (docs/anomalies.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from harness.clients import java_streams
from harness.history.write import Recorder
from harness.session import SessionError, WireSession

TP = tuple[str, int]
PROCESS = "streams"
OUTPUT_DRAIN = "drain-output"
"""The process of the campaign's final read_committed read of the output."""
START_TIMEOUT_S = 90.0  # an instance's first RUNNING (JVM start, group join, internal topics)
SETTLE_S = START_TIMEOUT_S  # at the end, until every instance runs with tasks (the same steps)
CATCH_UP_S = 60.0
_T = TypeVar("_T")


def _wait(probe: Callable[[], _T], done: Callable[[_T], bool], timeout_s: float, every_s: float) -> _T:
    """Call ``probe`` every ``every_s`` until ``done`` with its answer or ``timeout_s``; its last answer."""
    deadline = time.monotonic() + timeout_s
    answer = probe()
    while not done(answer) and time.monotonic() < deadline:
        time.sleep(every_s)
        answer = probe()
    return answer


def output_topic(topic: str) -> str:
    return f"{topic}-streams-out"


class StreamsApplication:
    """The instances of one application; every method is safe to call from several threads."""

    def __init__(self, settings: java_streams.StreamsSettings, instances: int, history: Recorder) -> None:
        self.settings = settings
        self.history = history
        self.names = [f"s{i}" for i in range(instances)]
        self._incarnations = dict.fromkeys(self.names, 1)
        self._running: dict[str, java_streams.StreamsInstance] = {}
        self._finished: list[java_streams.StreamsInstance] = []
        self._lock = threading.Lock()
        self.runtime = java_streams.runtime()

    def start(self) -> list[str]:
        """Start every instance; warnings for those not RUNNING within :data:`START_TIMEOUT_S`."""
        for name in self.names:
            self._start(name)
        return [f"Streams instance {i.process} not running {START_TIMEOUT_S:.0f} s after its start ({i.why()})"
                for i in list(self._running.values()) if not i.wait_running(START_TIMEOUT_S)]

    def _start(self, name: str) -> str:
        with self._lock:
            n = self._incarnations[name]
            process = name if n == 1 else f"{name}.{n}"
            self._running[name] = java_streams.StreamsInstance(self.runtime, self.settings, process, self.history)
        return process

    @property
    def errors(self) -> list[str]:
        """What the instances' stream threads died of (each was replaced)."""
        with self._lock:
            every = [*self._finished, *self._running.values()]
        return [f"{i.process}: {e}" for i in every for e in i.errors]

    def kill(self, name: str) -> str:
        """SIGKILL instance ``name``'s JVM; returns the process that died (KeyError if none runs)."""
        with self._lock:
            instance = self._running.pop(name, None)
            if instance is None:
                raise KeyError(f"no running Streams instance {name!r} (running: {', '.join(self._running) or 'none'})")
            self._incarnations[name] += 1
        instance.kill()
        with self._lock:
            self._finished.append(instance)
        return instance.process

    def restart(self, name: str) -> str:
        """Start the next incarnation of killed instance ``name``; returns its process name."""
        with self._lock:
            if name in self._running:
                return self._running[name].process
        return self._start(name)

    def close(self) -> None:
        """Close every running instance (cleanly: each commits and leaves its group)."""
        with self._lock:
            instances, self._running = list(self._running.values()), {}
            self._finished += instances
        closers = [threading.Thread(target=i.close, daemon=True) for i in instances]
        for t in closers:
            t.start()
        for t in closers:
            t.join()

    def kill_all(self) -> None:
        """SIGKILL every instance (an interrupted campaign)."""
        with self._lock:
            instances, self._running = list(self._running.values()), {}
            self._finished += instances
        for i in instances:
            i.kill()

    def _unsettled(self, tasks: int) -> list[str]:
        """Why the application is not settled, [] when it is: every live instance RUNNING, and
        as many of them with active tasks as there are instances or ``tasks`` to share (a task
        an input partition: the topology is one sub-topology). A replacement started near the
        end joins a group that first waits for the killed member's session to expire, on a JVM
        that takes seconds to start: until it has taken tasks, it replaced nothing."""
        with self._lock:
            live = [i for i in self._running.values() if i.alive]
        owned = {i.process: i.processing() for i in live}
        waiting = [f"{p} not running" for p, parts in owned.items() if parts is None]
        busy = sum(1 for parts in owned.values() if parts)
        if not waiting and busy < min(len(live), tasks):
            waiting.append(f"{busy} of {len(live)} instances have tasks")
        return waiting

    def finish(self, ends: Mapping[TP, int]) -> list[str]:
        """Wait (at most :data:`SETTLE_S`) until every instance runs with tasks, then (at most
        :data:`CATCH_UP_S`) until the application committed up to ``ends`` (the input's end
        offsets); close every instance, record its committed offsets; warnings."""
        warnings = []
        unsettled = _wait(lambda: self._unsettled(len(ends)), lambda why: not why, SETTLE_S, 0.2)
        if unsettled:
            warnings.append(f"the Streams application had not settled {SETTLE_S:.0f} s after the producers stopped "
                            f"({', '.join(unsettled)}): an instance without tasks replaced nothing")
        committed = _wait(lambda: self._committed(ends),
                          lambda got: all(got.get(tp, -1) >= end for tp, end in ends.items()), CATCH_UP_S, 0.5)
        behind = {f"{t}-{p}": end - committed.get((t, p), -1) for (t, p), end in ends.items()
                  if committed.get((t, p), -1) < end}
        if behind:
            warnings.append(f"the Streams application had not committed every input record {CATCH_UP_S:.0f} s after "
                            f"its instances settled (records behind: {behind}); inputs above its committed offsets "
                            "are not required in the output")
        self.close()
        invoke = self.history.invoke(PROCESS, "committed", group=self.settings.application_id,
                                     partitions=[list(tp) for tp in sorted(ends)])
        final = self._committed(ends)
        if final or not ends:
            self.history.ok(invoke, offsets=[[t, p, o] for (t, p), o in sorted(final.items())])
        else:
            self.history.info(invoke, "TIMEOUT")
            warnings.append("the Streams application's committed offsets could not be read: lost output not judged")
        return warnings

    def _committed(self, ends: Mapping[TP, int]) -> dict[TP, int]:
        """The application's committed offsets (those it has), or {} when they cannot be read."""
        try:
            with WireSession(self.settings.bootstrap, timeout_s=10.0) as session:
                got = session.offset_fetch(self.settings.application_id, sorted(ends))
        except (SessionError, OSError):
            return {}
        return {tp: offset for tp, (offset, _meta, error) in got.items() if error == "NONE" and offset >= 0}

