"""The App's metrics answers: latency percentiles, throughput, counters, and the
live and static views of them. They read the driver's MetricsStore only."""

from __future__ import annotations

from typing import Any

from ..metrics.store import MetricsStore


class MetricsViews:
    """Mixed into App; ``_metrics`` is the app's MetricsStore."""

    _metrics: MetricsStore
    name: str

    def metrics(self, window: str = "5min") -> Any:
        """Latency percentiles (µs) and throughput per (category, name, worker), as a
        DataFrame; worker "all" is the aggregate. Categories: computation, pipeline, worker."""
        return self._metrics.frame(window)

    def metrics_history(self, category: str, name: str, worker: str = "all",
                        window: str = "5min") -> Any:
        """One row per second: time, rate and latency percentiles, for plotting."""
        return self._metrics.history(category, name, str(worker), window)

    def metrics_bins(self, category: str, name: str, worker: str = "all",
                     window: str = "5min") -> Any:
        """Share of messages per latency bin (Wallaroo's "percent by bin" view)."""
        return self._metrics.bins(category, name, str(worker), window)

    def metrics_names(self) -> list:
        """The (category, name) pairs that have metrics."""
        return self._metrics.series_names()

    def metrics_counters(self, window: str = "5min") -> Any:
        """Counted events (filtered, errors, late, dropped) per step and worker."""
        return self._metrics.counters(window)

    def dashboard(self, interval: float = 1.0, window: str = "5min") -> Any:
        """A live view (ipywidgets + bokeh) of input and output rate, latency, and keys
        per worker, that updates while the app runs and stops by itself when it stops."""
        from ..notebook.dashboard import dashboard

        return dashboard(self, interval=interval, window=window)

    def report(self, path: str, window: str = "5min") -> Any:
        """Write the dashboard's plots to one standalone HTML file (no CDN, no server)."""
        from ..notebook.report import write_report

        return write_report(self, path, window=window, title=f"wallaroo_nb: {self.name}")
