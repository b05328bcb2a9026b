"""The driver's requests a worker answers between two chunks: status, state,
trigger (close event windows), update (hot reload) and flow (for the live views).
Each takes the worker and the request's keyword arguments and returns plain,
picklable data."""

from __future__ import annotations

import math
import pickle
from typing import Any

from .codec import dumps_by_value, plain_state
from .watermarks import NEG_INF


def op_status(w: Any) -> dict:
    rt = w.rt
    return {
        "sources": {r.id: (r.done, r.count) for r in w.sources},
        "sent": list(w.sent),
        "recv": list(w.recv),
        "results_sent": w.results_sent,
        "idle": not (any(w.outbox) or w.driver_out or w.aligner.busy),
        "halted": rt.halted,
        "filtered": {rt.plan.steps[i].name: n for i, n in enumerate(rt.filtered) if n},
        "errors": {rt.plan.steps[i].name: n for i, n in enumerate(rt.error_counts) if n},
        "sink_counts": dict(rt.sink_counts),
        "connectors": {name: conn.stats() for name, conn in w.connectors},
    }


def op_state(w: Any, step: str) -> bytes:
    rt = w.rt
    s = rt.plan.step_named(step)
    if s.kind == "window":
        rows = rt.windows[s.id].state_rows()
    elif s.kind in ("state", "state_multi"):
        rows = [(k, _fields(v)) for k, v in rt.states[s.id].items()]
    else:
        raise ValueError(f"step {step!r} is a {s.kind} step and has no state")
    return dumps_by_value({"kind": s.kind, "rows": rows, "worker": w.me})


def op_trigger(w: Any, step: str, key: Any = None) -> int:
    """Close event windows now (every key, or one): ordered with the data because the
    worker handles it between two chunks."""
    rt = w.rt
    s = rt.plan.step_named(step)
    runner = rt.windows.get(s.id)
    if runner is None:
        raise ValueError(f"step {step!r} is not a window step")
    if key is not None and key not in runner.keys():
        return 0
    ctx = rt.ctx
    rt.stamp_internal(next((sp.id for sp in rt.plan.sources if sp.pipeline == s.pipeline), 0))
    # the outputs carry the step's own watermark (and that as their event time), so a
    # range window downstream neither runs ahead nor finds them late
    table = rt.wm_tables.get(s.id)
    wm = table.current if table is not None else NEG_INF
    ctx.wm = wm
    ctx.et = int(wm) if math.isfinite(wm) else ctx.ts
    outs = runner.on_trigger(key)
    rt.emit_window_outputs(s, outs, wm)
    rt.seal()
    return len(outs)


def op_update(w: Any, step: str, fn: bytes) -> str:
    """Hot reload: swap a step's function between two chunks; state stays as it is."""
    rt = w.rt
    s = rt.plan.step_named(step)
    s.fn = pickle.loads(fn)  # cloudpickle's output loads with plain pickle
    w.wire()
    return s.name


def op_flow(w: Any) -> dict:
    """What the notebook's live views draw, cumulative since start: messages each
    source read and each sink step took, and each window step's watermark (ns)."""
    rt = w.rt
    return {
        "sources": {r.id: r.count for r in w.sources},
        "sinks": dict(rt.sink_counts),
        "watermarks": {sid: runner.watermark for sid, runner in rt.windows.items()},
    }


def _fields(st: Any) -> dict:
    try:
        return dict(plain_state(st))
    except TypeError:
        return {"state": st}


OPS = {"status": op_status, "state": op_state, "trigger": op_trigger, "update": op_update,
       "flow": op_flow}
