"""Rescaling a running app, and recovering one killed worker, with 100,000 keys.

A keyed running sum over a paced source (every event one output to a driver
callback that stamps its arrival) runs on 2 workers; the app grows to 3, then
shrinks to 2. Printed for each change: throughput in the 2 s before and after, the
longest gap between two outputs around the change (the baseline beside it: the
longest gap in a quiet stretch of the same run), the p99 latency from origin to
the callback in the second around it, slots moved and the state size moved. Then,
with resilience, one worker is killed: the time until every worker is back.

    .venv/bin/python bench/rescale.py [--keys 100000] [--rate 100000]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
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
    return (e[0], st.total, e[2])


class Clock:
    """Arrival times of outputs at the driver callback, and their latency from due."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list = []  # (arrival monotonic, latency s)

    def sink(self, batch: list) -> None:
        now = time.time()
        with self.lock:
            for out in batch:
                self.arrivals.append((time.monotonic(), now - out[2]))


class Due:
    """Events (key, 1, due unix time), due at ``rate`` per second from the first read."""

    def __init__(self, keys: int, rate: float, n: int) -> None:
        self.keys, self.rate, self.n = keys, rate, n

    def __call__(self):
        t0 = time.time()
        return ((f"k{(i * 7919) % self.keys}", 1, t0 + i / self.rate) for i in range(self.n))


def window(clock: Clock, a: float, b: float) -> list:
    with clock.lock:
        return [x for x in clock.arrivals if a <= x[0] < b]


def longest_gap(arrivals: list) -> float:
    times = sorted(t for t, _ in arrivals)
    return max((y - x for x, y in zip(times, times[1:])), default=float("nan"))


def p99(arrivals: list) -> float:
    lat = sorted(x for _, x in arrivals)
    return lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")


def change(app, clock: Clock, n: int) -> None:
    before = time.monotonic()
    state = app.workers()["state_bytes"].sum()
    did = app.scale(n)
    after = time.monotonic()
    time.sleep(2.0)
    around = window(clock, before - 0.5, after + 0.5)
    rate_before = len(window(clock, before - 2, before)) / 2
    rate_after = len(window(clock, after, after + 2)) / 2
    quiet = longest_gap(window(clock, before - 2, before - 0.5))
    print(f"  to {n} workers: {did['slots_moved']} slots moved (~{state * did['slots_moved'] / 256 / 1e6:.1f} "
          f"MB of state) in {did['seconds'] * 1000:.0f} ms at the barrier, "
          f"{(after - before) * 1000:.0f} ms in all")
    print(f"    throughput {rate_before:,.0f} -> {rate_after:,.0f} outputs/s; longest gap "
          f"between outputs {longest_gap(around) * 1000:.0f} ms (quiet stretch before: "
          f"{quiet * 1000:.0f} ms); p99 around it {p99(around) * 1000:.1f} ms")


def rescale_run(keys: int, rate: float) -> None:
    clock = Clock()
    n = int(rate * 12)
    p = (w.source("sums", w.IterableSourceConfig("due", Due(keys, rate, n), rate=rate))
         .key_by(lambda e: e[0]).to(add).to_sink(w.CallbackSinkConfig(clock.sink)))
    with w.run(p, workers=2) as app:
        while len(clock.arrivals) < keys:  # every key has state before the first change
            time.sleep(0.1)
        time.sleep(1.0)
        print(f"keyed running sum, {keys:,} keys, {rate:,.0f} events/s paced, 2 workers:")
        change(app, clock, 3)
        change(app, clock, 2)


def recovery_run(keys: int, rate: float) -> None:
    n = int(rate * 30)
    p = (w.source("sums", w.IterableSourceConfig("due", Due(keys, rate, n), rate=rate))
         .key_by(lambda e: e[0]).to(add).to_sink(w.CallbackSinkConfig(lambda b: None)))
    for workers in (2, 3):
        with tempfile.TemporaryDirectory() as d:
            with w.run(p, workers=workers, resilience=True, checkpoint_dir=d,
                       checkpoint_interval=0.5) as app:
                while app.status().get("events_in", 0) < keys * 2:
                    time.sleep(0.1)
                target = app._driver.checkpoint_now()
                app._driver.wait_committed(target, 60)
                gen = app._driver.generation
                t = time.perf_counter()
                os.kill(app.pids[-1], signal.SIGKILL)
                while app._driver.generation == gen or not app._driver.ready.is_set():
                    time.sleep(0.001)
                took = time.perf_counter() - t
                print(f"recovery after kill -9 of one of {workers} workers ({keys:,} keys): "
                      f"{took * 1000:.0f} ms (detect, restart it, roll the others back)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=100_000)
    a = ap.parse_args()
    rescale_run(a.keys, a.rate)
    recovery_run(a.keys, a.rate)


if __name__ == "__main__":
    main()
