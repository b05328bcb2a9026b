"""A worker's in-memory world: keyed state, window runners, pending outbound values,
sink buffers, error records and metrics.

The core sets ``ctx`` (ingest time, source, event time) before feeding a chunk
of values through the fused steps, then calls ``seal()``: values parked for
other workers become data groups (see protocol.py), sink buffers become results
for the driver or batches for live sinks (values travel pickled: see codec.py).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from ..errors import ErrorRecord, error_record, from_connector, short_repr
from ..keys import default_owners, slot_cache
from ..metrics import histogram as hg
from ..metrics.recorder import Recorder
from ..plan import Plan, Step
from ..protocol import GROUP_DATA
from .codec import dumps
from .timing import Timer
from .windowing import make_window_runner

MAX_ERRORS_KEPT = 1000  # error records buffered between two takes; all are counted


class Ctx:
    """What the values being fed right now share."""

    __slots__ = ("ts", "src", "et", "arrived", "wm", "sender")

    def __init__(self) -> None:
        self.ts = 0
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
        self.track_event_time = plan.has_event_time
        self.wm_steps = plan.topology.watermarked
        self.track_wm = bool(self.wm_steps)
        self.wm_tables: dict = {}  # step id -> watermarks.Table (set up by the core)
        self.window_emits: dict = {}  # window step id -> the feed of its children
        steps = plan.steps
        self.states: dict = {s.id: {} for s in steps if s.holds_state}
        self.windows: dict = {s.id: make_window_runner(s.spec, with_keys=True)
                              for s in steps if s.is_window}
        self.pending = {s.id: [[] for _ in range(n_workers)] for s in steps if s.keyed}
        self.pending_et = {s.id: [[] for _ in range(n_workers)] for s in steps if s.keyed}
        self.pending_wm = {s.id: [[] for _ in range(n_workers)] for s in steps if s.keyed}
        self.sink_buffers = {s.id: [] for s in steps if s.is_sink}
        self.driver_sinks = {s.id for s in steps if s.is_sink and s.sink.to_driver}
        self.filtered = [0] * len(steps)
        self.error_counts = [0] * len(steps)
        self.errors: list[ErrorRecord] = []
        self.halted = False
        # filled by seal(): per peer, groups waiting to be framed; results to the
        # driver's sinks as (sink step, pickled values, count); batches for live sinks
        self.out_groups: list = [[] for _ in range(n_workers)]
        self.out_results: list = []
        self.out_sinks: list = []
        self.sink_counts = {s.id: 0 for s in steps if s.is_sink}
        # metrics: per-call timings of user functions, pipeline and worker latency
        self.timing = metrics
        self.timers: dict = {}  # step id -> Timer of its user function
        self.recorder = Recorder()
        self.pipe_hists = [self.recorder.histogram("pipeline", sp.pipeline) for sp in plan.sources]
        self.worker_hist = self.recorder.histogram("worker", "ingress-egress")
        self.reported_filtered = [0] * len(steps)
        self.reported_errors = [0] * len(steps)
        self.reported_window: dict = {}

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
        ctx.ts = ctx.arrived = time.time_ns()

    def emit_window_outputs(self, step: Step, outs: Any, wm: float) -> None:
        """Send fired windows downstream; each output carries its window's event time
        and the watermark from *before* the firing, so it is never late downstream."""
        ctx = self.ctx
        if outs:
            emit = self.window_emits[step.id]
            et, before = ctx.et, ctx.wm
            for _key, out, ts in outs:
                if ts is not None:
                    ctx.et = ts
                ctx.wm = wm
                emit(out)
            ctx.et, ctx.wm = et, before
        runner = self.windows[step.id]
        if runner.errors:
            for key, exc in runner.take_errors():
                self.on_error(step, key, "<window output>", exc, where="output")

    # -- end of a chunk ------------------------------------------------------------

    def seal(self) -> None:
        """Move what the last chunk produced out of the hot-path lists."""
        ctx = self.ctx
        shipped = 0
        for sid, per_worker in self.pending.items():
            ets, wms = self.pending_et[sid], self.pending_wm[sid]
            for w, vals in enumerate(per_worker):
                if vals:
                    shipped += len(vals)
                    et, wm = ets[w], wms[w]
                    self.out_groups[w].append(
                        (GROUP_DATA, sid, ctx.src, ctx.ts, et[:] if et else None,
                         wm[:] if wm else None, dumps(vals)))
                    vals.clear()
                    et.clear()
                    wm.clear()
        now = time.time_ns()
        for sid, buf in self.sink_buffers.items():
            if buf:
                n = len(buf)
                shipped += n
                self.sink_counts[sid] += n
                hg.record(self.pipe_hists[ctx.src], now - ctx.ts, n)
                if sid in self.driver_sinks:
                    self.out_results.append((sid, dumps(buf), n))
                else:
                    self.out_sinks.append((sid, buf[:]))
                buf.clear()
        if shipped:
            hg.record(self.worker_hist, now - ctx.arrived, shipped)
