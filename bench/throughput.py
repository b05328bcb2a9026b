"""Keyed running sum over 1,000,000 (key, int) events with 10,000 string keys.

Prints events/s end to end (source to collector in the driver, one output per
event) on 1 and 2 workers, with metrics on and off, beside a plain-Python dict
loop doing the same sum in this process, measured in the same run; and the
workers' CPU time per event, which shows what metrics cost with less noise than
wall time. Also a word count over a text file.

    .venv/bin/python bench/throughput.py [--events N] [--workers 1,2] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import wallaroo_nb as w  # noqa: E402


class Total:
    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0


@w.key_extractor
def first(e):
    return e[0]


@w.state_computation("running sum", state=Total)
def add(e, st):
    st.total += e[1]
    return (e[0], st.total)


def make_events(n: int, keys: int) -> list:
    rnd = random.Random(42)
    names = [f"key{i}" for i in range(keys)]
    return [(names[rnd.randrange(keys)], rnd.randrange(100)) for _ in range(n)]


def baseline(events: list) -> float:
    t = time.perf_counter()
    totals: dict = {}
    out = []
    for k, v in events:
        s = totals.get(k, 0) + v
        totals[k] = s
        out.append((k, s))
    assert len(out) == len(events)
    return len(events) / (time.perf_counter() - t)


def worker_cpu(app: w.App) -> float:
    """CPU seconds the app's worker processes have used (user + system)."""
    return sum(sum(psutil.Process(p).cpu_times()[:2]) for p in app.pids)


def engine(events: list, workers: int, metrics: bool = True, **run_kw) -> tuple[float, float]:
    """(events/s, worker CPU ns per event): CPU is steadier than wall time on a noisy
    machine, and shows what metrics cost the workers whoever else is running.
    ``run_kw`` goes to w.run (bench/cluster.py passes cluster=)."""
    p = (w.source("sum", w.IterableSourceConfig("events", events))
         .key_by(first).to(add).to_sink(w.CollectorSinkConfig(keep=None)))
    with w.run(p, workers=workers, metrics=metrics, **run_kw) as app:
        app._driver.ready.wait(60)  # count from the moment workers are up, not spawn time
        c = worker_cpu(app)
        t = time.perf_counter()
        app.wait(timeout=300)
        dt = time.perf_counter() - t
        cpu = worker_cpu(app) - c
        n = len(app.results())
    assert n == len(events), (n, len(events))
    return n / dt, cpu / n * 1e9


def wordcount(path: str, workers: int) -> tuple:
    @w.computation_multi("split")
    def split(line):
        return line.split()

    class Count:
        def __init__(self):
            self.n = 0

    @w.state_computation("count", state=Count)
    def count(word, c):
        c.n += 1
        return (word, c.n)

    p = (w.source("wc", w.IterableSourceConfig("lines", lambda: open(path)))
         .to(split).key_by(lambda x: x).to(count).to_sink(w.CollectorSinkConfig(keep=None)))
    with w.run(p, workers=workers) as app:
        app._driver.ready.wait(60)
        t = time.perf_counter()
        app.wait(timeout=300)
        dt = time.perf_counter() - t
        return len(app.results()), dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    events = make_events(a.events, a.keys)
    base = max(baseline(events) for _ in range(3))
    print(f"keyed running sum, {a.events:,} events, {a.keys:,} keys")
    print(f"  baseline plain-Python dict loop: {base:12,.0f} events/s")
    for n in [int(x) for x in a.workers.split(",")]:
        runs: dict = {True: [], False: []}
        for _ in range(a.repeat):  # interleaved, so drift on a noisy machine hits both
            for metrics in (True, False):
                runs[metrics].append(engine(events, n, metrics=metrics))
        (on, cpu_on), (off, cpu_off) = (
            (max(r for r, _ in runs[m]), min(c for _, c in runs[m])) for m in (True, False))
        print(f"  wallaroo_nb {n} worker(s), metrics on:  {on:12,.0f} events/s   "
              f"ratio to baseline {on / base:.3f}   worker CPU {cpu_on:4.0f} ns/event")
        print(f"  wallaroo_nb {n} worker(s), metrics off: {off:12,.0f} events/s   "
              f"ratio to baseline {off / base:.3f}   worker CPU {cpu_off:4.0f} ns/event")
        print(f"    metrics cost: {1 - on / off:+.1%} events/s (best of {a.repeat} each), "
              f"{cpu_on - cpu_off:+.0f} ns of worker CPU per event")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        rnd = random.Random(1)
        vocab = [f"w{i}" for i in range(5000)]
        for _ in range(50_000):
            f.write(" ".join(rnd.choice(vocab) for _ in range(10)) + "\n")
    try:
        for n in [int(x) for x in a.workers.split(",")]:
            words, dt = wordcount(f.name, n)
            print(f"  word count {n} worker(s): {words:,} words in {dt:.2f}s = {words / dt:,.0f} words/s")
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
