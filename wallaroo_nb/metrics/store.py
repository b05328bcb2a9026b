"""Driver side of metrics: per-second histograms for the last five minutes.

Workers' deltas (see recorder.py) are filed under the wall-clock second they
arrive in, per (category, name, worker) and also under worker "all". Queries
answer percentiles and throughput over a window as pandas DataFrames. One lock
makes it safe for a receiver thread to add while the notebook queries.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

import pandas as pd

from . import histogram as hg

RETENTION_S = 300  # five minutes
ALL = "all"
QUANTILES = (0.5, 0.95, 0.99, 0.999, 0.9999)
PCT_COLUMNS = ("p50_us", "p95_us", "p99_us", "p999_us", "p9999_us")
FRAME_COLUMNS = (
    "category", "name", "worker", "count", "rate_5m", "rate_1s", "min_us", *PCT_COLUMNS, "max_us",
)
HISTORY_COLUMNS = ("time", "rate", *PCT_COLUMNS)
BINS_COLUMNS = ("bin", "upper_us", "count", "percent")
COUNTER_COLUMNS = ("category", "name", "worker", "event", "count")

_UNITS_S = {
    "ms": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600,
}
_WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*$")

Key = tuple[str, str, str]


class _Second:
    """One series' data for one wall-clock second: a wire-form histogram plus events."""

    __slots__ = ("t", "hist", "events")

    def __init__(self, t: int) -> None:
        self.t = t
        self.hist: dict[str, Any] = {"n": 0, "min": 0, "max": 0, "sum": 0, "bins": []}
        self.events: dict[str, int] = {}

    def add_hist(self, w: dict) -> None:
        if not w["n"]:
            return
        h = self.hist
        if h["n"]:
            h["min"] = min(h["min"], w["min"])
            h["max"] = max(h["max"], w["max"])
        else:
            h["min"], h["max"] = w["min"], w["max"]
        h["n"] += w["n"]
        h["sum"] += w["sum"]
        h["bins"].extend(w["bins"])  # flat [bin, count, ...]; duplicates add up when read


def parse_window(window: str | float) -> int:
    """Seconds in a window such as "5min", "1min", "30s", "2m" or a number of seconds."""
    if isinstance(window, (int, float)) and not isinstance(window, bool):
        seconds = float(window)
    else:
        m = _WINDOW_RE.match(str(window).lower())
        if not m or m.group(2) not in _UNITS_S and m.group(2) != "":
            raise ValueError(f"cannot read window {window!r}; try '5min', '1min' or '30s'")
        seconds = float(m.group(1)) * _UNITS_S.get(m.group(2), 1)
    if not 0 < seconds <= RETENTION_S:
        raise ValueError(f"window must be within (0, {RETENTION_S}] seconds, got {window!r}")
    return max(1, math.ceil(seconds))


