"""The dependency graph of committed transactions, its strongly connected components, and one
explained cycle per component, Elle-style (for G0, G1c, G-single, and G1b's wr cycles).

Theory of operation. Nodes are the committed transactions (specs.transactions explains the
edges and which cycles Kafka allows). Version order is each partition's log order, restricted
to records of committed transactions whose offset is known:

- **ww** a -> b: a's record immediately precedes b's in a partition (later records are reached
  through the chain, so one edge per adjacent pair is enough: Elle does the same);
- **wr** a -> b: b, a read_committed transaction, polled a record a wrote;
- **rw** a -> b: a, a read_committed transaction, polled a partition up to offset o (its highest
  read there) and b wrote the next record after o. This is certain as a fact of the log: a did
  not observe b's write. It is drawn only from a's highest read of each partition, since a did
  observe everything else it read (Jepsen's Kafka checker does the same); what it cannot say is
  that a *could* have seen b's write, which is why Kafka allows the G-single it makes.

Edges are kept as one list per node of `target << 2 | kind`, so every variant of the graph (ww
only, ww and wr, ...) is the same lists read through a mask of kinds. Components are found with
Tarjan's algorithm, iterative (a million operations make recursion impossible), first over every
edge, then each variant only inside the components found (a variant's components lie within
them). A cycle is found by a breadth-first search back from an edge's target to its source
inside one component, so it is a shortest one through that edge; each edge is explained on
demand from the transactions.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence

from harness.checkers._common import tp_name
from harness.checkers.txn_view import Txn, TxnView
from specs.transactions import Dependency

WW, WR, RW = 0, 1, 2
KINDS = (Dependency.WW, Dependency.WR, Dependency.RW)
ALL = 0b111


def mask(*kinds: int) -> int:
    return sum(1 << k for k in kinds)


class DependencyGraph:
    """The graph of the committed transactions of `view` (module docstring)."""

    def __init__(self, view: TxnView) -> None:
        self.nodes: list[Txn] = view.committed()
        node_of = {t.id: n for n, t in enumerate(self.nodes)}
        self.node_of = node_of
        edges: list[set[int]] = [set() for _ in self.nodes]
        # partition -> (offsets, node of each record), in log order
        by_tp: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for n, t in enumerate(self.nodes):
            for _val, topic, partition, offset in t.writes:
                if offset is not None and partition is not None:
                    by_tp.setdefault((topic, partition), []).append((offset, n))
        self.log: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
        for tp, recs in by_tp.items():
            recs.sort()
            offsets, writers = [o for o, _n in recs], [n for _o, n in recs]
            self.log[tp] = (offsets, writers)
            for a, b in zip(writers, writers[1:]):
                if a != b:
                    edges[a].add(b << 2 | WW)
        for n, t in enumerate(self.nodes):
            if not t.read_committed or not t.polls:
                continue
            highest: dict[tuple[str, int], int] = {}
            for records in t.polls:
                for topic, partition, offset, _k, val in records:
                    w = view.writer.get(val)
                    if w is not None and w is not t:
                        src = node_of.get(w.id)
                        if src is not None:
                            edges[src].add(n << 2 | WR)
                    tp = (topic, partition)
                    if offset > highest.get(tp, -1):
                        highest[tp] = offset
            for tp, offset in highest.items():
                nxt = self._next_writer(tp, offset)
                if nxt is not None and nxt != n:
                    edges[n].add(nxt << 2 | RW)
        self.edges: list[list[int]] = [sorted(e) for e in edges]
        self.view = view

    def _next_writer(self, tp: tuple[str, int], offset: int) -> int | None:
        """The node that wrote the first committed record after `offset` in `tp`."""
        log = self.log.get(tp)
        if log is None:
            return None
        i = bisect_right(log[0], offset)
        return log[1][i] if i < len(log[0]) else None

    def components(self, kinds: int, within: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
        """The strongly connected components of more than one node, over the edges of `kinds`;
        with `within`, only inside each of those node sets (which must hold every component)."""
        n = len(self.nodes)
        label = [-1] * n
        groups: Iterable[Sequence[int]] = within if within is not None else [range(n)]
        if within is None:
            label = [0] * n
        else:
            for i, group in enumerate(within):
                for v in group:
                    label[v] = i
        return _tarjan(self.edges, kinds, label, [v for group in groups for v in group])

    def cycle(self, component: Sequence[int], first: int, kinds: int,
              tries: int | None = None) -> list[tuple[int, int]] | None:
        """A shortest cycle that starts with an edge of kind `first` and goes on over edges of
        `kinds`, inside `component`: [(node, kind of the edge leaving it)], or None. With
        `tries`, at most that many edges of kind `first` are tried (each try is a search)."""
        members = set(component)
        for u in component:
            for e in self.edges[u]:
                if e & 3 != first or e >> 2 not in members:
                    continue
                if tries is not None:
                    if tries <= 0:
                        return None
                    tries -= 1
                path = self._path(e >> 2, u, kinds, members)
                if path is not None:
                    return [(u, first), *path]
        return None

    def _path(self, start: int, goal: int, kinds: int, members: set[int]) -> list[tuple[int, int]] | None:
        """A shortest path from `start` to `goal` over `kinds` inside `members`: [(node, kind)] for
        each edge taken, ending at `goal`'s predecessor."""
        parent: dict[int, tuple[int, int]] = {start: (-1, -1)}
        frontier = [start]
        edges = self.edges
        while frontier:
            nxt: list[int] = []
            for v in frontier:
                for e in edges[v]:
                    if not (kinds >> (e & 3)) & 1:
                        continue
                    w = e >> 2
                    if w in parent or w not in members:
                        continue
                    parent[w] = (v, e & 3)
                    if w == goal:
                        path: list[tuple[int, int]] = []
                        while w != start:
                            v2, kind = parent[w]
                            path.append((v2, kind))
                            w = v2
                        return path[::-1]
                    nxt.append(w)
            frontier = nxt
        return None

    def explain(self, cycle: list[tuple[int, int]]) -> tuple[str, tuple[int, ...]]:
        """A cycle in words, each edge with the records that make it, and its events."""
        steps = []
        events: list[int] = []
        for i, (a, kind) in enumerate(cycle):
            b = cycle[(i + 1) % len(cycle)][0]
            steps.append(f"{self._name(a)} -{KINDS[kind].value}-> {self._name(b)} ({self._why(a, b, kind)})")
            events.extend(self.nodes[a].events)
        return "; ".join(steps), tuple(events)

    def kinds_of(self, cycle: list[tuple[int, int]]) -> list[Dependency]:
        return [KINDS[kind] for _n, kind in cycle]

    def _name(self, node: int) -> str:
        t = self.nodes[node]
        return f"T{t.id} ({t.process})"

    def _why(self, a: int, b: int, kind: int) -> str:
        ta, tb = self.nodes[a], self.nodes[b]
        if kind == WR:
            for records in tb.polls:
                for topic, partition, offset, _k, val in records:
                    if self.view.writer.get(val) is ta:
                        return f"T{tb.id} polled T{ta.id}'s {val!r} at {tp_name(topic, partition)}@{offset}"
        elif kind == WW:
            for val, topic, partition, offset in ta.writes:
                if offset is None or partition is None:
                    continue
                nxt = self._next_record((topic, partition), offset)
                if nxt is not None and nxt[1] == b:
                    return (f"T{ta.id}'s {val!r} at {tp_name(topic, partition)}@{offset} precedes "
                            f"T{tb.id}'s record at offset {nxt[0]}")
        else:
            highest: dict[tuple[str, int], int] = {}
            for records in ta.polls:
                for topic, partition, offset, _k, _v in records:
                    highest[(topic, partition)] = max(offset, highest.get((topic, partition), -1))
            for (topic, partition), offset in highest.items():
                nxt = self._next_record((topic, partition), offset)
                if nxt is not None and nxt[1] == b:
                    return (f"T{ta.id} read {tp_name(topic, partition)} up to offset {offset}, not T{tb.id}'s "
                            f"record at offset {nxt[0]}")
        return "?"  # unreachable: every edge was drawn from one of these facts

    def _next_record(self, tp: tuple[str, int], offset: int) -> tuple[int, int] | None:
        log = self.log.get(tp)
        if log is None:
            return None
        i = bisect_right(log[0], offset)
        return (log[0][i], log[1][i]) if i < len(log[0]) else None


