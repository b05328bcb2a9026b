"""Watermarks: how far event time has surely advanced, per keyed step and worker.

A source's watermark is the largest event time it has read (ingest time when the
source gives no ``event_time``; an exhausted source's is infinity). Every value
carries the watermark its source had *before* reading it, and markers
``(GROUP_WATERMARK, step, source, wm)`` travel the same channels as the data, so
a watermark never overtakes the data it covers. At a keyed step a worker keeps,
per source, the latest watermark heard on each channel that can carry that
source's data; the step's watermark is the minimum over sources of the minimum
over channels. With one source feeding a window directly, a value is judged
late against exactly the watermark its source had when it read the value, on
any number of workers: results do not depend on timing.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from ..plan import Plan

NEG_INF = -math.inf


def channels(plan: Plan, n_workers: int, assign: dict) -> dict:
    """Watermarked step -> {source id -> workers whose channel can carry its data there}:
    a source's own worker when it feeds the step directly, every worker when its data
    passed an earlier keyed step (which may have routed it anywhere)."""
    topo = plan.topology
    sources_of: dict = {}
    for sid in topo.keyed:
        mine = {src: set(assign[src]) for src in topo.upstream_sources[sid]}
        for u in topo.upstream_keyed[sid]:
            for src in sources_of.get(u, {}):
                mine[src] = set(range(n_workers))
        sources_of[sid] = mine
    return {sid: sources_of[sid] for sid in topo.watermarked}


def advance(runner: Any, wm: float) -> Any:
    """The runner's outputs for a new watermark; infinity means the stream is over."""
    return runner.flush_all() if wm == math.inf else runner.on_watermark(wm)


class Table:
    """The watermarks one keyed step has heard, per source and channel."""

    __slots__ = ("heard", "current", "by_source")

    def __init__(self, chans: dict, before: Optional["Table"] = None):
        self.heard = {src: dict.fromkeys(ws, NEG_INF) for src, ws in chans.items()}
        self.by_source = dict.fromkeys(chans, NEG_INF)
        self.current = NEG_INF if chans else math.inf
        if before is not None:  # channels that stay keep what they heard (rescaling)
            for src, per in self.heard.items():
                for ch in per:
                    per[ch] = before.heard.get(src, {}).get(ch, NEG_INF)
                self.by_source[src] = min(per.values())
            self.current = max(self.current, before.current)

    def observe(self, src: int, channel: int, wm: float) -> Optional[float]:
        """Note a watermark; return the step's new watermark if it went up, else None."""
        per = self.heard.get(src)
        if per is None or channel not in per or wm <= per[channel]:
            return None
        old = per[channel]
        per[channel] = wm
        if old != self.by_source[src]:
            return None  # another channel still holds this source back
        self.by_source[src] = min(per.values())
        new = min(self.by_source.values())
        if new > self.current:
            self.current = new
            return new
        return None
