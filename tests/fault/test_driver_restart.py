"""A killed driver resumes from its checkpoint directory; damaged checkpoints are detected."""

from __future__ import annotations

import collections
import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

from proctools import pid_alive

import wallaroo_nb as w

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

APP = textwrap.dedent('''
    import sys, time
    import wallaroo_nb as w

    N = 200_000

    class Total:
        def __init__(self):
            self.total = 0

    @w.state_computation("running sum", state=Total)
    def running_sum(e, st):
        st.total += e[1]
        return (e[0], st.total)

    def events():
        return [(f"k{i % 97}", i % 7) for i in range(N)]

    def pipeline(rate):
        return (w.source("sums", w.IterableSourceConfig("events", events, rate=rate))
                .key_by(lambda e: e[0]).to(running_sum).to_sink(w.CollectorSinkConfig(keep=None)))
''')

FIRST = APP + textwrap.dedent('''
    app = w.run(pipeline(50_000), workers=2, resilience=True, checkpoint_dir=sys.argv[1],
                checkpoint_interval=0.2)
    print(" ".join(map(str, app.pids)), flush=True)
    app.wait(timeout=120)
    print("finished", flush=True)  # the test kills us long before this
''')


def reference():
    per_key, totals = collections.defaultdict(list), collections.Counter()
    for i in range(200_000):
        k, v = f"k{i % 97}", i % 7
        totals[k] += v
        per_key[k].append(totals[k])
    return dict(per_key), dict(totals)


def load_app_module(tmp_path):
    path = tmp_path / "resumable.py"
    path.write_text(APP)
    import importlib.util

    spec = importlib.util.spec_from_file_location("resumable", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_exact(app):
    expected, totals = reference()
    got = collections.defaultdict(list)
    for k, total in app.results():
        got[k].append(total)
    assert dict(got) == expected
    st = app.state("running sum")
    assert dict(zip(st["key"], st["total"])) == totals


def test_killed_driver_resumes_from_checkpoint_dir(start, tmp_path):
    ckpt = tmp_path / "ckpt"
    script = tmp_path / "first.py"
    script.write_text(FIRST)
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        deadline = time.monotonic() + 30
        while len(glob.glob(str(ckpt / "manifest-*.ckpt"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert glob.glob(str(ckpt / "manifest-*.ckpt")), "no checkpoint was committed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    mod = load_app_module(tmp_path)
    app = start(mod.pipeline(None), workers=2, checkpoint_dir=str(ckpt), resume=True)
    app.wait(timeout=120)
    assert any("resuming from epoch" in e for _, e in app.events()), app.events()
    check_exact(app)


def test_damaged_checkpoint_falls_back_to_the_previous_one(start, tmp_path):
    mod = load_app_module(tmp_path)
    ckpt = str(tmp_path / "ckpt")
    app = start(mod.pipeline(400_000), workers=2, resilience=True, checkpoint_dir=ckpt,
                checkpoint_interval=0.1)
    app.wait(timeout=120)
    app.stop()
    manifests = sorted(glob.glob(os.path.join(ckpt, "manifest-*.ckpt")))
    assert len(manifests) == 2  # the newest and one to fall back on
    newest_epoch = int(manifests[-1].split("-")[-1].split(".")[0])
    victim = os.path.join(ckpt, f"epoch-{newest_epoch}-worker-1.ckpt")
    with open(victim, "r+b") as f:  # truncate it, as a crash mid-write on a bad disk would
        f.truncate(os.path.getsize(victim) // 2)
    app2 = start(mod.pipeline(None), workers=2, checkpoint_dir=ckpt, resume=True)
    app2.wait(timeout=120)
    notes = [e for _, e in app2.events() if "unusable" in e]
    assert notes and "truncated" in notes[0] and f"manifest-{newest_epoch:012d}" in notes[0]
    assert any(f"resuming from epoch {newest_epoch - 1}" in e for _, e in app2.events())
    check_exact(app2)


def test_checksum_mismatch_is_detected(tmp_path):
    from wallaroo_nb.engine.epochs import CorruptCheckpoint, read_checked, write_atomic

    path = str(tmp_path / "x.ckpt")
    write_atomic(path, b"payload" * 100)
    assert read_checked(path) == b"payload" * 100
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 0xFF
    open(path, "wb").write(bytes(data))
    try:
        read_checked(path)
    except CorruptCheckpoint as e:
        assert "checksum mismatch" in str(e)
    else:
        raise AssertionError("a flipped byte went unnoticed")


def test_resume_needs_a_directory():
    p = w.source("s", w.IterableSourceConfig("x", [1])).to_sink(w.CollectorSinkConfig(keep=None))
    try:
        w.run(p, resume=True)
    except ValueError as e:
        assert "checkpoint_dir" in str(e)
    else:
        raise AssertionError("resume without a directory was accepted")
