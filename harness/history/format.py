"""The history file format: its version, its operations, and the validation of each event.

One JSON object per line (docs/history-format.md). The first line is the header
`{"kconform-history": 4, "meta": {...}}` (versions 1 to 3 still load); every other line is an event:
`{"index", "time", "process", "type", "f", "value"}` plus `"invoke"` (the index of the
invocation) on completions. `value` depends on the operation `f` and on `type`; the table
`SCHEMAS` below is the single source of truth for it, and the documentation is written from it.

Validation is written for speed (it runs on millions of lines): plain dicts, `type(x) is int`
checks, no per-event objects. Every error names the line, the field and what was wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

FORMAT_VERSION: Final = 4
"""The version this kconform writes."""
READABLE_VERSIONS: Final = (1, 2, 3, 4)
"""The versions it reads. Version 2 added the batch identities a precise read records with each
poll (`batches`) and the client of each process (`meta.clients`): a version 1 reader would drop
them silently and blame the broker for what the evidence pins on a client. Version 3 added the
`partition-state` observation (leader, ISR and high watermark sampled during a campaign), an
operation a version 2 reader does not know. Version 4 added transactions (the `txn` operation),
the reader's isolation level on `poll` (its absence means read_uncommitted, so a version 3
reader would judge a read_committed consumer's reads by the wrong rules) and the
`stable-offsets` observation."""
HEADER_KEY: Final = "kconform-history"

INVOKE: Final = "invoke"
OK: Final = "ok"
FAIL: Final = "fail"
INFO: Final = "info"
EVENT_TYPES: Final = (INVOKE, OK, FAIL, INFO)
COMPLETION_TYPES: Final = (OK, FAIL, INFO)

# Operations recorded as a single `ok` event (something a client observed), not invoke + completion.
OBSERVATIONS: Final = frozenset({"rebalance", "assignment", "partition-state", "stable-offsets"})

READ_COMMITTED: Final = "read_committed"
READ_UNCOMMITTED: Final = "read_uncommitted"
"""A consumer's `isolation.level` (Kafka's names); a poll or transaction that does not say is
read_uncommitted, Kafka's default."""


class HistoryError(ValueError):
    """A history that cannot be used; says where (source, line, field) and what is wrong."""

    def __init__(self, source: str, line: int | None, field: str | None, message: str) -> None:
        self.source, self.line, self.field, self.message = source, line, field, message
        where = source if line is None else f"{source}:{line}"
        what = message if field is None else f"field '{field}': {message}"
        super().__init__(f"{where}: {what}")


# A field check returns None when the value is fine, else what is wrong with it.
Check = Callable[[Any], "str | None"]


def _name(x: Any) -> str:
    return "null" if x is None else type(x).__name__.replace("dict", "object").replace("list", "array")


def _str(x: Any) -> str | None:
    return None if type(x) is str else f"expected a string, got {_name(x)}"


def _int(x: Any) -> str | None:
    return None if type(x) is int else f"expected an integer, got {_name(x)}"


def _nonneg_int(x: Any) -> str | None:
    if type(x) is not int:
        return f"expected an integer, got {_name(x)}"
    return None if x >= 0 else f"expected an integer >= 0, got {x}"


def _opt_int(x: Any) -> str | None:
    return None if x is None or type(x) is int else f"expected an integer or null, got {_name(x)}"


def _opt_str(x: Any) -> str | None:
    return None if x is None or type(x) is str else f"expected a string or null, got {_name(x)}"


def _object(x: Any) -> str | None:
    return None if type(x) is dict else f"expected an object, got {_name(x)}"


def _one_of(*choices: str) -> Check:
    def check(x: Any) -> str | None:
        return None if x in choices and type(x) is str else f"expected one of {', '.join(choices)}, got {x!r}"
    return check


def _str_list(x: Any) -> str | None:
    if type(x) is not list:
        return f"expected an array of strings, got {_name(x)}"
    for i, item in enumerate(x):
        if type(item) is not str:
            return f"item {i}: expected a string, got {_name(item)}"
    return None


def _tuple_list(kinds: tuple[type, ...], shape: str) -> Check:
    n = len(kinds)

    def check(x: Any) -> str | None:
        if type(x) is not list:
            return f"expected an array of {shape}, got {_name(x)}"
        for i, item in enumerate(x):
            if type(item) is not list or len(item) != n:
                return f"item {i}: expected {shape}, got {item!r}"
            for element, kind in zip(item, kinds):
                if type(element) is not kind:
                    return f"item {i}: expected {shape}, got {item!r}"
        return None
    return check


