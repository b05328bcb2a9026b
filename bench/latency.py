"""End-to-end latency of a paced keyed pipeline, measured outside the engine and by it.

A user-defined source paces events at --rate events/s and stamps each message
with two times: when it was *due* (t0 + i/rate; t0 = the first read, after the
workers are up) and when the worker *read* it (time.time_ns() inside read()).
Messages go through key_by + a keyed state step on --workers workers (with 2,
about half cross to the other worker) into two sinks: a sink on the worker that
owns the key (StampSink, which notes time.time_ns() as it writes each batch,
where a TCP or Kafka sink would send it: the end of the pipeline as in Wallaroo
or Bytewax), and a CallbackSinkConfig, which notes time.time_ns() in the driver
as each batch arrives, one more ZeroMQ hop later (plus unpickling and the
driver's I/O thread). The source tells the engine when each read's first message
was due (``origin_ns``), so the engine's own `app.metrics()` rows (worker "all",
printed beside them) start at the same honest origin: "pipeline" ends when a
message reached its sinks on the worker, "visible" at the driver callback.

Lines per rate:
  read -> sink on worker  from read() to the worker's sink, every event
  read -> driver          from read() to the driver callback, every event
  read -> driver, steady  the same without the first --warmup seconds of events
  due -> driver           from the scheduled time: adds how late the source was read
                          (the honest figure: a message waiting to be read is latency)
  engine: due -> sinks    app.metrics() "pipeline": due -> the sink steps on the worker
  engine: due -> driver   app.metrics() "visible": due -> handed to the driver callback
  one ZeroMQ hop          a baseline: one message between two Python processes over
                          ipc:// (DEALER -> ROUTER, same pace), no engine at all
  one Unix-socket hop     the same over a Unix stream socket (streams.py, as the engine
                          sends on one machine), the reader in a zmq.Poller as the driver's
Each rate runs the engine with each local transport in turn (--transports): "unix"
(data over Unix stream sockets, the default) and "zmq" (data over ZeroMQ ipc://, as
before 2026-12-01: WALLAROO_NB_LOCAL_TRANSPORT=zmq), the baseline in the same run.
Also printed: run-queue wait (time runnable but not running, from /proc schedstat)
per process, to tell CPU contention on a shared machine from the engine's own cost.

    .venv/bin/python bench/latency.py [--rates 10000,100000] [--seconds 3] [--workers 2]
                                      [--transports unix,zmq] [--low-latency]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from array import array

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import wallaroo_nb as w  # noqa: E402

QUANTILES = (0.5, 0.95, 0.99, 0.999, 0.9999)
PCT_COLUMNS = ("p50_us", "p95_us", "p99_us", "p999_us", "p9999_us")
KEYS = 1000
KEY_NAMES = [f"k{i}" for i in range(KEYS)]
TRANSPORT_ENV = "WALLAROO_NB_LOCAL_TRANSPORT"  # read by cluster/launchers.LocalLauncher
TRANSPORTS = {"unix": "Unix stream sockets (default)", "zmq": "ZeroMQ ipc:// (as before)"}


class StampedSource(w.Source):
    """`n` messages (key, seq, due_ns, read_ns) paced at `rate`; stamps taken in read()."""

    def __init__(self, n: int, rate: float):
        self.n, self.rate = n, rate
        self.i = 0
        self.t0 = 0  # ns; set by the first read, once the workers are running
        self.first_due: int | None = None  # due time of the last read's first message

    def read(self, max_n: int) -> list | None:
        now = time.time_ns()
        if not self.t0:
            self.t0 = now
        if self.i >= self.n:
            return None
        due = min(self.n, int((now - self.t0) * self.rate / 1e9) + 1, self.i + max_n)
        step = 1e9 / self.rate
        keys, t0 = KEY_NAMES, self.t0
        out = [(keys[i % KEYS], i, t0 + int(i * step), now) for i in range(self.i, due)]
        self.first_due = out[0][2] if out else None
        self.i = due
        return out

    def origin_ns(self) -> int | None:
        """The engine's clock starts when the oldest message read was due (the honest
        origin of a paced source), as in the bench's own "due ->" lines."""
        return self.first_due

    def wait_hint(self) -> float | None:
        if not self.t0:
            return 0.0
        next_ns = self.t0 + self.i * 1e9 / self.rate
        return max(0.0, (next_ns - time.time_ns()) / 1e9)


