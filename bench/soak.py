"""Soak: an endless source at full speed into a collector with the default keep, for
minutes; the driver's (this process's) and the workers' memory every 10 s.

Target: flat after warm-up (the driver grows by at most 50 MiB from the first sample
after warm-up to the end). The baseline beside it, measured in the same run: the
memory of this process before the app started.

    .venv/bin/python bench/soak.py [--seconds 300] [--workers 2] [--every 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import wallaroo_nb as w  # noqa: E402

MIB = 1024 * 1024


class Counter:
    def initial_value(self):
        return 0

    def apply(self, v):
        return v + 1


class Total:
    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0


@w.state_computation("running sum", state=Total)
def add(v, st):
    st.total += v
    return (v % 1000, st.total)


def rss(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / MIB
    except psutil.NoSuchProcess:
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=20)
    a = ap.parse_args()
    me = os.getpid()
    before = rss(me)
    p = (w.source("endless", w.GenSourceConfig(Counter())).key_by(lambda v: v % 1000)
         .to(add).to_sink(w.CollectorSinkConfig()))
    print(f"driver before the app: {before:.0f} MiB (baseline)")
    print(f"{'t (s)':>6} {'driver MiB':>11} {'workers MiB':>12} {'results':>14} {'kept':>8}")
    samples = []
    with w.run(p, workers=a.workers) as app:
        t0 = time.monotonic()
        while (t := time.monotonic() - t0) < a.seconds:
            time.sleep(min(a.every, a.seconds - t))
            st = app.status()
            drv, wrk = rss(me), sum(rss(pid) for pid in app.pids)
            samples.append((time.monotonic() - t0, drv, wrk))
            print(f"{samples[-1][0]:6.0f} {drv:11.0f} {wrk:12.0f} {st['results']:14,} "
                  f"{len(app.results(st['results'] - 100_000)):8,}", flush=True)
    after = [s for s in samples if s[0] >= a.warmup] or samples[-1:]
    growth = after[-1][1] - after[0][1]
    wgrowth = after[-1][2] - after[0][2]
    rate = st["results"] / samples[-1][0]
    print(f"after warm-up ({a.warmup:g} s): driver {growth:+.0f} MiB, workers {wgrowth:+.0f} MiB "
          f"over {after[-1][0] - after[0][0]:.0f} s (target: driver within +50 MiB); "
          f"{rate:,.0f} results/s collected")


if __name__ == "__main__":
    main()