_tp_list = _tuple_list((str, int), "[topic, partition]")
_tpo_list = _tuple_list((str, int, int), "[topic, partition, offset]")
_batch_list = _tuple_list((str, int, int, int, int, int, int),
                          "[topic, partition, base offset, last offset, producer id, producer epoch, base sequence]")


def _records(x: Any) -> str | None:
    # Hot path: polls carry most of a history's data.
    if type(x) is not list:
        return f"expected an array of [topic, partition, offset, key, value], got {_name(x)}"
    for i, r in enumerate(x):
        if (type(r) is not list or len(r) != 5 or type(r[0]) is not str or type(r[1]) is not int
                or type(r[2]) is not int or type(r[4]) is not str
                or (r[3] is not None and type(r[3]) is not str)):
            return f"item {i}: expected [topic, partition, offset, key or null, value], got {r!r}"
    return None


def _seek_offset(x: Any) -> str | None:
    if type(x) is int or x in ("earliest", "latest"):
        return None
    return f"expected an offset or \"earliest\" or \"latest\", got {x!r}"


def _list_offsets_spec(x: Any) -> str | None:
    if type(x) is int or x in ("earliest", "latest"):
        return None
    return f"expected \"earliest\", \"latest\" or a timestamp in ms, got {x!r}"


def _bool(x: Any) -> str | None:
    return None if type(x) is bool else f"expected true or false, got {_name(x)}"


def _is_opt_nonneg(x: Any) -> bool:
    return x is None or (type(x) is int and x >= 0)


# The micro-operations of a transaction (docs/history-format.md, `txn`), as the workload intends
# them (invoke) and as they completed. Each check says whether one micro-operation is well formed.
_INTENDED_SHAPE: Final = '["send", topic, partition or null, key or null, value], ["poll"] or ["offsets", group]'
_DONE_SHAPE: Final = ('["send", topic, partition or null, key or null, value, offset or null], '
                      '["poll", records] or ["offsets", group, [[topic, partition, offset], ...]]')


def _intended_op(op: list[Any]) -> bool:
    kind = op[0]
    if kind == "send":
        return (len(op) == 5 and type(op[1]) is str and _is_opt_nonneg(op[2])
                and (op[3] is None or type(op[3]) is str) and type(op[4]) is str)
    if kind == "poll":
        return len(op) == 1
    return kind == "offsets" and len(op) == 2 and type(op[1]) is str


def _done_op(op: list[Any]) -> bool:
    kind = op[0]
    if kind == "send":
        # An offset is only known with the partition it is in.
        return (len(op) == 6 and type(op[1]) is str and _is_opt_nonneg(op[2])
                and (op[3] is None or type(op[3]) is str) and type(op[4]) is str
                and _is_opt_nonneg(op[5]) and (op[5] is None or op[2] is not None))
    if kind == "poll":
        return len(op) == 2 and _records(op[1]) is None
    return kind == "offsets" and len(op) == 3 and type(op[1]) is str and _tpo_list(op[2]) is None


def _micro_ops(valid: Callable[[list[Any]], bool], shape: str) -> Check:
    def check(x: Any) -> str | None:
        if type(x) is not list:
            return f"expected an array of micro-operations, got {_name(x)}"
        for i, op in enumerate(x):
            if type(op) is not list or not op or not valid(op):
                return f"item {i}: expected {shape}, got {op!r}"
        return None
    return check


_intended_ops = _micro_ops(_intended_op, _INTENDED_SHAPE)
_done_ops = _micro_ops(_done_op, _DONE_SHAPE)
_isolation = _one_of(READ_COMMITTED, READ_UNCOMMITTED)


Fields = Mapping[str, Check]


# Inline forms of the simple checks, for the generated fast validators.
_INLINE: dict[Check, str] = {
    _str: "type(x) is str",
    _int: "type(x) is int",
    _nonneg_int: "type(x) is int and x >= 0",
    _opt_int: "x is None or type(x) is int",
    _opt_str: "x is None or type(x) is str",
    _object: "type(x) is dict",
}