def _tarjan(edges: list[list[int]], kinds: int, label: list[int], roots: Iterable[int]) -> list[list[int]]:
    """Tarjan's strongly connected components, iterative, over the edges of `kinds` between
    nodes of one label (-1: not in the graph); only components of more than one node."""
    n = len(edges)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in roots:
        if index[root] != -1 or label[root] < 0:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work_node = [root]
        work_pos = [0]
        while work_node:
            v = work_node[-1]
            out_edges = edges[v]
            i = work_pos[-1]
            advanced = False
            while i < len(out_edges):
                e = out_edges[i]
                i += 1
                if not (kinds >> (e & 3)) & 1:
                    continue
                w = e >> 2
                if label[w] != label[v]:
                    continue
                if index[w] == -1:
                    work_pos[-1] = i
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work_node.append(w)
                    work_pos.append(0)
                    advanced = True
                    break
                if on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
            if advanced:
                continue
            work_node.pop()
            work_pos.pop()
            if work_node:
                u = work_node[-1]
                if low[v] < low[u]:
                    low[u] = low[v]
            if low[v] == index[v]:
                w = stack.pop()
                on_stack[w] = False
                if w == v:
                    continue  # a single node: no cycle (no transaction depends on itself)
                component = [w]
                while w != v:
                    w = stack.pop()
                    on_stack[w] = False
                    component.append(w)
                out.append(component)
    return out
