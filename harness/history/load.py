"""Loading a history file: stream it, validate every line, keep the events for the checkers.

A history written by a run that crashed may end in a half-written line. That is expected and
not fatal: the loader drops it, says so in `History.warning`, and keeps every earlier event. Any
other broken line makes the whole file unusable and raises `HistoryError` naming the line and
field, because silently skipping events could hide or invent anomalies.

Theory of operation (it runs on millions of lines). The file is read in chunks of whole lines;
each chunk is decoded by one call of msgspec's JSON decoder as one array (the newlines turned
into commas), validated (`Validator.check_batch`) and indexed while it is still in the CPU
cache, so a million operations load in seconds. Any doubt sends the chunk to the slow path,
line by line with the standard library's `json` (the reference: msgspec decodes every document
`json` decodes to the same values, and refuses the few it does not, such as `NaN` or lone
surrogates, which `json` accepts), where every error names its line and field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec

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
        self._completions: int | None = None  # known when loaded (the validator counts them)

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
        if self._completions is not None:
            return len(self.raw) - self._completions
        return sum(1 for e in self.raw if "invoke" not in e)


BATCH = 2048  # lines parsed by one decoder call when lines are given one by one
CHUNK = 1 << 17  # characters read from a file at a time (measured: fits the CPU cache best)

_decode: Callable[[str], Any] = msgspec.json.Decoder().decode


class _Loader:
    """Validates and (optionally) indexes decoded events, chunk after chunk, in file order."""

    def __init__(self, source: str, *, allow_truncated: bool, index: bool) -> None:
        self.source = source
        self.allow_truncated = allow_truncated
        self.validator = Validator(source)
        self.raw: list[dict[str, Any]] = []
        self.index = HistoryIndex() if index else None
        self._feed: Callable[[list[dict[str, Any]] | None], None] = (
            self.index.feeder(source) if self.index is not None else lambda batch: None)
        self.line = 2  # the line number of the next event (the header is line 1)
        self.warning: str | None = None

    def events(self, objs: list[Any]) -> None:
        """The decoded events of the next `len(objs)` lines."""
        self.validator.check_batch(objs, self.line)
        self.line += len(objs)
        self.raw.extend(objs)
        self._feed(objs)

    def text(self, text: str) -> None:
        """The next lines, each ending with a newline."""
        count = text.count("\n")
        try:
            # "[l1\n,l2\n,...,ln\n]": the lines joined by commas, as one JSON array.
            objs = _decode("[" + text.replace("\n", "\n,")[:-1] + "]")
        except ValueError:
            objs = None
        if type(objs) is list and len(objs) == count:
            self.events(objs)
        else:
            self.lines(text.split("\n")[:-1], newlines=True, last=False)

    def lines(self, lines: Sequence[str], *, newlines: bool, last: bool) -> None:
        """The next lines, one by one (`newlines`: they lost their newline, as `str.split` leaves
        them); `last`: they end the file, the last one maybe half-written."""
        for k, line in enumerate(lines):
            try:
                obj = json.loads(line)
            except ValueError as exc:
                if not line.strip():
                    raise HistoryError(self.source, self.line, None,
                                       "empty line (every line must be one JSON object)") from None
                if (last and k == len(lines) - 1 and self.allow_truncated
                        and not (newlines or line.endswith("\n"))):
                    self.warning = (f"{self.source}:{self.line}: the last line is incomplete (the run "
                                    f"probably stopped while writing it)")
                    return
                raise HistoryError(self.source, self.line, None, f"not valid JSON ({exc})") from None
            self.events([obj])

    def batch(self, batch: list[str], *, last: bool) -> None:
        """The next lines, each with or without its newline."""
        try:
            objs = _decode("[" + ",".join(batch) + "]")
        except ValueError:
            objs = None
        if type(objs) is list and len(objs) == len(batch):
            self.events(objs)
        else:
            self.lines(batch, newlines=False, last=last)

    def history(self, version: int, meta: dict[str, Any]) -> History:
        self._feed(None)
        warning = self.warning
        if warning is not None:
            warning += f"; it was ignored and the {len(self.raw)} events before it were kept"
        history = History(self.raw, meta=meta, source=self.source, warning=warning, version=version)
        history._completions = self.validator.completions
        if self.index is not None:
            history.__dict__["index"] = self.index  # the cached_property's slot
        return history


def _header(first: str | None, source: str) -> tuple[int, dict[str, Any]]:
    if first is None:
        raise HistoryError(source, None, None, "empty file: a history starts with a header line")
    try:
        header = json.loads(first)
    except ValueError as exc:
        raise HistoryError(source, 1, None, f"not valid JSON ({exc})") from None
    return check_header(header, source)


def parse_history(lines: Iterable[str], source: str = "<memory>", *,
                  allow_truncated: bool = True, index: bool = True) -> History:
    """Parse and validate history lines (each with or without its newline).

    With `allow_truncated`, a last line that has no newline and is not valid JSON is taken for
    the remains of a crash: it is dropped and reported in `History.warning`. With `index`, the
    checkers' index is built along the way (each batch is indexed while it is still in the CPU
    cache: measured much faster than a second pass), so a repeated value is reported here.
    """
    it = iter(lines)
    version, meta = _header(next(it, None), source)
    loader = _Loader(source, allow_truncated=allow_truncated, index=index)
    with no_gc():
        batch: list[str] = []
        for line in it:
            batch.append(line)
            if len(batch) == BATCH:
                loader.batch(batch, last=False)
                batch = []
        if batch:
            loader.batch(batch, last=True)
        return loader.history(version, meta)


def load_history(path: str | Path, *, allow_truncated: bool = True, index: bool = True) -> History:
    """Load and validate a history file (see `parse_history`)."""
    path = Path(path)
    source = str(path)
    try:
        with path.open(encoding="utf-8", newline="\n") as stream:
            version, meta = _header(stream.readline() or None, source)
            loader = _Loader(source, allow_truncated=allow_truncated, index=index)
            with no_gc():
                rest: list[str] = []  # the start of a line that goes on in the next chunk
                while chunk := stream.read(CHUNK):
                    end = chunk.rfind("\n") + 1
                    if end == 0:
                        rest.append(chunk)
                        continue
                    if rest:
                        rest.append(chunk[:end])
                        loader.text("".join(rest))
                        rest.clear()
                    else:
                        loader.text(chunk[:end])
                    if end < len(chunk):
                        rest.append(chunk[end:])
                if rest:
                    loader.lines(["".join(rest)], newlines=False, last=True)
                return loader.history(version, meta)
    except UnicodeDecodeError as exc:
        raise HistoryError(source, None, None, f"not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise HistoryError(source, None, None, f"cannot read the file ({exc.strerror or exc})") from None
