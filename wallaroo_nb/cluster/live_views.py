"""The App's notebook views that ask the workers: the dataflow picture (also the
App's own display in a kernel), the keys per worker and the window timeline, and the
flow counts they draw.
The views themselves live in wallaroo_nb.notebook, imported when asked for."""

from __future__ import annotations

from typing import Any, Callable

from ..plan import Plan
from ..protocol import Flow


class LiveViews:
    """Mixed into App; ``_call`` asks every worker, ``plan`` is the app's Plan."""

    plan: Plan
    _call: Callable[..., list]  # App._call(op, args=None, timeout=30.0)

    def flow(self) -> dict:
        """Counts and watermarks from every worker, for the live views: messages each
        source has read ({source id: n}) and each sink step has taken ({step id: n})
        since the start, and each window step's watermark per worker ({step id: [ns,
        ...]}, -inf before the first). Ids index app.plan.sources and app.plan.steps."""
        flow: dict = {"sources": {sp.id: 0 for sp in self.plan.sources}, "sinks": {},
                      "watermarks": {}}
        part: Flow
        for part in self._call("flow", timeout=5):
            for sid, n in part.sources.items():
                flow["sources"][sid] += n
            for sid, n in part.sinks.items():
                flow["sinks"][sid] = flow["sinks"].get(sid, 0) + n
            for sid, wm in part.watermarks.items():
                flow["watermarks"].setdefault(sid, []).append(wm)
        return flow

    def graph(self, interval: float = 1.0, window: str = "1min") -> Any:
        """The dataflow as a live picture: sources, steps and sinks, each edge with its
        rate, each step with its p99 latency and errors over ``window``."""
        from ..notebook.graph_view import graph_view

        return graph_view(self, interval=interval, window=window)

    def workers_view(self, interval: float = 1.0) -> Any:
        """The keys (and slots) each worker holds as live bars, from ``app.workers()``
        asked every ``interval`` seconds: one bar per worker, so scaling changes them."""
        from ..notebook.workers_plot import workers_view

        return workers_view(self, interval=interval)

    def window_timeline(self, step: str, interval: float = 0.25) -> Any:
        """Event time against processing time for a range-window step, live: the
        watermark and each window's span until it fires."""
        from ..notebook.timeline import window_timeline

        return window_timeline(self, step, interval=interval)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        """In a kernel, the App shows itself as a live view: summary, dataflow graph and
        keys per worker (outside one, None: IPython then uses _repr_html_ and repr)."""
        from ..notebook.graph_view import app_view_bundle

        return app_view_bundle(self)
