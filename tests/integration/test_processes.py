"""Process-level guarantees: notebook-defined code runs on workers; no orphans; bounded queues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from proctools import pid_alive

import wallaroo_nb as w

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MAIN_SCRIPT = textwrap.dedent('''
    import json, sys
    import wallaroo_nb as w

    class Acc:                      # defined in __main__: workers cannot import it
        def __init__(self):
            self.items = []

    SUFFIX = "!"                    # a global captured by value

    def shout(x):                   # a closure over a __main__ global
        return x.upper() + SUFFIX

    @w.computation("shout")
    def loud(x):
        return shout(x)

    @w.state_computation("remember", state=Acc)
    def remember(x, acc):
        acc.items.append(x)
        return (x[0], len(acc.items))

    p = (w.source("m", w.IterableSourceConfig("words", ["ab", "cd", "ae"]))
         .to(loud).key_by(lambda s: s[0]).to(remember).to_sink(w.CollectorSinkConfig()))
    with w.run(p, workers=2) as app:
        app.wait(timeout=30)
        st = app.state("remember")
        print(json.dumps({"results": sorted(app.results()),
                          "items": sorted(map(sorted, st["items"]))}))
''')


def test_functions_and_classes_from_main_run_on_workers(tmp_path):
    script = tmp_path / "notebook_like.py"
    script.write_text(MAIN_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["results"] == [["A", 1], ["A", 2], ["C", 1]]
    assert got["items"] == [["AB!", "AE!"], ["CD!"]]


DRIVER_SCRIPT = textwrap.dedent('''
    import sys, time
    import wallaroo_nb as w

    class G:
        def initial_value(self): return 0
        def apply(self, v): return v + 1

    p = w.source("g", w.GenSourceConfig(G(), rate=1000)).to_sink(w.CollectorSinkConfig())
    app = w.run(p, workers=2)
    app.wait(count=10, timeout=30)
    print(" ".join(map(str, app.pids)), flush=True)
    time.sleep(60)
''')


def test_workers_exit_within_5s_when_the_driver_is_killed(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        alive = [p for p in pids if pid_alive(p)]
        assert not alive, f"workers {alive} outlived their driver by 5 s"
    finally:
        proc.kill()
        for p in pids if "pids" in dir() else []:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Endless:
    def initial_value(self):
        return 0

    def apply(self, v):
        return v + 1


class Slow:
    def __init__(self):
        self.n = 0


def test_fast_source_is_slowed_by_a_slow_step(start):
    @w.state_computation("slow", state=Slow)
    def slow(x, st):
        t = time.perf_counter() + 50e-6  # ~50 us per event: at most 20,000 events/s
        while time.perf_counter() < t:
            pass
        st.n += 1
        return None

    p = (w.source("g", w.GenSourceConfig(Endless())).key_by(lambda x: x % 97)
         .to(slow).to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    app._driver.ready.wait(30)
    time.sleep(3)
    st = app._driver.call("status")
    read = sum(src.count for s in st for src in s.sources.values())
    processed = sum(s.filtered.get("slow", 0) for s in st)
    # unthrottled, the generator alone would read millions in 3 s; queues are bounded by
    # (outbox + send HWM + receive HWM) frames of at most a chunk of events each
    assert processed > 1000
    assert read - processed < 200_000, (read, processed)


def test_workers_wake_from_sleeps_on_time(start):
    """A paced source sleeps ~100 us between messages at 10,000/s: workers ask Linux for
    a timer slack of 1 us instead of the default 50 us (see worker.precise_sleeps)."""
    if not os.path.exists("/proc/self/timerslack_ns"):
        pytest.skip("no /proc/PID/timerslack_ns on this system")
    with open("/proc/self/timerslack_ns") as f:
        mine = int(f.read())
    p = (w.source("g", w.GenSourceConfig(Endless(), rate=100)).to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    assert app._driver.ready.wait(30)
    for pid in app.pids:
        with open(f"/proc/{pid}/timerslack_ns") as f:
            assert int(f.read()) == 1000, pid
    with open("/proc/self/timerslack_ns") as f:
        assert int(f.read()) == mine  # the driver's (the user's kernel's) is left alone
