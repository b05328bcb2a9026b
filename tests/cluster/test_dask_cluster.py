"""Engines on a Dask cluster: a LocalCluster of worker processes (with nannies) on two
loopback addresses, 127.0.0.2 and 127.0.0.3, nothing beyond loopback.

Apps run with ``cluster=client``: results exact against plain Python, every socket
tcp:// with CurveZMQ (no ipc:// anywhere), strangers with another key or none get
nothing in or out, a killed Dask worker is recovered from under resilience, and the
command line's ``--cluster`` runs the same way. At the end the cluster is closed and
no engine, Dask worker or nanny is left.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import signal
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest
import zmq
from apps import first, running_sum, sum_reference
from distributed import Client, LocalCluster
from zmq.utils.monitor import recv_monitor_message

import wallaroo_nb as w
from wallaroo_nb.cluster.dask_launcher import check_shared_dir
from wallaroo_nb.cluster.dask_tasks import RESOURCE, run_engine
from wallaroo_nb.engine.worker import NO_START_EXIT
from wallaroo_nb.protocol import Hello, Kind, encode, pack_frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from cli_procs import EXAMPLES, procs  # noqa: E402, F401 (a fixture)
from test_cli_tcp import alerts_reference, assert_counts_exact, read_lines  # noqa: E402

pytestmark = pytest.mark.timeout(120)

HOSTS = ("127.0.0.2", "127.0.0.3")
DRIVERS: list = []  # driver addresses of every app started here: no engine of theirs may remain


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of processes, one Dask worker (and nanny) per loopback host."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cluster = LocalCluster(n_workers=0, processes=True, threads_per_worker=1,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           silence_logs=logging.ERROR)
    c = Client(cluster)
    try:
        for i, host in enumerate(HOSTS):
            cluster.new_spec["options"]["host"] = host  # the next worker's address
            cluster.scale(i + 1)
            c.wait_for_workers(i + 1, timeout=60)
        yield c
    finally:
        c.close()
        cluster.close()
        _assert_nothing_left(before)


def _assert_nothing_left(before: set) -> None:
    deadline = time.monotonic() + 20
    while True:
        # (multiprocessing's resource tracker, started for the cluster, serves this whole
        # interpreter and ends with it: it is not the cluster's to stop)
        kids = [p for p in psutil.Process().children(recursive=True) if p.pid not in before
                and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                and "resource_tracker" not in " ".join(p.cmdline())]
        engines = [p for p in psutil.process_iter(["cmdline"]) if _our_engine(p)]
        if not kids and not engines:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left running: {kids + engines}")
        time.sleep(0.2)


def _our_engine(p: psutil.Process) -> bool:
    cmd = p.info.get("cmdline") or []
    return ("wallaroo_nb.engine.worker" in cmd and "--driver" in cmd
            and cmd[cmd.index("--driver") + 1] in DRIVERS)


@pytest.fixture
def on_cluster(start, client):
    """on_cluster(pipeline, **kw) -> App on the Dask cluster, two engines unless told;
    stopped at the end."""
    def _start(p, workers=2, **kw):
        client.wait_for_workers(len(HOSTS), timeout=60)  # a killed worker has come back
        app = start(p, workers=workers, cluster=client, **kw)
        DRIVERS.append(app._driver.addr)
        return app
    return _start


# -- pipelines and references -------------------------------------------------------------


class WordTotal:
    def __init__(self):
        self.count = 0


@w.computation_multi("split")
def split(line):
    return line.split()


@w.state_computation("count word", state=WordTotal)
def count_word(word, total):
    total.count += 1
    return (word, total.count)


def word_lines(n: int = 4000) -> list:
    words = [f"w{i}" for i in range(300)]
    return [" ".join(words[(i * 7 + j * 13) % 300] for j in range(i % 9)) for i in range(n)]


def word_count(lines: list, rate=None):
    return (w.source("words", w.IterableSourceConfig("lines", lines, rate=rate))
            .to(split).key_by(lambda x: x).to(count_word)
            .to_sink(w.CollectorSinkConfig(keep=None)))


def word_reference(lines: list) -> dict:
    out: dict = collections.defaultdict(list)
    for line in lines:
        for word in line.split():
            out[word].append(len(out[word]) + 1)
    return dict(out)


def per_key(results: list) -> dict:
    out: dict = collections.defaultdict(list)
    for k, v in results:
        out[k].append(v)
    return dict(out)


def sum_events(n: int) -> list:
    return [(f"k{(i * 7919) % 500}", i % 97) for i in range(n)]


def sums(events, rate=None):
    return (w.source("sums", w.IterableSourceConfig("events", events, rate=rate))
            .key_by(first).to(running_sum).to_sink(w.CollectorSinkConfig(keep=None)))


def assert_tcp_only(app) -> None:
    """Driver and engines on tcp:// at the expected hosts; no ipc:// endpoint anywhere."""
    d = app._driver
    assert d.addr.startswith("tcp://127.0.0.1:"), d.addr
    assert sorted(a.split("//")[1].rsplit(":", 1)[0] for a in d.data_addrs) == list(HOSTS)
    sockets = [os.path.join(top, f) for top, _, files in os.walk(d.rundir) for f in files
               if stat.S_ISSOCK(os.lstat(os.path.join(top, f)).st_mode)]
    assert not sockets, sockets  # no ipc:// socket files in the driver's run dir
    for p in d.procs.placement():
        proc = psutil.Process(p["pid"])
        named = [c for c in proc.net_connections(kind="unix") if c.laddr or c.raddr]
        assert not named, f"engine {p} has unix sockets {named}"
        listening = {c.laddr.ip for c in proc.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {p["host"]}, (p, listening)


# -- tests --------------------------------------------------------------------------------


def test_word_count_and_sums_are_exact_with_engines_on_two_hosts(on_cluster, client):
    lines = word_lines()
    app = on_cluster(word_count(lines))
    app.wait(timeout=60)
    assert per_key(app.results()) == word_reference(lines)
    placement = app._driver.procs.placement()
    assert sorted(p["host"] for p in placement) == list(HOSTS)
    dask_workers = set(client.scheduler_info(n_workers=-1)["workers"])
    assert {p["dask_worker"] for p in placement} == dask_workers
    assert set(app.workers()["dask_worker"]) == dask_workers
    assert_tcp_only(app)
    assert client.dashboard_link in app._repr_html_()  # the App display links Dask's dashboard
    tasks = [k for keys in client.processing().values() for k in keys]
    assert sorted(re.sub(r"-\w+-w", "-APP-w", k) for k in tasks) == [
        f"wallaroo_nb-APP-w{w}-g{g}" for w, g in enumerate(app._driver.procs.gens)], tasks
    secret = app._driver.launcher.keys.client_secret.decode()
    for p in placement:  # the keys came on stdin, not on a command line
        assert secret not in " ".join(psutil.Process(p["pid"]).cmdline())
    # the engines' tasks seceded: each one-thread Dask worker still runs other tasks
    assert client.gather([client.submit(len, "ab", workers=[p["dask_worker"]], pure=False)
                          for p in placement]) == [2, 2]
    app.stop()

    events = sum_events(30_000)
    app = on_cluster(sums(events))
    app.wait(timeout=60)
    expected, totals = sum_reference(events)
    assert per_key(app.results()) == expected
    state = app.state("running sum")
    assert dict(zip(state["key"], state["total"])) == totals
    assert_tcp_only(app)


def _probe(ctx: zmq.Context, kind: int, addr: str, keys, frames: list) -> set:
    """Connect a stranger to ``addr``, send ``frames``, listen a second: the monitor events."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if kind == zmq.DEALER:
        s.setsockopt(zmq.IDENTITY, b"w0.0")  # a worker's name: a hijack attempt
    if keys is not None:
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = keys
    mon = s.get_monitor_socket()
    s.connect(addr)
    for _ in range(3 if frames else 0):
        try:
            s.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            pass  # no handshake, no pipe: zmq holds nothing to send
    events, got = set(), []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if mon.poll(50):
            events.add(recv_monitor_message(mon)["event"])
        if kind == zmq.DEALER and s.poll(0):
            got.append(s.recv_multipart())
    s.disable_monitor()
    mon.close(0)
    s.close(0)
    assert not got, f"a stranger got {got} from {addr}"
    return events


# how a refused handshake shows (zmq names the cause when the peer had time to say it)
HANDSHAKE_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}


def test_strangers_with_another_key_or_none_are_refused(on_cluster):
    events = sum_events(40_000)
    app = on_cluster(sums(events, rate=15_000))
    app.wait(count=1, timeout=60)
    d = app._driver
    keys = d.launcher.keys
    pub, sec = zmq.curve_keypair()
    forged = [pack_frame(0, [[0, 0, 0, 0, 0, None, None, None, b"x"]], 0)]
    ctx = zmq.Context()
    try:
        # the probe can connect: with the app's own client key the handshake succeeds
        assert zmq.EVENT_HANDSHAKE_SUCCEEDED in _probe(
            ctx, zmq.DEALER, d.addr, (keys.server_public, keys.client_public,
                                      keys.client_secret), [])
        targets = [(zmq.DEALER, d.addr, encode(Kind.HELLO, Hello(1)))]
        targets += [(zmq.PUSH, a, forged) for a in d.data_addrs]
        for kind, addr, frames in targets:
            for who in ((keys.server_public, pub, sec), None):  # another key, no key
                seen = _probe(ctx, kind, addr, who, frames)
                assert seen & HANDSHAKE_FAILED, (addr, who, seen)
                assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in seen, (addr, who, seen)
    finally:
        ctx.destroy(0)
    app.wait(timeout=60)
    expected, _ = sum_reference(events)
    assert per_key(app.results()) == expected
    assert app.events()[-1][1] == "2 workers started", app.events()  # nothing happened to it


def test_run_checks_the_cluster_before_starting(client, tmp_path):
    with pytest.raises(ValueError, match="needs 3 engine slots.*has 2"):
        w.run(sums(sum_events(10)), workers=3, cluster=client)
    with pytest.raises(ValueError, match="give checkpoint_dir="):
        w.run(sums(sum_events(10)), workers=2, cluster=client, resilience=True)
    with pytest.raises(ValueError, match="driver_address= .* needs cluster="):
        w.run(sums(sum_events(10)), driver_address="127.0.0.1")
    check_shared_dir(client, str(tmp_path))  # the same directory everywhere: fine
    # a path that names another directory on the Dask workers than here: this process's
    # open descriptor of tmp_path (on a worker, /proc/self/fd/N is something else or nothing)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="is not shared with Dask worker"):
            check_shared_dir(client, f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_the_command_line_runs_on_the_cluster(procs, client, tmp_path):  # noqa: F811
    n = 3000
    expected = alerts_reference(n)
    receiver, port = procs.receive(tmp_path / "alerts.txt")
    runner = procs.start("run", "--application-module", EXAMPLES / "alerts_gen.py",
                         "--out", f"127.0.0.1:{port}", "--workers", "2", "--limit", n,
                         "--cluster", client.scheduler.address)
    m = runner.wait_for(r"driver at (tcp://\S+)")
    DRIVERS.append(m.group(1))
    assert runner.wait(90) == 0, runner.stderr()
    err = runner.stderr()
    assert f"on the Dask cluster at {client.scheduler.address}" in err, err
    assert re.search(rf"final: in {n:,} .* out {len(expected):,} ", err), err
    deadline = time.monotonic() + 10
    while len(read_lines(tmp_path / "alerts.txt")) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.05)
    receiver.signal(signal.SIGINT)
    receiver.wait(10)
    assert_counts_exact(read_lines(tmp_path / "alerts.txt"), expected)


def test_a_killed_dask_worker_is_recovered_from_exactly(on_cluster, client, tmp_path):
    events = sum_events(60_000)
    app = on_cluster(sums(events, rate=20_000), resilience=True, checkpoint_dir=str(tmp_path),
                     checkpoint_interval=0.25)
    app.wait(count=15_000, timeout=60)
    victim = app._driver.procs.placement()[0]
    pids = client.run(os.getpid)
    os.kill(pids[victim["dask_worker"]], signal.SIGKILL)  # the Dask worker process, not the engine
    app.wait(timeout=90)
    expected, totals = sum_reference(events)
    assert per_key(app.results()) == expected
    state = app.state("running sum")
    assert dict(zip(state["key"], state["total"])) == totals
    texts = [t for _, t in app.events()]
    assert any(t.startswith("recovered from") for t in texts), texts
    assert not psutil.pid_exists(victim["pid"]) or psutil.Process(victim["pid"]).status() == \
        psutil.STATUS_ZOMBIE, "the engine outlived its Dask worker"


def test_an_engine_started_again_late_is_fenced_out(on_cluster, client, tmp_path):
    """Engine 0 dies and Dask runs its task again (as after losing a worker): the late
    engine has the old name and generation; the driver recovers into a new generation
    without it, and the late engine never gets a start: it exits by itself. Exact."""
    events = sum_events(40_000)
    app = on_cluster(sums(events, rate=20_000), resilience=True, checkpoint_dir=str(tmp_path),
                     checkpoint_interval=0.25)
    app.wait(count=5_000, timeout=60)
    d = app._driver
    first = d.procs.placement()[0]
    ident = d.procs.ident(0).decode()  # engine 0's name and generation
    os.kill(first["pid"], signal.SIGKILL)
    late = client.submit(run_engine, ["--driver", d.addr, "--id", "0", "--ident", ident],
                         d.launcher.keys.to_line(), pure=False, key="late-engine-w0-g0",
                         workers=[first["dask_worker"]])
    try:
        app.wait(timeout=90)
        expected, totals = sum_reference(events)
        assert per_key(app.results()) == expected
        texts = [t for _, t in app.events()]
        assert sum(t.startswith("recovered from") for t in texts) == 1, texts
        assert d.generation == 1 and d.procs.ident(0).decode() != ident
        assert late.result(timeout=30) == NO_START_EXIT  # it never joined, and left
    finally:
        late.cancel()


def test_grow_and_shrink_on_the_cluster(on_cluster, client, tmp_path):
    """app.scale() places the joining engine on the free Dask worker; the moved slots'
    state goes through checkpoint_dir (shared); outputs exact."""
    events = sum_events(60_000)
    app = on_cluster(sums(events, rate=20_000), workers=1, checkpoint_dir=str(tmp_path))
    app.wait(count=15_000, timeout=60)
    app.scale(2)
    assert any(f.startswith("epoch-") for f in os.listdir(tmp_path))  # the handover's files
    assert set(app.workers()["dask_worker"]) == set(client.scheduler_info(n_workers=-1)["workers"])
    app.wait(count=35_000, timeout=60)
    app.scale(1)
    app.wait(timeout=60)
    expected, totals = sum_reference(events)
    assert per_key(app.results()) == expected
    assert len(app.workers()) == 1


def test_a_cancelled_engine_task_stops_its_engine_and_the_app(on_cluster):
    app = on_cluster(sums(sum_events(1_000_000), rate=5_000), driver_address="127.0.0.1")
    app.wait(count=100, timeout=60)
    assert app._driver.addr.startswith("tcp://127.0.0.1:")
    engine = app._driver.procs.procs[0]
    engine.future.cancel()  # as from the dashboard, or another client
    with pytest.raises(w.WorkerFailure, match="its Dask task is cancelled"):
        app.wait(timeout=30)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(engine.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(engine.pid), "the cancelled task's engine is still running"


ORPHAN_DRIVER = """
import itertools, sys
from distributed import Client
import wallaroo_nb as w
p = (w.source("n", w.IterableSourceConfig("n", lambda: itertools.count(), rate=1000))
     .to_sink(w.CollectorSinkConfig(keep=10)))
app = w.run(p, workers=2, cluster=Client(sys.argv[1]))
app.wait(count=10, timeout=60)
print(app.status()["driver_address"], *app.pids, flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP])
def test_engines_do_not_outlive_their_driver(client, how):
    """SIGKILL: the driver's client leaves, Dask cancels its tasks. SIGSTOP: the client
    stays connected but the driver is silent: the engines leave after 10 s of it."""
    import subprocess

    driver = subprocess.Popen([sys.executable, "-c", ORPHAN_DRIVER, client.scheduler.address],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        addr, *pids = driver.stdout.readline().decode().split()
        DRIVERS.append(addr)
        assert len(pids) == 2 and all(psutil.pid_exists(int(p)) for p in pids)
        driver.send_signal(how)
        deadline = time.monotonic() + 25
        while any(psutil.pid_exists(int(p)) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(psutil.pid_exists(int(p)) for p in pids), "engines outlived their driver"
    finally:
        driver.kill()
        driver.wait(10)


def test_tls_cluster_object_and_a_worker_with_two_engine_slots():
    """Dask's own connections over TLS (distributed.Security; ours stay CurveZMQ);
    cluster= a Cluster object; one Dask worker started with two engine slots takes
    both engines."""
    from distributed.security import Security

    cluster = LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           security=Security.temporary(), resources={RESOURCE: 2},
                           silence_logs=logging.ERROR)
    try:
        assert cluster.scheduler_address.startswith("tls://")
        lines = word_lines(500)
        app = w.run(word_count(lines), workers=2, cluster=cluster)
        try:
            DRIVERS.append(app._driver.addr)
            app.wait(timeout=60)
            assert per_key(app.results()) == word_reference(lines)
            where = {p["dask_worker"] for p in app._driver.procs.placement()}
            assert where == set(cluster.scheduler_info["workers"]), where
        finally:
            app.stop()
    finally:
        cluster.close()
