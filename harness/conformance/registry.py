"""The suite's checks: named, selectable, each citing the Kafka rule it checks.

A check is a function of a :class:`~harness.conformance.context.CheckContext` registered with
:func:`check`. It passes by returning, fails by raising
:class:`~harness.conformance.context.CheckFailed` (or an AssertionError) with the witness, and
is skipped when the target lacks one of its ``requires`` capabilities (or raises
:class:`~harness.conformance.context.CheckSkipped`). ``per_client`` checks run once per
``--client`` library, named ``name[client]``; ``per_pair`` checks once per writer and reader
(:func:`client_pairs`), named ``name[writer>reader]``. ``differential`` checks can also run against two
targets at once (``kconform conform --differential A,B``), comparing their answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

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
    differential: bool = False
    per_pair: bool = False

    @property
    def summary(self) -> str:
        """The first line of the check's docstring: what it checks."""
        doc = (self.function.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name


CHECKS: dict[str, Check] = {}


def check(name: str, *, rule: str, requires: Iterable[str] = (), kind: str = "protocol",
          per_client: bool = False, differential: bool = False,
          per_pair: bool = False) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check under ``name``; ``rule`` names the Kafka rule (doc section, KIP)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")

    def register(function: CheckFunction) -> CheckFunction:
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = Check(name, function, rule, frozenset(requires), kind, per_client, differential, per_pair)
        return function

    return register


READ_ONLY_CLIENTS = ("kcat",)
"""Readers that write nothing of theirs into a workload: they join pairs only as the reader."""


def client_pairs(clients: Sequence[str]) -> list[str]:
    """``writer>reader`` pairs for ``clients``: a ring, so each client writes once and reads once
    what another wrote, and kcat reads what the last one wrote."""
    ring = [f"{a}>{b}" for a, b in zip(clients, [*clients[1:], *clients[:1]])] if len(clients) > 1 else []
    return [*ring, f"{clients[-1]}>kcat"] if clients else []


def instances(check_: Check, clients: Sequence[str]) -> list[tuple[str | None, str]]:
    """(client, name) for each instance a check runs as: ``name``, ``name[client]`` per client,
    or ``name[writer>reader]`` per pair."""
    if check_.per_pair:
        units = client_pairs(clients)
    elif check_.per_client:
        units = list(clients)
    else:
        return [(None, check_.name)]
    return [(u, f"{check_.name}[{u}]") for u in units]


def split_instance(name: str) -> tuple[str, str | None]:
    """``client-roundtrip[aiokafka]`` -> (``client-roundtrip``, ``aiokafka``)."""
    if name.endswith("]") and "[" in name:
        base, _, client = name[:-1].partition("[")
        return base, client
    return name, None
