"""A Core's state at a checkpoint, by step and slot, and its restore.

A snapshot holds, for every state step and window of this worker, the keys of
each slot with their state (state objects as plain attribute dicts, see
codec.py), each window's watermark and the state of exactly-once sinks. Slots
make restore independent of who wrote them: a worker loads the slots it owns
now from every snapshot file of the epoch, whatever the number of workers was,
and a rescaling moves slots through the same files.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from .codec import dumps, from_plain_state, plain_state
from .core import Core


def snapshot(core: Core, epoch: int, sink_states: dict, triggers: list,
             slots: Optional[set] = None) -> bytes:
    """The payload of this worker's snapshot file for ``epoch``; ``sink_states`` and
    ``triggers`` (ids applied) are the shell's, kept for this worker only. ``slots``:
    only these (a rescaling without checkpoints writes only what moves)."""
    rt = core.rt
    steps = core.plan.steps
    state: dict = {}
    for sid, states in rt.states.items():
        state[steps[sid].name] = _by_slot(core, states.items(), slots, plain_state)
    for sid, runner in rt.windows.items():
        keys = None if slots is None else _keys_in(core, runner.keys(), slots)
        state[steps[sid].name] = _by_slot(core, runner.snapshot(keys).items(), slots)
    marks = {steps[sid].name: r.watermark for sid, r in rt.windows.items()}
    return dumps({"epoch": epoch, "worker": core.me, "state": state, "watermarks": marks,
                  "sinks": sink_states, "triggers": triggers})


def _by_slot(core: Core, items: Iterable, slots: Optional[set] = None,
             plain: Optional[Callable] = None) -> dict:
    """slot -> {key: value} for ``items`` (of ``slots`` only, if given); ``plain`` turns
    each value into what is written (called only for what is written)."""
    cache, miss = core.rt.slot_cache, core.rt.slot_miss
    out: dict = {}
    for k, v in items:
        s = cache.get(k)
        if s is None:
            s = miss(k)
        if slots is not None and s not in slots:
            continue
        d = out.get(s)
        if d is None:
            d = out[s] = {}
        d[k] = v if plain is None else plain(v)
    return out


def _keys_in(core: Core, keys: Iterable, slots: set) -> list:
    cache, miss = core.rt.slot_cache, core.rt.slot_miss
    return [k for k in keys if (cache.get(k) if k in cache else miss(k)) in slots]


def load_slots(core: Core, data: dict, slots: Optional[set] = None) -> None:
    """Load from one snapshot payload the keys of ``slots`` (default: every slot this
    worker owns), replacing what this worker holds for them."""
    rt = core.rt
    plan = core.plan
    for step_name, by_slot in data["state"].items():
        step = plan.step_named(step_name)
        mine: dict = {}
        for slot, entries in by_slot.items():
            if (rt.owners[slot] == core.me) if slots is None else (slot in slots):
                mine.update(entries)
        if step.is_window:
            rt.windows[step.id].restore(mine)
        else:
            cls = step.state_cls
            rt.states[step.id].update((k, from_plain_state(cls, f)) for k, f in mine.items())


def drop_slots(core: Core, slots: set) -> None:
    """Forget the keys of ``slots`` (they moved to another worker)."""
    rt = core.rt
    slot_of = rt.slot_cache.get
    miss = rt.slot_miss

    def gone(keys: Any) -> list:
        return [k for k in keys if (slot_of(k) if slot_of(k) is not None else miss(k)) in slots]

    for states in rt.states.values():
        for k in gone(list(states)):
            del states[k]
    for runner in rt.windows.values():
        runner.drop_keys(gone(runner.keys()))


def apply_watermarks(core: Core, datas: list) -> None:
    """Give every window step the largest watermark it had at the snapshot: keys with
    nothing open keep no state, so the step's own watermark is what stops a replayed
    message from reopening a window that already fired. Workers' watermarks differ a
    little (each moves with the values it gets), so windows restored from a worker
    whose watermark was behind may be due now: they fire here, and their outputs go on
    as they would have from that worker at its next value."""
    rt = core.rt
    marks: dict = {}
    for data in datas:
        for step_name, wm in data.get("watermarks", {}).items():
            marks[step_name] = max(wm, marks.get(step_name, wm))
    for step_name, wm in marks.items():
        step = core.plan.step_named(step_name)
        runner = rt.windows[step.id]
        before = runner.watermark
        outs = runner.on_watermark(wm)
        if outs or runner.errors:
            src = next((sp.id for sp in core.plan.sources if sp.pipeline == step.pipeline), 0)
            rt.stamp_internal(src)
            rt.emit_window_outputs(step, outs, before)
            rt.seal()


def shell_state(data: dict) -> dict:
    """What a snapshot holds for its worker's shell: sink states, applied trigger ids."""
    return {"sinks": data.get("sinks", {}), "triggers": data.get("triggers", [])}


def rewind(core: Core, positions: dict) -> dict:
    """Set the sources' counters back to the epoch's; return source id -> position to
    seek to, for the replayable ones (the shell seeks its live sources)."""
    seek: dict = {}
    for sid, st in core.sources.items():
        pos: Any = positions.get(sid)
        if pos is not None and st.replayable:
            position, _done, wm = pos
            seek[sid] = position
            st.count = position if isinstance(position, int) else st.count
            st.wm = wm
    return seek
