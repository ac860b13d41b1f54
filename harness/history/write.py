"""Recording histories: a file writer for runs, an in-memory builder for tests and simulations.

Both validate every event with the loader's rules as it is recorded, so a workload bug shows up
where it happens, not later in the checker. The writer appends one JSON line per event and
flushes it, so a crash loses at most the line being written (the loader then reports a
truncated last line and keeps the rest). Recording is thread-safe: the time is read and the
index assigned under one lock, so indexes and times both increase in file order.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from harness.history.format import FAIL, FORMAT_VERSION, HEADER_KEY, INFO, INVOKE, OK, Validator
from harness.history.load import History


def intended(op: list[Any]) -> list[Any]:
    """The intended form of a transaction's micro-operation (docs/history-format.md, `txn`): a
    send without its offset, a bare poll, the group of an offsets commit."""
    if op[0] == "send":
        return list(op[:5])
    return ["poll"] if op[0] == "poll" else ["offsets", op[1]]


class Recorder:
    """Records events in order; subclasses decide where the lines go."""

    def __init__(self, source: str, clock: Callable[[], int]) -> None:
        self._validator = Validator(source)
        self._clock = clock
        self._lock = threading.Lock()
        self._processes: dict[int, tuple[str, str]] = {}

    def _emit(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def now(self) -> int:
        """A reading of the events' clock, e.g. a transaction's `end_invoked` (later events are
        stamped no earlier)."""
        with self._lock:
            return self._clock()

    def _record(self, process: str, type_: str, f: str, value: Mapping[str, Any],
                invoke: int | None) -> int:
        with self._lock:
            index = self._validator.next_index
            obj: dict[str, Any] = {"index": index, "time": self._clock(), "process": process,
                                   "type": type_, "f": f}
            if invoke is not None:
                obj["invoke"] = invoke
            obj["value"] = dict(value)
            self._validator.check(obj, index + 2)
            self._emit(obj)
            return index

    def invoke(self, process: str, f: str, value: Mapping[str, Any] | None = None, /, **fields: Any) -> int:
        """Record that `process` starts operation `f`; returns the index to complete it with."""
        index = self._record(process, INVOKE, f, {**(value or {}), **fields}, None)
        self._processes[index] = (process, f)
        return index

    def complete(self, invoke: int, type_: str, value: Mapping[str, Any] | None = None, /, **fields: Any) -> int:
        """Record the completion (`ok`, `fail` or `info`) of the invocation `invoke`."""
        process, f = self._processes.pop(invoke, ("", ""))
        if not process:
            # Let the validator produce its precise message.
            process, f = "?", "?"
        return self._record(process, type_, f, {**(value or {}), **fields}, invoke)

    def ok(self, invoke: int, value: Mapping[str, Any] | None = None, /, **fields: Any) -> int:
        """The operation `invoke` succeeded, with these result fields."""
        return self.complete(invoke, OK, value, **fields)

    def fail(self, invoke: int, error: str, **fields: Any) -> int:
        """The operation `invoke` definitely did not happen."""
        return self.complete(invoke, FAIL, error=error, **fields)

    def info(self, invoke: int, error: str, **fields: Any) -> int:
        """The outcome of `invoke` is unknown (timeout, lost connection): it may or may not have happened."""
        return self.complete(invoke, INFO, error=error, **fields)

    def observe(self, process: str, f: str, value: Mapping[str, Any] | None = None, /, **fields: Any) -> int:
        """Record an observation (`rebalance`, `assignment`): a single `ok` event."""
        return self._record(process, OK, f, {**(value or {}), **fields}, None)

    def header(self, meta: Mapping[str, Any] | None) -> dict[str, Any]:
        return {HEADER_KEY: FORMAT_VERSION, "meta": dict(meta or {})}


class HistoryWriter(Recorder):
    """Appends a history to a JSONL file, one flushed line per event.

    Use as a context manager, or call `close()`. `clock` defaults to `time.monotonic_ns`.
    `flush=False` leaves buffering to Python (for generating large synthetic files only: a crash
    then loses the unflushed tail).
    """

    def __init__(self, path: str | Path | IO[str], meta: Mapping[str, Any] | None = None, *,
                 clock: Callable[[], int] = time.monotonic_ns, flush: bool = True) -> None:
        self._flush = flush
        if isinstance(path, (str, Path)):
            self._stream: IO[str] = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
            self._owned = True
            source = str(path)
        else:
            self._stream, self._owned, source = path, False, getattr(path, "name", "<stream>")
        super().__init__(source, clock)
        self._write_line(self.header(meta))

    def _write_line(self, obj: dict[str, Any]) -> None:
        self._stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
        if self._flush:
            self._stream.flush()

    def _emit(self, obj: dict[str, Any]) -> None:
        self._write_line(obj)

    def close(self) -> None:
        """Flush and close the file (if the writer opened it)."""
        if self._owned and not self._stream.closed:
            self._stream.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HistoryBuilder(Recorder):
    """Builds a history in memory (tests, simulations); times count up by `step` ns per event."""

    def __init__(self, meta: Mapping[str, Any] | None = None, *, step: int = 1_000) -> None:
        self._now = 0
        self._step = step

        def tick() -> int:
            self._now += self._step
            return self._now

        super().__init__("<builder>", tick)
        self._meta = dict(meta or {})
        self._events: list[dict[str, Any]] = []

    def _emit(self, obj: dict[str, Any]) -> None:
        self._events.append(obj)

    def history(self) -> History:
        """The history recorded so far (a snapshot)."""
        return History([dict(e) for e in self._events], meta=dict(self._meta), source="<builder>")

    def lines(self) -> list[str]:
        """The history as JSONL lines (header first), as a file would hold it."""
        return [json.dumps(self.header(self._meta)) + "\n"] + [json.dumps(e) + "\n" for e in self._events]

    # Shorthands for the operations tests write most.
    def send(self, process: str, topic: str, value: str, *, partition: int | None = 0,
             key: str | None = None, offset: int | None = None, outcome: str = OK,
             error: str = "TIMEOUT") -> int:
        """A complete send: `ok` at `offset`, or `fail`/`info` with `error`, or pending (outcome '')."""
        i = self.invoke(process, "send", topic=topic, partition=partition, key=key, value=value)
        if outcome == OK:
            assert offset is not None and partition is not None, "an ok send needs an offset and partition"
            self.ok(i, topic=topic, partition=partition, offset=offset)
        elif outcome in (FAIL, INFO):
            self.complete(i, outcome, error=error)
        return i

    def poll(self, process: str, records: list[tuple[str, int, int, str | None, str]] | list[tuple[str, int, int, str]],
             *, high_watermarks: list[tuple[str, int, int]] | None = None,
             last_stable_offsets: list[tuple[str, int, int]] | None = None,
             batches: list[tuple[str, int, int, int, int, int, int]] | None = None,
             isolation_level: str | None = None) -> int:
        """A complete poll returning `records` ((topic, partition, offset, value) or with key),
        and optionally the batches they came in ((topic, partition, base offset, last offset,
        producer id, producer epoch, base sequence), as a precise read records them), by a
        consumer of `isolation_level` (unsaid: read_uncommitted).

        Returns the index of the completion, the event that carries the records.
        """
        i = self.invoke(process, "poll", {} if isolation_level is None else {"isolation_level": isolation_level})
        rows = [[r[0], r[1], r[2], None, r[3]] if len(r) == 4 else list(r) for r in records]
        value: dict[str, Any] = {"records": rows}
        if high_watermarks is not None:
            value["high_watermarks"] = [list(x) for x in high_watermarks]
        if last_stable_offsets is not None:
            value["last_stable_offsets"] = [list(x) for x in last_stable_offsets]
        if batches is not None:
            value["batches"] = [list(x) for x in batches]
        return self.ok(i, value)

    def begin_txn(self, process: str, ops: list[list[Any]], *, commit: bool = True,
                  isolation_level: str | None = None) -> int:
        """The invocation of a transaction that means to do `ops` (intended or completed
        micro-operations: the intended form is taken from them); returns its index."""
        value: dict[str, Any] = {"ops": [intended(op) for op in ops], "commit": commit}
        if isolation_level is not None:
            value["isolation_level"] = isolation_level
        return self.invoke(process, "txn", value)

    def end_txn(self, invoke: int, ops: list[list[Any]] | None = None, *, outcome: str = "commit", type_: str = OK,
                error: str = "TIMEOUT", end_invoked: int | None = None) -> int:
        """The completion of the transaction `invoke`: `ok` with the completed `ops` and its
        `outcome`, or `fail` / `info` with `error` (and `ops` when given); returns its index."""
        value: dict[str, Any] = {"ops": list(ops or [])}
        if type_ == OK:
            value["outcome"] = outcome
        else:
            value["error"] = error
            if ops is None:
                del value["ops"]
        if end_invoked is not None:
            value["end_invoked"] = end_invoked
        return self.complete(invoke, type_, value)

    def txn(self, process: str, ops: list[list[Any]], *, outcome: str = "commit", type_: str = OK,
            isolation_level: str | None = None, end_invoked: int | None = None) -> int:
        """A complete transaction that did the completed micro-operations `ops` (docs/history-format.md);
        returns the invocation's index (its completion is the next event)."""
        i = self.begin_txn(process, ops, commit=outcome == "commit", isolation_level=isolation_level)
        self.end_txn(i, ops, outcome=outcome, type_=type_, end_invoked=end_invoked)
        return i

    def call(self, process: str, f: str, value: Mapping[str, Any] | None = None, *,
             result: Mapping[str, Any] | None = None, outcome: str = OK, error: str = "TIMEOUT") -> int:
        """A complete operation `f` (invoke, then `outcome`); returns the invocation's index."""
        i = self.invoke(process, f, value or {})
        if outcome == OK:
            self.ok(i, result or {})
        elif outcome in (FAIL, INFO):
            self.complete(i, outcome, error=error)
        return i
