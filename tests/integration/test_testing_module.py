"""wallaroo_nb.testing, as a user's test suite would use it (docs/testing.md)."""

from __future__ import annotations

import pytest
from apps import first, running_sum, sum_reference

import wallaroo_nb as w
from wallaroo_nb.testing import (
    Collect,
    Count,
    LocalRun,
    ScriptedSourceConfig,
    Sum,
    read_n,
    run_local,
)

pytestmark = pytest.mark.timeout(120)


@w.computation_multi("split")
def split(line):
    return line.split()


class WordTotal:
    def __init__(self):
        self.count = 0


@w.state_computation("count word", state=WordTotal)
def count_word(word, total):
    total.count += 1
    return (word, total.count)


def word_count(lines):
    return (w.source("word count", w.IterableSourceConfig("text", lines))
            .to(split).key_by(lambda word: word).to(count_word)
            .to_sink(w.CollectorSinkConfig()))


def test_run_local_returns_what_the_app_collects():
    assert run_local(word_count(["a b a", "b c"])) == [("a", 1), ("b", 1), ("a", 2),
                                                         ("b", 2), ("c", 1)]
    with w.run(word_count(["a b a", "b c"]), workers=1) as app:
        assert app.wait(timeout=30).results() == run_local(word_count(["a b a", "b c"]))


def test_a_step_that_raises_fails_the_test_with_the_step_and_key():
    @w.state_computation("fragile", state=WordTotal)
    def fragile(word, total):
        if word == "boom":
            raise ValueError("no booms")
        return word

    p = (w.source("s", w.IterableSourceConfig("s", ["a", "boom", "b"]))
         .key_by(lambda x: x).to(fragile).to_sink(w.CollectorSinkConfig()))
    with pytest.raises(w.StepError, match=r"step 'fragile' \(computation\) raised ValueError: "
                                          r"no booms on key \"'boom'\" \(input 'boom'\)"):
        run_local(p)
    run = LocalRun(p, on_error="record").run()
    assert run.results == ["a", "b"]
    assert [(e.step, e.key, e.error) for e in run.errors] == [
        ("fragile", "'boom'", "ValueError: no booms")]


def test_state_of_a_local_run_over_several_cores():
    run = LocalRun(word_count(["a b a", "b c a"]), workers=3).run()
    assert run.state("count word") == {"a": {"count": 3}, "b": {"count": 2}, "c": {"count": 1}}
    with pytest.raises(KeyError, match="no step named 'nope'"):
        run.state("nope")


def test_run_local_refuses_a_source_that_never_ends():
    class Counter:
        def initial_value(self):
            return 0

        def apply(self, v):
            return v + 1

    p = w.source("g", w.GenSourceConfig(Counter())).to_sink(w.CollectorSinkConfig())
    with pytest.raises(w.BuildError, match=r"\['gen'\] never end.*limit"):
        run_local(p)
    bounded = w.source("g", w.GenSourceConfig(Counter(), limit=5)).to_sink(w.CollectorSinkConfig())
    assert run_local(bounded) == [0, 1, 2, 3, 4]


def test_stock_aggregations_in_count_windows():
    data = [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)]

    def over(agg):
        return (w.source("s", w.IterableSourceConfig("s", data)).key_by(first)
                .to(w.count_windows(2).over(agg)).to_sink(w.CollectorSinkConfig()))

    assert sorted(run_local(over(Count))) == [("a", 1), ("a", 2), ("b", 2)]
    assert sorted(run_local(over(Sum(lambda e: e[1])))) == [("a", 4), ("a", 4), ("b", 7)]
    assert sorted(run_local(over(Collect))) == [("a", [("a", 1), ("a", 3)]), ("a", [("a", 4)]),
                                                ("b", [("b", 2), ("b", 5)])]


def test_read_n_reads_the_first_results_of_an_endless_app():
    class Counter:
        def initial_value(self):
            return 0

        def apply(self, v):
            return v + 1

    p = w.source("g", w.GenSourceConfig(Counter(), rate=2000)).to_sink(w.CollectorSinkConfig())
    with w.run(p, workers=1) as app:
        assert read_n(app, 10) == list(range(10))
        assert read_n(app, 5, start=10) == list(range(10, 15))


def test_scripted_errors_show_in_app_errors_and_the_rest_arrives():
    data = [(f"k{i % 3}", i) for i in range(50)]
    p = (w.source("s", ScriptedSourceConfig("scripted", data, errors_at=[7, 30]))
         .key_by(first).to(running_sum).to_sink(w.CollectorSinkConfig()))
    with w.run(p, workers=2) as app:
        app.wait(timeout=30)
        errs = app.errors()
        kept = [e for i, e in enumerate(data) if i not in (7, 30)]
        assert sorted(app.results()) == sorted(
            (k, t) for k, ts in sum_reference(kept)[0].items() for t in ts)
    assert list(errs["where"]) == ["injected", "injected"]
    assert list(errs["input"]) == [repr(data[7]), repr(data[30])]


def test_a_scripted_crash_kills_a_worker_once_and_resilience_recovers_exactly(tmp_path):
    data = [(f"k{i % 10}", i) for i in range(20_000)]
    p = (w.source("s", ScriptedSourceConfig("scripted", data, crash_at=12_000, rate=20_000,
                                            marker_dir=str(tmp_path)))
         .key_by(first).to(running_sum).to_sink(w.CollectorSinkConfig()))
    with w.run(p, workers=2, resilience=True, checkpoint_interval=0.1) as app:
        app.wait(timeout=60)
        per_key: dict = {}
        for k, total in app.results():
            per_key.setdefault(k, []).append(total)
        events = [e for _, e in app.events()]
    assert per_key == sum_reference(data)[0]
    assert (tmp_path / "scripted.crashed").exists()
    assert any("exited with code 70" in e for e in events), events
    assert sum(e.startswith("recovered") for e in events) == 1, events
