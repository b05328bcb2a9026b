"""The engine core: one worker's semantics with no sockets and no threads.

Routing, fused steps, keyed state, windows, watermarks and checkpoint barriers
are driven by plain method calls; what is to be sent where comes back from
``take()``. The worker process (worker.py) is a thin shell around a Core that
moves bytes between sockets and these calls; ``wallaroo_nb.testing`` drives
Cores in the caller's process. One implementation of the semantics for both.

    core.ingest(src, values)      a chunk read from a source this worker runs
    core.end_source(src)          that source is exhausted
    core.receive(sender, groups)  a data-plane frame from a peer
    core.tick(now)                between chunks: watermark markers go out
    core.begin_epoch(e, pos)      a checkpoint barrier enters here
    core.epoch_ready / finish_epoch()   snapshot (snapshots.py), then go on
    core.take() -> Output         what to send: groups per peer, results, sink batches
"""

from __future__ import annotations

import math
import pickle
import time
from typing import Any, Callable, NamedTuple, Optional

from ..errors import ErrorRecord
from ..plan import Plan, SourcePlan
from ..protocol import GROUP_BARRIER, GROUP_DATA, GROUP_WATERMARK, SourcePosition, StateRows
from .codec import state_fields
from .epochs import Aligner
from .runtime import Runtime
from .steps import build, fan_out
from .watermarks import NEG_INF, Table, advance, channels

MARKER_INTERVAL_S = 0.005  # at most this often a source's watermark marker goes out


class SourceState:
    """What the core knows of a source this worker runs (the live Source is the shell's)."""

    __slots__ = ("id", "name", "children", "event_time", "replayable", "done", "count", "wm",
                 "marked", "marked_at", "feed")

    def __init__(self, sp: SourcePlan):
        self.id = sp.id
        self.name = sp.name
        self.children = sp.children
        self.event_time: Optional[Callable[[Any], int]] = sp.config.event_time
        self.replayable: bool = sp.config.replayable
        self.done = False
        self.count = 0
        self.wm = NEG_INF  # largest event time read so far (ingest time without event_time)
        self.marked: dict = {}  # step id -> watermark last marked for it
        self.marked_at = 0.0
        self.feed: Callable[[Any], None] = _no_feed


def _no_feed(v: Any) -> None:
    raise RuntimeError("source fed before Core.wire()")


class Output(NamedTuple):
    """What the core produced since the last ``take()``."""

    groups: list  # per worker: data groups to send there (this worker's entry is empty)
    results: list  # (sink step id, pickled values, count, origin) for the driver's sinks
    sinks: list  # (sink step id, values) for the live sinks on this worker
    errors: list  # ErrorRecords


