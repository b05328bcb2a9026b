"""The numbers written on the dataflow picture, from what the App answers.

A node shows its latency and errors: a computation its p99 per call, a sink
the p99 of its outputs from their origin (the `sink` category; apps without it
fall back to the pipeline's), over the view's window (from
`app.metrics(window)`), and the errors, late and dropped messages counted in
that window (`app.metrics_counters(window)`). Sources show how many messages
they have read and sinks how many they took, since the start (`app.flow()`).

An edge shows the messages per second going along it (or, in a report, how
many went): what its downstream node takes in when that node has no other
input and counts it (a computation's calls, a sink's messages), else what its
upstream node sends when that is a source (every message a source reads goes
to each of its children). Window steps do not count what they take in, so an
edge from a computation into a window shows no number.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd

from ..metrics.store import format_ns
from .topology import Topology

COMPUTATION_KINDS = ("map", "multi", "state", "state_multi")
RATE_SPAN_S = 3.0  # rates from counts are averaged over about this many seconds


@dataclass
class Look:
    """What one look at the app found (see `look`)."""

    metrics: pd.DataFrame  # app.metrics(window)
    counters: pd.DataFrame  # app.metrics_counters(window)
    totals: dict  # node key -> messages read (sources) or taken (sinks) since the start
    rates: dict  # node key -> messages/s of the same, from successive looks


class CountRates:
    """Messages per second from cumulative counts seen at successive looks."""

    def __init__(self, span: float = RATE_SPAN_S) -> None:
        self._span = span
        self._seen: deque = deque()

    def update(self, t: float, counts: dict) -> dict:
        """Note `counts` seen at time `t` (seconds); rates over about the last `span`."""
        self._seen.append((t, counts))
        while len(self._seen) > 2 and t - self._seen[1][0] >= self._span:
            self._seen.popleft()
        t0, before = self._seen[0]
        if t <= t0:
            return {}
        return {k: max(0, n - before.get(k, 0)) / (t - t0) for k, n in counts.items()}


def flow_totals(flow: Optional[dict]) -> dict:
    """`app.flow()` as node key -> count: ("source", id) read, ("step", id) taken."""
    if not flow:
        return {}
    totals = {("source", sid): n for sid, n in flow.get("sources", {}).items()}
    totals.update((("step", sid), n) for sid, n in flow.get("sinks", {}).items())
    return totals


def look(app: Any, window: str, rates: Optional[CountRates] = None, t: float = 0.0,
         flow: Optional[dict] = None) -> Look:
    """Ask the app for what the labels need; `flow` is app.flow() or None (stopped)."""
    totals = flow_totals(flow)
    return Look(app.metrics(window=window), app.metrics_counters(window=window), totals,
                rates.update(t, totals) if rates is not None and totals else {})


# -- nodes --------------------------------------------------------------------------------


def node_stats(topo: Topology, seen: Look) -> dict:
    """node key -> (text under the node's name, one fact a line; errors in the window)."""
    comp = _rows(seen.metrics, "computation")
    pipes = _rows(seen.metrics, "pipeline")
    sinks = _rows(seen.metrics, "sink")
    events = _events(seen.counters)
    out = {}
    for node in topo.nodes:
        ev = events.get(node.name, {}) if node.key[0] == "step" else {}
        errors = ev.get("errors", 0)
        parts = []
        if node.kind == "source":
            parts.append(_count_text(seen.totals.get(node.key), "read"))
        elif node.kind in COMPUTATION_KINDS:
            parts.append(f"p99 {_latency(comp.get(node.name))}")
        elif node.kind == "sink":
            row = sinks.get(node.name)
            row = _pipeline_row(pipes, node.pipeline) if row is None else row
            parts.append(f"p99 {_latency(row)} from source")
            parts.append(_count_text(seen.totals.get(node.key), "out"))
        if node.kind not in ("source", "sink"):
            parts.append(f"{errors:,} error{'s' if errors != 1 else ''}")
        parts += [f"{ev[e]:,} {e}" for e in ("late", "dropped") if ev.get(e)]
        out[node.key] = ("\n".join(p for p in parts if p), errors)
    return out


def _rows(frame: pd.DataFrame, category: str) -> dict:
    """name -> row of `frame` for `category`, summed over workers ("all")."""
    if frame is None or not len(frame) or "category" not in frame:
        return {}
    rows = frame[(frame["category"] == category) & (frame["worker"] == "all")]
    return {str(r["name"]): r for _, r in rows.iterrows()}


def _events(counters: pd.DataFrame) -> dict:
    """step name -> {event: count} over all workers."""
    if counters is None or not len(counters):
        return {}
    rows = counters[(counters["category"] == "computation") & (counters["worker"] == "all")]
    out: dict = {}
    for name, event, n in zip(rows["name"], rows["event"], rows["count"]):
        out.setdefault(str(name), {})[str(event)] = int(n)
    return out


def _pipeline_row(pipes: dict, pipeline: str) -> Any:
    """The pipeline's row; a merged pipeline ("a+b") shows its slowest part."""
    if pipeline in pipes:
        return pipes[pipeline]
    parts = [pipes[p] for p in pipeline.split("+") if p in pipes]
    return max(parts, key=lambda r: _number(r["p99_us"]) or 0.0, default=None)


def _latency(row: Any) -> str:
    us = None if row is None else _number(row["p99_us"])
    return "–" if us is None else format_ns(us * 1000.0)


def _count_text(n: Any, what: str) -> str:
    return "" if n is None else f"{int(n):,} {what}"


def _number(v: Any) -> Optional[float]:
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(v):
        return float(v)
    return None


# -- edges ----------------------------------------------------------------------------------


def edge_labels(topo: Topology, seen: Look, live: bool = True) -> dict:
    """(src key, dst key) -> the edge's label: its hop kind (a routing hop) over its rate
    (live) or count."""
    comp = _rows(seen.metrics, "computation")
    values = seen.rates if live else seen.totals
    out = {}
    for e in topo.edges:
        dst, src = topo.node(e.dst), topo.node(e.src)
        v = None
        if len(topo.parents(e.dst)) == 1:
            if dst.kind in COMPUTATION_KINDS:
                row = comp.get(dst.name)
                v = None if row is None else _number(row["rate_1s" if live else "count"])
            elif dst.kind == "sink":
                v = values.get(dst.key)
        if v is None and src.kind == "source":
            v = values.get(src.key)
        text = "" if v is None else (rate_text(v) if live else f"{int(v):,} msgs")
        hop = "" if e.hop == "fused" else e.hop
        out[(e.src, e.dst)] = "\n".join(t for t in (hop, text) if t)
    return out


def rate_text(rate: float) -> str:
    """Messages per second, short: 0.5/s, 42/s, 1,234/s, 56.7k/s."""
    if rate >= 10_000:
        return f"{rate / 1000:,.1f}k/s"
    return f"{rate:.1f}/s" if rate < 10 and rate != int(rate) else f"{rate:,.0f}/s"