class StampedSourceConfig(w.SourceConfig):
    def __init__(self, n: int, rate: float):
        self.name, self.n, self.rate = "stamped", n, rate

    def make_source(self) -> StampedSource:
        return StampedSource(self.n, self.rate)


class StampSink(w.Sink):
    """Notes, for every message it writes, the ns since the source read it; the
    worker's array goes to ``pattern.format(worker=N)`` when the worker stops."""

    def __init__(self, pattern: str):
        self.pattern, self.lat = pattern, array("q")

    def open(self, worker: int) -> None:
        self.path = self.pattern.format(worker=worker)

    def write(self, batch: list) -> None:
        now = time.time_ns()
        self.lat.extend(now - m[3] for m in batch)

    def close(self) -> None:
        with open(self.path, "wb") as f:
            self.lat.tofile(f)


class StampSinkConfig(w.SinkConfig):
    def __init__(self, pattern: str):
        self.pattern = pattern

    def make_sink(self) -> StampSink:
        return StampSink(self.pattern)


def read_stamps(folder: str) -> list:
    out = array("q")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out.frombytes(f.read())
    return out.tolist()


class Count:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


@w.key_extractor
def key_of(msg):
    return msg[0]


@w.state_computation("count per key", state=Count)
def count(msg, st):
    st.n += 1
    return msg


def run_once(rate: float, seconds: float, workers: int, **run_kw) -> dict:
    """Run one paced app to the end: the driver arrivals, the engine's row, run-queue waits.
    ``run_kw`` goes to w.run (bench/cluster.py passes cluster=)."""
    n = int(rate * seconds)
    # per message: when it reached the driver callback, its seq, due and read stamps, in
    # flat arrays: keeping every batch would grow the driver's heap by 50,000 lists, and
    # Python's full collections of it (~10 ms each) would be measured as latency
    arrivals = {k: array("q") for k in ("t", "seq", "due", "read")}
    got = [0]

    # note() travels to the workers inside the plan (cloudpickle), so it may close
    # over plain data only: a threading.Event here would fail to pickle
    def note(batch: list) -> None:
        t = time.time_ns()
        at, seq, due, read = arrivals["t"], arrivals["seq"], arrivals["due"], arrivals["read"]
        for _k, i, due_ns, read_ns in batch:
            at.append(t)
            seq.append(i)
            due.append(due_ns)
            read.append(read_ns)
        got[0] += len(batch)

    stamps = tempfile.mkdtemp(prefix="latency-")
    p = (w.source("latency", StampedSourceConfig(n, rate)).key_by(key_of).to(count)
         .to_sinks([StampSinkConfig(os.path.join(stamps, "sink-{worker}")),
                    w.CallbackSinkConfig(note)]))
    with w.run(p, workers=workers, **run_kw) as app:
        app._driver.ready.wait(60)
        pids = [*app.pids, os.getpid()]
        before = [run_queue_ns(pid) for pid in pids]
        t = time.monotonic()
        # not app.wait(): its status polling would load the workers while we measure
        while got[0] < n and app.running:
            if time.monotonic() - t > seconds * 10 + 60:
                raise TimeoutError(f"{got[0]} of {n} events arrived")
            time.sleep(0.05)
        wall = time.monotonic() - t
        waits = [(run_queue_ns(pid) - b) / 1e6 / wall for pid, b in zip(pids, before, strict=True)]
        app.wait(timeout=60)
        engine = engine_row(app, n, "pipeline")
        visible = engine_row(app, n, "visible")
    at_sink = read_stamps(stamps)  # written by the workers as they stopped
    for name in os.listdir(stamps):
        os.unlink(os.path.join(stamps, name))
    os.rmdir(stamps)
    if len(at_sink) != n:
        raise AssertionError(f"the worker sinks saw {len(at_sink)} of {n} events")
    return {"n": n, "arrivals": arrivals, "engine": engine, "visible": visible,
            "run_queue_ms_per_s": waits,
            "at_sink": at_sink, "hop": zmq_hop(rate, min(n, 20_000))}


