"""Word count over TCP, end to end: ``send`` -> ``wallaroo-nb run examples/word_count.py``
-> ``receive``, on 1 and 2 workers, beside two baselines measured in the same run.

The application runs exactly as a user runs it (a ``wallaroo-nb run`` process and
its workers); this process sends with ``tools.sendrecv.send`` and receives with
``tools.sendrecv.receive`` (what ``wallaroo-nb send`` / ``receive`` call), each in
a thread, timing every line as ``send`` takes it and every output as ``receive``
unframes it (one monotonic clock).

Rows:
  python loop   the same word count (split, count, format, encode) in a plain loop here
  raw tcp       send -> receive directly, no engine: the transport floor
  engine, N w   the example app on N worker processes

Throughput: --lines lines sent as fast as send goes, timed from the first line
taken to the last output received (lines/s and outputs/s). Latency: then
--seconds of lines paced at --rate lines/s; each output's latency is its arrival
minus the moment send took its line (so up to ~1 ms of send's own batching is
included); p50/p95/p99 over all outputs.

    .venv/bin/python bench/tcp.py [--lines 20000] [--rate 1000] [--seconds 3] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wallaroo_nb.tools import sendrecv  # noqa: E402

PUNCTUATION = string.punctuation + string.whitespace
HOST = "127.0.0.1"


def make_lines(n: int, seed: int, vocabulary: int = 2000) -> list:
    """Text with Zipf-distributed words (many keys, a few hot ones)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocabulary)]
    weights = [1 / (i + 1) for i in range(vocabulary)]
    return [" ".join(rng.choices(words, weights, k=rng.randint(0, 10))) + rng.choice(["", ".", "!"])
            for _ in range(n)]


def split_words(line: str) -> list:
    """The example's split: lower case, whitespace, punctuation stripped."""
    return [w for w in (raw.strip(PUNCTUATION) for raw in line.lower().split()) if w]


def output_origins(lines: list) -> dict:
    """(word, count) -> index of the line that made that output."""
    totals: Counter = Counter()
    origin = {}
    for i, line in enumerate(lines):
        for word in split_words(line):
            totals[word] += 1
            origin[(word, totals[word])] = i
    return origin


def python_loop(lines: list) -> dict:
    """The same word count, with formatting and encoding, in a plain loop."""
    t = time.perf_counter()
    totals: Counter = Counter()
    out = []
    for line in lines:
        for word in split_words(line):
            totals[word] += 1
            out.append(f"{word} {totals[word]}".encode())
    dt = time.perf_counter() - t
    return {"name": "python loop", "lines_s": len(lines) / dt, "outputs_s": len(out) / dt}


class Receiver:
    """``sendrecv.receive`` in a thread, noting when each message arrives."""

    def __init__(self) -> None:
        self.got: list = []
        self.stop = threading.Event()
        self._ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("receive did not start")

    def _run(self) -> None:
        sendrecv.receive(HOST, 0, out=self._write, framed=True, ready=self._on_ready,
                         stop=self.stop, log=lambda msg: None)

    def _on_ready(self, port: int) -> None:
        self.port = port
        self._ready.set()

    def _write(self, data: bytes) -> None:
        self.got.append((time.monotonic_ns(), data))

    def wait_count(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.got)} of {n} outputs after {timeout}s")
            time.sleep(0.002)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def send_timed(port: int, lines: list, rate: float | None) -> list:
    """Send ``lines``; returns the monotonic ns at which send took each one."""
    taken: list = []

    def items():
        for line in lines:
            taken.append(time.monotonic_ns())
            yield line

    sendrecv.send(HOST, port, items(), rate=rate, connect_timeout=30)
    return taken


def percentiles_ms(lat_ns: list) -> dict:
    if not lat_ns:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    a = np.asarray(lat_ns, dtype=np.float64) / 1e6
    return dict(zip(("p50", "p95", "p99"), np.percentile(a, [50, 95, 99])))


