"""Compile an application (a graph of Pipeline nodes) into a Plan, once.

The Plan is what every worker runs: frozen, plain data, independent of the
number of workers, with its topology worked out at build time. Routing points
are the keyed steps (state computations and windows): everything between two of
them is fused into one call chain on a worker.

What each kind of step does is said once, in ``KINDS``; the rest of the code
asks a step (``step.keyed``, ``step.holds_state``, ...) instead of testing names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Callable, NamedTuple, Optional

from .errors import BuildError

N_SLOTS = 256  # key slots (like Flink's key groups); slot -> worker is a table


class StepKind(str, Enum):
    """The kinds of step a Plan holds (a str, so it pickles and prints plainly)."""

    MAP = "map"
    MULTI = "multi"
    STATE = "state"
    STATE_MULTI = "state_multi"
    WINDOW = "window"
    SINK = "sink"

    def __str__(self) -> str:
        return self.value


class KindInfo(NamedTuple):
    keyed: bool  # routed by key to the worker that owns the key's slot
    holds_state: bool  # one state object per key, made by the step's state class
    multi: bool  # the user function returns a list of outputs
    arity: int  # positional arguments of the user function (0: no user function)
    decorator: str  # what makes a step of this kind (for messages)
    shape: str  # the user function's signature (for messages)


KINDS = {
    StepKind.MAP: KindInfo(False, False, False, 1, "computation", "f(data)"),
    StepKind.MULTI: KindInfo(False, False, True, 1, "computation_multi", "f(data)"),
    StepKind.STATE: KindInfo(True, True, False, 2, "state_computation", "f(data, state)"),
    StepKind.STATE_MULTI: KindInfo(True, True, True, 2, "state_computation_multi",
                                   "f(data, state)"),
    StepKind.WINDOW: KindInfo(True, False, False, 0, "range_windows(...).over(Agg)",
                              "an Aggregation"),
    StepKind.SINK: KindInfo(False, False, False, 0, "to_sink(config)", "a SinkConfig"),
}


@dataclass(frozen=True)
class Step:
    """One step of a Plan, numbered in topological order (children have larger ids):
    a user computation, a window or a sink, with everything a worker needs to run it."""

    id: int
    name: str
    kind: StepKind
    pipeline: str = ""
    children: tuple = ()
    fn: Optional[Callable] = None
    state_cls: Optional[type] = None
    key_fn: Optional[Callable] = None  # None on a keyed step: one partition
    spec: Any = None  # windows.WindowSpec of a window step
    sink: Any = None  # connectors.base.SinkConfig of a sink step

    @property
    def info(self) -> KindInfo:
        return KINDS[self.kind]

    @property
    def keyed(self) -> bool:
        return KINDS[self.kind].keyed

    @property
    def holds_state(self) -> bool:
        return KINDS[self.kind].holds_state

    @property
    def is_window(self) -> bool:
        return self.kind is StepKind.WINDOW

    @property
    def is_sink(self) -> bool:
        return self.kind is StepKind.SINK


@dataclass(frozen=True)
class SourcePlan:
    """One source of a Plan: its config and the steps it feeds."""

    id: int
    name: str  # the source config's name
    pipeline: str
    config: Any  # connectors.base.SourceConfig (None on workers that do not run it)
    children: tuple = ()


@dataclass(frozen=True)
class Topology:
    """How the keyed steps are linked (worked out once, read by the engine)."""

    keyed: tuple  # keyed step ids, in topological order
    source_reach: dict  # source id -> keyed steps its fused chains reach directly
    step_reach: dict  # keyed step id -> keyed steps its fused chains reach directly
    upstream_sources: dict  # keyed step -> sources whose fused chains reach it
    upstream_keyed: dict  # keyed step -> keyed steps whose fused chains reach it
    watermarked: frozenset  # windows, and keyed steps upstream of one


@dataclass(frozen=True)
class Plan:
    """A compiled application: numbered steps and sources plus their topology.

    What ``build_application`` returns and ``run`` ships to the workers, as is.
    """

    name: str
    steps: tuple
    sources: tuple
    topology: Topology
    n_slots: int = N_SLOTS
    has_event_time: bool = False  # some source extracts event time from its messages

    def step_named(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        names = ", ".join(repr(s.name) for s in self.steps if not s.is_sink)
        raise KeyError(f"no step named {name!r}; the steps are: {names}")

    def source_workers(self, n_workers: int) -> dict:
        """Source id -> the workers that run it: every worker for a parallel source
        (``SourceConfig.parallel``: each reads its share), else one, round robin."""
        return {sp.id: tuple(range(n_workers)) if getattr(sp.config, "parallel", False)
                else (sp.id % n_workers,) for sp in self.sources}

    def with_fn(self, name: str, fn: Callable) -> "Plan":
        """This plan with step ``name`` running ``fn`` (a hot reload)."""
        step = self.step_named(name)
        steps = list(self.steps)
        steps[step.id] = replace(step, fn=fn)
        return replace(self, steps=tuple(steps))


def compile_plan(name: str, ends: tuple) -> Plan:
    """Number the steps, wire children, resolve key contexts, work out the topology;
    raise BuildError on an application that cannot run."""
    b = _Builder(name)
    for end in ends:
        b.visit(end)
    b.check()
    steps = tuple(replace(s, children=tuple(b.children[s.id])) for s in b.steps)
    sources = tuple(replace(sp, children=tuple(b.source_children[sp.id])) for sp in b.sources)
    has_et = any(getattr(sp.config, "event_time", None) is not None for sp in sources)
    return Plan(name, steps, sources, _topology(steps, sources), has_event_time=has_et)


_SINGLE = ("single",)  # key context of steps with no key_by (or after collect)
_CONFLICT = ("conflict",)


class _Builder:
    """Walks Pipeline nodes (api.Node, read by attribute) from their sinks upstream."""

    def __init__(self, app_name: str):
        self.app_name = app_name
        self.steps: list[Step] = []
        self.sources: list[SourcePlan] = []
        self.children: dict[int, list] = {}
        self.source_children: dict[int, list] = {}
        self.emitters: dict[int, list] = {}  # id(node) -> [("step"|"source", id)]
        self.keys: dict[int, Any] = {}  # id(node) -> key context
        self.pipes: dict[int, str] = {}
        self.names: dict[str, int] = {}

    def unique(self, name: str) -> str:
        n = self.names.get(name, 0) + 1
        self.names[name] = n
        return name if n == 1 else f"{name} ({n})"

    def add(self, parent: Any, step: Step) -> None:
        self.steps.append(step)
        self.children[step.id] = []
        for kind, i in self.emitters[id(parent)]:
            (self.children if kind == "step" else self.source_children)[i].append(step.id)

    def visit(self, node: Any) -> None:
        if id(node) in self.emitters:
            return
        for p in node.parents:
            self.visit(p)
        getattr(self, "visit_" + node.kind)(node)

    def inherit(self, node: Any, parent: Any, key: Any = None) -> None:
        self.keys[id(node)] = self.keys[id(parent)] if key is None else key
        self.pipes[id(node)] = self.pipes[id(parent)]

    def visit_source(self, node: Any) -> None:
        sid = len(self.sources)
        cfg = node.config
        self.sources.append(SourcePlan(sid, getattr(cfg, "name", node.source_name),
                                       node.source_name, cfg))
        self.source_children[sid] = []
        self.emitters[id(node)] = [("source", sid)]
        self.keys[id(node)] = _SINGLE
        self.pipes[id(node)] = node.source_name

    def visit_key_by(self, node: Any) -> None:
        self.emitters[id(node)] = self.emitters[id(node.parents[0])]
        self.inherit(node, node.parents[0], node.key)

    def visit_collect(self, node: Any) -> None:
        self.emitters[id(node)] = self.emitters[id(node.parents[0])]
        self.inherit(node, node.parents[0], _SINGLE)

    def visit_merge(self, node: Any) -> None:
        a, b = node.parents
        ka, kb = self.keys[id(a)], self.keys[id(b)]
        self.emitters[id(node)] = self.emitters[id(a)] + self.emitters[id(b)]
        self.keys[id(node)] = ka if ka is kb else _CONFLICT
        pa, pb = self.pipes[id(a)], self.pipes[id(b)]
        self.pipes[id(node)] = pa if pa == pb else f"{pa}+{pb}"

    def visit_step(self, node: Any) -> None:
        parent = node.parents[0]
        key = self.keys[id(parent)]
        st = node.step
        sid, pipe = len(self.steps), self.pipes[id(parent)]
        if getattr(st, "is_window_spec", False):
            st.validate()
            step = Step(sid, self.unique(st.name), StepKind.WINDOW, pipe, spec=st)
        else:  # an api.Computation
            step = Step(sid, self.unique(st.name), StepKind(st.kind), pipe, fn=st.fn,
                        state_cls=st.state)
        if step.keyed:
            if key is _CONFLICT:
                raise BuildError(
                    f"step {step.name!r} follows a merge of streams keyed differently; "
                    "add .key_by(extractor) after .merge(...)")
            step = replace(step, key_fn=None if key is _SINGLE else key.fn)
        self.add(parent, step)
        self.emitters[id(node)] = [("step", step.id)]
        self.inherit(node, parent, key)

    def visit_sink(self, node: Any) -> None:
        parent = node.parents[0]
        ids = []
        for cfg in node.config:
            name = self.unique(getattr(cfg, "name", None) or type(cfg).__name__)
            step = Step(len(self.steps), name, StepKind.SINK, self.pipes[id(parent)], sink=cfg)
            self.add(parent, step)
            ids.append(("step", step.id))
        self.emitters[id(node)] = ids
        self.inherit(node, parent)

    def check(self) -> None:
        if not self.sources:
            raise BuildError(f"application {self.app_name!r} has no source")
        for s in self.steps:
            if not s.is_sink and not self.children[s.id]:
                raise BuildError(
                    f"step {s.name!r} leads nowhere: end its pipeline with .to_sink(...)")


def _reach(steps: tuple, children: tuple) -> frozenset:
    """Keyed steps reached from ``children`` through fused (stateless) steps only."""
    found, todo = set(), list(children)
    while todo:
        s = steps[todo.pop()]
        if s.keyed:
            found.add(s.id)
        elif not s.is_sink:
            todo.extend(s.children)
    return frozenset(found)


def _topology(steps: tuple, sources: tuple) -> Topology:
    keyed = tuple(s.id for s in steps if s.keyed)
    source_reach = {sp.id: _reach(steps, sp.children) for sp in sources}
    step_reach = {k: _reach(steps, steps[k].children) for k in keyed}
    up_sources: dict = {k: set() for k in keyed}
    up_keyed: dict = {k: set() for k in keyed}
    for src, reached in source_reach.items():
        for k in reached:
            up_sources[k].add(src)
    for k, reached in step_reach.items():
        for d in reached:
            up_keyed[d].add(k)
    need = {s.id for s in steps if s.is_window}
    for k in reversed(keyed):
        if step_reach[k] & need:
            need.add(k)
    return Topology(keyed, source_reach, step_reach,
                    {k: frozenset(v) for k, v in up_sources.items()},
                    {k: frozenset(v) for k, v in up_keyed.items()}, frozenset(need))


# a Plan is what build_application returns: "Application" is its public name
Application = Plan
__all__ = ["Application", "KINDS", "N_SLOTS", "Plan", "SourcePlan", "Step", "StepKind",
           "Topology", "compile_plan"]
