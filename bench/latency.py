"""End-to-end latency of a paced keyed pipeline, measured outside the engine and by it.

A user-defined source paces events at --rate events/s and stamps each message
with two times: when it was *due* (t0 + i/rate; t0 = the first read, after the
workers are up) and when the worker *read* it (time.time_ns() inside read()).
Messages go through key_by + a keyed state step on --workers workers (with 2,
about half cross to the other worker) into a CallbackSinkConfig, which notes
time.time_ns() in the driver as each batch arrives. So the independent figures
end in the driver and include the worker -> driver hop (ZeroMQ, unpickling, the
driver's I/O thread); the engine's own `app.metrics()` pipeline row (worker
"all", printed beside them) ends at the sink step *on the worker*.

Lines per rate:
  read -> driver          from read() to the driver callback, every event
  read -> driver, steady  the same without the first --warmup seconds of events
  due -> driver           from the scheduled time: adds how late the source was read
  engine                  app.metrics(): ingest at the source -> sink step on the worker
Also printed: run-queue wait (time runnable but not running, from /proc schedstat)
per process, to tell CPU contention on a shared machine from the engine's own cost.

    .venv/bin/python bench/latency.py [--rates 10000,100000] [--seconds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import wallaroo_nb as w  # noqa: E402

QUANTILES = (0.5, 0.95, 0.99, 0.999, 0.9999)
PCT_COLUMNS = ("p50_us", "p95_us", "p99_us", "p999_us", "p9999_us")
KEYS = 1000
KEY_NAMES = [f"k{i}" for i in range(KEYS)]


class StampedSource(w.Source):
    """`n` messages (key, seq, due_ns, read_ns) paced at `rate`; stamps taken in read()."""

    def __init__(self, n: int, rate: float):
        self.n, self.rate = n, rate
        self.i = 0
        self.t0 = 0  # ns; set by the first read, once the workers are running

    def read(self, max_n: int) -> list | None:
        now = time.time_ns()
        if not self.t0:
            self.t0 = now
        if self.i >= self.n:
            return None
        due = min(self.n, int((now - self.t0) * self.rate / 1e9) + 1, self.i + max_n)
        step = 1e9 / self.rate
        keys, t0 = KEY_NAMES, self.t0
        out = [(keys[i % KEYS], i, t0 + int(i * step), now) for i in range(self.i, due)]
        self.i = due
        return out

    def wait_hint(self) -> float | None:
        if not self.t0:
            return 0.0
        next_ns = self.t0 + self.i * 1e9 / self.rate
        return max(0.0, (next_ns - time.time_ns()) / 1e9)


class StampedSourceConfig(w.SourceConfig):
    def __init__(self, n: int, rate: float):
        self.name, self.n, self.rate = "stamped", n, rate

    def make_source(self) -> StampedSource:
        return StampedSource(self.n, self.rate)


class Count:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


@w.key_extractor
def key_of(msg):
    return msg[0]


@w.state_computation("count per key", state=Count)
def count(msg, st):
    st.n += 1
    return msg


def run_once(rate: float, seconds: float, workers: int) -> dict:
    """Run one paced app to the end: the driver arrivals, the engine's row, run-queue waits."""
    n = int(rate * seconds)
    arrivals: list = []  # (driver arrival ns, batch): cheap in the driver's I/O thread
    got = [0]

    # note() travels to the workers inside the plan (cloudpickle), so it may close
    # over plain data only: a threading.Event here would fail to pickle
    def note(batch: list) -> None:
        arrivals.append((time.time_ns(), batch))
        got[0] += len(batch)

    p = (w.source("latency", StampedSourceConfig(n, rate)).key_by(key_of).to(count)
         .to_sink(w.CallbackSinkConfig(note)))
    with w.run(p, workers=workers) as app:
        app._driver.ready.wait(60)
        pids = [*app.pids, os.getpid()]
        before = [run_queue_ns(pid) for pid in pids]
        t = time.monotonic()
        # not app.wait(): its status polling would load the workers while we measure
        while got[0] < n and app.running:
            if time.monotonic() - t > seconds * 10 + 60:
                raise TimeoutError(f"{got[0]} of {n} events arrived")
            time.sleep(0.05)
        wall = time.monotonic() - t
        waits = [(run_queue_ns(pid) - b) / 1e6 / wall for pid, b in zip(pids, before, strict=True)]
        app.wait(timeout=60)
        engine = engine_row(app, n)
    return {"n": n, "arrivals": arrivals, "engine": engine, "run_queue_ms_per_s": waits}