def run_local(rate: float, seconds: float, workers: int, transport: str,
              low_latency: bool = False) -> dict:
    """run_once with the engines' data over ``transport`` ("unix" or "zmq") on this machine."""
    old = os.environ.get(TRANSPORT_ENV)
    os.environ[TRANSPORT_ENV] = transport
    try:
        r = run_once(rate, seconds, workers, low_latency=low_latency)
    finally:
        if old is None:
            del os.environ[TRANSPORT_ENV]
        else:
            os.environ[TRANSPORT_ENV] = old
    r["unix hop"] = unix_hop(rate, min(r["n"], 20_000))
    return r


UNIX_RECEIVER = """
import sys, time, zmq
from wallaroo_nb import streams
inbox = streams.Listener(sys.argv[1])
p = zmq.Poller()
inbox.watch(p)
out = []
while True:
    events = dict(p.poll(1000))
    if not events:
        break
    for _, (ts,) in inbox.take(1000, events):
        if not ts:
            sys.stdout.write(" ".join(out))
            sys.exit(0)
        out.append(str(time.time_ns() - int(ts)))
"""


class _StreamSender:
    """streams.Outgoing with a zmq socket's ``send(bytes)``, for paced_stamps."""

    def __init__(self, addr: str):
        from wallaroo_nb import streams

        self.out = streams.Outgoing(addr, b"bench")

    def send(self, frame: bytes) -> None:
        while not self.out.send([frame]):
            time.sleep(0.0001)


def unix_hop(rate: float, n: int) -> list:
    """Like zmq_hop, over a Unix stream socket (streams.py): the engine's hop on one machine."""
    folder = tempfile.mkdtemp(prefix="hop-")
    addr = f"unix://{folder}/hop.sock"
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..")}
    rx = subprocess.Popen([sys.executable, "-c", UNIX_RECEIVER, addr], stdout=subprocess.PIPE,
                          env=env)
    try:
        time.sleep(0.5)  # let the receiver bind
        s = _StreamSender(addr)
        out = paced_stamps(s, rx, n, rate)
        s.out.close()
    finally:
        rx.kill()
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
    return [int(x) for x in out.split()]


HOP_RECEIVER = """
import sys, time, zmq
r = zmq.Context().socket(zmq.ROUTER)
r.bind(sys.argv[1])
p = zmq.Poller()
p.register(r, zmq.POLLIN)
out = []
while True:
    if not p.poll(1000):
        break
    while True:
        try:
            _, ts = r.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            break
        if not ts:
            sys.stdout.write(" ".join(out))
            sys.exit(0)
        out.append(str(time.time_ns() - int(ts)))
"""


def paced_stamps(s, rx: subprocess.Popen, n: int, rate: float) -> bytes:
    """Send ``n`` send-time stamps on socket ``s`` at ``rate``/s, then an empty frame;
    what the receiver process ``rx`` printed."""
    t0, step = time.perf_counter(), 1 / rate
    for i in range(n):
        while time.perf_counter() < t0 + i * step:
            time.sleep(step / 4)
        s.send(str(time.time_ns()).encode())
    s.send(b"")
    return rx.communicate(timeout=30)[0]


def zmq_hop(rate: float, n: int) -> list:
    """Latencies (ns) of n messages, paced at `rate`, from this process to another over
    ZeroMQ ipc://: what any hop between two Python processes costs on this machine."""
    import zmq

    folder = tempfile.mkdtemp(prefix="hop-")
    addr = f"ipc://{folder}/hop.sock"
    rx = subprocess.Popen([sys.executable, "-c", HOP_RECEIVER, addr], stdout=subprocess.PIPE)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.connect(addr)
    try:
        time.sleep(0.3)  # let the receiver bind and the pipe connect
        out = paced_stamps(s, rx, n, rate)
    finally:
        rx.kill()
        s.close(0)
        ctx.term()
        os.rmdir(folder) if not os.listdir(folder) else None
    return [int(x) for x in out.split()]


