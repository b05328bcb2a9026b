"""Worker side of metrics: latency histograms and event counters, sent as deltas.

A worker records into a `Recorder` on its event loop thread (the driver into a
`SharedRecorder`, from two threads) and, about once a
second (`due()`), sends `take_delta()` to the driver, which feeds it to
`MetricsStore.add`. Not thread-safe by design (no lock on the hot path): call
`record`, `count` and `take_delta` from the same thread. Standard library only.

Delta wire format (msgpack-able, lists only, str/int only):
    {"hist":   [[category, name, histogram.to_wire(h)], ...],
     "events": [[category, name, event, n], ...]}
"""

from __future__ import annotations

import threading
import time

from .histogram import Histogram, record, to_wire

CATEGORIES = ("computation", "pipeline", "sink", "source", "visible", "worker")
SEND_INTERVAL = 1.0  # seconds between deltas


class Recorder:
    """Histograms and event counters keyed by (category, name) since the last delta."""

    def __init__(self, interval: float = SEND_INTERVAL) -> None:
        self._hists: dict[tuple[str, str], Histogram] = {}
        self._events: dict[tuple[str, str, str], int] = {}
        self._interval = interval
        self._next = time.monotonic() + interval

    def histogram(self, category: str, name: str) -> Histogram:
        """The live histogram for (category, name); stays valid across take_delta.

        The engine may keep it and call `histogram.record(h, latency_ns, count)`
        directly to skip the key lookup on the hot path.
        """
        key = (category, name)
        h = self._hists.get(key)
        if h is None:
            if category not in CATEGORIES:
                raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
            h = self._hists[key] = Histogram()
        return h

    def record(self, category: str, name: str, latency_ns: int, count: int = 1) -> None:
        """Record `count` messages of (category, name) that took `latency_ns` each."""
        h = self._hists.get((category, name))
        if h is None:
            h = self.histogram(category, name)
        record(h, latency_ns, count)

    def count(self, category: str, name: str, event: str, n: int = 1) -> None:
        """Count `n` named events (e.g. "late", "dropped", "filtered", "errors")."""
        if category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
        key = (category, name, event)
        self._events[key] = self._events.get(key, 0) + n

    def due(self, now: float | None = None) -> bool:
        """True when about a second has passed since the last take_delta."""
        return (time.monotonic() if now is None else now) >= self._next

    def take_delta(self, now: float | None = None) -> dict:
        """Everything recorded since the previous call, as plain data; then start over.

        Histograms are reset in place so references from `histogram()` stay valid.
        """
        self._next = (time.monotonic() if now is None else now) + self._interval
        hists = []
        for (category, name), h in self._hists.items():
            if h.count:
                hists.append([category, name, to_wire(h)])
                h.counts = [0] * len(h.counts)
                h.count = h.min = h.max = h.sum = 0
        events = [[c, name, e, n] for (c, name, e), n in self._events.items() if n]
        self._events.clear()
        return {"hist": hists, "events": events}


class SharedRecorder(Recorder):
    """A Recorder that several threads record into (the driver's commit and I/O threads)."""

    def __init__(self, interval: float = SEND_INTERVAL) -> None:
        super().__init__(interval)
        self._lock = threading.Lock()

    def record(self, category: str, name: str, latency_ns: int, count: int = 1) -> None:
        with self._lock:
            super().record(category, name, latency_ns, count)

    def take_delta(self, now: float | None = None) -> dict:
        with self._lock:
            return super().take_delta(now)
