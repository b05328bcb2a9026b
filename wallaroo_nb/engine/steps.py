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


def fan_out(feeds: list, ctx: Any) -> Callable[[Any], None]:
    """One feed calling each of ``feeds`` in turn (the feed itself when there is one);
    the last carries the value's weight, the others 0 (see runtime.py)."""
    if len(feeds) == 1:
        return feeds[0]
    head, last = feeds[:-1], feeds[-1]

    def emit_all(v: Any) -> None:
        w = ctx.w
        ctx.w = 0
        for f in head:
            f(v)
        ctx.w = w
        last(v)

    return emit_all


def build(rt: Runtime) -> tuple[list, list]:
    """Return (entry, remote): per step id, the feed used by upstream steps on this
    worker, and the feed used for values arriving from other workers."""
    steps = rt.plan.steps
    entry: list = [None] * len(steps)
    remote: list = [None] * len(steps)
    for step in reversed(steps):  # ids are topological: children come later
        if step.is_sink:
            entry[step.id] = _make_sink(step, rt)
            continue
        emit = fan_out([entry[c] for c in step.children], rt.ctx)
        make = _MAKERS[step.kind]
        entry[step.id], remote[step.id] = make(step, emit, rt)
    return entry, remote


def _make_sink(step: Step, rt: Runtime) -> Callable:
    """A sink's feed: its buffer's append, and the weights reaching it where values
    may weigh 0."""
    append = rt.sink_buffers[step.id].append
    if not rt.weighted:
        return append
    cell, ctx = rt.sink_w[step.id], rt.ctx

    def sink(v: Any) -> None:
        append(v)
        cell[0] += ctx.w

    return sink


def _user_fn(step: Step, rt: Runtime) -> Callable:
    """The step's function, timed per call when metrics are on (see timing.py)."""
    return rt.step_timer(step.id, step.fn) if rt.timing else step.fn


def _make_map(step: Step, emit: Callable, rt: Runtime) -> tuple:
    f, on_error, filtered, i = _user_fn(step, rt), rt.on_error, rt.filtered, step.id
    done, ctx = rt.done, rt.ctx

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
            done[0] += ctx.w

    return feed, feed


def _emit_list(outs: Any, emit: Callable, rt: Runtime, step: Step) -> None:
    """Emit a multi step's list: None items are dropped (as in Wallaroo) and counted as
    filtered; the last item carries the message's weight (see runtime.py)."""
    ctx, filtered, i = rt.ctx, rt.filtered, step.id
    w = ctx.w
    if not outs:
        rt.done[0] += w
        return
    ctx.w = 0
    for o in outs[:-1]:
        if o is not None:
            emit(o)
        else:
            filtered[i] += 1
    ctx.w = w
    last = outs[-1]
    if last is not None:
        emit(last)
    else:
        filtered[i] += 1
        rt.done[0] += w


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
            rt.done[0] += rt.ctx.w
        elif type(outs) is list or isinstance(outs, (list, tuple)):
            _emit_list(outs, emit, rt, step)
        else:
            on_error(step, None, v, TypeError(
                f"a multi computation must return a list (or None), got {type(outs).__name__}"))

    return feed, feed


def _keyed(step: Step, run: Callable, rt: Runtime) -> tuple:
    """Wrap ``run(v, key)`` with key extraction and routing to the owning worker."""
    keyf, on_error, me = step.key_fn, rt.on_error, rt.me
    route, miss = rt.route, rt.route_miss  # key -> worker
    pend = rt.pending[step.id]
    pend_et = rt.pending_et[step.id] if rt.track_event_time else None
    pend_wm = rt.pending_wm[step.id] if rt.track_wm else None
    pend_w = rt.pending_w[step.id] if rt.weighted else None
    ctx = rt.ctx

    def entry(v: Any) -> None:
        try:
            k = keyf(v) if keyf is not None else None
        except Exception as e:
            on_error(step, None, v, e, where="key extractor")
            return
        try:
            w = route[k]
        except KeyError:
            try:
                w = miss(k)
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
            if pend_w is not None:
                pend_w[w].append(ctx.w)

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
    table, ctx, done = rt.wm_tables.get(step.id), rt.ctx, rt.done

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
            done[0] += ctx.w
        elif not multi:
            emit(out)
        elif isinstance(out, (list, tuple)):
            _emit_list(out, emit, rt, step)
        else:
            on_error(step, k, v, TypeError(
                f"a multi computation must return a list (or None), got {type(out).__name__}"))

    return _keyed(step, run, rt)


def _make_window(step: Step, emit: Callable, rt: Runtime) -> tuple:
    runner, on_error, ctx, done = rt.windows[step.id], rt.on_error, rt.ctx, rt.done
    table = rt.wm_tables.get(step.id)
    rt.window_emits[step.id] = emit

    def run(v: Any, k: Any) -> None:
        if table is not None:
            before = table.current
            new = table.observe(ctx.src, ctx.sender, ctx.wm)
            if new is not None:
                rt.emit_window_outputs(step, advance(runner, new), before)
        try:
            outs = runner.on_message(k, v, ctx.et, ctx.origin)
        except Exception as e:
            on_error(step, k, v, e)
            return
        done[0] += ctx.w  # absorbed: the message's journey ends in the window
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
