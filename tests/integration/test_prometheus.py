"""run(..., metrics_port=N) serves app.metrics()'s figures for Prometheus: scraped over
HTTP, parsed with prometheus_client's own parser, equal to what app.metrics() says."""

from __future__ import annotations

import math
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import wallaroo_nb as w
from wallaroo_nb.metrics.store import PCT_COLUMNS, QUANTILES

pytestmark = pytest.mark.timeout(120)


class Seen:
    def __init__(self):
        self.n = 0


@w.state_computation("odd ones", state=Seen)
def odd_ones(e, seen):
    seen.n += 1
    return e if e[1] % 2 else None


def scrape(url: str) -> dict:
    """(metric name, labels as a sorted tuple) -> value."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def settled(app) -> None:
    """Until the workers' last metrics deltas (about one a second) are in."""
    before = None
    for _ in range(20):
        now = app.metrics()["count"].sum()
        if now == before:
            return
        before = now
        time.sleep(1.2)


def test_metrics_endpoint_matches_app_metrics():
    events = [(f"k{i % 10}", i) for i in range(20_000)]
    p = (w.source("odds", w.IterableSourceConfig("e", events)).key_by(lambda e: e[0])
         .to(odd_ones).to_sink(w.CollectorSinkConfig()))
    with w.run(p, workers=2, metrics_port=0) as app:
        assert app.metrics_url.startswith("http://127.0.0.1:")
        app.wait(timeout=60)
        settled(app)
        got = scrape(app.metrics_url)
        rows = app.metrics()
    assert len(rows) >= 6
    for r in rows.itertuples(index=False):
        labels = (("category", r.category), ("name", r.name), ("worker", str(r.worker)))
        assert got[("wallaroo_window_messages", labels)] == r.count
        assert got[("wallaroo_messages_total", labels)] == r.count  # a short run: all in window
        for q, col in zip(QUANTILES, PCT_COLUMNS):
            value = got[("wallaroo_latency_seconds", tuple(sorted(labels + (("quantile",
                                                                              str(q)),))))]
            want = getattr(r, col)
            assert (math.isnan(value) and math.isnan(want)) or value == pytest.approx(want / 1e6)
    filtered = got[("wallaroo_events_total", (("category", "computation"), ("event", "filtered"),
                                              ("name", "odd ones"), ("worker", "all")))]
    assert filtered == 10_000
    with pytest.raises(OSError):
        urllib.request.urlopen(app.metrics_url, timeout=2)  # stopped with the app
