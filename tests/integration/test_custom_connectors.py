"""The documented user-defined connectors (examples/custom_connectors.py) on real workers."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from pathlib import Path

from apps import running_sum

import wallaroo_nb as w

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from custom_connectors import (  # noqa: E402
    AsyncGenSourceConfig,
    FileSourceConfig,
    JSONLinesSinkConfig,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fault"))
from faults import run_crashes  # noqa: E402


def write_lines(path: Path, n: int) -> list:
    events = [(f"k{i % 37}", i % 5) for i in range(n)]
    path.write_text("".join(f"{k},{v}\n" for k, v in events))
    return events


@w.computation("parse")
def parse(line):
    k, v = line.split(",")
    return (k, int(v))


def per_key(outputs):
    by = collections.defaultdict(list)
    for k, total in outputs:
        by[k].append(total)
    return dict(by)


def expected(events):
    by, totals = collections.defaultdict(list), collections.Counter()
    for k, v in events:
        totals[k] += v
        by[k].append(totals[k])
    return dict(by)


def test_file_source_and_jsonl_sink(start, tmp_path):
    events = write_lines(tmp_path / "in.txt", 5000)
    p = (w.source("file", FileSourceConfig("lines", str(tmp_path / "in.txt")))
         .to(parse).key_by(lambda e: e[0]).to(running_sum)
         .to_sinks([w.CollectorSinkConfig(keep=None), JSONLinesSinkConfig(str(tmp_path / "out-{worker}.jsonl"))]))
    app = start(p, workers=2)
    app.wait(timeout=60)
    assert per_key(app.results()) == expected(events)
    app.stop()
    written = [tuple(json.loads(line)) for f in sorted(tmp_path.glob("out-*.jsonl"))
               for line in f.read_text().splitlines()]
    assert len(list(tmp_path.glob("out-*.jsonl"))) == 2
    assert per_key(written) == expected(events)


def test_file_source_replays_by_offset_after_kills(start, tmp_path):
    events = write_lines(tmp_path / "in.txt", 200_000)
    p = (w.source("file", FileSourceConfig("lines", str(tmp_path / "in.txt")))
         .to(parse).key_by(lambda e: e[0]).to(running_sum).to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path / "ckpt"),
                checkpoint_interval=0.1)
    log = run_crashes(app, seed=5, crashes=2, gap=(0.05, 0.2))
    app.wait(timeout=120)
    assert per_key(app.results()) == expected(events), log


def test_async_generator_source(start):
    async def ticks():
        for i in range(300):
            if i % 100 == 0:
                await asyncio.sleep(0.01)
            yield i

    p = w.source("async", AsyncGenSourceConfig("ticks", ticks)).to_sink(w.CollectorSinkConfig(keep=None))
    app = start(p, workers=1)
    app.wait(timeout=30)
    assert app.results() == list(range(300))


def test_file_source_names_a_missing_file(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="nope.txt"):
        w.source("file", FileSourceConfig("lines", str(tmp_path / "nope.txt")))