class MetricsStore:
    """Latency histograms and event counts per second, per (category, name, worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[Key, deque[_Second]] = {}
        self._last_prune = 0
        # since the start, never pruned: what a Prometheus counter needs
        self._totals: dict[Key, list] = {}  # key -> [messages, latency sum ns]
        self._event_totals: dict[tuple[str, str, str, str], int] = {}

    # -- writing ---------------------------------------------------------------

    def add(self, worker: str, delta: dict, now: float | None = None) -> None:
        """File one worker's delta (Recorder.take_delta()) under second `now` (time.time())."""
        if worker == ALL:
            raise ValueError(f"worker name {ALL!r} is reserved for the aggregate")
        t = int(time.time() if now is None else now)
        with self._lock:
            for category, name, w in delta.get("hist", ()):
                for who in (worker, ALL):
                    self._second((category, name, who), t).add_hist(w)
                    total = self._totals.setdefault((category, name, who), [0, 0])
                    total[0] += w["n"]
                    total[1] += w["sum"]
            for category, name, event, n in delta.get("events", ()):
                for who in (worker, ALL):
                    events = self._second((category, name, who), t).events
                    events[event] = events.get(event, 0) + n
                    ek = (category, name, who, event)
                    self._event_totals[ek] = self._event_totals.get(ek, 0) + n
            if t - self._last_prune >= 10:
                self._prune(t)

    def _second(self, key: Key, t: int) -> _Second:
        seconds = self._series.get(key)
        if seconds is None:
            seconds = self._series[key] = deque()
        if seconds and seconds[-1].t >= t:  # same second, or the clock stepped back
            return seconds[-1]
        sec = _Second(t)
        seconds.append(sec)
        while seconds[0].t <= t - RETENTION_S:
            seconds.popleft()
        return sec

    def _prune(self, t: int) -> None:
        self._last_prune = t
        for key in list(self._series):
            seconds = self._series[key]
            while seconds and seconds[0].t <= t - RETENTION_S:
                seconds.popleft()
            if not seconds:
                del self._series[key]

    # -- reading ---------------------------------------------------------------

    def series_names(self) -> list[tuple[str, str]]:
        """The (category, name) pairs with data in the last five minutes."""
        with self._lock:
            return sorted({(c, n) for c, n, _ in self._series})

    def frame(self, window: str | float = "5min", now: float | None = None) -> pd.DataFrame:
        """One row per (category, name, worker) and per (category, name, "all").

        count, min and the percentiles cover `window` (up to now, including the
        current second); rate_5m is messages/s over the last five minutes (or
        since the series began, if later); rate_1s is the last complete second.
        """
        w = parse_window(window)
        now = time.time() if now is None else now
        t_now = int(now)
        rows = []
        with self._lock:
            for key in sorted(self._series, key=_sort_key):
                seconds = self._series[key]
                h = _merge(seconds, t_now - w, t_now)
                n_5m = _count(seconds, t_now - RETENTION_S, t_now)
                start = max(t_now - RETENTION_S + 1, seconds[0].t) if seconds else t_now
                n_1s = _count(seconds, t_now - 2, t_now - 1)
                pct = supported_percentiles(h)
                rows.append((
                    *key, h.count, n_5m / max(1.0, now - start), float(n_1s),
                    _us(h.min if h.count else math.nan), *map(_us, pct),
                    _us(h.max if h.count else math.nan),
                ))
        df = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
        return df.astype({"count": "int64"} | {c: "float64" for c in FRAME_COLUMNS[4:]})

    def history(
        self, category: str, name: str, worker: str = ALL, window: str | float = "5min",
        now: float | None = None,
    ) -> pd.DataFrame:
        """One row per complete second in `window` since the series began.

        `time` is local wall-clock time (naive), `rate` messages in that second,
        percentiles NaN for seconds without messages.
        """
        w = parse_window(window)
        now = time.time() if now is None else now
        t_now = int(now)
        with self._lock:
            seconds = self._series.get((category, name, worker))
            if not seconds:
                return _empty(HISTORY_COLUMNS, time="datetime64[us]")
            first = max(t_now - w, seconds[0].t)
            by_t = {s.t: s.hist for s in seconds if first <= s.t < t_now}
            rows = []
            for t in range(first, t_now):
                wire = by_t.get(t)
                if wire is None or not wire["n"]:
                    rows.append((t, 0.0, *([math.nan] * len(QUANTILES))))
                else:
                    pct = supported_percentiles(hg.from_wire(wire))
                    rows.append((t, float(wire["n"]), *map(_us, pct)))
        df = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
        df["time"] = pd.Series([datetime.fromtimestamp(t) for t in df["time"]], dtype="datetime64[us]")
        return df.astype({c: "float64" for c in HISTORY_COLUMNS[1:]})

    def bins(
        self, category: str, name: str, worker: str = ALL, window: str | float = "5min",
        now: float | None = None,
    ) -> pd.DataFrame:
        """Percent of messages per power-of-two latency bin ("≤ 65.5 µs" = ≤ 2**16 ns).

        Rows run from the lowest to the highest non-empty bin, empty ones included.
        """
        w = parse_window(window)
        now = time.time() if now is None else now
        with self._lock:
            seconds = self._series.get((category, name, worker), ())
            h = _merge(seconds, int(now) - w, int(now))
        if not h.count:
            return _empty(BINS_COLUMNS, bin="object", count="int64")
        by_octave: dict[int, int] = {}
        for b, c in enumerate(h.counts):
            if c:
                k = hg.bin_bounds(b)[0].bit_length()  # values in [2**(k-1), 2**k)
                by_octave[k] = by_octave.get(k, 0) + c
        rows = [
            ("≤ " + format_ns(2**k), _us(2**k), by_octave.get(k, 0),
             100.0 * by_octave.get(k, 0) / h.count)
            for k in range(min(by_octave), max(by_octave) + 1)
        ]
        return pd.DataFrame(rows, columns=list(BINS_COLUMNS)).astype({"count": "int64"})

    def totals(self) -> tuple[dict, dict]:
        """Since the start: (category, name, worker) -> (messages, latency sum ns), and
        (category, name, worker, event) -> count."""
        with self._lock:
            return ({k: tuple(v) for k, v in self._totals.items()}, dict(self._event_totals))

    def counters(self, window: str | float = "5min", now: float | None = None) -> pd.DataFrame:
        """Named event counts (late, dropped, filtered, errors, ...) over `window`."""
        w = parse_window(window)
        now = time.time() if now is None else now
        t_now = int(now)
        totals: dict[tuple[str, str, str, str], int] = {}
        with self._lock:
            for key in sorted(self._series, key=_sort_key):
                for s in self._series[key]:
                    if t_now - w < s.t <= t_now:
                        for event, n in s.events.items():
                            k = (*key, event)
                            totals[k] = totals.get(k, 0) + n
        rows = [(*k, n) for k, n in totals.items()]
        return pd.DataFrame(rows, columns=list(COUNTER_COLUMNS)).astype({"count": "int64"})


def supported_percentiles(h: hg.Histogram) -> list:
    """QUANTILES of ``h``, NaN for those its count cannot support: a q-percentile above
    the median needs at least 1 / (1 - q) messages (100 for p99, 10,000 for p99.99),
    else it would be the maximum under another name (the median of one is that one)."""
    values = hg.percentiles(h, QUANTILES)
    return [v if q <= 0.5 or h.count * (1 - q) >= 1 - 1e-9 else math.nan
            for q, v in zip(QUANTILES, values)]


def format_ns(ns: float) -> str:
    """A latency in ns for people, to three significant digits: 65536 -> '65.5 µs'."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def _sort_key(key: Key) -> tuple:
    category, name, worker = key
    return (category, name, worker != ALL, worker)


def _merge(seconds: Any, after: int, upto: int) -> hg.Histogram:
    """Dense histogram of the seconds t with after < t <= upto."""
    h = hg.Histogram()
    for s in reversed(seconds):
        if s.t <= after:
            break
        if s.t <= upto:
            hg.add_wire(h, s.hist)
    return h


def _count(seconds: Any, after: int, upto: int) -> int:
    n = 0
    for s in reversed(seconds):
        if s.t <= after:
            break
        if s.t <= upto:
            n += s.hist["n"]
    return n


def _us(ns: float) -> float:
    return ns / 1000.0


def _empty(columns: tuple[str, ...], **dtypes: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=dtypes.get(c, "float64")) for c in columns})
