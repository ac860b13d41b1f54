"""Events as typed objects, for code that reads or writes a few of them (checkers use raw dicts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

EventType = Literal["invoke", "ok", "fail", "info"]


@attrs.frozen
class Event:
    """One history event: an invocation, a completion (ok / fail / info) or an observation.

    `index` is the event's position in the history (0-based), `time` a monotonic clock reading
    in nanoseconds, `process` the client or nemesis that did it, `f` the operation, `value` its
    operation-specific fields (docs/history-format.md) and `invoke`, on a completion, the index
    of the invocation it completes.
    """

    index: int
    time: int
    process: str
    type: EventType
    f: str
    value: Mapping[str, Any]
    invoke: int | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Event:
        """An event from its (already validated) JSON object."""
        return cls(obj["index"], obj["time"], obj["process"], obj["type"], obj["f"], obj["value"],
                   obj.get("invoke"))

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this event, with the documented key order."""
        obj: dict[str, Any] = {"index": self.index, "time": self.time, "process": self.process,
                               "type": self.type, "f": self.f}
        if self.invoke is not None:
            obj["invoke"] = self.invoke
        obj["value"] = dict(self.value)
        return obj
