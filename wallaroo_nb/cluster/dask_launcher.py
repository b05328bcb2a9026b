"""Engines on a Dask cluster: Dask places them and watches their lives, ZeroMQ carries
everything else (docs/cluster.md).

Each engine is a child process (``Popen``: Dask worker processes are daemonic, so
``multiprocessing`` fails there) of one long-running Dask task that secedes, giving
its thread back to the Dask worker. A Dask worker resource, ``wallaroo_nb_engine``,
keeps to one engine per Dask worker unless the worker declares more
(``dask worker --resources wallaroo_nb_engine=N``). Engines bind ``tcp://`` on their
Dask worker's host and the driver binds ``tcp://`` where the scheduler sees it (or
``driver_address``); every socket uses the app's CurveZMQ keys (security.py), which
reach an engine on its stdin.

Lifecycle: a task whose future is cancelled kills its engine; an engine exits by
itself when its Dask worker dies (its parent) or its driver goes silent. The task of a
lost Dask worker may be re-run by Dask: the engine it starts has the old name and
generation, so the driver takes its hello as the loss of the first engine and
fences it out (processes.WorkerProcesses.hello, protocol.Peers.generations).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from typing import Any, Optional

import zmq

from ..security import Keys, new_keys
from .launchers import engine_command, engine_env

RESOURCE = "wallaroo_nb_engine"
CANCEL_CHECK_S = 0.2  # how often an engine's task looks whether it was cancelled
SILENT_S = 10.0  # an engine not heard from for this long (after its first heartbeat) is lost

try:  # the plugin class needs distributed; the rest of this module imports without it
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - wallaroo_nb[dask] not installed
    WorkerPlugin = object


class EngineSlots(WorkerPlugin):
    """Gives every Dask worker, present and future, one engine slot, unless it was
    started with a number of its own (``--resources wallaroo_nb_engine=N``)."""

    name = "wallaroo_nb-engine-slots"

    async def setup(self, worker: Any) -> None:
        if RESOURCE not in worker.state.total_resources:
            await worker.set_resources(**{RESOURCE: 1})


def run_engine(args: list, keys_line: bytes) -> int:
    """The Dask task of one engine: start it, give the thread back, wait for it to
    exit (its exit code is the task's result); kill it if the task is cancelled."""
    from distributed import get_worker, secede
    from distributed.comm import get_address_host

    worker = get_worker()
    key = worker.get_current_task()
    extra = ["--host", get_address_host(worker.address), "--dask-worker", worker.address,
             "--keys-stdin"]
    secede()
    # own session: signals to the Dask worker's group are not meant for the engine
    proc = subprocess.Popen(engine_command(args + extra), env=engine_env(),
                            stdin=subprocess.PIPE, start_new_session=True)
    proc.stdin.write(keys_line)
    proc.stdin.close()
    while True:
        try:
            return proc.wait(CANCEL_CHECK_S)
        except subprocess.TimeoutExpired:
            pass
        if _cancelled(worker, key):
            proc.kill()
            return proc.wait()


def _cancelled(worker: Any, key: Any) -> bool:
    """The Dask worker's own view of this task: gone or cancelled means nobody wants it."""
    ts = worker.state.tasks.get(key)
    return ts is None or ts.state not in ("executing", "long-running")


class Ended(int):
    """An engine's exit code, or -1 when its Dask task ended without one; says why."""

    def __new__(cls, code: int, why: str = "") -> "Ended":
        obj = int.__new__(cls, code)
        obj.why = why
        return obj

    def __str__(self) -> str:
        return f"{int(self)} ({self.why})" if self.why else str(int(self))

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else int(self).__format__(spec)


class DaskHandle:
    """One engine as seen through its Dask future (and its hello and heartbeats)."""

    def __init__(self, future: Any):
        self.future = future
        self.pid: Optional[int] = None  # on the Dask worker's machine
        self.host = ""
        self.dask_worker: Optional[str] = None
        self.greeted = False
        self.last_heard: Optional[float] = None
        self.ended: Optional[Ended] = None

    def poll(self) -> Optional[int]:
        if self.ended is None:
            self.ended = self._outcome()
        return self.ended

    def _outcome(self) -> Optional[Ended]:
        status = self.future.status
        if status == "finished":
            return Ended(self.future.result())
        if status in ("error", "cancelled", "lost"):
            return Ended(-1, f"its Dask task is {status}")
        if self.last_heard is not None and time.monotonic() - self.last_heard > SILENT_S:
            return Ended(-1, f"not heard from for {SILENT_S:.0f}s on {self.dask_worker}")
        return None

    def kill(self) -> None:
        """Cancel the task (which kills the engine); the engine is fenced out anyway."""
        if self.future.status in ("pending", "finished"):
            try:
                self.future.cancel()
            except Exception:  # the client is closing: the scheduler releases the task
                pass
        if self.ended is None:
            self.ended = Ended(-9, "killed: its Dask task was cancelled")

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        return self.poll()  # the engine is remote: nothing here to wait on

    def hello(self, hello: Any) -> bool:
        seen, self.greeted = self.greeted, True
        if seen:
            return False
        self.pid, self.host = hello.pid, hello.host
        self.dask_worker = hello.dask_worker or None
        return True

    def heard(self) -> None:
        self.last_heard = time.monotonic()


class DaskLauncher:
    """Engines as children of Dask tasks, over tcp:// with CurveZMQ (see the module doc).

    ``cluster``: a ``distributed.Client``, or a scheduler address or Dask cluster object
    (then this launcher makes a client and closes it with the app). ``driver_address``: "HOST" or
    "HOST:PORT" where engines reach the driver; by default the address this machine
    reaches the scheduler from, any free port."""

    def __init__(self, cluster: Any, driver_address: Optional[str] = None):
        from distributed import Client

        # a scheduler address or a Cluster object: a client of our own, closed with the app
        self.own_client = isinstance(cluster, str) or hasattr(cluster, "scheduler_address")
        self.client = Client(cluster) if self.own_client else cluster
        if not isinstance(self.client, Client):
            raise TypeError("cluster= takes a dask.distributed Client, a Dask cluster or a "
                            f"scheduler address such as 'tcp://10.0.0.5:8786', got {cluster!r}")
        self.keys: Keys = new_keys()
        self.host, self.port = driver_endpoint(self.client.scheduler.address, driver_address)
        self.token = uuid.uuid4().hex[:12]  # task keys of this app
        self.handles: list = []

    def prepare(self, n: int, checkpoint_dir: Optional[str]) -> None:
        """Before the first engine: give Dask workers their engine slots, check there are
        ``n`` of them, and that every Dask worker sees ``checkpoint_dir`` (if any)."""
        self.client.register_plugin(EngineSlots())
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        slots = sum(int(ws.get("resources", {}).get(RESOURCE, 0)) for ws in workers.values())
        if slots < n:
            raise ValueError(
                f"workers={n} needs {n} engine slots, and the Dask cluster at "
                f"{self.client.scheduler.address} has {slots} ({len(workers)} Dask "
                f"worker(s), one engine each unless started with --resources {RESOURCE}=N): "
                "add Dask workers, or ask for fewer engines")
        if checkpoint_dir is not None:
            check_shared_dir(self.client, checkpoint_dir)

    def bind_driver(self, sock: zmq.Socket, rundir: str) -> str:
        """Bind the driver's socket where engines reach it; behind NAT or a gateway
        (``driver_address`` is not this machine's) bind every interface, same port."""
        try:
            sock.bind(f"tcp://{_bracket(self.host)}:{self.port}")
        except zmq.ZMQError as e:
            if e.errno != zmq.EADDRNOTAVAIL:
                raise
            sock.bind(f"tcp://{'[::]' if ':' in self.host else '0.0.0.0'}:{self.port}")
        port = sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1]
        return f"tcp://{_bracket(self.host)}:{port}"

    def data_bind(self, rundir: str, w: int, generation: int, host: str) -> str:
        return f"tcp://{_bracket(host or '127.0.0.1')}:0"

    def launch(self, args: list, w: int, generation: int) -> DaskHandle:
        future = self.client.submit(
            run_engine, args, self.keys.to_line(), key=f"wallaroo_nb-{self.token}-w{w}-g{generation}",
            resources={RESOURCE: 1}, pure=False)
        handle = DaskHandle(future)
        self.handles.append(handle)
        return handle

    def info(self) -> dict:
        """What the App shows of the cluster: its dashboard and scheduler."""
        try:
            return {"dask_dashboard": self.client.dashboard_link,
                    "dask_scheduler": self.client.scheduler.address}
        except Exception:
            return {}

    def close(self) -> None:
        """Cancel what is left of the tasks (their engines are stopped or fenced by now)."""
        for h in self.handles:
            if h.future.status == "pending":
                h.kill()
        self.handles = []
        if self.own_client:
            self.client.close()


