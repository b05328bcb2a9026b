"""Checkpoint cost: time to checkpoint 100,000 keys of state, recovery time after a
kill -9, and throughput with a checkpoint every second vs none (same run).

    .venv/bin/python bench/checkpoints.py [--events N] [--keys K]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import wallaroo_nb as w  # noqa: E402


class Total:
    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0


@w.state_computation("running sum", state=Total)
def add(e, st):
    st.total += e[1]
    return (e[0], st.total)


def pipeline(events: list) -> w.Pipeline:
    return (w.source("sum", w.IterableSourceConfig("events", events))
            .key_by(lambda e: e[0]).to(add).to_sink(w.CollectorSinkConfig(keep=None)))


def throughput(events: list, resilience: bool, workers: int) -> tuple:
    with tempfile.TemporaryDirectory() as d:
        app = w.run(pipeline(events), workers=workers, resilience=resilience,
                    checkpoint_dir=d if resilience else None, checkpoint_interval=1.0)
        with app:
            app._driver.ready.wait(60)
            t = time.perf_counter()
            app.wait(timeout=600)
            dt = time.perf_counter() - t
            assert len(app.results()) == len(events)
            return len(events) / dt, list(app._driver.epochs.times)


def checkpoint_and_recovery(keys: int, workers: int) -> tuple:
    events = [(f"key{i}", 1) for i in range(keys)]
    with tempfile.TemporaryDirectory() as d:
        app = w.run(pipeline(events), workers=workers, resilience=True, checkpoint_dir=d,
                    checkpoint_interval=3600)
        with app:
            app.wait(timeout=600)  # ends with a forced checkpoint of all keys
            times = []
            for _ in range(3):
                t = time.perf_counter()
                target = app._driver.checkpoint_now()
                app._driver.wait_committed(target, 60)
                times.append(time.perf_counter() - t)
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
                       if f.startswith(f"epoch-{target}-"))
            gen = app._driver.generation
            t = time.perf_counter()
            os.kill(app.pids[0], signal.SIGKILL)
            while app._driver.generation == gen or not app._driver.ready.is_set():
                time.sleep(0.001)
            recovery = time.perf_counter() - t
            st = app.state("running sum")
            assert len(st) == keys and st["total"].eq(1).all()
            return times, size, recovery


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    times, size, recovery = checkpoint_and_recovery(a.keys, a.workers)
    print(f"checkpoint of {a.keys:,} keys on {a.workers} workers: median "
          f"{statistics.median(times) * 1000:.0f} ms (barrier to commit; {size / 1e6:.1f} MB on disk)")
    print(f"recovery after kill -9 of a worker (detect, restart all, restore): {recovery:.2f} s")
    rnd = random.Random(1)
    events = [(f"key{rnd.randrange(10_000)}", 1) for _ in range(a.events)]
    off, _ = throughput(events, False, a.workers)
    on, ckpts = throughput(events, True, a.workers)
    off2, _ = throughput(events, False, a.workers)
    on2, ckpts2 = throughput(events, True, a.workers)
    off, on = max(off, off2), max(on, on2)
    print(f"keyed running sum, {a.events:,} events, {a.workers} workers:")
    print(f"  no checkpoints:               {off:12,.0f} events/s")
    print(f"  a checkpoint every second:    {on:12,.0f} events/s   ({on / off - 1:+.1%}; "
          f"{len(ckpts + ckpts2)} checkpoints, median {statistics.median(ckpts + ckpts2) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