class Core:
    """One worker's share of an application, driven by plain calls (see the module
    docstring). Owns the Runtime (state and hot-path buffers), the sources' watermark
    bookkeeping and the barrier aligner; the fused feeds are compiled by ``wire()``."""

    def __init__(self, plan: Plan, me: int, n_workers: int, assign: dict, owners: list,
                 on_error: str = "record", metrics: bool = True):
        self.plan = plan
        self.me = me
        self.n = n_workers
        self.rt = rt = Runtime(plan, me, n_workers, on_error, metrics, owners)
        self.assign = assign
        self.sources = {sp.id: SourceState(sp) for sp in plan.sources if me in assign[sp.id]}
        topo = plan.topology
        self.wm_down = {sid: sorted(topo.step_reach[sid] & rt.wm_steps) for sid in rt.wm_steps
                        if topo.step_reach[sid] & rt.wm_steps}
        self.set_channels(assign, n_workers)
        self.aligner = Aligner(plan.topology, me, n_workers)
        self.epoch_positions: dict = {}
        self.remote: list = []
        self.wire()

    def set_channels(self, assign: dict, n_workers: int) -> None:
        """Watermark tables for these sources' workers: what each step heard on channels
        that stay is kept, new channels start at -inf (the step's own watermark never goes
        back); sources mark again from scratch, so every peer hears them."""
        rt, topo = self.rt, self.plan.topology
        self.assign = assign
        if rt.track_wm:
            chans = channels(self.plan, n_workers, assign)
            old = rt.wm_tables
            rt.wm_tables = {sid: Table(chans[sid], old.get(sid)) for sid in rt.wm_steps}
        # local source -> watermark steps it feeds directly
        self.wm_direct = {s: sorted(topo.source_reach[s] & rt.wm_steps) for s in self.sources}
        self.forwarded: dict = {}  # (step, source) -> watermark forwarded downstream
        for st in self.sources.values():
            st.marked = {}

    def resize(self, n_workers: int) -> None:
        """Peers 0 .. n_workers - 1: more before a rescaling barrier (joining workers
        take part), fewer after it (leaving ones are gone)."""
        rt = self.rt
        for per in (rt.pending, rt.pending_et, rt.pending_wm, rt.pending_w):
            for lists in per.values():
                lists.extend([] for _ in range(n_workers - len(lists)))
        rt.out_groups.extend([] for _ in range(n_workers - len(rt.out_groups)))
        self.n = n_workers
        self.aligner.peers = frozenset(range(n_workers)) - {self.me}

    def wire(self) -> None:
        """Compile the steps into fused feeds (at start-up, and again when a hot reload
        swaps a step's function)."""
        entry, self.remote = build(self.rt)
        for st in self.sources.values():
            st.feed = fan_out([entry[c] for c in st.children], self.rt.ctx)

    # -- input ---------------------------------------------------------------------------

    def ingest(self, src: int, vals: list, origin: Optional[int] = None,
               created: Optional[int] = None) -> None:
        """Feed a chunk read from local source ``src``, one value at a time; ``origin``
        (time.time_ns) is when its oldest message came to exist (None: now); ``created``,
        when it was made by an outside clock (the "source" category times from it)."""
        rt, ctx, st = self.rt, self.rt.ctx, self.sources[src]
        st.count += len(vals)
        ctx.src, ctx.sender = src, self.me
        ctx.ts = ctx.arrived = time.time_ns()
        if created is not None:
            rt.recorder.record("source", st.name, ctx.ts - created, len(vals))
        ctx.origin = ctx.ts if origin is None else origin
        ctx.w = 1
        feed, etf = st.feed, st.event_time
        if etf is None:
            ctx.et = ctx.ts
            ctx.wm = st.wm
            for v in vals:
                feed(v)
            st.wm = ctx.ts
        else:
            wm = st.wm
            for v in vals:
                try:
                    et = etf(v)
                    if not isinstance(et, int):
                        raise TypeError(f"event_time must return int nanoseconds, got {et!r}")
                except Exception as e:
                    rt.source_error(st.name, v, e, "event_time")
                    continue
                ctx.et, ctx.wm = et, wm
                feed(v)
                if et > wm:
                    wm = et
            st.wm = wm
        rt.seal()

    def end_source(self, src: int) -> None:
        self.sources[src].done = True

    def receive(self, sender: int, groups: list) -> None:
        """A data-plane frame from ``sender``: data, watermark markers and barriers."""
        aligner = self.aligner
        for g in groups:
            if g[0] == GROUP_BARRIER:
                aligner.on_barrier(sender, g[1], g[2])
            elif aligner.holds(sender, g[1]):  # past the sender's barrier: wait
                aligner.held.append((sender, g))
            else:
                self._dispatch(g, sender)
        if aligner.active:
            self._advance_epoch()

    def _dispatch(self, g: tuple, sender: int) -> None:
        if g[0] == GROUP_DATA:
            self._process_group(g, sender)
        else:
            self._on_marker(g[1], g[2], sender, g[3])

    def _process_group(self, g: tuple, sender: int) -> None:
        rt, ctx = self.rt, self.rt.ctx
        _, sid, src, ts, origin, ets, wms, ws, payload = g
        vals = pickle.loads(payload)
        ctx.src, ctx.ts, ctx.arrived, ctx.sender = src, ts, time.time_ns(), sender
        ctx.origin = origin
        feed = self.remote[sid]
        if ets is None and wms is None and ws is None:
            ctx.et = ts
            ctx.w = 1
            for v in vals:
                feed(v)
        else:
            n = len(vals)
            ets = ets or [ts] * n
            wms = wms or [NEG_INF] * n
            ws = ws or [1] * n
            for v, e, m, w in zip(vals, ets, wms, ws):
                ctx.et, ctx.wm, ctx.w = e, m, w
                feed(v)
        rt.seal()

    # -- watermarks ----------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Between chunks: markers from local sources (``now`` is time.monotonic()),
        then watermarks forwarded along keyed steps."""
        if not self.rt.track_wm or self.aligner.active:
            return
        for st in self.sources.values():
            steps = self.wm_direct.get(st.id)
            if not steps:
                continue
            if st.done:
                wm = math.inf
            elif st.event_time is None:
                wm = time.time_ns()  # every later read is stamped later than now
            else:
                wm = st.wm
            if wm != math.inf and now - st.marked_at < MARKER_INTERVAL_S:
                continue
            st.marked_at = now
            for step in steps:
                if wm > st.marked.get(step, NEG_INF):
                    st.marked[step] = wm
                    self._mark(step, st.id, wm)
        for sid, down in self.wm_down.items():
            for src, wm in self.rt.wm_tables[sid].by_source.items():
                if wm > self.forwarded.get((sid, src), NEG_INF):
                    self.forwarded[(sid, src)] = wm
                    for d in down:
                        self._mark(d, src, wm)

    def _mark(self, step: int, src: int, wm: float) -> None:
        for p in range(self.n):
            if p != self.me:
                self.rt.out_groups[p].append((GROUP_WATERMARK, step, src, wm))
        self._on_marker(step, src, self.me, wm)

    def _on_marker(self, step: int, src: int, channel: int, wm: float) -> None:
        """A watermark heard for ``step`` from ``src`` on ``channel``."""
        rt = self.rt
        table = rt.wm_tables.get(step)
        if table is None:
            return
        before = table.current
        new = table.observe(src, channel, wm)
        runner = rt.windows.get(step)
        if new is not None and runner is not None:
            rt.stamp_internal(src)
            rt.emit_window_outputs(self.plan.steps[step], advance(runner, new), before)
            rt.seal()

    # -- checkpoint barriers ---------------------------------------------------------------

    def begin_epoch(self, epoch: int, positions: dict) -> None:
        """The barrier of ``epoch`` enters here, between two chunks; ``positions``:
        source id -> its replay position now (the shell asks its live sources)."""
        self.epoch_positions = {
            sid: SourcePosition(positions.get(sid), st.done, st.wm)
            for sid, st in self.sources.items()}
        self.aligner.begin(epoch)
        self._advance_epoch()

    def _advance_epoch(self) -> None:
        aligner = self.aligner
        for step in aligner.advance():
            for p in aligner.peers:
                self.rt.out_groups[p].append((GROUP_BARRIER, step, aligner.epoch))

    @property
    def epoch_ready(self) -> bool:
        """Every barrier of the epoch in flight is aligned: snapshot now."""
        return self.aligner.complete

    def finish_epoch(self) -> None:
        """After the snapshot: process what was held back behind the barriers."""
        for sender, g in self.aligner.finish():
            self._dispatch(g, sender)

    def abort_epoch(self, epoch: int) -> None:
        for sender, g in self.aligner.abort(epoch):
            self._dispatch(g, sender)

    # -- output and state --------------------------------------------------------------------

    def take(self) -> Output:
        """What was produced since the last call; the core's buffers start over."""
        rt = self.rt
        out = Output(rt.out_groups, rt.out_results, rt.out_sinks, rt.errors)
        rt.out_groups = [[] for _ in range(self.n)]
        rt.out_results, rt.out_sinks = [], []
        rt.errors = []
        return out

    @property
    def has_output(self) -> bool:
        rt = self.rt
        return bool(rt.out_results or rt.out_sinks or rt.errors or any(rt.out_groups))

    @property
    def pending_errors(self) -> list[ErrorRecord]:
        return self.rt.errors

    def state_rows(self, step: str) -> StateRows:
        """This worker's keyed state of ``step`` (a state step or a window)."""
        s = self.plan.step_named(step)
        if s.is_window:
            rows = self.rt.windows[s.id].state_rows()
        elif s.holds_state:
            rows = [(k, state_fields(v)) for k, v in self.rt.states[s.id].items()]
        else:
            raise ValueError(f"step {step!r} is a {s.kind} step and has no state")
        return StateRows(str(s.kind), rows, self.me)

    def trigger(self, step: str, key: Any = None) -> int:
        """Close event windows of ``step`` now (every key, or one): ordered with the data
        because it is called between two chunks. Returns how many fired."""
        rt = self.rt
        s = self.plan.step_named(step)
        runner = rt.windows.get(s.id)
        if runner is None:
            raise ValueError(f"step {step!r} is not a window step")
        if key is not None and key not in runner.keys():
            return 0
        ctx = rt.ctx
        rt.stamp_internal(next((sp.id for sp in self.plan.sources if sp.pipeline == s.pipeline), 0))
        # the outputs carry the step's own watermark, and as event time their newest
        # message's or that watermark, if later: a range window downstream neither runs
        # ahead nor finds them late
        table = rt.wm_tables.get(s.id)
        wm = table.current if table is not None else NEG_INF
        ctx.wm = wm
        ctx.et = int(wm) if math.isfinite(wm) else ctx.ts
        outs = runner.on_trigger(key)
        rt.emit_window_outputs(s, outs, wm)
        rt.seal()
        return len(outs)

    def update(self, step: str, fn: Callable) -> str:
        """Hot reload: step ``step`` runs ``fn`` from the next value on; state stays."""
        self.plan = self.rt.plan = self.plan.with_fn(step, fn)
        self.wire()
        return step
