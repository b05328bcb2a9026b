"""Rescaling a running application: at a barrier, the slots that change owner move
with their keys' state, and routing switches to the new slot table.

A rescaling epoch is a checkpoint epoch whose barrier carries the new table
(protocol.Rescale). Joining workers take part in its alignment with no state;
when every barrier is aligned each worker writes its state by slot (as for a
checkpoint) and waits. Once all have, the driver says ADOPT: each worker drops the
keys of the slots it lost, loads from the epoch's files those of the slots it
gained, takes the new table (the fused feeds hold the table list itself, so they
route by the new one at once), opens and seeks the sources it gains, and goes on.
Nothing was produced after the barriers meanwhile, so nothing routed by the old
table is left anywhere.
"""

from __future__ import annotations

from typing import Optional

from ..plan import SourcePlan
from ..protocol import Rescale
from .core import Core, SourceState
from .snapshots import apply_watermarks, drop_slots, load_slots


def prepare(core: Core, rescale: Rescale) -> None:
    """At the rescaling barrier: joining workers are peers for its alignment."""
    core.resize(max(core.n, rescale.workers))


def adopt(core: Core, rescale: Rescale, datas: list, positions: dict,
          sources: Optional[dict] = None) -> tuple[set, set]:
    """Take the new table: move keys in and out, move sources; returns the source ids
    this worker now runs and no longer runs (the shell opens and closes them).
    ``datas``: the epoch's snapshot payloads; ``sources``: SourcePlans with config of
    sources that move here."""
    rt, me = core.rt, core.me
    old, new = list(rt.owners), list(rescale.owners)
    lost = {s for s, (a, b) in enumerate(zip(old, new)) if a == me and b != me}
    gained = {s for s, (a, b) in enumerate(zip(old, new)) if a != me and b == me}
    drop_slots(core, lost)
    rt.owners[:] = new  # in place: the fused feeds hold this list
    if gained:
        for data in datas:
            load_slots(core, data, gained)
    apply_watermarks(core, datas)
    mine = {sid for sid, ws in rescale.assign.items() if me in ws}
    # a source whose workers change is opened again where it stays too (a parallel
    # source's shares are new)
    changed = {sid for sid, ws in rescale.assign.items() if tuple(ws) != tuple(core.assign[sid])}
    closed = (set(core.sources) - mine) | (set(core.sources) & changed)
    for sid in closed:
        del core.sources[sid]
    opened = mine - set(core.sources)
    for sid in opened:
        sp: SourcePlan = (sources or {}).get(sid) or core.plan.sources[sid]
        st = core.sources[sid] = SourceState(sp)
        pos = positions.get(sid)
        if pos is not None:
            st.count = pos[0] if isinstance(pos[0], int) else 0
            st.done, st.wm = pos[1], pos[2]
    core.set_channels(rescale.assign, rescale.workers)
    core.resize(rescale.workers)
    core.wire()
    return opened, closed
