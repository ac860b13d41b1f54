"""Histories: the record of every operation and fault of a run, and the contract with the checkers.

- `HistoryWriter` appends a JSONL history file during a run; `HistoryBuilder` builds one in memory.
- `load_history` / `parse_history` validate a file and return a `History`.
- `History.index` (a `HistoryIndex`) is the derived view the checkers share.
- `harness.history.simulate` records a simulated correct run (property tests, benchmarks).

The format is documented in docs/history-format.md; `harness.history.format` is its code.
"""

from harness.history.events import Event, EventType
from harness.history.format import FORMAT_VERSION, OPERATIONS, HistoryError
from harness.history.index import HistoryIndex, Write
from harness.history.load import History, load_history, parse_history
from harness.history.write import HistoryBuilder, HistoryWriter, Recorder

__all__ = [
    "FORMAT_VERSION",
    "OPERATIONS",
    "Event",
    "EventType",
    "History",
    "HistoryBuilder",
    "HistoryError",
    "HistoryIndex",
    "HistoryWriter",
    "Recorder",
    "Write",
    "load_history",
    "parse_history",
]
