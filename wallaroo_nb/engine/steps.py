"""Compile a Plan's steps into fused call chains for one worker.

Each step becomes a closure ``feed(value)`` that calls its children's feeds
directly: stateless steps between routing points cost one Python call each, no
queue and no serialization. A keyed step's entry closure hashes the key to a
slot; if another worker owns the slot the value is parked in that worker's
pending list, which the runtime ships at the end of the chunk.
"""

from __future__ import annotations

from typing import Any, Callable

from ..plan import KINDS, Step, StepKind
from .runtime import Runtime
from .watermarks import advance


def fan_out(feeds: list) -> Callable[[Any], None]:
    """One feed calling each of ``feeds`` in turn (the feed itself when there is one)."""
    if len(feeds) == 1:
        return feeds[0]

    def emit_all(v: Any) -> None:
        for f in feeds:
            f(v)

    return emit_all


def build(rt: Runtime) -> tuple[list, list]:
    """Return (entry, remote): per step id, the feed used by upstream steps on this
    worker, and the feed used for values arriving from other workers."""
    steps = rt.plan.steps
    entry: list = [None] * len(steps)
    remote: list = [None] * len(steps)
    for step in reversed(steps):  # ids are topological: children come later
        if step.is_sink:
            entry[step.id] = rt.sink_buffers[step.id].append
            continue
        emit = fan_out([entry[c] for c in step.children])
        make = _MAKERS[step.kind]
        entry[step.id], remote[step.id] = make(step, emit, rt)
    return entry, remote


def _user_fn(step: Step, rt: Runtime) -> Callable:
    """The step's function, timed per call when metrics are on (see timing.py)."""
    return rt.step_timer(step.id, step.fn) if rt.timing else step.fn


def _make_map(step: Step, emit: Callable, rt: Runtime) -> tuple:
    f, on_error, filtered, i = _user_fn(step, rt), rt.on_error, rt.filtered, step.id

    def feed(v: Any) -> None:
        try:
            out = f(v)
        except Exception as e:
            on_error(step, None, v, e)
            return
        if out is not None:
            emit(out)
        else:
            filtered[i] += 1

    return feed, feed


def _make_multi(step: Step, emit: Callable, rt: Runtime) -> tuple:
    f, on_error, filtered, i = _user_fn(step, rt), rt.on_error, rt.filtered, step.id

    def feed(v: Any) -> None:
        try:
            outs = f(v)
        except Exception as e:
            on_error(step, None, v, e)
            return
        if outs is None:
            filtered[i] += 1
        elif type(outs) is list or isinstance(outs, (list, tuple)):
            for o in outs:
                if o is not None:  # as in Wallaroo: None items of the list are dropped
                    emit(o)
                else:
                    filtered[i] += 1
        else:
            on_error(step, None, v, TypeError(
                f"a multi computation must return a list (or None), got {type(outs).__name__}"))

    return feed, feed


def _keyed(step: Step, run: Callable, rt: Runtime) -> tuple:
    """Wrap ``run(v, key)`` with key extraction and routing to the owning worker."""
    keyf, on_error, me = step.key_fn, rt.on_error, rt.me
    owners, cache, miss = rt.owners, rt.slot_cache, rt.slot_miss
    pend = rt.pending[step.id]
    pend_et = rt.pending_et[step.id] if rt.track_event_time else None
    pend_wm = rt.pending_wm[step.id] if rt.track_wm else None
    ctx = rt.ctx

    def entry(v: Any) -> None:
        try:
            k = keyf(v) if keyf is not None else None
        except Exception as e:
            on_error(step, None, v, e, where="key extractor")
            return
        try:
            w = owners[cache[k]]
        except KeyError:
            try:
                w = owners[miss(k)]
            except TypeError as e:
                on_error(step, k, v, e, where="key extractor")
                return
        except TypeError as e:  # unhashable key
            on_error(step, k, v, TypeError(f"key {k!r} is not hashable: {e}"), where="key extractor")
            return
        if w == me:
            run(v, k)
        else:
            pend[w].append(v)
            if pend_et is not None:
                pend_et[w].append(ctx.et)
            if pend_wm is not None:
                pend_wm[w].append(ctx.wm)

    def remote(v: Any) -> None:
        try:
            k = keyf(v) if keyf is not None else None
        except Exception as e:
            on_error(step, None, v, e, where="key extractor")
            return
        run(v, k)

    return entry, remote


def _make_state(step: Step, emit: Callable, rt: Runtime) -> tuple:
    f, cls, on_error, filtered, i = (_user_fn(step, rt), step.state_cls, rt.on_error,
                                     rt.filtered, step.id)
    states = rt.states[step.id]
    multi = step.info.multi
    table, ctx = rt.wm_tables.get(step.id), rt.ctx

    def run(v: Any, k: Any) -> None:
        if table is not None:  # upstream of a window: keep its watermark for forwarding
            table.observe(ctx.src, ctx.sender, ctx.wm)
        s = states.get(k)
        if s is None:
            try:
                s = states[k] = cls()
            except Exception as e:
                on_error(step, k, v, e, where="state class")
                return
        try:
            out = f(v, s)
        except Exception as e:
            on_error(step, k, v, e)
            return
        if out is None:
            filtered[i] += 1
        elif not multi:
            emit(out)
        elif isinstance(out, (list, tuple)):
            for o in out:
                if o is not None:  # as in Wallaroo: None items of the list are dropped
                    emit(o)
                else:
                    filtered[i] += 1
        else:
            on_error(step, k, v, TypeError(
                f"a multi computation must return a list (or None), got {type(out).__name__}"))

    return _keyed(step, run, rt)


def _make_window(step: Step, emit: Callable, rt: Runtime) -> tuple:
    runner, on_error, ctx = rt.windows[step.id], rt.on_error, rt.ctx
    table = rt.wm_tables.get(step.id)
    rt.window_emits[step.id] = emit

    def run(v: Any, k: Any) -> None:
        if table is not None:
            before = table.current
            new = table.observe(ctx.src, ctx.sender, ctx.wm)
            if new is not None:
                rt.emit_window_outputs(step, advance(runner, new), before)
        try:
            outs = runner.on_message(k, v, ctx.et)
        except Exception as e:
            on_error(step, k, v, e)
            return
        if outs:
            rt.emit_window_outputs(step, outs, ctx.wm)

    return _keyed(step, run, rt)


_MAKERS = {
    StepKind.MAP: _make_map,
    StepKind.MULTI: _make_multi,
    StepKind.STATE: _make_state,
    StepKind.STATE_MULTI: _make_state,
    StepKind.WINDOW: _make_window,
}
assert set(_MAKERS) | {StepKind.SINK} == set(KINDS), "every step kind needs a maker"
