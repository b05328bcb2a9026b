"""Keyed running sum over 1,000,000 (key, int) events, for 100, 10,000 and 100,000 keys.

Prints events/s end to end (source on a worker, one output per event handed to a
driver callback, CallbackSinkConfig) on 1 and 2 workers with metrics on (and off
for --off-keys), beside a plain-Python dict loop doing the same sum in this
process, measured in the same run; and the workers' CPU time per event, steadier
than wall time on a noisy machine. Also a word count over a text file.

    .venv/bin/python bench/throughput.py [--events N] [--keys 100,10000,100000]
        [--workers 1,2] [--repeat R] [--off-keys 10000]
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
    """The same sum, one output per event, in a plain dict loop."""
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
    """(events/s, worker CPU ns per event), timed from the workers being up to the
    last output reaching the driver callback; ``run_kw`` goes to w.run
    (bench/cluster.py passes cluster=)."""
    got = [0]

    def count(batch: list) -> None:  # runs in the driver's I/O thread
        got[0] += len(batch)

    p = (w.source("sum", w.IterableSourceConfig("events", events))
         .key_by(first).to(add).to_sink(w.CallbackSinkConfig(count)))
    n = len(events)
    with w.run(p, workers=workers, metrics=metrics, **run_kw) as app:
        app._driver.ready.wait(60)  # count from the moment workers are up, not spawn time
        c = worker_cpu(app)
        t = time.perf_counter()
        deadline = time.monotonic() + 300
        while got[0] < n and app.running and time.monotonic() < deadline:
            time.sleep(0.002)  # not app.wait(): its status polling loads the workers
        dt = time.perf_counter() - t
        cpu = worker_cpu(app) - c
        app.wait(timeout=60)
    assert got[0] == n, (got[0], n)
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


def one_key_count(a: argparse.Namespace, keys: int, workers: list) -> None:
    events = make_events(a.events, keys)
    base = max(baseline(events) for _ in range(3))
    print(f"keyed running sum, {a.events:,} events, {keys:,} keys, outputs to a driver callback")
    print(f"  baseline plain-Python dict loop:  {base:12,.0f} events/s")
    modes = (True, False) if keys == a.off_keys else (True,)
    for n in workers:
        runs: dict = {m: [] for m in modes}
        for _ in range(a.repeat):  # interleaved, so drift on a noisy machine hits both
            for metrics in modes:
                runs[metrics].append(engine(events, n, metrics=metrics))
        best = {m: (max(r for r, _ in runs[m]), min(c for _, c in runs[m])) for m in modes}
        for m in modes:
            rate, cpu = best[m]
            print(f"  wallaroo_nb {n} worker(s), metrics {'on: ' if m else 'off:'} {rate:12,.0f} "
                  f"events/s   ratio to baseline {rate / base:.3f}   worker CPU {cpu:4.0f} ns/event"
                  f"   (runs: {', '.join(f'{r / 1e6:.2f}M' for r, _ in runs[m])})")
        if len(modes) == 2:
            (on, cpu_on), (off, cpu_off) = best[True], best[False]
            print(f"    metrics cost: {1 - on / off:+.1%} events/s (best of {a.repeat} each), "
                  f"{cpu_on - cpu_off:+.0f} ns of worker CPU per event")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", default="100,10000,100000")
    ap.add_argument("--off-keys", type=int, default=10_000,
                    help="the key count also measured with metrics off")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-wordcount", action="store_true")
    a = ap.parse_args()
    workers = [int(x) for x in a.workers.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f} at start")
    for keys in [int(k) for k in a.keys.split(",")]:
        one_key_count(a, keys, workers)
    if not a.no_wordcount:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            rnd = random.Random(1)
            vocab = [f"w{i}" for i in range(5000)]
            for _ in range(50_000):
                f.write(" ".join(rnd.choice(vocab) for _ in range(10)) + "\n")
        try:
            for n in workers:
                words, dt = wordcount(f.name, n)
                print(f"  word count {n} worker(s): {words:,} words in {dt:.2f}s = "
                      f"{words / dt:,.0f} words/s")
        finally:
            os.unlink(f.name)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
