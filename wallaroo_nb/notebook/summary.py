"""The App's own notebook display: one small HTML table, readable at a glance.

`summary_html(app.status(), app.metrics("1min"))` shows workers alive, events in
and out, the input rate (messages read by sources in the last complete second: the
pipeline category) and the output rate (messages reaching sinks in it: the sink
category), errors and p99 latency (pipeline category, worker "all").
It copes with a stopped app (status without live counters) and with a metrics
frame that is empty or has no pipeline rows yet: missing figures show as "–". An app
on a Dask cluster links Dask's dashboard.
"""

from __future__ import annotations

import html
import math
import numbers
from typing import Any

import pandas as pd

from ..metrics.store import format_ns

MISSING = "–"
_CELL = "padding:2px 10px;text-align:left"


def summary_html(status: dict, metrics: pd.DataFrame, window: str = "1min") -> str:
    """HTML summary of an app from `App.status()` and `App.metrics(window)`."""
    pipes = pipeline_rows(metrics)
    rate_in, rate_out = io_rates(metrics)
    cells = [
        ("workers alive", workers_text(status)),
        ("events in", count_text(status.get("events_in"))),
        ("events out", count_text(status.get("events_out"))),
        ("input rate", rate_text(rate_in)),
        ("output rate", rate_text(rate_out)),
        ("errors", count_text(status.get("errors"))),
        (f"p99 ({window})", latency_text(worst_p99(pipes))),
    ]
    state = "running" if status.get("running") else "stopped"
    title = (f"<b>wallaroo_nb app {html.escape(str(status.get('name', '?')))}</b> "
             f"<span>({state}, up {html.escape(str(status.get('uptime_s', MISSING)))} s)</span>")
    parts = [f"<div class='wallaroo-nb-summary'>{title}", _table(cells)]
    parts += [f"<div>{html.escape(line)}</div>" for line in notes(status)]
    if status.get("dask_dashboard"):
        parts.append(dask_link(status["dask_dashboard"], status.get("dask_scheduler", "")))
    if len(pipes) > 1:
        parts.append(_pipeline_table(pipes, window))
    parts.append("</div>")
    return "".join(parts)


def notes(status: dict) -> list:
    """Lines under the table: steps busy with one message for a while, and what the
    driver dropped to stay bounded."""
    out = [f"busy: step {b['step'] or '(engine)'!r} on worker {b['worker']} for "
           f"{b['seconds']:.0f} s" + (f" on key {b['key']}" if b.get("key") else "")
           for b in status.get("busy", ())]
    if status.get("results_dropped"):
        out.append(f"{status['results_dropped']:,} older results dropped from app.results() "
                   "(the collector keeps the newest; CollectorSinkConfig(keep=None) keeps all)")
    if status.get("errors_dropped"):
        out.append(f"{status['errors_dropped']:,} older error records dropped (all are counted)")
    return out


def dask_link(url: str, scheduler: str) -> str:
    """A line linking the Dask dashboard of the cluster the engines run on."""
    where = f" (scheduler {html.escape(scheduler)})" if scheduler else ""
    return (f"<div>engines on a Dask cluster{where}: <a href='{html.escape(url, quote=True)}' "
            "target='_blank' rel='noopener'>Dask dashboard</a></div>")


def pipeline_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The pipeline-category rows aggregated over workers (worker "all")."""
    return category_rows(metrics, "pipeline")


def category_rows(metrics: pd.DataFrame, category: str) -> pd.DataFrame:
    """One category's rows aggregated over workers (worker "all")."""
    needed = {"category", "worker", "name", "rate_1s", "p99_us"}
    if metrics is None or not needed <= set(metrics.columns):
        return pd.DataFrame(columns=sorted(needed))
    rows = metrics[(metrics["category"] == category) & (metrics["worker"] == "all")]
    return rows.reset_index(drop=True)


def io_rates(metrics: pd.DataFrame) -> tuple[float | None, float | None]:
    """(input rate, output rate) in messages per second over the last complete second:
    messages read by all sources (the pipeline rows, which count every message once)
    and messages reaching all sinks (the sink rows); None where there are no such rows."""
    pipes, sinks = category_rows(metrics, "pipeline"), category_rows(metrics, "sink")
    return (float(pipes["rate_1s"].sum()) if len(pipes) else None,
            float(sinks["rate_1s"].sum()) if len(sinks) else None)


def worst_p99(pipes: pd.DataFrame) -> float | None:
    """The highest p99 (µs) among pipelines that have one, else None."""
    values = [float(v) for v in pipes["p99_us"] if _number(v)] if len(pipes) else []
    return max(values) if values else None


def workers_text(status: dict) -> str:
    """Workers alive of those configured, e.g. "2 of 2"; a stopped app has none alive."""
    total = status.get("workers")
    alive = status.get("workers_alive", total if status.get("running") else 0)
    return MISSING if total is None else f"{alive} of {total}"


def count_text(n: Any) -> str:
    return f"{int(n):,}" if _number(n) else MISSING


def rate_text(rate: Any) -> str:
    return f"{float(rate):,.0f} msg/s" if _number(rate) else MISSING


def latency_text(us: Any) -> str:
    return format_ns(float(us) * 1000.0) if _number(us) else MISSING


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(v)


def _table(cells: list) -> str:
    head = "".join(f"<th style='{_CELL}'>{html.escape(k)}</th>" for k, _ in cells)
    body = "".join(f"<td style='{_CELL}'>{html.escape(v)}</td>" for _, v in cells)
    return f"<table><tr>{head}</tr><tr>{body}</tr></table>"


def _pipeline_table(pipes: pd.DataFrame, window: str) -> str:
    head = "".join(f"<th style='{_CELL}'>{html.escape(h)}</th>"
                   for h in ("pipeline", "input rate", f"p99 ({window})"))
    rows = "".join(
        f"<tr><td style='{_CELL}'>{html.escape(str(name))}</td>"
        f"<td style='{_CELL}'>{html.escape(rate_text(float(rate)))}</td>"
        f"<td style='{_CELL}'>{html.escape(latency_text(float(p99)))}</td></tr>"
        for name, rate, p99 in zip(pipes["name"], pipes["rate_1s"], pipes["p99_us"], strict=True)
    )
    return f"<table><tr>{head}</tr>{rows}</table>"
