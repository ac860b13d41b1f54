"""The suite's checks: named, selectable, each citing the Kafka rule it checks.

A check is a function of a :class:`~harness.conformance.context.CheckContext` registered with
:func:`check`. It passes by returning, fails by raising
:class:`~harness.conformance.context.CheckFailed` (or an AssertionError) with the witness, and
is skipped when the target lacks one of its ``requires`` capabilities (or raises
:class:`~harness.conformance.context.CheckSkipped`). ``per_client`` checks run once per
``--client`` library, named ``name[client]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from harness.conformance.context import CheckContext

CheckFunction = Callable[[CheckContext], None]

KINDS = ("protocol", "client", "stateful", "process")


@attrs.frozen
class Check:
    """One registered check."""

    name: str
    function: CheckFunction
    rule: str
    requires: frozenset[str] = frozenset()
    kind: str = "protocol"
    per_client: bool = False

    @property
    def summary(self) -> str:
        """The first line of the check's docstring: what it checks."""
        doc = (self.function.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name


CHECKS: dict[str, Check] = {}


def check(name: str, *, rule: str, requires: Iterable[str] = (), kind: str = "protocol",
          per_client: bool = False) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check under ``name``; ``rule`` names the Kafka rule (doc section, KIP)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")

    def register(function: CheckFunction) -> CheckFunction:
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = Check(name, function, rule, frozenset(requires), kind, per_client)
        return function

    return register


def instance_names(check_: Check, clients: Iterable[str]) -> list[str]:
    """The names a check runs under: ``name`` or ``name[client]`` per client."""
    if check_.per_client:
        return [f"{check_.name}[{c}]" for c in clients]
    return [check_.name]


def split_instance(name: str) -> tuple[str, str | None]:
    """``client-roundtrip[aiokafka]`` -> (``client-roundtrip``, ``aiokafka``)."""
    if name.endswith("]") and "[" in name:
        base, _, client = name[:-1].partition("[")
        return base, client
    return name, None
