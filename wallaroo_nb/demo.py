"""``wallaroo-nb demo``: word count on worker processes, printed as tables.

The same application a newcomer writes in tutorial 1, run from the shell.
"""

from __future__ import annotations

import argparse
import time

from . import api
from .connectors.memory import CollectorSinkConfig, IterableSourceConfig

TEXT = """\
Wallaroo processes events one at a time, keeps state in memory partitioned by key,
and measures the latency of every message. In a notebook you define the computations,
the workers run them, and the results, the state and the latency come back to you.
One state object per key, made lazily; access to one key's state is serialized;
the same application runs on one worker or on many.
"""


@api.computation_multi("split")
def split(line: str) -> list:
    return [w.strip(".,;").lower() for w in line.split() if w.strip(".,;")]


class WordTotal:
    def __init__(self) -> None:
        self.count = 0


@api.state_computation("count word", state=WordTotal)
def count_word(word: str, total: WordTotal) -> tuple:
    total.count += 1
    return (word, total.count)


def word_count_app(lines: list) -> api.Application:
    p = (api.source("word count", IterableSourceConfig("text", lines))
         .to(split)
         .key_by(lambda word: word)
         .to(count_word)
         .to_sink(CollectorSinkConfig()))
    return api.build_application("Word Count", p)


@api.computation("parse")
def parse(i: int) -> tuple:
    return (f"sensor{i % 50}", (i * 7919) % 1000)


class Reading:
    def __init__(self) -> None:
        self.n = 0
        self.high = 0


@api.state_computation("track high", state=Reading)
def track_high(r: tuple, st: Reading) -> tuple | None:
    st.n += 1
    if r[1] > st.high:
        st.high = r[1]
        return (r[0], st.high)
    return None


def latency_app(rate: int, seconds: float) -> api.Application:
    p = (api.source("sensors", IterableSourceConfig("readings", range(int(rate * seconds)), rate=rate))
         .to(parse)
         .key_by(lambda r: r[0])
         .to(track_high)
         .to_sink(CollectorSinkConfig()))
    return api.build_application("Sensor highs", p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--repeat", type=int, default=2000, help="times the text is streamed")
    p.add_argument("--report", default="demo-latency.html",
                   help="where the latency report goes (default demo-latency.html)")
    p.add_argument("--rate", type=int, default=10_000, help="events/s of the latency run")


def main(args: argparse.Namespace) -> int:
    from .cluster.app import run  # here: every wallaroo-nb command imports this module

    lines = TEXT.splitlines() * args.repeat
    print(f"word count over {len(lines):,} lines on {args.workers} worker processes")
    t = time.perf_counter()
    with run(word_count_app(lines), workers=args.workers) as app:
        app.wait(timeout=120)
        dt = time.perf_counter() - t
        state = app.state("count word")
        n = len(app.results())
        print(f"{n:,} outputs in {dt:.2f}s (including worker start-up), {app.status()['errors']} errors\n")
        print("top words (from app.state('count word')):")
        top = state.sort_values(["count", "key"], ascending=[False, True]).head(10)
        print(top[["key", "count", "worker", "slot"]].to_string(index=False))
        print("\nkeys per worker:", state.groupby("worker").size().to_dict())
        print("last outputs:", app.results()[-3:])
    print(f"\nlatency: {args.rate:,} events/s for 3 s through parse -> key_by -> track high")
    with run(latency_app(args.rate, 3.0), workers=args.workers) as app:
        app.wait(timeout=120)
        time.sleep(1.2)  # the workers' last once-a-second metrics
        m = app.metrics()
        rows = m[m.worker == "all"][["category", "name", "count", "p50_us", "p99_us", "max_us"]]
        print(rows.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
        path = app.report(args.report)
        print(f"\nlatency report (open it in a browser, no server needed): {path}")
    return 0
