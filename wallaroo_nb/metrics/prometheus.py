"""Prometheus export: ``run(..., metrics_port=N)`` serves the app's figures at
``http://127.0.0.1:N/metrics`` in Prometheus' text format (prometheus_client).

For every (category, name, worker) series of ``app.metrics()``:

- ``wallaroo_latency_seconds{quantile=...}``: the window's p50, p95, p99, p99.9 and
  p99.99 (NaN where the window holds too few messages to say, as in app.metrics());
- ``wallaroo_window_messages`` and ``wallaroo_rate_per_second{over="5m"|"1s"}``: the
  window's count and rates;
- ``wallaroo_messages_total`` and ``wallaroo_latency_seconds_sum_total``: counters since
  the start (for Prometheus' own ``rate()``);
- ``wallaroo_events_total{event=...}``: counted events (filtered, errors, late, dropped,
  connector counters) since the start.

The window is the App's "5min" unless told otherwise.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .store import PCT_COLUMNS, QUANTILES, MetricsStore

LABELS = ["category", "name", "worker"]


class StoreCollector(Collector):
    """Turns a MetricsStore into metric families at each scrape."""

    def __init__(self, store: MetricsStore, window: str = "5min"):
        self.store = store
        self.window = window

    def collect(self) -> Iterator[Any]:
        df = self.store.frame(self.window)
        lat = GaugeMetricFamily("wallaroo_latency_seconds", f"latency percentiles over the last "
                                f"{self.window}", labels=LABELS + ["quantile"])
        count = GaugeMetricFamily("wallaroo_window_messages",
                                  f"messages over the last {self.window}", labels=LABELS)
        rate = GaugeMetricFamily("wallaroo_rate_per_second", "messages per second",
                                 labels=LABELS + ["over"])
        for row in df.itertuples(index=False):
            labels = [row.category, row.name, str(row.worker)]
            for q, col in zip(QUANTILES, PCT_COLUMNS):
                us = getattr(row, col)
                lat.add_metric(labels + [str(q)], us / 1e6 if not math.isnan(us) else math.nan)
            count.add_metric(labels, row.count)
            rate.add_metric(labels + ["5m"], row.rate_5m)
            rate.add_metric(labels + ["1s"], row.rate_1s)
        yield from (lat, count, rate)
        yield from self._totals()

    def _totals(self) -> Iterator[Any]:
        series, events = self.store.totals()
        msgs = CounterMetricFamily("wallaroo_messages", "messages since the start", labels=LABELS)
        lat_sum = CounterMetricFamily("wallaroo_latency_seconds_sum",
                                      "latency of all messages since the start", labels=LABELS)
        for (category, name, worker), (n, sum_ns) in sorted(series.items()):
            msgs.add_metric([category, name, worker], n)
            lat_sum.add_metric([category, name, worker], sum_ns / 1e9)
        ev = CounterMetricFamily("wallaroo_events", "counted events since the start",
                                 labels=LABELS + ["event"])
        for (category, name, worker, event), n in sorted(events.items()):
            ev.add_metric([category, name, worker, event], n)
        yield from (msgs, lat_sum, ev)


def serve(store: MetricsStore, port: int, host: str = "127.0.0.1",
          window: str = "5min") -> tuple[int, Callable[[], None]]:
    """Serve ``store`` at http://host:port/metrics (port 0: any free one); returns the
    port and a function that stops the server."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, window))
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return server.server_port, stop
