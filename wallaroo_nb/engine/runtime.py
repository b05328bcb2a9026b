"""A worker's in-memory world: keyed state, window runners, pending outbound values,
sink buffers, error records and metrics.

The core sets ``ctx`` (ingest time, origin, source, event time) before feeding a
chunk of values through the fused steps, then calls ``seal()``: values parked for
other workers become data groups (see protocol.py), sink buffers become results
for the driver or batches for live sinks (values travel pickled: see codec.py).

Pipeline latency counts every source message once, from its *origin* (when it
came to exist: due, for a paced source; received, for a socket; read, else) to
when it *finished*: reached a sink, was filtered out, raised, or was absorbed by
a window. A message carries weight 1 (``ctx.w``); where one value becomes several
(a multi step's list, a step feeding two children, two sinks), the last of them
carries the weight and the others 0, so the weights that finish add up to the
messages read. Window outputs carry weight 0 and the origin of the newest
message they hold; the ``sink`` category times every output from its origin.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from ..errors import ErrorRecord, error_record, from_connector, short_repr
from ..keys import CACHE_LIMIT, default_owners, slot_cache
from ..metrics import histogram as hg
from ..metrics.recorder import Recorder
from ..plan import Plan, Step
from ..protocol import GROUP_DATA
from .codec import dumps
from .timing import Timer
from .windowing import make_window_runner

MAX_ERRORS_KEPT = 1000  # error records buffered between two takes; all are counted
ORIGIN_BUCKET_NS = 1_000_000  # window outputs whose origins differ by less are sealed together


class Ctx:
    """What the values being fed right now share."""

    __slots__ = ("ts", "src", "et", "arrived", "wm", "sender", "origin", "w")

    def __init__(self) -> None:
        self.ts = 0  # when the chunk was read (the event time of sources without one)
        self.origin = 0  # when its messages came to exist (pipeline latency starts here)
        self.w = 1  # this value's weight: 1 if it finishes its source message, else 0
        self.src = 0
        self.et = 0
        self.arrived = 0
        self.wm = -math.inf  # the source's watermark before this value (see watermarks.py)
        self.sender = 0  # the worker the value came from (this one for local values)


class Runtime:
    """Everything one worker's fused steps read and write on the hot path: per-step
    keyed state and window runners, values parked per peer until ``seal()``, sink
    buffers, error records and counters, and the metrics recorder.

    It knows nothing of sockets: ``seal()`` leaves what is to be sent in
    ``out_groups`` (per peer), ``out_results`` (driver sinks) and ``out_sinks``
    (live sinks on this worker), and the caller takes them from there.
    """

    def __init__(self, plan: Plan, me: int, n_workers: int, on_error: str = "record",
                 metrics: bool = True, owners: list | None = None):
        self.plan = plan
        self.me = me
        self.error_mode = on_error
        self.ctx = Ctx()
        self.owners = owners if owners is not None else default_owners(plan.n_slots, n_workers)
        self.slot_cache, self.slot_miss = slot_cache(plan.n_slots)
        self.route: dict = {}  # key -> worker owning its slot; cleared with the table
        self.fused = True  # generated chunk loops where the plan allows (see fused.py)
        self.track_event_time = plan.has_event_time
        self.wm_steps = plan.topology.watermarked
        self.track_wm = bool(self.wm_steps)
        self.wm_tables: dict = {}  # step id -> watermarks.Table (set up by the core)
        self.window_emits: dict = {}  # window step id -> the feed of its children
        steps = plan.steps
        self.states: dict = {s.id: {} for s in steps if s.holds_state}
        self.windows: dict = {s.id: make_window_runner(s.spec, with_keys=True, with_origin=True)
                              for s in steps if s.is_window}
        self.pending = {s.id: [[] for _ in range(n_workers)] for s in steps if s.keyed}
        self.pending_et = {s.id: [[] for _ in range(n_workers)] for s in steps if s.keyed}
        self.pending_wm = {s.id: [[] for _ in range(n_workers)] for s in steps if s.keyed}
        # values may weigh 0 (see the module docstring): then weights travel per value
        self.weighted = _splits(plan)
        self.pending_w = {s.id: [[] for _ in range(n_workers)] for s in steps if s.keyed}
        self.sink_w = {s.id: [0] for s in steps if s.is_sink}  # weights in each sink buffer
        self.done = [0]  # weight finished in this chunk other than at sinks
        self.sink_buffers = {s.id: [] for s in steps if s.is_sink}
        self.driver_sinks = {s.id for s in steps if s.is_sink and s.sink.to_driver}
        self.filtered = [0] * len(steps)
        self.error_counts = [0] * len(steps)
        self.errors: list[ErrorRecord] = []
        self.halted = False
        # filled by seal(): per peer, groups waiting to be framed; results to the
        # driver's sinks as (sink step, pickled values, count, origin); live sinks' batches
        self.out_groups: list = [[] for _ in range(n_workers)]
        self.out_results: list = []
        self.out_sinks: list = []
        self.sink_counts = {s.id: 0 for s in steps if s.is_sink}
        # metrics: per-call timings of user functions, pipeline and worker latency
        self.timing = metrics
        self.timers: dict = {}  # step id -> Timer of its user function
        self.recorder = Recorder()
        self.pipe_hists = [self.recorder.histogram("pipeline", sp.pipeline) for sp in plan.sources]
        self.sink_hists = {s.id: self.recorder.histogram("sink", s.name) for s in steps
                           if s.is_sink}
        self.worker_hist = self.recorder.histogram("worker", "ingress-egress")
        self.reported_filtered = [0] * len(steps)
        self.reported_errors = [0] * len(steps)
        self.reported_window: dict = {}

    def set_owners(self, owners: list) -> None:
        """A new slot table, in place (the fused feeds hold this list); keys route anew."""
        self.owners[:] = owners
        self.route.clear()

    def route_miss(self, key: Any) -> int:
        """The worker of a key not in ``route`` yet (then it is): by the stable hash's
        slot and the slot table; TypeError names a key that cannot be a key."""
        route = self.route
        if len(route) >= CACHE_LIMIT:
            route.clear()
        w = route[key] = self.owners[self.slot_miss(key)]
        return w

    def step_timer(self, step_id: int, fn: Callable) -> Timer:
        """``fn`` timed per call; one Timer per step, so a hot reload (a new ``fn``)
        keeps the durations noted before it."""
        timer = self.timers.get(step_id)
        if timer is None:
            timer = self.timers[step_id] = Timer(fn)
        else:
            timer.fn = fn
        return timer

    def metrics_delta(self) -> dict:
        """Everything measured since the last call, in the Recorder's wire format."""
        rec = self.recorder
        for sid, timer in self.timers.items():
            if timer.pending:
                hg.add_wire(rec.histogram("computation", self.plan.steps[sid].name), timer.take())
        for i, step in enumerate(self.plan.steps):
            for now, seen, event in ((self.filtered, self.reported_filtered, "filtered"),
                                     (self.error_counts, self.reported_errors, "errors")):
                if now[i] != seen[i]:
                    rec.count("computation", step.name, event, now[i] - seen[i])
                    seen[i] = now[i]
        for sid, runner in self.windows.items():
            seen = self.reported_window.setdefault(sid, {})
            for event in ("late", "dropped"):
                n = getattr(runner, event, 0)
                if n != seen.get(event, 0):
                    rec.count("computation", self.plan.steps[sid].name, event, n - seen.get(event, 0))
                    seen[event] = n
        return rec.take_delta()

    # -- errors ------------------------------------------------------------------

    def on_error(self, step: Step, key: Any, value: Any, exc: BaseException,
                 where: str = "computation") -> None:
        """Record a failed event and go on (or halt, with on_error='stop')."""
        self.error_counts[step.id] += 1
        self.done[0] += self.ctx.w  # the message finished, with an error
        self._keep(error_record(step.name, where, exc, value=value, worker=self.me,
                                key=short_repr(key, 300)))

    def source_error(self, name: str, value: Any, exc: BaseException, where: str) -> None:
        """An error outside any step (a source, its decoder, its event_time)."""
        self._keep(error_record(name, where, exc, value=value, worker=self.me))

    def connector_error(self, name: str, record: Any) -> None:
        """An error a source or sink logged itself (see Source.drain_errors)."""
        self._keep(from_connector(name, record, self.me))

    def _keep(self, record: ErrorRecord) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:  # all are counted; this many are kept
            self.errors.append(record)
        if self.error_mode == "stop":
            self.halted = True

    def stamp_internal(self, src: int) -> None:
        """Set the context for values the engine itself emits (fired windows): they
        enter the pipeline now, on this worker, on behalf of source ``src``."""
        ctx = self.ctx
        ctx.src, ctx.sender = src, self.me
        ctx.ts = ctx.arrived = ctx.origin = time.time_ns()
        ctx.w = 0

    def emit_window_outputs(self, step: Step, outs: Any, wm: float) -> None:
        """Send fired windows downstream with weight 0. Each output carries as event time
        its window's (or the watermark from *before* the firing, if that is later: so it
        is never late downstream), and the origin of its newest message: outputs are
        sealed apart from the chunk's values where their origins differ."""
        ctx = self.ctx
        if outs:
            emit = self.window_emits[step.id]
            saved = (ctx.et, ctx.wm, ctx.w, ctx.origin)
            now = time.time_ns()
            if len(outs) > 1:
                outs = sorted(outs, key=lambda o: now if o[3] is None else o[3])
            bucket = ctx.origin // ORIGIN_BUCKET_NS
            moved = False
            for _key, out, ts, origin in outs:
                origin = now if origin is None else origin
                if origin // ORIGIN_BUCKET_NS != bucket:
                    self.seal()  # what came before goes with its own origin
                    bucket, ctx.origin, moved = origin // ORIGIN_BUCKET_NS, origin, True
                ctx.et = saved[0] if ts is None else (
                    ts if ts >= wm or not math.isfinite(wm) else int(wm))
                ctx.wm = wm
                ctx.w = 0
                emit(out)
            if moved:
                self.seal()
            ctx.et, ctx.wm, ctx.w, ctx.origin = saved
        runner = self.windows[step.id]
        if runner.errors:
            for key, exc in runner.take_errors():
                self.on_error(step, key, "<window output>", exc, where="output")

    # -- end of a chunk ------------------------------------------------------------

    def seal(self) -> None:
        """Move what the last chunk produced out of the hot-path lists; record the
        latency of what finished in it."""
        ctx = self.ctx
        shipped = 0
        for sid, per_worker in self.pending.items():
            ets, wms, ws = self.pending_et[sid], self.pending_wm[sid], self.pending_w[sid]
            for w, vals in enumerate(per_worker):
                if vals:
                    shipped += len(vals)
                    et, wm, wt = ets[w], wms[w], ws[w]
                    self.out_groups[w].append(
                        (GROUP_DATA, sid, ctx.src, ctx.ts, ctx.origin, et[:] if et else None,
                         wm[:] if wm else None, wt[:] if wt else None, dumps(vals)))
                    vals.clear()
                    et.clear()
                    wm.clear()
                    wt.clear()
        now = time.time_ns()
        latency = now - ctx.origin
        finished = self.done[0]
        for sid, buf in self.sink_buffers.items():
            if buf:
                n = len(buf)
                shipped += n
                self.sink_counts[sid] += n
                hg.record(self.sink_hists[sid], latency, n)
                if self.weighted:
                    cell = self.sink_w[sid]
                    finished += cell[0]
                    cell[0] = 0
                else:
                    finished += n
                if sid in self.driver_sinks:
                    self.out_results.append((sid, dumps(buf), n, ctx.origin))
                else:
                    self.out_sinks.append((sid, buf[:]))
                buf.clear()
        if finished:
            hg.record(self.pipe_hists[ctx.src], latency, finished)
            self.done[0] = 0
        if shipped:
            hg.record(self.worker_hist, now - ctx.arrived, shipped)


def _splits(plan: Plan) -> bool:
    """Can a value weigh 0 in this plan: a multi step, a window, or a fan-out?"""
    return (any(s.info.multi or s.is_window or len(s.children) > 1 for s in plan.steps)
            or any(len(sp.children) > 1 for sp in plan.sources))
