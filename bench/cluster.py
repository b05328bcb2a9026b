"""Engines on a Dask cluster (tcp:// with CurveZMQ) beside local engines (Unix sockets), same run.

The pipelines are bench/throughput.py's (keyed running sum, every output collected in
the driver) and bench/latency.py's (paced source, key_by, state step, a sink on the
worker and a callback in the driver). The Dask cluster runs on this machine as it
would elsewhere: `dask scheduler` and two `dask worker` processes (with their
nannies), one at 127.0.0.2 and one at 127.0.0.3, so engines bind there and every
socket is tcp:// with CURVE, as between machines (minus the wire); this process only
has a Client (a LocalCluster would run the scheduler in here, beside the driver).
Runs alternate between the two launchers so that drift on a noisy machine hits both.
Also printed: one bare ZeroMQ hop between two processes over ipc:// and over tcp://
with CURVE (a DEALER to a ROUTER, paced), which is what the engines pay per message.

    .venv/bin/python bench/cluster.py [--events N] [--repeat R] [--rate R] [--seconds S]

Target (issue 16): Dask throughput >= 0.8x local, p50 latency <= local + 50 µs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(__file__))

import cloudpickle  # noqa: E402
import latency  # noqa: E402
import throughput  # noqa: E402
from distributed import Client  # noqa: E402

# the Dask workers cannot import bench/'s modules: their pipelines travel by value
cloudpickle.register_pickle_by_value(throughput)
cloudpickle.register_pickle_by_value(latency)

HOSTS = ("127.0.0.2", "127.0.0.3")


@contextmanager
def dask_cluster():
    """A Client of a Dask cluster of its own processes: `dask scheduler` at 127.0.0.1,
    one `dask worker` (one thread) per loopback host; all stopped at the end."""
    folder = tempfile.mkdtemp(prefix="bench-dask-")
    sched_file = os.path.join(folder, "scheduler.json")
    dask = [sys.executable, "-m", "dask"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen(dask + ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                      "--dashboard-address", "127.0.0.1:0",
                                      "--scheduler-file", sched_file], **quiet)]
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sched_file) and time.monotonic() < deadline:
            time.sleep(0.1)
        for host in HOSTS:
            procs.append(subprocess.Popen(dask + [
                "worker", "--scheduler-file", sched_file, "--host", host, "--nthreads", "1",
                "--dashboard-address", f"{host}:0"], **quiet))
        with Client(scheduler_file=sched_file) as client:
            client.wait_for_workers(len(HOSTS), timeout=60)
            yield client
    finally:
        for p in reversed(procs):  # workers (and their nannies) first, then the scheduler
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


CURVE_RECEIVER = """
import sys, time, zmq
from wallaroo_nb import security
keys = security.Keys.from_line(sys.stdin.buffer.readline())
ctx = zmq.Context()
auth = security.authenticator(ctx, keys)
r = ctx.socket(zmq.ROUTER)
security.server(r, keys)
r.bind(sys.argv[1])
sys.stdout.write(r.getsockopt(zmq.LAST_ENDPOINT).decode() + "\\n")
sys.stdout.flush()
p = zmq.Poller()
p.register(r, zmq.POLLIN)
out = []
while p.poll(5000):
    _, ts = r.recv_multipart()
    if not ts:
        break
    out.append(str(time.time_ns() - int(ts)))
sys.stdout.write(" ".join(out))
"""


def curve_hop(rate: float, n: int) -> list:
    """Latencies (ns) of n paced messages to another process over tcp:// with CURVE."""
    import zmq

    from wallaroo_nb import security

    keys = security.new_keys()
    rx = subprocess.Popen([sys.executable, "-c", CURVE_RECEIVER, f"tcp://{HOSTS[0]}:0"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    try:
        rx.stdin.write(keys.to_line())
        rx.stdin.flush()
        addr = rx.stdout.readline().decode().strip()
        security.client(s, keys)
        s.connect(addr)
        s.send(b"0")  # the handshake happens before the clock starts
        time.sleep(0.3)
        out = latency.paced_stamps(s, rx, n, rate)
    finally:
        rx.kill()
        s.close(0)
        ctx.term()
    return [int(x) for x in out.split()][1:]


def measure_throughput(events: list, repeat: int, client: Client) -> dict:
    best: dict = {"local": 0.0, "dask": 0.0}
    for _ in range(repeat):
        for name, kw in (("local", {}), ("dask", {"cluster": client})):
            rate, _cpu = throughput.engine(events, 2, metrics=True, **kw)
            best[name] = max(best[name], rate)
    return best


def measure_latency(rate: float, seconds: float, repeat: int, client: Client) -> dict:
    """p50/p99 (µs) per launcher, the best run of each (the least disturbed by neighbours)."""
    out: dict = {}
    for _ in range(repeat):
        for name, kw in (("local", {}), ("dask", {"cluster": client})):
            r = latency.run_once(rate, seconds, 2, **kw)
            lat = latency.latencies(r["arrivals"], r["n"], rate, 0.5)
            row = {"sink": latency.pct(r["at_sink"]), "driver": latency.pct(lat["steady"]),
                   "ipc hop": latency.pct(r["hop"])}
            if name not in out or row["sink"]["p50_us"] < out[name]["sink"]["p50_us"]:
                out[name] = row
    out["tcp+curve hop"] = latency.pct(curve_hop(rate, min(int(rate * seconds), 20_000)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rate", type=float, default=10_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    print(f"2 engines, local launcher (Unix sockets) vs Dask launcher (tcp:// + CurveZMQ, Dask "
          f"workers at {' and '.join(HOSTS)}); load average {os.getloadavg()[0]:.2f} at start")
    with dask_cluster() as client:
        events = throughput.make_events(a.events, a.keys)
        tp = measure_throughput(events, a.repeat, client)
        print(f"throughput, keyed running sum, {a.events:,} events (best of {a.repeat}):")
        print(f"  local  {tp['local']:12,.0f} events/s")
        print(f"  dask   {tp['dask']:12,.0f} events/s   ratio dask/local {tp['dask'] / tp['local']:.3f}"
              f"   (target >= 0.8)")
        lat = measure_latency(a.rate, a.seconds, a.repeat, client)
        print(f"latency, paced {a.rate:,.0f} events/s for {a.seconds:g}s (µs; best of {a.repeat}):")
        print(f"  {'':34}{'p50':>10}{'p99':>10}")
        for where in ("sink", "driver"):
            for name in ("local", "dask"):
                p = lat[name][where]
                label = f"{name}: read -> {'sink on worker' if where == 'sink' else 'driver'}"
                print(f"  {label:34}{p['p50_us']:10.1f}{p['p99_us']:10.1f}")
        print(f"  {'one hop, ipc://':34}{lat['local']['ipc hop']['p50_us']:10.1f}"
              f"{lat['local']['ipc hop']['p99_us']:10.1f}")
        print(f"  {'one hop, tcp:// + CURVE':34}{lat['tcp+curve hop']['p50_us']:10.1f}"
              f"{lat['tcp+curve hop']['p99_us']:10.1f}")
        for where in ("sink", "driver"):
            d = lat["dask"][where]["p50_us"] - lat["local"][where]["p50_us"]
            print(f"  p50 dask - local, read -> {where}: {d:+.1f} µs   (target <= +50)")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
