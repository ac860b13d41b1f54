"""G0, G1c and G-single: dependency cycles between committed transactions, one explained cycle
per strongly connected component; and the graph machinery on large inputs."""

from __future__ import annotations

from typing import Any

from harness.checkers import check, g0, g1c, g_single
from harness.checkers.cycles import ALL, WR, WW, _tarjan, mask
from harness.checkers.dependencies import dependency_graph
from harness.checkers.judgement import judge
from harness.checkers.result import Anomaly, CheckResult
from harness.history import HistoryBuilder
from specs.claims import Configuration, claims_for

RC = "read_committed"


def send(partition: int, value: str, offset: int) -> list[Any]:
    return ["send", "t", partition, None, value, offset]


def poll(*records: tuple[int, int, str]) -> list[Any]:
    return ["poll", [["t", p, o, None, v] for p, o, v in records]]


def _one(result: CheckResult) -> Anomaly:
    """The only anomaly of `result`."""
    assert result.count == 1, result.anomalies
    return result.anomalies[0]


def _interleaved(crossed: bool) -> tuple[HistoryBuilder, int, int]:
    """T1 and T2 each write t-0 and t-1; crossed: in opposite orders (T1 first in t-0, T2 in t-1)."""
    b = HistoryBuilder()
    t1 = b.txn("tp1", [send(0, "a0", 0), send(1, "a1", 1 if crossed else 0)])
    t2 = b.txn("tp2", [send(0, "b0", 1), send(1, "b1", 0 if crossed else 1)])
    return b, t1, t2


def test_transactions_whose_writes_interleave_both_ways_make_a_write_cycle() -> None:
    b, t1, t2 = _interleaved(crossed=True)
    h = b.history()
    a = _one(g0(h))
    assert a.events == (t1, t1 + 1, t2, t2 + 1)
    for part in ("G0 cycle of 2 committed transactions (component of 2)",
                 f"T{t1} (tp1) -ww-> T{t2} (tp2) (T{t1}'s 'a0' at t-0@0 precedes T{t2}'s record at offset 1)",
                 f"T{t2} (tp2) -ww-> T{t1} (tp1) (T{t2}'s 'b1' at t-1@0 precedes T{t1}'s record at offset 1)"):
        assert part in a.explanation
    assert g1c(h).valid and g_single(h).valid


def test_kafka_allows_write_cycles_so_they_are_hazards_not_violations() -> None:
    b, _t1, _t2 = _interleaved(crossed=True)
    verdict = judge(check(b.history()), claims_for(Configuration(transactions=True)))
    assert verdict.hazards["G0"] == 1 and "G0" not in verdict.violations and verdict.outcome == "held"


def test_transactions_writing_in_one_order_everywhere_make_no_cycle() -> None:
    b, _t1, _t2 = _interleaved(crossed=False)
    h = b.history()
    assert g0(h).valid and g1c(h).valid and g_single(h).valid


def test_a_cycle_through_a_read_and_a_write_order_is_g1c() -> None:
    """T1's record precedes T2's in t-0 (ww), and T1 polled T2's record in t-1 (wr)."""
    b = HistoryBuilder()
    t1 = b.begin_txn("ctp1", [send(0, "a", 0), poll((1, 0, "b"))], isolation_level=RC)
    t2 = b.txn("tp2", [send(0, "c", 1), send(1, "b", 0)])
    d1 = b.end_txn(t1, [send(0, "a", 0), poll((1, 0, "b"))])
    h = b.history()
    a = _one(g1c(h))
    assert a.events == (t1, t2, t2 + 1, d1)
    assert f"T{t2} (tp2) -wr-> T{t1} (ctp1) (T{t1} polled T{t2}'s 'b' at t-1@0)" in a.explanation
    assert f"-ww-> T{t2}" in a.explanation
    assert g0(h).valid


def _skewed(reads_all: bool) -> tuple[HistoryBuilder, int, int]:
    """T1 polls t-1 up to offset 0 (or 1) and T2's record in t-2; T2 wrote t-1@1 and t-2@0."""
    b = HistoryBuilder()
    b.send("p0", "t", "p", partition=1, offset=0)
    t2 = b.txn("tp2", [send(1, "y", 1), send(2, "x", 0)])
    read = [(1, 0, "p"), (1, 1, "y")] if reads_all else [(1, 0, "p")]
    t1 = b.txn("ctp1", [poll(*read, (2, 0, "x"))], isolation_level=RC)
    return b, t1, t2


def test_a_transaction_that_saw_part_of_another_and_stopped_short_of_the_rest_is_g_single() -> None:
    b, t1, t2 = _skewed(reads_all=False)
    h = b.history()
    a = _one(g_single(h))
    assert a.events == (t2, t2 + 1, t1, t1 + 1)
    assert f"T{t1} (ctp1) -rw-> T{t2} (tp2) (T{t1} read t-1 up to offset 0, not T{t2}'s record at offset 1)" \
        in a.explanation
    assert f"T{t2} (tp2) -wr-> T{t1} (ctp1)" in a.explanation
    assert g1c(h).valid  # without the rw edge there is no cycle


def test_reading_every_record_makes_no_anti_dependency() -> None:
    b, _t1, _t2 = _skewed(reads_all=True)
    assert g_single(b.history()).valid


def test_each_component_gets_one_cycle() -> None:
    """Two separate pairs of crossed transactions: two components, two anomalies."""
    b = HistoryBuilder()
    for k in (0, 2):
        b.txn(f"tp{k}", [send(k, f"a{k}", 0), send(k + 1, f"a{k + 1}", 1)])
        b.txn(f"tp{k + 1}", [send(k, f"b{k}", 1), send(k + 1, f"b{k + 1}", 0)])
    result = g0(b.history())
    assert result.count == 2
    graph = dependency_graph(b.history())
    assert sorted(len(c) for c in graph.components(mask(WW))) == [2, 2]


def test_tarjan_is_iterative_and_linear_on_a_long_cycle() -> None:
    """A ring of 200,000 nodes (recursion would overflow) is one component; a chain is none."""
    n = 200_000
    ring = [[((i + 1) % n) << 2 | WW] for i in range(n)]
    assert [len(c) for c in _tarjan(ring, ALL, [0] * n, range(n))] == [n]
    chain = [[(i + 1) << 2 | WW] if i + 1 < n else [] for i in range(n)]
    assert _tarjan(chain, ALL, [0] * n, range(n)) == []
    assert _tarjan(ring, mask(WR), [0] * n, range(n)) == []  # the mask hides every ww edge


def test_without_transactions_the_cycle_checks_skip() -> None:
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    for result in (g0(b.history()), g1c(b.history()), g_single(b.history())):
        assert result.skipped is not None and "no transaction" in result.skipped
