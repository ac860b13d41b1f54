"""What a check gets to work with, and how it says pass, fail or skip."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.checkers import check as run_checkers
from harness.error_names import error_name
from harness.history import History, HistoryBuilder, HistoryWriter, load_history
from harness.history.write import Recorder
from harness.session import SessionError, WireSession
from harness.targets.base import Target


class CheckFailed(AssertionError):
    """The target broke the rule: ``witness`` says what was seen, ``anomalies`` names them."""

    def __init__(self, witness: str, anomalies: Mapping[str, int] | None = None) -> None:
        super().__init__(witness)
        self.witness = witness
        self.anomalies = dict(anomalies or {})


class CheckSkipped(Exception):
    """The check cannot run on this target (the message says why)."""


def expect(condition: bool, witness: str) -> None:
    """Fail the check with ``witness`` unless ``condition``."""
    if not condition:
        raise CheckFailed(witness)


class Recording:
    """A history being recorded for one check: to a file under the report directory when there
    is one (kept for `kconform check`), else in memory."""

    def __init__(self, path: Path | None, meta: Mapping[str, Any]) -> None:
        self.path = path
        self.recorder: Recorder
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer: HistoryWriter | None = HistoryWriter(path, meta)
            self.recorder = self._writer
            self._builder: HistoryBuilder | None = None
        else:
            self._writer = None
            self._builder = HistoryBuilder(meta)
            self.recorder = self._builder

    def history(self) -> History:
        if self._writer is not None:
            self._writer.close()
            assert self.path is not None
            return load_history(self.path)
        assert self._builder is not None
        return self._builder.history()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class CheckContext:
    """Everything one check may use; the runner closes what it opened."""

    def __init__(self, target: Target, *, seed: int, check_name: str, client: str | None = None,
                 examples: int = 10, steps: int = 25, shrink_seconds: float = 30.0,
                 report_dir: Path | None = None, against: Target | None = None) -> None:
        self.target = target
        self.against = against  # the second target of a differential run
        self.seed = seed
        self.check_name = check_name
        self.client = client
        self.examples = examples
        self.steps = steps
        self.shrink_seconds = shrink_seconds
        self.report_dir = report_dir
        self.details: dict[str, Any] = {}
        self.anomalies: dict[str, int] = {}
        self._run = uuid.uuid4().hex[:6]
        self._names = itertools.count()
        self._given: list[str] = []  # every topic or group name handed out, to delete the topics at the end
        self._sessions: list[WireSession] = []
        self._recordings: list[Recording] = []

    @property
    def bootstrap(self) -> str:
        return self.target.bootstrap

    def session(self, timeout_s: float = 15.0) -> WireSession:
        """A new wire session to the target (closed after the check)."""
        s = WireSession(self.bootstrap, timeout_s=timeout_s, client_id=f"kconform-{self.check_name}")
        self._sessions.append(s)
        return s

    def name(self, kind: str) -> str:
        """A topic or group name unique to this check run (runs can share a broker)."""
        safe = "".join(c if c.isalnum() or c in "-._" else "-" for c in self.check_name)[:40]
        name = f"kc-{safe}-{kind}-{self._run}{next(self._names)}"
        self._given.append(name)
        return name

    def recording(self, label: str = "history") -> Recording:
        """A history to record into (kept as ``histories/<check>.jsonl`` under --report)."""
        path = None
        if self.report_dir is not None:
            safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in self.check_name)
            path = self.report_dir / "histories" / f"{safe}{'' if label == 'history' else '-' + label}.jsonl"
        r = Recording(path, {"target": self.target.name, "check": self.check_name, "seed": self.seed,
                             "client": self.client})
        self._recordings.append(r)
        return r

    def check_history(self, history: History, guarantees: Iterable[str] = ()) -> None:
        """Run every anomaly checker (and ``guarantees``) on ``history``; fail naming the
        anomalies with the first witnesses."""
        report = run_checkers(history, guarantees=guarantees)
        self.details["events"] = len(history)
        if report.valid:
            return
        self.anomalies.update(report.anomalies)
        lines = []
        for result in report.results:
            for anomaly in result.anomalies[:2]:
                events = "; ".join(_event(history, i) for i in anomaly.events[:4])
                lines.append(f"{anomaly.name}: {anomaly.explanation} [{events}]")
        counts = ", ".join(f"{n} {name}" for name, n in report.anomalies.items())
        raise CheckFailed(f"the history shows {counts}: " + " | ".join(lines[:4]), report.anomalies)

    def close(self) -> None:
        """Close what the check opened, and delete the topics it created: a suite, and even more
        a sweep of many seeds, must not pile topics up on the broker (on a user's broker that
        would be a leak; on the reference broker thousands of partitions slow a restart)."""
        for s in self._sessions:
            s.close()
        for r in self._recordings:
            r.close()
        if self._given:
            self._delete_topics()

    def _delete_topics(self) -> None:
        try:
            with WireSession(self.bootstrap, timeout_s=10.0, client_id=f"kconform-{self.check_name}") as s:
                existing = {t.name for t in s.metadata(self._given).topics if error_name(t.error_code) == "NONE"}
                if existing:
                    s.delete_topics(sorted(existing))
        except (SessionError, OSError):
            pass  # a target that is down keeps its topics; the check's own verdict says why


def _event(history: History, index: int) -> str:
    e = history.raw[index]
    return f"#{index} {e['process']} {e['type']} {e['f']} {json.dumps(e['value'], separators=(',', ':'))[:160]}"
