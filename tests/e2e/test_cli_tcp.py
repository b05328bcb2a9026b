"""End to end through the real CLI: receive <- run examples/*.py <- send, all processes.

The outputs are checked exactly against plain-Python references; the runner is
stopped with signals and must leave no worker behind.
"""

from __future__ import annotations

import os
import random
import re
import signal
import string
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_procs import (  # noqa: E402
    EXAMPLES,
    free_port,
    pid_alive,
    procs,  # noqa: F401 (a fixture)
    wait_until,
)

from wallaroo_nb.cluster import cpu_wakeup  # noqa: E402

pytestmark = pytest.mark.timeout(180)

VOCABULARY = ["Stream", "event", "key", "state", "window", "worker", "latency", "Wallaroo",
              "notebook", "python", "zero", "mq", "barrier", "epoch", "sink", "source"]


def make_lines(n: int, seed: int = 7) -> list:
    """Deterministic text with mixed case, punctuation and blank lines."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        words = [rng.choice(VOCABULARY) + rng.choice(["", "", ",", ".", "!", "'s"])
                 for _ in range(rng.randint(0, 9))]
        if i % 17 == 0:
            words.insert(0, "  --  ")
        lines.append(" ".join(words))
    return lines


def word_count_reference(lines: list) -> list:
    """Every "word n" line word count must print, n = 1.. per word."""
    totals: Counter = Counter()
    out = []
    for line in lines:
        for raw in line.lower().split():
            word = raw.strip(string.punctuation + string.whitespace)
            if word:
                totals[word] += 1
                out.append(f"{word} {totals[word]}")
    return out


def read_lines(path: Path) -> list:
    return path.read_text().splitlines() if path.exists() else []


def assert_counts_exact(got: list, expected: list) -> None:
    extra = Counter(got) - Counter(expected)
    missing = Counter(expected) - Counter(got)
    assert not extra and not missing, (
        f"{len(got)} lines received, {len(expected)} expected; "
        f"extra {list(extra.items())[:5]}, missing {list(missing.items())[:5]}")


def assert_per_key_order(got: list) -> None:
    """Each word's counts arrive as 1, 2, 3... (one key lives on one worker)."""
    seen: dict = {}
    for line in got:
        word, n = line.rsplit(" ", 1)
        assert int(n) == seen.get(word, 0) + 1, f"{line!r} after count {seen.get(word, 0)}"
        seen[word] = int(n)


def assert_all_gone(pids: list) -> None:
    assert pids, "the runner printed no worker pids"
    left = [p for p in pids if pid_alive(p)]
    assert not left, f"worker processes {left} outlived the runner"


def start_word_count(procs, tmp_path: Path, workers: int = 2) -> tuple:  # noqa: F811
    receiver, out_port = procs.receive(tmp_path / "received.txt")
    in_port = free_port()
    runner = procs.start("run", "--application-module", EXAMPLES / "word_count.py",
                         "--in", f"words@127.0.0.1:{in_port}", "--out", f"127.0.0.1:{out_port}",
                         "--workers", workers, "--status-interval", "1")
    runner.wait_for(r"pids [\d ]+\n")
    return receiver, runner, in_port


def test_word_count_matches_reference_and_sigterm_stops_everything(procs, tmp_path):  # noqa: F811
    lines = make_lines(1500)
    text_file = tmp_path / "words.txt"
    text_file.write_text("\n".join(lines) + "\n")
    expected = word_count_reference(lines)
    receiver, runner, in_port = start_word_count(procs, tmp_path)
    workers = runner.worker_pids()
    assert len(workers) == 2

    sender = procs.start("send", f"127.0.0.1:{in_port}", text_file)
    assert sender.wait(60) == 0, sender.stderr()
    assert f"sent {len(lines)} records" in sender.stderr()
    out = tmp_path / "received.txt"
    wait_until(lambda: len(read_lines(out)) >= len(expected), 90,
               f"{len(expected)} word counts at the receiver")
    runner.wait_for(rf"in {len(lines):,} \(", timeout=10)  # the status line counts them too

    runner.signal(signal.SIGTERM)
    assert runner.wait(20) == 0, runner.stderr()
    workers = runner.worker_pids()
    assert_all_gone(workers)
    err = runner.stderr()
    assert "SIGTERM: stopping" in err and "stopped 'Word Count Application'" in err
    assert "error:" not in err, err

    receiver.signal(signal.SIGINT)
    assert receiver.wait(10) == 0, receiver.stderr()
    got = read_lines(out)
    assert_counts_exact(got, expected)
    assert_per_key_order(got)


def test_ctrl_c_stops_an_idle_app_cleanly(procs, tmp_path):  # noqa: F811
    _, runner, _ = start_word_count(procs, tmp_path, workers=1)
    workers = runner.worker_pids()
    runner.signal(signal.SIGINT)
    assert runner.wait(20) == 0, runner.stderr()
    assert "SIGINT: stopping" in runner.stderr()
    assert_all_gone(workers)


