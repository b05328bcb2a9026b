"""The generated chain loops (engine/fused.py) against the closures of steps.py, the
reference: the same plans run both ways on 1 and 3 engine cores in this process give
the same results in the same order, the same state, the same error records and the
same filtered / error counts; and the watchdog still names the key of a busy step."""

from __future__ import annotations

import sys

import pytest

import wallaroo_nb as w
from wallaroo_nb.engine import fused
from wallaroo_nb.engine.watchdog import busy_in, user_code
from wallaroo_nb.testing import LocalRun


class Acc:
    __slots__ = ("n",)

    def __init__(self):
        self.n = 0


class Broken:
    armed = False  # off while the pipeline is built (the API makes one to check it)

    def __init__(self):
        if Broken.armed:
            raise RuntimeError("no state today")


@w.computation("parse")
def parse(e):
    if e[1] == 13:
        raise ValueError("unlucky")
    return None if e[1] % 7 == 0 else e  # a filter


@w.key_extractor
def key_of(e):
    if e[0] == "raise":
        raise KeyError("no key")
    if e[0] == "list":
        return ["unhashable"]
    if e[0] == "float-set":
        return frozenset({1.5})  # hashable, but msgpack cannot pack it: not a key
    return e[0]


@w.state_computation("sum", state=Acc)
def total(e, acc):
    if e[1] == 29:
        raise ZeroDivisionError("twenty-nine")
    acc.n += e[1]
    return None if e[1] % 5 == 0 else (e[0], acc.n)


@w.computation("label")
def label(e):
    return f"{e[0]}={e[1]}"


@w.state_computation("count by parity", state=Acc)
def by_parity(e, acc):
    acc.n += 1
    return (e[1] % 2, acc.n)


def events(n: int = 600) -> list:
    keys = ["a", "b", "c", "d", "e", "f", "raise", "list", "float-set"]
    return [(keys[i % len(keys)] if i % 11 else keys[i % 6], i % 40) for i in range(n)]


def pipelines() -> dict:
    data = events()
    src = w.source("s", w.IterableSourceConfig("in", data))
    other = w.source("t", w.IterableSourceConfig("in2", data[::-1]))
    sink = w.CollectorSinkConfig(keep=None)
    Broken.armed = False
    built = {
        "map, key_by, state, map": src.to(parse).key_by(key_of).to(total).to(label).to_sink(sink),
        "two keyed steps": (src.key_by(key_of).to(total).key_by(lambda e: e[1] % 2)
                            .to(by_parity).to_sink(sink)),
        "no key_by (one partition)": src.to(parse).to(total).to_sink(sink),
        "merged sources": src.merge(other).to(parse).key_by(key_of).to(total).to_sink(sink),
        "state class raises": (src.key_by(key_of)
                               .to(w.state_computation("broken", state=Broken)(lambda e, s: e))
                               .to_sink(sink)),
    }
    Broken.armed = True
    return built


def run(pipeline, workers: int, fuse: bool) -> LocalRun:
    r = LocalRun(pipeline, workers=workers, on_error="record")
    for core in r.cores:
        core.rt.fused = fuse
        core.wire()
        assert fused.eligible(core.rt) is fuse
    return r.run()


def outcome(r: LocalRun) -> dict:
    steps = r.plan.steps
    return {
        "results": r.results,
        "errors": sorted((e.step, e.where, e.key, e.input, e.error) for e in r.errors),
        "filtered": [sum(c.rt.filtered[s.id] for c in r.cores) for s in steps],
        "error counts": [sum(c.rt.error_counts[s.id] for c in r.cores) for s in steps],
        "state": {s.name: r.state(s.name) for s in steps if s.holds_state},
        # every message finishes once (test_honest_metrics.py): the pipeline's count
        "finished": sum(h.count for c in r.cores for h in c.rt.pipe_hists),
        "at sinks": [sum(c.rt.sink_counts[s.id] for c in r.cores) for s in steps if s.is_sink],
    }


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("name", list(pipelines()))
def test_fused_chains_do_what_the_closures_do(name, workers):
    p = pipelines()[name]
    want, got = outcome(run(p, workers, False)), outcome(run(p, workers, True))
    assert got == want
    assert want["errors"]  # the cases under test did happen
    assert want["results"] or name == "state class raises"


def test_every_error_kind_is_exercised():
    got = outcome(run(pipelines()["map, key_by, state, map"], 3, True))
    where = {(e[0], e[1]) for e in got["errors"]}
    assert where == {("parse", "computation"), ("sum", "key extractor"), ("sum", "computation")}
    texts = " ".join(e[4] for e in got["errors"])
    assert "is not hashable" in texts and "cannot be a key" in texts and "no key" in texts
    assert got["filtered"][0] and got["filtered"][1]  # both filters dropped messages


def test_generated_code_runs_and_is_shown_in_tracebacks():
    r = run(pipelines()["map, key_by, state, map"], 1, True)
    core = r.cores[0]
    chunk = core.sources[0].chunk
    assert chunk.__code__.co_filename.startswith(fused.FUSED_FILE)
    text, _ = fused.source(core.rt, fused.chain(core.rt, 0), True)
    assert "def fused_chain(vals):" in text and "pend1[w].append(v)" in text
    tb = next(e.traceback for e in r.errors if e.step == "sum" and e.where == "computation")
    assert "v = f1(v, s)" in tb and 'raise ZeroDivisionError("twenty-nine")' in tb


def test_plans_with_multi_steps_keep_the_closures():
    p = (w.source("s", w.IterableSourceConfig("in", events(50)))
         .to(w.computation_multi("twice")(lambda e: [e, e])).key_by(key_of).to(total)
         .to_sink(w.CollectorSinkConfig()))
    r = LocalRun(p, workers=1, on_error="record")
    assert not fused.eligible(r.cores[0].rt)
    assert not r.cores[0].sources[0].chunk.__code__.co_filename.startswith(fused.FUSED_FILE)


def test_watchdog_names_the_key_inside_a_fused_chain():
    seen: list = []

    def look(e, acc):
        seen.append(busy_in(sys._getframe(), names))
        return e

    def look_before(e):
        seen.append(busy_in(sys._getframe(), names))
        return e

    p = (w.source("s", w.IterableSourceConfig("in", [("x", 1), ("y", 2)]))
         .to(w.computation("before")(look_before)).key_by(lambda e: e[0])
         .to(w.state_computation("peek", state=Acc)(look)).to_sink(w.CollectorSinkConfig()))
    r = LocalRun(p, workers=1, on_error="raise")
    names = user_code(r.plan)
    r.run()
    assert r.cores[0].sources[0].chunk.__code__.co_filename.startswith(fused.FUSED_FILE)
    # before the keyed step no key is named, not even the previous message's
    assert seen == [("before", ""), ("peek", "'x'"), ("before", ""), ("peek", "'y'")]