def engine_row(app, n: int, timeout: float = 10.0) -> dict:
    """The engine's pipeline row (worker "all") once its count covers all n events."""
    deadline = time.monotonic() + timeout
    while True:
        df = app.metrics()
        rows = df[(df.category == "pipeline") & (df.worker == "all")]
        if len(rows) and int(rows["count"].iloc[0]) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # workers send deltas about once a second
    if not len(rows):
        return {"count": 0}
    row = rows.iloc[0]
    return {"count": int(row["count"]), **{c: float(row[c]) for c in PCT_COLUMNS}}


def run_queue_ns(pid: int) -> int:
    """Total ns the threads of `pid` spent waiting for a CPU (0 where /proc has no schedstat)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
    except OSError:
        pass
    return total


def latencies(arrivals: list, n: int, rate: float, warmup: float) -> dict:
    """Independent latencies (ns) per kind, checking every event arrived exactly once."""
    since_read, since_due, steady, seqs = [], [], [], []
    first = warmup * rate
    for t, batch in arrivals:
        for _k, i, due_ns, read_ns in batch:
            since_read.append(t - read_ns)
            since_due.append(t - due_ns)
            if i >= first:
                steady.append(t - read_ns)
            seqs.append(i)
    if sorted(seqs) != list(range(n)):
        raise AssertionError(f"{len(seqs)} arrivals for {n} events, or some twice")
    return {"read": since_read, "steady": steady, "due": since_due}


def pct(latencies_ns: list) -> dict:
    """Exact nearest-rank percentiles in µs."""
    a = np.sort(np.asarray(latencies_ns, dtype=np.int64))
    if not len(a):
        return {}
    out = {}
    for q, col in zip(QUANTILES, PCT_COLUMNS, strict=True):
        rank = max(1, int(np.ceil(round(q * len(a), 9))))
        out[col] = a[rank - 1] / 1000.0
    return out


def line(label: str, p: dict) -> str:
    return f"  {label:<32}" + "".join(f"{p.get(c, float('nan')):>10.1f}" for c in PCT_COLUMNS)


def report(rate: float, r: dict, warmup: float) -> None:
    arrivals, n, eng = r["arrivals"], r["n"], r["engine"]
    lat = latencies(arrivals, n, rate, warmup)
    span = max(t for t, _ in arrivals) - min(b[0][3] for _, b in arrivals)
    waits = ", ".join(f"{v:.0f}" for v in r["run_queue_ms_per_s"])
    print(f" {rate:,.0f} events/s asked, {n / (span / 1e9):,.0f} achieved, {n:,} events, "
          f"engine counted {eng['count']:,}; run-queue wait ms/s (workers..., driver): {waits}")
    print(line("read -> driver", pct(lat["read"])))
    print(line(f"read -> driver, after {warmup:g}s", pct(lat["steady"])))
    print(line("due -> driver", pct(lat["due"])))
    print(line("engine: ingest -> sink on worker", eng))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="10000,100000")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    print(f"paced source -> key_by -> state step -> driver callback, {a.workers} worker(s), "
          f"{KEYS} keys; load average {os.getloadavg()[0]:.2f} at start")
    print(f"  {'latency (µs)':<32}" + "".join(f"{c[:-3]:>10}" for c in PCT_COLUMNS))
    for rate in [float(r) for r in a.rates.split(",")]:
        report(rate, run_once(rate, a.seconds, a.workers), a.warmup)
    print(f"  load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