def alerts_reference(n: int) -> list:
    """The alerts examples/alerts_gen.py must send for its first ``n`` transactions."""
    from wallaroo_nb.compat import install_alias

    before = set(sys.modules)
    install_alias()
    sys.path.insert(0, str(EXAMPLES))
    try:
        import alerts_gen

        gen = alerts_gen.TransactionsGenerator()
    finally:  # leave this process as it was: no `wallaroo` module for later tests
        sys.path.remove(str(EXAMPLES))
        for name in ("wallaroo", "alerts_gen"):
            if name not in before:
                sys.modules.pop(name, None)
    totals: Counter = Counter()
    out = []
    v = gen.initial_value()
    for _ in range(n):
        totals[v.user] += v.amount
        if totals[v.user] > 2000:
            out.append(f"Deposit Alert for {v.user}: {totals[v.user]}")
        elif totals[v.user] < -2000:
            out.append(f"Withdrawal Alert for {v.user}: {totals[v.user]}")
        v = gen.apply(v)
    return out


def test_bounded_generator_app_stops_by_itself(procs, tmp_path):  # noqa: F811
    n = 3000
    expected = alerts_reference(n)
    assert 0 < len(expected) < n  # the example makes some alerts, not only alerts
    receiver, port = procs.receive(tmp_path / "alerts.txt")
    runner = procs.start("run", "--application-module", EXAMPLES / "alerts_gen.py",
                         "--out", f"127.0.0.1:{port}", "--workers", "2", "--limit", n)
    assert runner.wait(90) == 0, runner.stderr()
    err = runner.stderr()
    assert "every source is done" in err
    assert re.search(rf"final: in {n:,} .* out {len(expected):,} ", err), err
    assert_all_gone(runner.worker_pids())
    wait_until(lambda: len(read_lines(tmp_path / "alerts.txt")) >= len(expected), 10,
               "the alerts at the receiver")
    receiver.signal(signal.SIGINT)
    receiver.wait(10)
    got = read_lines(tmp_path / "alerts.txt")
    assert_counts_exact(got, expected)
    for user in {line.split(": ")[0].split(" for ")[1] for line in expected}:
        mine = [line for line in got if f" for {user}:" in line]
        assert mine == [line for line in expected if f" for {user}:" in line]


def test_low_latency_run_from_the_command_line(procs, tmp_path):  # noqa: F811
    """--low-latency holds idle CPUs awake for the run (results unchanged); where
    /dev/cpu_dma_latency cannot be written the run is refused, naming it."""
    n = 1000
    receiver, port = procs.receive(tmp_path / "alerts.txt")
    runner = procs.start("run", "--application-module", EXAMPLES / "alerts_gen.py",
                         "--out", f"127.0.0.1:{port}", "--workers", "2", "--limit", n,
                         "--low-latency")
    held = set()  # what Linux keeps idle CPUs within, sampled while the run lasts
    while runner.popen.poll() is None:
        held.add(cpu_wakeup.current())
        time.sleep(0.005)
    code = runner.wait(90)
    if not os.access(cpu_wakeup.PATH, os.W_OK):
        assert code == 2 and "cpu_dma_latency" in runner.stderr(), runner.stderr()
        return
    assert code == 0, runner.stderr()
    assert 0 in held  # idle CPUs were held awake during the run
    assert cpu_wakeup.current() != 0  # and released when it ended
    expected = alerts_reference(n)
    wait_until(lambda: len(read_lines(tmp_path / "alerts.txt")) >= len(expected), 10,
               "the alerts at the receiver")
    receiver.signal(signal.SIGINT)
    receiver.wait(10)
    assert_counts_exact(read_lines(tmp_path / "alerts.txt"), expected)


FAULTY_APP = textwrap.dedent('''
    import wallaroo
    import wallaroo_nb

    class Counter(object):
        def initial_value(self):
            return 0

        def apply(self, v):
            return v + 1

    @wallaroo.computation(name="invert")
    def invert(x):
        return 1.0 / (x % 10)          # ZeroDivisionError for every tenth message

    def application_setup(args):
        n = int(args[args.index("--count") + 1])
        p = (wallaroo.source("numbers", wallaroo.GenSourceConfig(Counter(), limit=n))
             .to(invert)
             .to_sink(wallaroo_nb.CollectorSinkConfig(keep=None)))
        return wallaroo.build_application("faulty", p)
''')


def test_errors_are_printed_and_a_report_is_written(procs, tmp_path):  # noqa: F811
    (tmp_path / "faulty_app.py").write_text(FAULTY_APP)
    report = tmp_path / "report.html"
    # a dotted module name, importable from the current directory, plus ignored flags
    runner = procs.start("run", "--application-module", "faulty_app", "--count", 50,
                         "--report", report, "--ponythreads", "4", "--cluster-initializer",
                         "--control", "127.0.0.1:12500", cwd=tmp_path)
    assert runner.wait(90) == 0, runner.stderr()
    err = runner.stderr()
    note = next(line for line in err.splitlines() if line.startswith("note:"))
    assert "ignored" in note and all(
        flag in note for flag in ("--ponythreads", "--cluster-initializer", "--control"))
    assert err.count("error: step 'invert'") == 5, err
    assert "ZeroDivisionError" in err
    assert 'faulty_app.py", line' in err  # the traceback names the application's file
    assert re.search(r"final: in 50 .* errors 5", err), err
    assert report.exists() and "<html" in report.read_text()[:2000].lower()


