"""Grow and shrink a running app, Wallaroo's resilience sequences: outputs exactly those
of a run that never scaled, per key in order, against plain Python, over 1,000,000
events and 100,000 keys (a paced source, so every change lands mid-stream).

- grow 1 -> 2 -> 3, then shrink 3 -> 2 -> 1 (without resilience);
- grow then crash, crash then shrink (with resilience: only the dead worker restarts);
- scale during a checkpoint;
- windows (range, count, event, session) across a grow and a shrink;
- a Kafka sink across a grow and a shrink, under resilience.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from apps import first, running_sum, sum_reference  # noqa: E402
from faults import kill, wait_until  # noqa: E402
from kafka_broker import kafka_broker_fixture  # noqa: E402,F401 (registers the fixture)

import wallaroo_nb as w  # noqa: E402
from wallaroo_nb.testing import Sum  # noqa: E402

pytestmark = pytest.mark.timeout(300)

N = 1_000_000
KEYS = 100_000
RATE = 250_000  # events/s: four seconds of stream


def events() -> list:
    return [(f"k{(i * 7919) % KEYS}", i % 5) for i in range(N)]


def per_key(pairs) -> dict:
    got = collections.defaultdict(list)
    for k, v in pairs:
        got[k].append(v)
    return dict(got)


def sums(**kw):
    p = (w.source("sums", w.IterableSourceConfig("events", events(), rate=RATE))
         .key_by(first).to(running_sum).to_sink(w.CollectorSinkConfig(keep=None)))
    return p


def read_at_least(app, n: int) -> None:
    assert wait_until(lambda: app.status().get("events_in", 0) >= n, 60, 0.02), app.status()


def test_grow_1_2_3_then_shrink_3_2_1(start):
    app = start(sums(), workers=1)
    steps = []
    for i, n in enumerate((2, 3, 2, 1)):
        read_at_least(app, (i + 1) * N // 6)
        steps.append(app.scale(n))
        assert len(app.pids) == n and app.workers()["slots"].sum() == 256
    app.wait(timeout=120)
    assert per_key(app.results()) == sum_reference(events())[0], steps
    assert [s["workers"] for s in steps] == [2, 3, 2, 1]
    assert steps[0]["slots_moved"] == 128 and steps[1]["slots_moved"] == 85, steps


def test_grow_then_crash_and_crash_then_shrink(start, tmp_path):
    app = start(sums(), workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.2)
    read_at_least(app, N // 6)
    app.scale(3)
    read_at_least(app, N // 3)
    survivors = app.pids[:2]
    kill(app.pids[2])  # grow, then crash
    assert wait_until(lambda: any(e.startswith("recovered") for _, e in app.events()), 30)
    assert app.pids[:2] == survivors  # only the dead worker restarted
    read_at_least(app, N // 2)
    kill(app.pids[1])  # crash, then shrink
    assert wait_until(lambda: sum(e.startswith("recovered") for _, e in app.events()) == 2, 30)
    app.scale(1)
    app.wait(timeout=120)
    assert per_key(app.results()) == sum_reference(events())[0], app.events()


def test_scale_during_a_checkpoint(start, tmp_path):
    app = start(sums(), workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.05)
    read_at_least(app, N // 5)
    d = app._driver
    assert wait_until(lambda: d.epochs.in_flight is not None, 10, 0.0005)
    app.scale(3)  # waits for the epoch in flight, then rescales at the next barrier
    read_at_least(app, N // 2)
    assert wait_until(lambda: d.epochs.in_flight is not None, 10, 0.0005)
    app.scale(2)
    app.wait(timeout=120)
    assert per_key(app.results()) == sum_reference(events())[0], app.events()


TIMED_N = 200_000


def timed_events() -> list:
    """(key, value, event time ns): time rises 1 us an event, a little out of order."""
    return [(f"k{(i * 31) % 997}", i % 7, i * 1000 - (i * 7 % 5) * 1000) for i in range(TIMED_N)]


def value(e):
    return e[1]


def test_windows_of_every_kind_across_a_grow_and_a_shrink(start):
    src = w.IterableSourceConfig("timed", timed_events(), rate=60_000, event_time=lambda e: e[2])
    kinds = {
        "range": w.range_windows(w.milliseconds(20)).over(Sum(value)),
        "count": w.count_windows(5).with_timeout(None).over(Sum(value)),
        "event": w.event_windows().fire_when(lambda e: e[1] == 6).over(Sum(value)),
        "session": w.session_windows(w.microseconds(300)).over(Sum(value)),
    }
    got: dict = {name: [] for name in kinds}  # one callback sink per kind: no interleaving
    pipes = [w.source(name, src).key_by(first).to(spec)
             .to_sink(w.CallbackSinkConfig(got[name].extend, name)) for name, spec in kinds.items()]
    app_def = w.build_application("windows", *pipes)
    w.testing.run_local(app_def)
    unscaled = {name: per_key(outs) for name, outs in got.items()}
    for outs in got.values():
        outs.clear()
    app = start(app_def, workers=2)
    read_at_least(app, TIMED_N // 3)
    app.scale(3)
    read_at_least(app, TIMED_N * 2 // 3)
    app.scale(1)
    app.wait(timeout=120)
    for name in kinds:
        assert per_key(got[name]) == unscaled[name], name
        assert sum(map(len, unscaled[name].values())) > 1000, name


def test_kafka_sink_across_a_grow_and_a_shrink(start, tmp_path, kafka_broker):
    from kafka_broker import read_topic

    from wallaroo_nb.connectors.kafka import KafkaSinkConfig

    n = 200_000
    evs = events()[:n]
    topic = kafka_broker.create_topic(partitions=2)
    p = (w.source("sums", w.IterableSourceConfig("events", evs, rate=60_000))
         .key_by(first).to(running_sum)
         .to_sink(KafkaSinkConfig(topic, kafka_broker.bootstrap,
                                  lambda o: (f"{o[0]},{o[1]}".encode(), o[0].encode(), None))))
    app = start(p, workers=1, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.2)
    read_at_least(app, n // 3)
    app.scale(3)
    read_at_least(app, n * 2 // 3)
    app.scale(2)
    app.wait(timeout=120)
    written = read_topic(kafka_broker.bootstrap, topic, n)
    assert len(written) == n
    got = per_key(tuple(s.split(",")) for s in written)
    assert {k: [int(x) for x in v] for k, v in got.items()} == sum_reference(evs)[0]


def test_scale_refuses_to_move_a_source_that_cannot_replay(start):
    from wallaroo_nb.connectors.tcp import TCPSourceConfig

    a = w.source("a", w.IterableSourceConfig("a", range(10), rate=10))
    b = w.source("tcp", TCPSourceConfig("tcp", "127.0.0.1", 0, lambda b: b.decode()))
    app = start(w.build_application("two", a.to_sink(w.CollectorSinkConfig()),
                                    b.to_sink(w.CollectorSinkConfig("t"))), workers=2)
    with pytest.raises(w.BuildError, match="source 'tcp' runs on worker 1.*cannot replay"):
        app.scale(1)
    assert len(app.pids) == 2
    with pytest.raises(ValueError, match="positive number of workers"):
        app.scale(0)


@pytest.mark.parametrize("first,then", [(2, 3), (3, 1)])
def test_resume_with_another_number_of_workers(start, tmp_path, first, then):
    """stop() commits; resume=True on more or fewer workers goes on exactly, keyed state
    and open range windows (with their step's watermark) included."""
    ckpt = str(tmp_path / "ckpt")
    src = w.IterableSourceConfig("timed", timed_events(), rate=40_000, event_time=lambda e: e[2])
    got: dict = {"sum": [], "range": []}
    app_def = w.build_application(
        "resumed",
        w.source("sum", src).key_by(first_key).to(running_sum)
        .to_sink(w.CallbackSinkConfig(got["sum"].extend, "sum")),
        w.source("range", src).key_by(first_key).to(w.range_windows(w.milliseconds(20))
                                                    .over(Sum(value)))
        .to_sink(w.CallbackSinkConfig(got["range"].extend, "range")))
    w.testing.run_local(app_def)
    expected = {name: per_key(outs) for name, outs in got.items()}
    for outs in got.values():
        outs.clear()
    app = start(app_def, workers=first, resilience=True, checkpoint_dir=ckpt,
                checkpoint_interval=0.3)
    read_at_least(app, TIMED_N // 2)
    app.stop()
    again = start(app_def, workers=then, checkpoint_dir=ckpt, resume=True)
    again.wait(timeout=120)
    for name in got:
        assert per_key(got[name]) == expected[name], name


def first_key(e):
    return e[0]
