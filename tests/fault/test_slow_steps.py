"""Slow user code never kills a worker: a step may take 11 ms a message, or 20 s for one,
with and without resilience; the app finishes with every result, no worker restarts,
and while a step is busy app.status() says which, where, on which key, for how long.
A hang timeout exists only when asked for, names the step and the key, and stops the
app instead of recovering into the same hang.

The apps of a test run side by side (their steps sleep, so they share the 2 cores)."""

from __future__ import annotations

import threading
import time

import pytest

import wallaroo_nb as w

pytestmark = pytest.mark.timeout(300)


class Seen:
    def __init__(self):
        self.n = 0


@w.state_computation("slow lookup", state=Seen)
def slow_lookup(e, seen):
    time.sleep(e[1])  # a model call, an HTTP lookup
    seen.n += 1
    return (e[0], e[2], seen.n)


def expected(events) -> list:
    counts: dict = {}
    out = []
    for k, _, i in events:
        counts[k] = counts.get(k, 0) + 1
        out.append((k, i, counts[k]))
    return sorted(out)


def pipeline(events):
    return (w.source("s", w.IterableSourceConfig("s", events)).key_by(lambda e: e[0])
            .to(slow_lookup).to_sink(w.CollectorSinkConfig()))


def run_to_end(events, report: dict, name: str, **kw) -> None:
    try:
        with w.run(pipeline(events), **kw) as app:
            pids = list(app.pids)
            app.wait(timeout=240)
            report[name] = (sorted(app.results()), pids, list(app.pids),
                            [e for _, e in app.events()])
    except BaseException as e:  # reported by the test thread
        report[name] = e


def test_slow_steps_finish_with_every_result_and_no_restart(tmp_path):
    fast = [(f"k{i % 8}", 0.011, i) for i in range(2000)]
    one_slow = [(f"k{i % 4}", 0.001, i) for i in range(100)]
    one_slow.insert(50, ("stuck", 20.0, -1))
    runs = {f"11ms, {n} workers{', resilience' if r else ''}": (fast, dict(workers=n, resilience=r))
            for n in (1, 2) for r in (False, True)}
    runs.update({f"one 20 s message{', resilience' if r else ''}": (one_slow, dict(
        workers=2, resilience=r)) for r in (False, True)})
    report: dict = {}
    threads = [threading.Thread(target=run_to_end, args=(events, report, name), kwargs=kw)
               for name, (events, kw) in runs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(280)
    for name, (events, _kw) in runs.items():
        got = report.get(name)
        assert not isinstance(got, BaseException) and got is not None, (name, got)
        results, pids_before, pids_after, events_seen = got
        assert results == expected(events), name
        assert pids_after == pids_before, (name, events_seen)
        assert not [e for e in events_seen if "exited" in e or "recovered" in e], name


def test_status_names_the_busy_step_and_key_while_it_works():
    events = [("a", 0.001, 0), ("stuck", 6.0, 1), ("a", 0.001, 2)]
    with w.run(pipeline(events), workers=1) as app:
        deadline = time.monotonic() + 20
        busy: list = []
        while not busy and time.monotonic() < deadline:
            time.sleep(0.2)
            busy = app.status()["busy"]
        assert busy and busy[0]["step"] == "slow lookup" and busy[0]["key"] == "'stuck'", busy
        assert busy[0]["worker"] == 0 and busy[0]["seconds"] >= 1
        assert "busy: step &#x27;slow lookup&#x27; on worker 0" in app._repr_html_()
        app.wait(timeout=60)
        assert sorted(app.results()) == expected(events)
        assert app.status()["busy"] == []


@pytest.mark.parametrize("resilience", [False, True])
def test_an_opt_in_step_timeout_stops_the_app_naming_step_and_key(resilience):
    events = [("a", 0.001, 0), ("hangs", 60.0, 1)]
    t0 = time.monotonic()
    with w.run(pipeline(events), workers=2, step_timeout=2, resilience=resilience) as app:
        with pytest.raises(w.StepTimeout, match=r"step 'slow lookup' on worker \d has been busy "
                                                r"with one message on key 'hangs' for \d+s, "
                                                r"longer than step_timeout=2s"):
            app.wait(timeout=60)
        assert not [e for _, e in app.events() if "recover" in e]
    assert time.monotonic() - t0 < 30
