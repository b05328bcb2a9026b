"""A worker's live sources and sinks: opened, read, written, flushed, told of commits,
and their errors and counters brought to the engine.

The worker shell owns one Endpoints; the engine core never sees a live connector
(it gets values, origins and positions).
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Optional

from ..connectors.base import Sink, Source, open_source
from ..plan import Plan
from .core import Core

CHUNK = 1024  # max values read from a source per loop turn
TURN_BUDGET_S = 0.02  # a source reads what its steps take about this long for
FIRST_CHUNK = 64  # before anything is measured


class Endpoints:
    """The live connectors of one worker (see the module docstring)."""

    def __init__(self, plan: Plan, me: int, core: Core, assign: dict, checkpoints: bool):
        self.me = me
        self.checkpoints = checkpoints
        self.sinks: dict[int, Sink] = {}
        for step in plan.steps:
            if step.is_sink and not step.sink.to_driver:
                sink = self.sinks[step.id] = step.sink.make_sink()
                sink.open(me)
        # with checkpoints, exactly-once sinks hold outputs back until their epoch commits
        self.committing = {plan.steps[sid].name: sink for sid, sink in self.sinks.items()
                           if checkpoints and getattr(sink, "commits", False)}
        for sink in self.committing.values():
            sink.hold()
        self.sources: dict[int, Source] = {
            sid: open_source(plan.sources[sid].config, me, assign[sid], checkpoints)
            for sid in core.sources}
        self.named = [(core.sources[sid].name, src) for sid, src in self.sources.items()]
        self.named += [(plan.steps[sid].name, sink) for sid, sink in self.sinks.items()]
        self.chunks: dict = {}  # source id -> values to read per turn (see read)
        self.reported: dict = {}  # connector name -> its stats() as last reported
        self.uncommitted: dict = {}  # epoch -> {source id: position} at its barrier

    # -- sources ------------------------------------------------------------------------

    def read(self, core: Core) -> None:
        """A chunk from each live source into the core. A chunk is as many values as the
        source's steps take about TURN_BUDGET_S for (measured), so slow user code keeps
        loop turns, and with them answers to the driver, short."""
        chunks = self.chunks
        for sid, src in self.sources.items():
            st = core.sources[sid]
            if st.done:
                continue
            try:
                vals = src.read(chunks.get(sid, FIRST_CHUNK))
            except Exception as e:
                core.rt.source_error(st.name, None, e, "source")
                core.end_source(sid)
                continue
            if vals is None:
                core.end_source(sid)
            elif vals:
                t = time.perf_counter()
                core.ingest(sid, vals, src.origin_ns(), src.created_ns())
                per_value = max(time.perf_counter() - t, 1e-6) / len(vals)
                chunks[sid] = max(1, min(CHUNK, int(TURN_BUDGET_S / per_value)))

    def positions(self, epoch: int) -> dict:
        """The sources' replay positions at ``epoch``'s barrier (kept for its commit)."""
        positions = {sid: src.position() for sid, src in self.sources.items()}
        self.uncommitted[epoch] = positions
        return positions

    def add_source(self, sid: int, src: Source, core: Core) -> None:
        """A source this worker runs from now on (a rescaling moved it here)."""
        self.sources[sid] = src
        self.named.append((core.sources[sid].name, src))

    def close_source(self, sid: int) -> None:
        """A source this worker no longer runs (a rescaling moved it away)."""
        src = self.sources.pop(sid)
        self.named = [(n, c) for n, c in self.named if c is not src]
        _quietly(src.close)

    def seek(self, positions: dict) -> None:
        for sid, pos in positions.items():
            self.sources[sid].seek(pos)

    # -- sinks ------------------------------------------------------------------------------

    def write(self, batches: list) -> None:
        for sid, batch in batches:
            self.sinks[sid].write(batch)

    def ready(self) -> bool:
        """Every live sink can take more (else: backpressure)."""
        return all(sink.ready() for sink in self.sinks.values())

    def flush_due(self, core: Core) -> None:
        for sink in self.sinks.values():
            hint = sink.wait_hint()
            if hint is not None and hint <= 0:
                try:
                    sink.flush()
                except Exception as e:
                    core.rt.source_error(type(sink).__name__, None, e, "sink flush")

    def sink_states(self, epoch: int) -> dict:
        return {name: sink.epoch_state(epoch) for name, sink in self.committing.items()}

    def restore_sinks(self, states: dict) -> None:
        for name, state in states.items():
            self.committing[name].restore(state)

    def on_commit(self, epoch: int) -> None:
        """The app committed ``epoch``: exactly-once sinks deliver, sources hear of it."""
        for sink in self.committing.values():
            sink.commit(epoch)
        done = [e for e in self.uncommitted if e <= epoch]
        if done:
            positions = self.uncommitted[max(done)]
            for e in done:
                del self.uncommitted[e]
            for sid, pos in positions.items():
                self.sources[sid].committed(pos)

    # -- both ------------------------------------------------------------------------------

    def wait_hint(self, core: Core, sources_paused: bool) -> Optional[float]:
        """Seconds until a sink wants flushing or a source has more (None: no hint)."""
        hints = [s.wait_hint() for s in self.sinks.values()]
        if not sources_paused:
            hints += [src.wait_hint() for sid, src in self.sources.items()
                      if not core.sources[sid].done]
        hints = [h for h in hints if h is not None]
        return min(hints) if hints else None

    def collect_errors(self, core: Core) -> None:
        """Connectors keep their own error logs and counters; bring them to the engine."""
        rt = core.rt
        for name, conn in self.named:
            for e in conn.drain_errors():
                rt.connector_error(name, e)
            seen = self.reported.setdefault(name, {})
            for key, value in conn.stats().items():
                if isinstance(value, int) and value != seen.get(key, 0):
                    rt.recorder.count("pipeline", name, key, value - seen.get(key, 0))
                    seen[key] = value

    def stats(self) -> dict:
        return {name: conn.stats() for name, conn in self.named}

    def close(self) -> None:
        for src in self.sources.values():
            _quietly(src.close)
        for sink in self.sinks.values():
            _quietly(sink.flush)
            _quietly(sink.close)


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception:
        traceback.print_exc()
