"""Delivery guarantees of the driver-side sinks and what the user sees under resilience,
each proven with kill -9 of workers (docs/resilience.md, "Delivery guarantees"):

- the collector and the callback sink are exactly once;
- error records and counters are counted once, though a replay raises the errors again;
- a "close window" trigger is not undone by a crash (before or after its commit);
- stop() commits the last epoch, and a resume goes on from it, nothing lost or doubled;
- app.state(step, committed=True) never goes backwards.
"""

from __future__ import annotations

import collections
import threading
import time

import pytest
from apps import first, running_sum, sum_reference
from faults import kill, run_crashes, wait_until

import wallaroo_nb as w
from wallaroo_nb.testing import Count

pytestmark = pytest.mark.timeout(240)


def per_key(pairs) -> dict:
    out = collections.defaultdict(list)
    for k, v in pairs:
        out[k].append(v)
    return dict(out)


def test_callback_sink_is_exactly_once_across_kills(start, tmp_path):
    events = [(f"k{i % 500}", i % 7) for i in range(300_000)]
    got: list = []
    p = (w.source("s", w.IterableSourceConfig("e", events, rate=100_000)).key_by(first)
         .to(running_sum).to_sink(w.CallbackSinkConfig(got.extend)))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.2)
    log = run_crashes(app, seed=21, crashes=3)
    app.wait(timeout=180)
    assert per_key(got) == sum_reference(events)[0], log


class Count3:
    def __init__(self):
        self.n = 0


@w.state_computation("picky", state=Count3)
def picky(e, st):
    if e[1] % 10 == 3:
        raise ValueError(f"no threes: {e[1]}")
    st.n += 1
    return (e[0], st.n)


def test_errors_and_counters_are_counted_once_after_a_replay(start, tmp_path):
    events = [(f"k{i % 50}", i) for i in range(60_000)]
    p = (w.source("s", w.IterableSourceConfig("e", events, rate=30_000)).key_by(first)
         .to(picky).to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.3)
    log = run_crashes(app, seed=4, crashes=2, gap=(0.4, 0.8))
    app.wait(timeout=120)
    failing = sum(1 for _, v in events if v % 10 == 3)
    assert app.status()["errors"] == failing, log
    errs = app.errors()
    assert len(errs) == min(failing, 1000)
    counters = app.metrics_counters()
    errors_counted = counters[(counters["name"] == "picky") & (counters["event"] == "errors")
                              & (counters["worker"] == "all")]["count"].sum()
    assert errors_counted == failing, (log, counters)
    assert len(app.results()) == len(events) - failing


def test_a_trigger_and_a_kill_close_each_window_exactly_once(start, tmp_path):
    """The trigger is requested, a worker is killed before it can commit; after the
    recovery the trigger is applied again: every key gets exactly two windows (the
    trigger's and the end of the stream's) that hold all its messages, once."""
    n, keys = 60_000, 20
    events = [(f"k{i % keys}", i) for i in range(n)]
    p = (w.source("s", w.IterableSourceConfig("e", events, rate=15_000)).key_by(first)
         .to(w.event_windows().over(Count)).to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.5)
    assert wait_until(app._driver.ready.is_set, 30)
    time.sleep(1.0)
    fired: list = []
    t = threading.Thread(target=lambda: fired.append(app.trigger("Count")))
    gen = app._driver.generation
    t.start()
    kill(app.pids[0])  # before the trigger's epoch can commit
    t.join(60)
    assert app._driver.generation > gen, app.events()
    assert fired == [keys], fired
    app.wait(timeout=120)
    windows = per_key(app.results())
    assert sorted(windows) == sorted({k for k, _ in events})
    assert all(len(counts) == 2 and sum(counts) == n // keys for counts in windows.values()), windows


def test_a_kill_after_a_trigger_committed_does_not_undo_it(start, tmp_path):
    n, keys = 40_000, 10
    events = [(f"k{i % keys}", i) for i in range(n)]
    p = (w.source("s", w.IterableSourceConfig("e", events, rate=10_000)).key_by(first)
         .to(w.event_windows().over(Count)).to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.3)
    assert wait_until(app._driver.ready.is_set, 30)
    time.sleep(1.0)
    assert app.trigger("Count") == keys
    first_windows = per_key(app.results())
    assert all(len(v) == 1 for v in first_windows.values())
    kill(app.pids[1])
    app.wait(timeout=120)
    windows = per_key(app.results())
    assert all(windows[k][0] == first_windows[k][0] for k in windows)  # not rolled back
    assert all(len(c) == 2 and sum(c) == n // keys for c in windows.values()), windows


class Counter:
    def initial_value(self):
        return 0

    def apply(self, v):
        return v + 1


def test_stop_commits_the_last_epoch_and_resume_goes_on_from_it(start, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    p = (w.source("g", w.GenSourceConfig(Counter(), rate=20_000))
         .to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=2, resilience=True, checkpoint_dir=ckpt, checkpoint_interval=30)
    assert wait_until(lambda: app.status().get("events_in", 0) > 5_000, 30)
    app.stop()  # no periodic checkpoint came (30 s): the stop's own one commits
    first_run = app.results()
    assert len(first_run) > 5_000 and first_run == list(range(len(first_run)))
    again = start(p, workers=2, checkpoint_dir=ckpt, resume=True, checkpoint_interval=30)
    assert again.results() == first_run  # a resumed app starts with the committed results
    assert wait_until(lambda: again.status().get("events_in", 0) > len(first_run) + 5_000, 30)
    again.stop()
    both = again.results()
    assert len(both) > len(first_run) + 5_000
    assert both == list(range(len(both))), "lost or doubled messages across stop and resume"


def test_committed_state_never_goes_back(start, tmp_path):
    events = [(f"k{i % 30}", 1) for i in range(200_000)]
    p = (w.source("s", w.IterableSourceConfig("e", events, rate=60_000)).key_by(first)
         .to(running_sum).to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.2)
    assert wait_until(app._driver.ready.is_set, 30)
    seen: dict = {}
    epochs = []
    for i in range(12):
        if i in (4, 8):
            kill(app.pids[i % 2])
        time.sleep(0.25)
        try:
            df = app.state("running sum", committed=True)
        except w.WorkerFailure:
            raise
        epochs.append(df.attrs["committed_epoch"])
        for k, total in zip(df.get("key", []), df.get("total", [])):
            assert total >= seen.get(k, 0), (k, total, seen.get(k))
            seen[k] = total
    assert epochs == sorted(epochs) and epochs[-1] > epochs[0], epochs
    app.wait(timeout=120)
    final = app.state("running sum", committed=True)
    assert dict(zip(final["key"], final["total"])) == sum_reference(events)[1]
    with pytest.raises(ValueError, match="needs resilience=True"):
        start(p, workers=1).state("running sum", committed=True)