def test_a_broken_application_module_is_reported(procs, tmp_path):  # noqa: F811
    (tmp_path / "no_setup.py").write_text("import wallaroo\n")
    runner = procs.start("run", "--application-module", tmp_path / "no_setup.py")
    assert runner.wait(30) == 2
    assert "no application_setup(args)" in runner.stderr()
    missing = procs.start("run", "--application-module", tmp_path / "nope.py")
    assert missing.wait(30) == 2
    assert "no such application module file" in missing.stderr()


def test_resilience_survives_a_killed_worker_and_tcp_sink_is_at_least_once(procs, tmp_path):  # noqa: F811
    n = 30000
    expected = alerts_reference(n)
    receiver, port = procs.receive(tmp_path / "alerts.txt")
    runner = procs.start("run", "--application-module", EXAMPLES / "alerts_gen.py",
                         "--out", f"127.0.0.1:{port}", "--workers", "2", "--limit", n,
                         "--rate", 10000, "--run-with-resilience",
                         "--resilience-dir", tmp_path / "ckpt",
                         "--time-between-checkpoints", 200_000_000, "--status-interval", 0.2)
    runner.wait_for(r"in [1-9][\d,]* \(", timeout=30)  # under way
    victim = runner.worker_pids()[1]
    os.kill(victim, signal.SIGKILL)
    runner.wait_for(r"event: recovered from", timeout=30)
    assert len(runner.worker_pids()) >= 3  # the replacements too, while they run
    assert runner.wait(90) == 0, runner.stderr()
    err = runner.stderr()
    assert f"worker 1 (pid {victim}) exited" in err and "event: recovered from" in err, err
    assert "every source is done" in err
    assert_all_gone(runner.worker_pids())
    wait_until(lambda: len(read_lines(tmp_path / "alerts.txt")) >= len(expected), 10,
               "the alerts at the receiver")
    receiver.signal(signal.SIGINT)
    receiver.wait(10)
    lost = Counter(expected) - Counter(read_lines(tmp_path / "alerts.txt"))
    assert not lost, f"{sum(lost.values())} alerts lost: {list(lost.items())[:5]}"


def test_a_dead_worker_without_resilience_fails_the_run(procs, tmp_path):  # noqa: F811
    _, runner, _ = start_word_count(procs, tmp_path, workers=2)
    workers = runner.worker_pids()
    os.kill(workers[0], signal.SIGKILL)
    assert runner.wait(30) == 1, runner.stderr()
    assert f"worker 0 (pid {workers[0]})" in runner.stderr()
    assert_all_gone(workers)


def test_scale_a_running_app_from_the_command_line(procs, tmp_path):  # noqa: F811
    """wallaroo-nb run --external HOST:PORT, then wallaroo-nb scale (Wallaroo's
    cluster_shrinker's role) grows and shrinks it while words flow: every count exact."""
    lines = make_lines(1200, seed=3)
    halves = (lines[:600], lines[600:])
    files = []
    for i, half in enumerate(halves):
        files.append(tmp_path / f"words{i}.txt")
        files[-1].write_text("\n".join(half) + "\n")
    expected = word_count_reference(lines)
    external = f"127.0.0.1:{free_port()}"
    receiver, out_port = procs.receive(tmp_path / "received.txt")
    in_port = free_port()
    runner = procs.start("run", "--application-module", EXAMPLES / "word_count.py",
                         "--in", f"words@127.0.0.1:{in_port}", "--out", f"127.0.0.1:{out_port}",
                         "--workers", 1, "--external", external, "--status-interval", "1")
    runner.wait_for(r"external channel on")
    out = tmp_path / "received.txt"

    def send(path, n_expected):
        sender = procs.start("send", f"127.0.0.1:{in_port}", path)
        assert sender.wait(60) == 0, sender.stderr()
        wait_until(lambda: len(read_lines(out)) >= n_expected, 90, f"{n_expected} counts")

    send(files[0], len(word_count_reference(halves[0])))
    grow = procs.start("scale", "--external", external, "2")
    assert grow.wait(120) == 0, grow.stderr() + runner.stderr()
    assert '"workers": 2' in grow.stdout() and '"slots_moved": 128' in grow.stdout()
    assert len(runner.worker_pids()) >= 2
    send(files[1], len(expected))
    shrink = procs.start("scale", "--external", external, "--shrink-by", "1")
    assert shrink.wait(120) == 0, shrink.stderr()
    assert '"workers": 1' in shrink.stdout()
    assert "external: scaled to 2 workers" in runner.stderr()
    runner.signal(signal.SIGTERM)
    assert runner.wait(20) == 0, runner.stderr()
    assert_all_gone(runner.worker_pids())
    receiver.signal(signal.SIGINT)
    assert receiver.wait(10) == 0
    got = read_lines(out)
    assert_counts_exact(got, expected)
    assert_per_key_order(got)