def driver_endpoint(scheduler: str, driver_address: Optional[str]) -> tuple:
    """(host, port) the driver binds: ``driver_address`` ("HOST", "HOST:PORT",
    "[V6]:PORT"), else this machine's address towards the scheduler, any port."""
    if driver_address:
        host, port = driver_address, 0
        if driver_address.startswith("["):
            host, _, rest = driver_address[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 0
        elif driver_address.count(":") == 1:
            host, p = driver_address.split(":")
            port = int(p)
        return host, port
    from distributed.comm import get_address_host
    from distributed.utils import get_ip

    if not scheduler.startswith(("tcp://", "tls://")):
        return "127.0.0.1", 0  # an in-process cluster: everything is on this machine
    # the local address of the route to the scheduler (a UDP connect: no packet is sent)
    return get_ip(get_address_host(scheduler)), 0


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def check_shared_dir(client: Any, path: str) -> None:
    """Raise unless every Dask worker sees the very directory ``path`` this driver
    writes to (a marker file made here must be there): checkpoints must be shared."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    marker = os.path.join(path, f".wallaroo_nb-shared-{uuid.uuid4().hex}")
    with open(marker, "w"):
        pass
    try:
        seen = client.run(os.path.exists, marker)
    finally:
        os.unlink(marker)
    missing = sorted(w for w, ok in seen.items() if not ok)
    if missing:
        raise ValueError(
            f"checkpoint_dir {path!r} is not shared with Dask worker(s) {', '.join(missing)}: "
            "with cluster= and resilience, checkpoints must go to a directory that the "
            "driver and every Dask worker reach under the same path (NFS or another shared "
            "file system; a local directory works only when all of them run on this machine)")
