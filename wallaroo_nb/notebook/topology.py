"""The dataflow of an app as a graph to draw: nodes, edges, and where each sits.

Read from the App's plan only (`plan.sources`, `plan.steps` with their `id`,
`name`, `kind`, `pipeline` and `children`). Sources sit in the first column;
every other node one column right of its furthest parent, so edges run left
to right. Each edge says whether it is a routing hop: into a keyed step (state
computation or window) messages go to the worker that owns their key
("key_by"), or, with no key_by, to a single partition ("one partition").
Everything else is fused: a direct call in the same process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KEYED_KINDS = ("state", "state_multi", "window")
KIND_LABELS = {
    "source": "source", "map": "computation", "multi": "computation (multi)",
    "state": "state computation", "state_multi": "state computation (multi)",
    "window": "window", "sink": "sink",
}


@dataclass(frozen=True)
class Node:
    """One box of the picture. `key` is ("source", id) or ("step", id) in the plan."""

    key: tuple
    name: str
    kind: str
    label: str  # the kind in words, e.g. "state computation" or "range window"
    pipeline: str
    column: int
    row: float  # vertical position: 0 in the middle, positive up


@dataclass(frozen=True)
class Edge:
    """An arrow from node `src` to node `dst` (node keys); `hop` says how messages go."""

    src: tuple
    dst: tuple
    hop: str  # "fused", "key_by" or "one partition"


@dataclass(frozen=True)
class Topology:
    nodes: list
    edges: list

    def node(self, key: tuple) -> Node:
        return next(n for n in self.nodes if n.key == key)

    def parents(self, key: tuple) -> list:
        """Keys of the nodes with an edge into `key`."""
        return [e.src for e in self.edges if e.dst == key]

    @property
    def columns(self) -> int:
        return 1 + max((n.column for n in self.nodes), default=0)

    @property
    def rows(self) -> int:
        """Nodes in the fullest column."""
        counts: dict = {}
        for n in self.nodes:
            counts[n.column] = counts.get(n.column, 0) + 1
        return max(counts.values(), default=1)


def kind_of(step: Any) -> str:
    """The step's kind as a plain string ("map", "window", ...)."""
    return str(step.kind)  # plan.StepKind prints as its value


def hop_into(step: Any) -> str:
    """How messages reach `step`: routed by key, to one partition, or by a direct call."""
    if kind_of(step) not in KEYED_KINDS:
        return "fused"
    return "key_by" if getattr(step, "key_fn", None) is not None else "one partition"


def kind_label(step: Any) -> str:
    """The step's kind in words; windows say which kind (range, count, session, event)."""
    kind = kind_of(step)
    if kind == "window":
        spec_kind = getattr(getattr(step, "spec", None), "kind", "")
        return f"{spec_kind} window".strip()
    return KIND_LABELS.get(kind, kind)


def topology(plan: Any) -> Topology:
    """Nodes and edges of `plan`, laid out in columns (see the module docstring)."""
    edges, column, parents = [], {}, {}
    for sp in plan.sources:
        column[("source", sp.id)] = 0
        for child in sp.children:
            parents.setdefault(child, []).append(("source", sp.id))
    for st in plan.steps:  # ids are topological: parents come first
        for child in st.children:
            parents.setdefault(child, []).append(("step", st.id))
    for st in plan.steps:
        ups = parents.get(st.id, [])
        column[("step", st.id)] = 1 + max((column[u] for u in ups), default=0)
        edges.extend(Edge(u, ("step", st.id), hop_into(st)) for u in ups)
    rows = _rows(column, parents)
    nodes = [Node(("source", sp.id), sp.name, "source", "source", sp.pipeline,
                  0, rows[("source", sp.id)]) for sp in plan.sources]
    nodes += [Node(("step", st.id), st.name, kind_of(st), kind_label(st), st.pipeline,
                   column[("step", st.id)], rows[("step", st.id)]) for st in plan.steps]
    return Topology(nodes, edges)


def _rows(column: dict, parents: dict) -> dict:
    """Vertical positions: each column's nodes in the order of their parents' rows
    (fewer crossings), centred on 0, one unit apart."""
    rows: dict = {}
    for c in range(1 + max(column.values(), default=0)):
        keys = [k for k in column if column[k] == c]  # sources, then steps, by id
        if c:
            keys.sort(key=lambda k: _mean([-rows[u] for u in parents.get(k[1], [])]))
        for i, k in enumerate(keys):
            rows[k] = (len(keys) - 1) / 2 - i
    return rows


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else 0.0