def measure(port: int, rx: Receiver, lines_tp: list, lines_lat: list, rate: float,
            origin_of, n_tp_out: int, n_lat_out: int) -> dict:
    """Throughput phase, then latency phase, against whatever listens on ``port``."""
    taken = send_timed(port, lines_tp, None)
    rx.wait_count(n_tp_out, timeout=300)
    span = (rx.got[n_tp_out - 1][0] - taken[0]) / 1e9
    taken_lat = send_timed(port, lines_lat, rate)
    rx.wait_count(n_tp_out + n_lat_out, timeout=120)
    time.sleep(0.2)  # anything beyond the expected count would be a duplicate
    lat = [t - taken_lat[origin_of(data, k) - len(lines_tp)]
           for k, (t, data) in enumerate(rx.got[n_tp_out:], start=n_tp_out)]
    return {"lines_s": len(lines_tp) / span, "outputs_s": n_tp_out / span,
            "extra": len(rx.got) - n_tp_out - n_lat_out, **percentiles_ms(lat)}


def raw_tcp(lines_tp: list, lines_lat: list, rate: float) -> dict:
    """send -> receive with nothing between: one message out per line in, in order."""
    rx = Receiver()
    try:
        row = measure(rx.port, rx, lines_tp, lines_lat, rate, lambda data, k: k,
                      len(lines_tp), len(lines_lat))
    finally:
        rx.close()
    return {"name": "raw tcp", **row}


def engine(workers: int, lines_tp: list, lines_lat: list, rate: float) -> dict:
    """The word count example under ``wallaroo-nb run`` on ``workers`` processes."""
    origin = output_origins(lines_tp + lines_lat)
    n_tp = sum(len(split_words(line)) for line in lines_tp)
    n_lat = len(origin) - n_tp

    def origin_of(data: bytes, _k: int) -> int:
        word, n = data.decode().rstrip("\n").rsplit(" ", 1)
        return origin[(word, int(n))]

    rx = Receiver()
    in_port = free_port()
    log = tempfile.TemporaryFile()
    cmd = [sys.executable, "-m", "wallaroo_nb.cli", "run", "--application-module",
           str(ROOT / "examples" / "word_count.py"), "--in", f"words@{HOST}:{in_port}",
           "--out", f"{HOST}:{rx.port}", "--workers", str(workers), "--status-interval", "0"]
    runner = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_started(log, runner)
        row = measure(in_port, rx, lines_tp, lines_lat, rate, origin_of, n_tp, n_lat)
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(30)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
        rx.close()
        log.close()
    return {"name": f"engine, {workers} w", **row}


def wait_started(log, runner: subprocess.Popen, timeout: float = 60) -> None:
    """Until the runner prints its worker pids (the workers then open the source)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log.seek(0)
        text = log.read().decode(errors="replace")
        if re.search(r"pids [\d ]+\n", text):
            return
        if runner.poll() is not None:
            raise RuntimeError(f"wallaroo-nb run exited:\n{text}")
        time.sleep(0.05)
    raise TimeoutError("wallaroo-nb run did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


HEADER = (f"{'':14} {'lines/s':>10} {'outputs/s':>10} {'vs loop':>8} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")


def show(r: dict, base: float) -> None:
    lat = "".join(f" {r[p]:8.2f}" if p in r else f" {'-':>8}" for p in ("p50", "p95", "p99"))
    extra = f"  ({r['extra']} unexpected outputs!)" if r.get("extra") else ""
    print(f"{r['name']:14} {r['lines_s']:10,.0f} {r['outputs_s']:10,.0f} "
          f"{r['lines_s'] / base:8.3f}{lat}{extra}", flush=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=20000, help="lines for the throughput phase")
    p.add_argument("--rate", type=float, default=1000, help="lines/s in the latency phase")
    p.add_argument("--seconds", type=float, default=3, help="length of the latency phase")
    p.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    args = p.parse_args()
    lines_tp = make_lines(args.lines, seed=1)
    lines_lat = make_lines(int(args.rate * args.seconds), seed=2)
    n_words = sum(len(split_words(line)) for line in lines_tp)
    print(f"word count over TCP: {args.lines:,} lines ({n_words:,} words) unpaced, then "
          f"{len(lines_lat):,} lines at {args.rate:,.0f} lines/s; {os.cpu_count()} CPUs, "
          f"load average {loadavg()}")
    print(HEADER, flush=True)
    base = python_loop(lines_tp)
    show(base, base["lines_s"])
    show(raw_tcp(lines_tp, lines_lat, args.rate), base["lines_s"])
    for w in (int(x) for x in args.workers.split(",")):
        show(engine(w, lines_tp, lines_lat, args.rate), base["lines_s"])
    print(f"load average at the end {loadavg()}")


if __name__ == "__main__":
    main()
