"""Checkers of dependency cycles between committed transactions (Adya's phenomena, Elle's names).

- G0: a cycle of ww edges (write cycle): two transactions' records interleave in two partitions
  in opposite orders.
- G1c: a cycle of ww and wr edges with at least one wr (circular information flow).
- G-single: a cycle with exactly one rw edge, the rest ww and wr (read skew).

Kafka allows all three (specs.transactions.KAFKA_ALLOWS: its transactions do not isolate
writes, and read_committed is no snapshot), so a configuration never claims them: they are
reported for what they say about the run. The cycle Kafka does rule out, wr edges alone, is
reported by G1b (`wr_cycles`). One cycle is printed per strongly connected component, each
edge with the records that make it (harness/checkers/cycles.py).
"""

from __future__ import annotations

from harness.checkers._common import checker
from harness.checkers.cycles import ALL, RW, WR, WW, DependencyGraph, mask
from harness.checkers.result import Anomaly, CheckResult
from harness.checkers.txn_view import txn_view
from harness.history.index import DerivedView
from harness.history.load import History
from specs.transactions import cycle_anomaly

NO_TRANSACTIONS = "the history has no transaction (txn operation)"
G_SINGLE_TRIES = 64
"""rw edges tried per component when looking for a cycle with exactly one: each try is a search of
the component, and a component can hold most of a history, so the search is bounded (a G-single
may then go unreported; the bound keeps the check linear)."""

GRAPH: DerivedView[DependencyGraph] = DerivedView("dependency-graph")
ALL_COMPONENTS: DerivedView[list[list[int]]] = DerivedView("dependency-components")


def dependency_graph(history: History) -> DependencyGraph:
    return history.index.derived(GRAPH, lambda: DependencyGraph(txn_view(history)))


def _components(history: History, kinds: int) -> list[list[int]]:
    """The components over `kinds`, found inside those over every edge (computed once)."""
    graph = dependency_graph(history)
    every = history.index.derived(ALL_COMPONENTS, lambda: graph.components(ALL))
    return every if kinds == ALL else graph.components(kinds, within=every)


def cycle_anomalies(history: History, name: str, kinds: int, first: int, *, more: int | None = None,
                    tries: int | None = None, why: str = "") -> list[Anomaly]:
    """One anomaly called `name` per component over `kinds` (edges `more` besides `first`,
    default the same) with a cycle through an edge of kind `first`."""
    graph = dependency_graph(history)
    anomalies = []
    for component in _components(history, kinds):
        cycle = graph.cycle(component, first, kinds if more is None else more, tries)
        if cycle is None:
            continue
        text, events = graph.explain(cycle)
        anomalies.append(Anomaly(
            name, f"{cycle_anomaly(graph.kinds_of(cycle))} cycle of {len(cycle)} committed transactions "
                  f"(component of {len(component)}){why}: {text}", events))
    anomalies.sort(key=lambda a: a.events)
    return anomalies


@checker
def g0(history: History) -> CheckResult:
    """A cycle of ww edges between committed transactions."""
    if not history.index.txns:
        return CheckResult("G0", skipped=NO_TRANSACTIONS)
    return CheckResult("G0", tuple(cycle_anomalies(history, "G0", mask(WW), WW)))


@checker
def g1c(history: History) -> CheckResult:
    """A cycle of ww and wr edges, at least one wr, between committed transactions."""
    if not history.index.txns:
        return CheckResult("G1c", skipped=NO_TRANSACTIONS)
    return CheckResult("G1c", tuple(cycle_anomalies(history, "G1c", mask(WW, WR), WR)))


@checker
def g_single(history: History) -> CheckResult:
    """A cycle of exactly one rw edge and ww and wr edges between committed transactions."""
    if not history.index.txns:
        return CheckResult("G-single", skipped=NO_TRANSACTIONS)
    return CheckResult("G-single", tuple(cycle_anomalies(history, "G-single", ALL, RW, more=mask(WW, WR),
                                                         tries=G_SINGLE_TRIES)))


def wr_cycles(history: History) -> list[Anomaly]:
    """G1b's cycles: wr edges alone, which no run can make unless a read saw uncommitted data."""
    return cycle_anomalies(history, "G1b", mask(WR), WR,
                           why=", of wr edges alone: each transaction polled before it committed, so one of "
                               "these reads saw a record before its transaction committed")
