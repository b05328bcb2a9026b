"""Computation errors: recorded and counted by default, or stop the app."""

from __future__ import annotations

import pytest

import wallaroo_nb as w


class Total:
    def __init__(self):
        self.total = 0


@w.state_computation("fragile sum", state=Total)
def fragile(e, st):
    if e[1] == 13:
        raise ValueError("unlucky number")
    st.total += e[1]
    return (e[0], st.total)


@w.computation("parse")
def parse(s):
    return (s.split(":")[0], int(s.split(":")[1]))


EVENTS = [f"k{i % 5}:{i % 20}" for i in range(200)] + ["bad-line", "k1:notanumber"]


def pipeline():
    return (w.source("p", w.IterableSourceConfig("lines", EVENTS)).to(parse)
            .key_by(lambda e: e[0]).to(fragile).to_sink(w.CollectorSinkConfig()))


def test_errors_are_recorded_and_processing_goes_on(start):
    app = start(pipeline(), workers=2)
    app.wait(timeout=30)
    errs = app.errors()
    assert set(errs.columns) >= {"step", "key", "input", "error", "traceback", "worker"}
    by_step = errs.groupby("step").size().to_dict()
    assert by_step == {"parse": 2, "fragile sum": 10}
    unlucky = errs[errs.step == "fragile sum"]
    assert unlucky["error"].str.contains("ValueError: unlucky number").all()
    assert set(unlucky["key"]) == {"'k3'"}  # i % 20 == 13 -> i % 5 == 3
    assert "raise ValueError" in unlucky["traceback"].iloc[0]
    assert errs[errs.step == "parse"]["input"].tolist() == ["'bad-line'", "'k1:notanumber'"]
    assert len(app.results()) == 200 - 10
    assert app.status()["errors"] == 12


def test_on_error_stop_halts_and_raises_naming_the_step(start):
    app = start(pipeline(), workers=2, on_error="stop")
    with pytest.raises(w.StepError, match="step 'fragile sum' raised ValueError"):
        app.wait(timeout=30)
    assert not app.running


def test_bad_key_is_an_error_not_a_crash(start):
    @w.state_computation("by list key", state=Total)
    def f(e, st):
        st.total += 1
        return st.total

    p = (w.source("p", w.IterableSourceConfig("x", [1, 2, 3])).key_by(lambda x: [x] if x == 2 else x)
         .to(f).to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    app.wait(timeout=30)
    errs = app.errors()
    assert len(errs) == 1 and "not hashable" in errs["error"][0]
    assert errs["where"][0] == "key extractor"
    assert sorted(app.results()) == [1, 1]


def test_callback_sink_error_is_recorded(start):
    def bad_callback(batch):
        raise RuntimeError("sink is down")

    p = w.source("p", w.IterableSourceConfig("x", [1, 2])).to_sink(w.CallbackSinkConfig(bad_callback))
    app = start(p, workers=1)
    app.wait(timeout=30)
    errs = app.errors()
    assert (errs["where"] == "sink").all() and errs["error"].str.contains("sink is down").all()