class Schema:
    """The required and optional fields of one (operation, event type) value.

    `fast(value)` says whether the value is valid, with the checks inlined into one generated
    function (it runs once per event); only when it says no does the validator run the field
    checks one by one to say precisely what is wrong. `fast` is None when every object is valid
    (no field is checked: extra fields are ignored), which saves the call.
    """

    __slots__ = ("required", "optional", "fast")

    def __init__(self, required: Fields | None = None, optional: Fields | None = None) -> None:
        self.required: tuple[tuple[str, Check], ...] = tuple((required or {}).items())
        self.optional: tuple[tuple[str, Check], ...] = tuple((optional or {}).items())
        self.fast: Callable[[dict[str, Any]], bool] | None = (
            self._generate() if self.required or self.optional else None)

    def _generate(self) -> Callable[[dict[str, Any]], bool]:
        env: dict[str, Any] = {}

        def valid(i: int, check: Check) -> str:
            """The expression that is true when ``x`` passes ``check``: inlined when the table has
            it, else a call of the check, bound in ``env`` as ``_c<i>``."""
            expr = _INLINE.get(check)
            if expr is None:
                env[f"_c{i}"] = check
                expr = f"_c{i}(x) is None"
            return expr

        body = ["    try:"] if self.required else []
        for i, (name, check) in enumerate(self.required):
            # A subscript is cheaper than .get(); a missing field raises KeyError.
            body.append(f"        x = value[{name!r}]")
            body.append(f"        if not ({valid(i, check)}): return False")
        if self.required:
            body.append("    except KeyError:")
            body.append("        return False")
        for i, (name, check) in enumerate(self.optional, len(self.required)):
            body.append(f"    if {name!r} in value:")
            body.append(f"        x = value[{name!r}]")
            body.append(f"        if not ({valid(i, check)}): return False")
        source = "def fast(value):\n" + "\n".join(body + ["    return True"]) + "\n"
        exec(source, env)  # noqa: S102 (generated from the constant table above)
        fast: Callable[[dict[str, Any]], bool] = env["fast"]
        return fast


_ERROR = Schema({"error": _str})
_EMPTY = Schema()


# A transaction that failed or whose outcome is unknown may still have done some of its
# micro-operations (a poll's records are real reads, whatever the transaction's fate).
_UNFINISHED_TXN = Schema({"error": _str}, {"ops": _done_ops, "end_invoked": _nonneg_int})


def _op(invoke: Schema, ok: Schema = _EMPTY) -> dict[str, Schema]:
    return {INVOKE: invoke, OK: ok, FAIL: _ERROR, INFO: _ERROR}


SCHEMAS: Final[dict[str, dict[str, Schema]]] = {
    "send": _op(
        Schema({"topic": _str, "partition": _opt_int, "key": _opt_str, "value": _str}),
        Schema({"topic": _str, "partition": _nonneg_int, "offset": _nonneg_int}),
    ),
    "poll": _op(
        Schema({}, {"isolation_level": _isolation}),
        Schema({"records": _records},
               {"high_watermarks": _tpo_list, "last_stable_offsets": _tpo_list, "batches": _batch_list}),
    ),
    "subscribe": _op(Schema({"group": _str, "topics": _str_list},
                            {"auto_offset_reset": _one_of("earliest", "latest")})),
    "assign": _op(Schema({"partitions": _tp_list})),
    "seek": _op(Schema({"topic": _str, "partition": _nonneg_int, "offset": _seek_offset})),
    "commit": _op(Schema({"group": _str, "offsets": _tpo_list},
                         {"generation": _opt_int, "member": _opt_str})),
    "committed": _op(Schema({"group": _str, "partitions": _tp_list}),
                     Schema({"offsets": _tpo_list})),
    "reset": _op(Schema({"group": _str, "offsets": _tpo_list})),
    "list-offsets": _op(Schema({"topic": _str, "partition": _nonneg_int, "spec": _list_offsets_spec}),
                        Schema({"offset": _int})),
    "txn": {INVOKE: Schema({"ops": _intended_ops, "commit": _bool}, {"isolation_level": _isolation}),
            OK: Schema({"ops": _done_ops, "outcome": _one_of("commit", "abort")}, {"end_invoked": _nonneg_int}),
            FAIL: _UNFINISHED_TXN, INFO: _UNFINISHED_TXN},
    "drain": _op(Schema({}, {"topics": _str_list, "partitions": _tp_list})),
    "fault": _op(Schema({"action": _one_of("start", "stop"), "fault": _str},
                        {"targets": _str_list, "params": _object})),
    "rebalance": {OK: Schema({"group": _str, "partitions": _tp_list},
                             {"generation": _opt_int, "member": _opt_str})},
    "assignment": {OK: Schema({"group": _str, "generation": _int, "member": _str, "partitions": _tp_list})},
    "partition-state": {OK: Schema({"topic": _str, "partition": _nonneg_int, "leader": _opt_str,
                                    "leader_epoch": _int, "isr": _str_list, "high_watermark": _opt_int})},
    "stable-offsets": {OK: Schema({"topic": _str, "partition": _nonneg_int, "high_watermark": _nonneg_int,
                                   "last_stable_offset": _nonneg_int})},
}

