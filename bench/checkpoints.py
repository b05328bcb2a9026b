"""Checkpoint cost: time to checkpoint 100,000 keys of state, recovery time after a
kill -9 (and how it changes with the stream's position: a list seeks by index, a
generator factory replays), and throughput with a checkpoint every second vs none
(same run).

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
            epochs = app._driver.epochs
            return len(events) / dt, list(epochs.times) if epochs else []


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


def recovery_at(source: w.SourceConfig, workers: int, position: int) -> float:
    """Seconds from kill -9 of a worker to every worker restored, once the source has
    read ``position`` messages."""
    p = (w.source("sum", source).key_by(lambda e: e[0]).to(add)
         .to_sink(w.CollectorSinkConfig(keep=1000)))
    with tempfile.TemporaryDirectory() as d:
        with w.run(p, workers=workers, resilience=True, checkpoint_dir=d,
                   checkpoint_interval=0.2) as app:
            app._driver.ready.wait(60)
            while app.status().get("events_in", 0) < position:
                time.sleep(0.02)
            target = app._driver.checkpoint_now()  # a checkpoint at this position
            app._driver.wait_committed(target, 60)
            gen = app._driver.generation
            t = time.perf_counter()
            os.kill(app.pids[0], signal.SIGKILL)
            while app._driver.generation == gen or not app._driver.ready.is_set():
                time.sleep(0.001)
            return time.perf_counter() - t


def recovery_by_position(n: int, workers: int) -> None:
    events = [(f"key{i % 10_000}", 1) for i in range(n)]
    print(f"recovery after kill -9 at an early and a late position ({n:,}-message source):")
    for name, cfg in (("list (seeks by index)", w.IterableSourceConfig("events", events)),
                      ("factory (replays)", w.IterableSourceConfig("events", lambda: iter(events)))):
        early = recovery_at(cfg, workers, n // 20)
        late = recovery_at(cfg, workers, n * 8 // 10)
        print(f"  {name:24} at {n // 20:>10,}: {early:.2f} s   at {n * 8 // 10:>10,}: {late:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--position-events", type=int, default=5_000_000,
                    help="length of the source for recovery at early and late positions")
    a = ap.parse_args()
    times, size, recovery = checkpoint_and_recovery(a.keys, a.workers)
    print(f"checkpoint of {a.keys:,} keys on {a.workers} workers: median "
          f"{statistics.median(times) * 1000:.0f} ms (barrier to commit; {size / 1e6:.1f} MB on disk)")
    print(f"recovery after kill -9 of a worker (detect, restart it, roll the others back): {recovery:.2f} s")
    recovery_by_position(a.position_events, a.workers)
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
