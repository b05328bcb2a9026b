"""Turn an Application (a graph of Pipeline nodes) into a Plan: numbered steps.

The Plan is what the workers run: plain data, independent of the number of
workers. Routing points are the keyed steps (state computations and windows):
everything between two of them is fused into one call chain on a worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .api import Application, BuildError, Computation, Node

N_SLOTS = 256  # key slots (like Flink's key groups); slot -> worker is a table

KEYED_KINDS = ("state", "state_multi", "window")
_SINGLE = ("single",)  # key context of steps with no key_by (or after collect)
_CONFLICT = ("conflict",)


@dataclass
class Step:
    id: int
    name: str
    kind: str  # map, multi, state, state_multi, window, sink
    fn: Optional[Callable] = None
    state_cls: Optional[type] = None
    key_fn: Optional[Callable] = None  # None on a keyed step: one partition
    spec: Any = None  # window spec
    sink: Any = None  # SinkConfig
    pipeline: str = ""
    children: list = field(default_factory=list)

    @property
    def keyed(self) -> bool:
        return self.kind in KEYED_KINDS


@dataclass
class SourcePlan:
    id: int
    name: str  # the source config's name
    pipeline: str
    config: Any
    children: list = field(default_factory=list)


@dataclass
class Plan:
    name: str
    steps: list
    sources: list
    n_slots: int = N_SLOTS
    has_event_time: bool = False  # some source extracts event time from its messages

    def step_named(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        names = ", ".join(repr(s.name) for s in self.steps if s.kind != "sink")
        raise KeyError(f"no step named {name!r}; the steps are: {names}")


def make_plan(app: Application) -> Plan:
    """Number the steps, wire children, resolve key contexts; raise BuildError on nonsense."""
    b = _Builder(app.name)
    for end in app.ends:
        b.visit(end)
    b.check()
    has_et = any(getattr(s.config, "event_time", None) is not None for s in b.sources)
    return Plan(app.name, b.steps, b.sources, has_event_time=has_et)


class _Builder:
    def __init__(self, app_name: str):
        self.app_name = app_name
        self.steps: list[Step] = []
        self.sources: list[SourcePlan] = []
        self.emitters: dict[int, list] = {}  # id(node) -> [("step"|"source", id)]
        self.keys: dict[int, Any] = {}  # id(node) -> key context
        self.pipes: dict[int, str] = {}
        self.names: dict[str, int] = {}

    def unique(self, name: str) -> str:
        n = self.names.get(name, 0) + 1
        self.names[name] = n
        return name if n == 1 else f"{name} ({n})"

    def link(self, parent: Node, step_id: int) -> None:
        for kind, i in self.emitters[id(parent)]:
            (self.steps[i] if kind == "step" else self.sources[i]).children.append(step_id)

    def visit(self, node: Node) -> None:
        if id(node) in self.emitters:
            return
        for p in node.parents:
            self.visit(p)
        getattr(self, "visit_" + node.kind)(node)

    def visit_source(self, node: Node) -> None:
        sid = len(self.sources)
        cfg = node.config
        self.sources.append(SourcePlan(sid, getattr(cfg, "name", node.source_name), node.source_name, cfg))
        self.emitters[id(node)] = [("source", sid)]
        self.keys[id(node)] = _SINGLE
        self.pipes[id(node)] = node.source_name

    def _pass_through(self, node: Node, key: Any) -> None:
        parent = node.parents[0]
        self.emitters[id(node)] = self.emitters[id(parent)]
        self.keys[id(node)] = key
        self.pipes[id(node)] = self.pipes[id(parent)]

    def visit_key_by(self, node: Node) -> None:
        self._pass_through(node, node.key)

    def visit_collect(self, node: Node) -> None:
        self._pass_through(node, _SINGLE)

    def visit_merge(self, node: Node) -> None:
        a, b = node.parents
        ka, kb = self.keys[id(a)], self.keys[id(b)]
        self.emitters[id(node)] = self.emitters[id(a)] + self.emitters[id(b)]
        self.keys[id(node)] = ka if ka is kb else _CONFLICT
        pa, pb = self.pipes[id(a)], self.pipes[id(b)]
        self.pipes[id(node)] = pa if pa == pb else f"{pa}+{pb}"

    def visit_step(self, node: Node) -> None:
        parent = node.parents[0]
        key = self.keys[id(parent)]
        st = node.step
        if isinstance(st, Computation):
            step = Step(len(self.steps), self.unique(st.name), st.kind, st.fn, st.state)
        else:  # a window spec (wallaroo_nb.windows)
            st.validate()
            step = Step(len(self.steps), self.unique(st.name), "window", spec=st)
        if step.keyed:
            if key is _CONFLICT:
                raise BuildError(
                    f"step {step.name!r} follows a merge of streams keyed differently; "
                    "add .key_by(extractor) after .merge(...)"
                )
            step.key_fn = None if key is _SINGLE else key.fn
        step.pipeline = self.pipes[id(parent)]
        self.steps.append(step)
        self.link(parent, step.id)
        self.emitters[id(node)] = [("step", step.id)]
        self.keys[id(node)] = key
        self.pipes[id(node)] = step.pipeline

    def visit_sink(self, node: Node) -> None:
        parent = node.parents[0]
        ids = []
        for cfg in node.config:
            name = self.unique(getattr(cfg, "name", None) or type(cfg).__name__)
            step = Step(len(self.steps), name, "sink", sink=cfg, pipeline=self.pipes[id(parent)])
            self.steps.append(step)
            self.link(parent, step.id)
            ids.append(("step", step.id))
        self.emitters[id(node)] = ids
        self.keys[id(node)] = self.keys[id(parent)]
        self.pipes[id(node)] = self.pipes[id(parent)]

    def check(self) -> None:
        if not self.sources:
            raise BuildError(f"application {self.app_name!r} has no source")
        for s in self.steps:
            if s.kind != "sink" and not s.children:
                raise BuildError(
                    f"step {s.name!r} leads nowhere: end its pipeline with .to_sink(...)"
                )


def keyed_order(plan: Plan) -> list:
    """Keyed step ids in topological order (ids are topological already)."""
    return [s.id for s in plan.steps if s.keyed]


def reached_keyed(plan: Plan, children: list) -> set:
    """Keyed steps reached from ``children`` through fused (stateless) steps only."""
    found, todo = set(), list(children)
    while todo:
        s = plan.steps[todo.pop()]
        if s.keyed:
            found.add(s.id)
        elif s.kind != "sink":
            todo.extend(s.children)
    return found


def upstreams(plan: Plan) -> dict:
    """For each keyed step: (source ids, keyed step ids) whose fused chains feed it."""
    ups = {sid: (set(), set()) for sid in keyed_order(plan)}
    for sp in plan.sources:
        for k in reached_keyed(plan, sp.children):
            ups[k][0].add(sp.id)
    for sid in keyed_order(plan):
        for k in reached_keyed(plan, plan.steps[sid].children):
            ups[k][1].add(sid)
    return ups