OPERATIONS: Final = tuple(SCHEMAS)

_TOP_FIELDS: Final = ("index", "time", "process", "type", "f", "value")


def check_header(obj: Any, source: str) -> tuple[int, dict[str, Any]]:
    """Validate the header line; returns its version and `meta` object."""
    if type(obj) is not dict or HEADER_KEY not in obj:
        raise HistoryError(source, 1, None,
                           f"not a kconform history: the first line must be the header "
                           f"{{\"{HEADER_KEY}\": {FORMAT_VERSION}, \"meta\": {{...}}}}")
    version = obj[HEADER_KEY]
    if version not in READABLE_VERSIONS or type(version) is not int:
        *head, last = (str(v) for v in READABLE_VERSIONS)
        readable = f"{', '.join(head)} and {last}" if head else last
        raise HistoryError(source, 1, HEADER_KEY,
                           f"history format version {version!r} is not supported "
                           f"(this kconform reads versions {readable})")
    meta = obj.get("meta", {})
    if type(meta) is not dict:
        raise HistoryError(source, 1, "meta", f"expected an object, got {_name(meta)}")
    unknown = sorted(set(obj) - {HEADER_KEY, "meta"})
    if unknown:
        raise HistoryError(source, 1, unknown[0], "unknown header field")
    clients = meta.get("clients")
    if clients is not None and (type(clients) is not dict
                                or any(type(v) is not str for v in clients.values())):
        raise HistoryError(source, 1, "meta.clients",
                           "expected an object mapping process names to client descriptions (strings)")
    return version, meta


# How an (operation, event type) pair relates to invocations: the validator's `kinds` table.
_INVOKE_KIND: Final = 0
_COMPLETION_KIND: Final = 1
_OBSERVATION_KIND: Final = 2


def _kinds() -> dict[str, dict[str, tuple[Callable[[dict[str, Any]], bool] | None, int]]]:
    """operation -> event type -> (the value's fast check, its kind), from SCHEMAS."""
    return {f: {typ: (schema.fast, _INVOKE_KIND if typ == INVOKE
                      else _OBSERVATION_KIND if f in OBSERVATIONS else _COMPLETION_KIND)
                for typ, schema in schemas.items()}
            for f, schemas in SCHEMAS.items()}


_KINDS: Final = _kinds()