def engine_row(app, n: int, category: str, timeout: float = 10.0) -> dict:
    """The engine's row of ``category`` (worker "all") once its count covers all n events."""
    deadline = time.monotonic() + timeout
    while True:
        df = app.metrics()
        rows = df[(df.category == category) & (df.worker == "all")]
        if len(rows) and int(rows["count"].iloc[0]) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # workers send deltas about once a second
    if not len(rows):
        return {"count": 0}
    row = rows.iloc[0]
    return {"count": int(row["count"]), **{c: float(row[c]) for c in PCT_COLUMNS}}


def run_queue_ns(pid: int) -> int:
    """Total ns the threads of `pid` spent waiting for a CPU (0 where /proc has no schedstat)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
    except OSError:
        pass
    return total


def latencies(arrivals: dict, n: int, rate: float, warmup: float) -> dict:
    """Independent latencies (ns) per kind, checking every event arrived exactly once."""
    t, seq = np.asarray(arrivals["t"]), np.asarray(arrivals["seq"])
    if len(seq) != n or not np.array_equal(np.sort(seq), np.arange(n)):
        raise AssertionError(f"{len(seq)} arrivals for {n} events, or some twice")
    since_read = t - np.asarray(arrivals["read"])
    return {"read": since_read, "steady": since_read[seq >= warmup * rate],
            "due": t - np.asarray(arrivals["due"])}


def pct(latencies_ns: list) -> dict:
    """Exact nearest-rank percentiles in µs."""
    a = np.sort(np.asarray(latencies_ns, dtype=np.int64))
    if not len(a):
        return {}
    out = {}
    for q, col in zip(QUANTILES, PCT_COLUMNS, strict=True):
        rank = max(1, int(np.ceil(round(q * len(a), 9))))
        out[col] = a[rank - 1] / 1000.0
    return out


def line(label: str, p: dict) -> str:
    return f"  {label:<32}" + "".join(f"{p.get(c, float('nan')):>10.1f}" for c in PCT_COLUMNS)


def report(rate: float, r: dict, warmup: float) -> None:
    arrivals, n, eng = r["arrivals"], r["n"], r["engine"]
    lat = latencies(arrivals, n, rate, warmup)
    span = max(arrivals["t"]) - min(arrivals["read"])
    waits = ", ".join(f"{v:.0f}" for v in r["run_queue_ms_per_s"])
    print(f" {rate:,.0f} events/s asked, {n / (span / 1e9):,.0f} achieved, {n:,} events, "
          f"engine counted {eng['count']:,} messages; run-queue wait ms/s (workers..., driver): "
          f"{waits}")
    print(line("read -> sink on worker", pct(r["at_sink"])))
    print(line("read -> driver", pct(lat["read"])))
    print(line(f"read -> driver, after {warmup:g}s", pct(lat["steady"])))
    print(line("due -> driver", pct(lat["due"])))
    print(line("engine: due -> sinks on worker", eng))
    print(line("engine: due -> driver (visible)", r["visible"]))
    print(line("one ZeroMQ hop (no engine)", pct(r["hop"])))
    if "unix hop" in r:
        print(line("one Unix-socket hop (no engine)", pct(r["unix hop"])))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="10000,100000")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--low-latency", action="store_true",
                    help="run(low_latency=True): idle CPUs poll while the app runs (root)")
    ap.add_argument("--transports", default="unix,zmq",
                    help="the engines' data on this machine: unix (default), zmq (as before)")
    a = ap.parse_args()
    print(f"paced source -> key_by -> state step -> sink on worker + driver callback, "
          f"{a.workers} worker(s), {'low_latency=True, ' if a.low_latency else ''}"
          f"{KEYS} keys; load average {os.getloadavg()[0]:.2f} at start")
    print(f"  {'latency (µs)':<32}" + "".join(f"{c[:-3]:>10}" for c in PCT_COLUMNS))
    for rate in [float(r) for r in a.rates.split(",")]:
        for transport in a.transports.split(","):
            print(f" engine data over {TRANSPORTS[transport]}")
            report(rate, run_local(rate, a.seconds, a.workers, transport, a.low_latency),
                   a.warmup)
    print(f"  load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
