"""Loading a history file: stream it, validate every line, keep the events for the checkers.

A history written by a run that crashed may end in a half-written line. That is expected and
not fatal: the loader drops it, says so in `History.warning`, and keeps every earlier event. Any
other broken line makes the whole file unusable and raises `HistoryError` naming the line and
field, because silently skipping events could hide or invent anomalies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.history._gc import no_gc
from harness.history.events import Event
from harness.history.format import FORMAT_VERSION, HistoryError, Validator, check_header
from harness.history.index import HistoryIndex

__all__ = ["History", "load_history", "no_gc", "parse_history"]


class History:
    """A validated history: the header's metadata and every event, in order.

    `raw` holds the events as the validated JSON dicts (cheap to keep, fast to scan); iterating
    or indexing the history gives `Event` objects. `index` is the derived view the checkers use,
    built once on first access.
    """

    def __init__(self, raw: list[dict[str, Any]], *, meta: dict[str, Any] | None = None,
                 source: str = "<memory>", warning: str | None = None,
                 version: int = FORMAT_VERSION) -> None:
        self.raw = raw
        self.meta = meta or {}
        self.source = source
        self.warning = warning
        self.version = version

    def __len__(self) -> int:
        return len(self.raw)

    def __iter__(self) -> Iterator[Event]:
        return (Event.from_json(obj) for obj in self.raw)

    def __getitem__(self, index: int) -> Event:
        return Event.from_json(self.raw[index])

    @cached_property
    def index(self) -> HistoryIndex:
        """The checkers' index of this history (writes, reads, runs, commits, ...)."""
        return HistoryIndex.build(self)

    @property
    def operations(self) -> int:
        """How many operations (invocations and observations) the history holds."""
        return sum(1 for e in self.raw if "invoke" not in e)


BATCH = 2048  # lines parsed by one json.loads call (measured ~1.5x faster than line by line)


def parse_history(lines: Iterable[str], source: str = "<memory>", *,
                  allow_truncated: bool = True, index: bool = True) -> History:
    """Parse and validate history lines (each with or without its newline).

    With `allow_truncated`, a last line that has no newline and is not valid JSON is taken for
    the remains of a crash: it is dropped and reported in `History.warning`. With `index`, the
    checkers' index is built along the way (each batch is indexed while it is still in the CPU
    cache: measured much faster than a second pass), so a repeated value is reported here.
    """
    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise HistoryError(source, None, None, "empty file: a history starts with a header line")
    try:
        header = json.loads(first)
    except ValueError as exc:
        raise HistoryError(source, 1, None, f"not valid JSON ({exc})") from None
    meta = check_header(header, source)
    validator = Validator(source)
    raw: list[dict[str, Any]] = []
    warning: str | None = None
    built = HistoryIndex() if index else None
    feed: Callable[[list[dict[str, Any]] | None], None] = (
        built.feeder(source) if built is not None else lambda batch: None)
    with no_gc():
        batch: list[str] = []
        number = 2  # the line number of batch[0]
        for line in it:
            batch.append(line)
            if len(batch) == BATCH:
                _parse_batch(batch, number, validator, raw, feed, last=False, allow_truncated=allow_truncated)
                number += BATCH
                batch = []
        if batch:
            warning = _parse_batch(batch, number, validator, raw, feed, last=True,
                                   allow_truncated=allow_truncated)
        feed(None)
    if warning is not None:
        warning += f"; it was ignored and the {len(raw)} events before it were kept"
    history = History(raw, meta=meta, source=source, warning=warning)
    if built is not None:
        history.__dict__["index"] = built  # the cached_property's slot
    return history


def _parse_batch(batch: list[str], number: int, validator: Validator, raw: list[dict[str, Any]],
                 feed: Callable[[list[dict[str, Any]] | None], None], *,
                 last: bool, allow_truncated: bool) -> str | None:
    """Parse and validate lines `number`... into `raw`; returns a warning for a truncated last line."""
    try:
        objs = json.loads("[" + ",".join(batch) + "]")
        if len(objs) != len(batch):
            raise ValueError("a line holds more than one JSON value")
    except ValueError:
        objs = []
        for k, line in enumerate(batch):
            try:
                objs.append(json.loads(line))
            except ValueError as exc:
                at = number + k
                if not line.strip():
                    raise HistoryError(validator.source, at, None,
                                       "empty line (every line must be one JSON object)") from None
                if last and k == len(batch) - 1 and allow_truncated and not line.endswith("\n"):
                    for j, obj in enumerate(objs):
                        validator.check(obj, number + j)
                    raw.extend(objs)
                    feed(objs)
                    return (f"{validator.source}:{at}: the last line is incomplete (the run probably "
                            f"stopped while writing it)")
                raise HistoryError(validator.source, at, None, f"not valid JSON ({exc})") from None
    check = validator.check
    for k, obj in enumerate(objs):
        check(obj, number + k)
    raw.extend(objs)
    feed(objs)
    return None


def load_history(path: str | Path, *, allow_truncated: bool = True, index: bool = True) -> History:
    """Load and validate a history file (see `parse_history`)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="\n") as stream:
            return parse_history(stream, str(path), allow_truncated=allow_truncated, index=index)
    except UnicodeDecodeError as exc:
        raise HistoryError(str(path), None, None, f"not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise HistoryError(str(path), None, None, f"cannot read the file ({exc.strerror or exc})") from None