class Validator:
    """Checks events in order, with the state the rules need.

    Rules beyond each value's schema: indexes count up from 0 with no gap; times never go
    backwards; a completion names an earlier, still open invocation of the same process and
    operation; observations are single `ok` events.

    `check` validates one event and says precisely what is wrong; `check_batch` validates many
    at once on a fast path that only accepts what `check` accepts and hands every event it has
    any doubt about to `check` (so the errors are the same, with the same line and field).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.next_index = 0
        self.last_time = -1
        # invocation index -> the invocation event, while it is open
        self.open: dict[int, dict[str, Any]] = {}
        self.completions = 0  # how many completion events were checked

    def fail(self, line: int, field: str | None, message: str) -> HistoryError:
        return HistoryError(self.source, line, field, message)

    def check_batch(self, objs: list[Any], line: int) -> None:
        """Validate events read from consecutive lines, the first from `line`; raises HistoryError."""
        nxt = self.next_index
        last = self.last_time
        start = nxt
        opened = self.open
        kinds = _KINDS
        completions = 0
        for obj in objs:
            try:
                if type(obj) is dict:
                    index = obj["index"]
                    time = obj["time"]
                    process = obj["process"]
                    value = obj["value"]
                    if (type(index) is int and index == nxt and type(time) is int and time >= last
                            and type(process) is str and process and type(value) is dict):
                        f = obj["f"]
                        fast, kind = kinds[f][obj["type"]]  # TypeError when unhashable
                        if fast is None or fast(value):
                            if kind == _INVOKE_KIND:
                                if len(obj) == 6:
                                    opened[index] = obj
                                    nxt = index + 1
                                    last = time
                                    continue
                            elif kind == _COMPLETION_KIND:
                                if len(obj) == 7:
                                    invoke = obj["invoke"]
                                    if type(invoke) is int:
                                        inv = opened.pop(invoke, None)
                                        if inv is not None:
                                            if inv["process"] == process and inv["f"] == f:
                                                completions += 1
                                                nxt = index + 1
                                                last = time
                                                continue
                                            opened[invoke] = inv
                            elif len(obj) == 6:
                                nxt = index + 1
                                last = time
                                continue
            except (KeyError, TypeError):
                pass
            # In doubt: the precise path, which raises or (rarely) accepts.
            self.next_index, self.last_time = nxt, last
            self.check(obj, line + nxt - start)
            nxt, last = self.next_index, self.last_time
        self.next_index, self.last_time = nxt, last
        self.completions += completions

    def check(self, obj: Any, line: int) -> None:
        """Validate one event object read from `line` (1-based); raises HistoryError."""
        if type(obj) is not dict:
            raise self.fail(line, None, f"expected an event object, got {_name(obj)}")
        try:
            index, time, process, typ, f, value = (obj["index"], obj["time"], obj["process"],
                                                   obj["type"], obj["f"], obj["value"])
        except KeyError:
            missing = next(k for k in _TOP_FIELDS if k not in obj)
            raise self.fail(line, missing, "missing") from None
        invoke = obj.get("invoke")
        if len(obj) != (6 if invoke is None else 7):
            unknown = sorted(set(obj) - {*_TOP_FIELDS, "invoke"})
            raise self.fail(line, unknown[0] if unknown else "invoke", "unknown event field" if unknown else "must not be null")
        if type(index) is not int:
            raise self.fail(line, "index", _int(index) or "")
        if index != self.next_index:
            raise self.fail(line, "index", f"expected {self.next_index} (events are numbered from 0 in file order), got {index}")
        if type(time) is not int:
            raise self.fail(line, "time", _int(time) or "")
        if time < self.last_time:
            raise self.fail(line, "time", f"went backwards: {time} after {self.last_time} (times are monotonic nanoseconds)")
        if type(process) is not str or not process:
            raise self.fail(line, "process", "expected a non-empty string")
        schemas = SCHEMAS.get(f) if type(f) is str else None
        if schemas is None:
            raise self.fail(line, "f", f"unknown operation {f!r} (known: {', '.join(OPERATIONS)})")
        schema = schemas.get(typ) if type(typ) is str else None
        if schema is None:
            if typ not in EVENT_TYPES:
                raise self.fail(line, "type", f"unknown event type {typ!r} (known: {', '.join(EVENT_TYPES)})")
            raise self.fail(line, "type", f"{f!r} events must have type {' or '.join(schemas)}, got {typ!r}")
        if type(value) is not dict:
            raise self.fail(line, "value", f"expected an object, got {_name(value)}")
        if schema.fast is not None and not schema.fast(value):
            self._explain(schema, f, typ, value, line)
        if typ == INVOKE:
            if invoke is not None:
                raise self.fail(line, "invoke", "only completions name an invocation")
            self.open[index] = obj
        elif f in OBSERVATIONS:
            if invoke is not None:
                raise self.fail(line, "invoke", f"{f!r} is an observation, it has no invocation")
        else:
            if invoke is None:
                raise self.fail(line, "invoke", f"missing: a {typ} completion must name its invocation's index")
            if type(invoke) is not int:
                raise self.fail(line, "invoke", _int(invoke) or "")
            opened = self.open.pop(invoke, None)
            if opened is None:
                raise self.fail(line, "invoke", f"{invoke} is not an open invocation (unknown, not an invoke, or already completed)")
            if opened["process"] != process or opened["f"] != f:
                self.open[invoke] = opened
                raise self.fail(line, "invoke",
                                f"event {invoke} is {opened['process']}'s {opened['f']!r}, not {process}'s {f!r}")
            self.completions += 1
        self.next_index = index + 1
        self.last_time = time

    def _explain(self, schema: Schema, f: str, typ: str, value: dict[str, Any], line: int) -> None:
        """Raise the precise error for a value the fast check refused."""
        for name, check in schema.required:
            if name not in value:
                raise self.fail(line, f"value.{name}", f"missing (required for {f} {typ})")
            problem = check(value[name])
            if problem is not None:
                raise self.fail(line, f"value.{name}", problem)
        for name, check in schema.optional:
            if name in value:
                problem = check(value[name])
                if problem is not None:
                    raise self.fail(line, f"value.{name}", problem)
        raise self.fail(line, "value", "invalid")  # unreachable: the fast check agrees with these
