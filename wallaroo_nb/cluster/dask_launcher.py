"""Engines on a Dask cluster: Dask places them and watches their lives, ZeroMQ carries
everything else (docs/cluster.md). What runs on the Dask workers is dask_tasks.py.

Placement: each engine's task goes to the Dask worker with the most free engine slots
(the ``wallaroo_nb_engine`` resource, one per Dask worker unless it declares more),
pinned there: Dask's scheduler places by a resource's total, not by what is free, so
it could queue two engines on one slot. An engine that finds no free slot waits for
one (a replacement worker) without blocking the driver.

Sockets: the driver binds ``tcp://`` where the scheduler sees it (or
``driver_address``), each engine ``tcp://`` on its Dask worker's host, all with the
app's CurveZMQ keys (security.py).

Lifecycle: a Dask worker that leaves the cluster (the scheduler says so at once) takes
its engine with it: the handle reports it ended and the driver recovers or fails. A
cancelled task kills its engine. An engine that a re-run task started late has an
old name and generation: the driver takes its hello as the loss of the first one and
fences it out (WorkerProcesses.hello, protocol.Peers.generations).
"""

from __future__ import annotations

import os
import time
import uuid
import weakref
from typing import Any, Optional

import zmq

from ..security import Keys, authenticator, new_keys, server, stop
from .dask_tasks import RESOURCE, EngineSlots, run_engine

SILENT_S = 10.0  # an engine not heard from for this long (after its first heartbeat) is lost
PLACE_RETRY_S = 0.5  # an engine waiting for a free slot looks again this often
PLACE_TIMEOUT_S = 120.0  # ... and is given up after this long
TASK_PREFIX = "wallaroo_nb-"  # the keys of engine tasks (every app's), to count used slots


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
    """One engine as seen through its Dask task (and its hello and heartbeats)."""

    def __init__(self, launcher: "DaskLauncher", args: list, key: str):
        self.launcher, self.args, self.key = launcher, args, key
        self.future: Any = None  # None until a Dask worker with a free slot is found
        self.placed_on = ""  # that Dask worker's address
        self.asked = self.tried = time.monotonic()
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
        now = time.monotonic()
        if self.future is None:
            if now - self.tried >= PLACE_RETRY_S:
                self.tried = now
                self.launcher.place(self)
            if self.future is None and now - self.asked > PLACE_TIMEOUT_S:
                return Ended(-1, f"no Dask worker had a free engine slot for {PLACE_TIMEOUT_S:.0f}s")
            return None
        status = self.future.status
        if status == "finished":
            return Ended(self.future.result())
        if status == "error":
            return Ended(-1, f"its Dask task failed: {self.future.exception()!r}")
        if status in ("cancelled", "lost"):
            return Ended(-1, f"its Dask task is {status}")
        why = None
        if self.placed_on in self.launcher.gone:
            why = f"its Dask worker {self.placed_on} left the cluster"
        elif self.last_heard is not None and now - self.last_heard > SILENT_S:
            why = f"not heard from for {SILENT_S:.0f}s on {self.placed_on}"
        if why is None:
            return None
        self._cancel()  # lost: Dask must not run it again (a worker back at the same address)
        return Ended(-1, why)

    def kill(self) -> None:
        """Cancel the task, which kills the engine (which is fenced out anyway)."""
        self._cancel()
        if self.ended is None:
            self.ended = Ended(-9, "killed: its Dask task was cancelled")

    def _cancel(self) -> None:
        if self.future is not None and self.future.status in ("pending", "finished"):
            try:
                self.future.cancel()
            except Exception:  # the client is closing: the scheduler releases the task
                pass

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
    (then this launcher makes a client and closes it with the app). ``driver_address``:
    "HOST" or "HOST:PORT" where engines reach the driver; by default the address of this
    machine towards the scheduler, any free port."""

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
        self.token = uuid.uuid4().hex[:12]  # in the task keys of this app
        self.handles: list = []
        self.gone: set = set()  # addresses of Dask workers that left the cluster
        self.free: dict = {}  # Dask worker -> free engine slots, as last counted
        self.counted = 0.0
        self.driver_addr = ""  # where engines reach the driver, once it is bound
        self.auth: Any = None  # the driver's ZAP handler, once it is bound
        watch_departures(self.client, self)

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

    # -- sockets ---------------------------------------------------------------------------

    def bind_driver(self, sock: zmq.Socket, rundir: str) -> str:
        """Bind the driver's socket, a CURVE server, where engines reach it; behind NAT or
        a gateway (``driver_address`` is not this machine's) bind every interface, same
        port. The ZAP handler runs in the socket's context until ``close``."""
        self.auth = authenticator(sock.context, self.keys)
        server(sock, self.keys)
        self.driver_addr = bind_reachable(sock, self.host, self.port)
        return self.driver_addr

    def driver_stream(self, rundir: str) -> Optional[str]:
        return None  # engines on other machines: everything to the driver over CurveZMQ

    def data_bind(self, rundir: str, w: int, generation: int, host: str) -> str:
        return f"tcp://{_bracket(host or '127.0.0.1')}:0"

    # -- engines ---------------------------------------------------------------------------

    def launch(self, args: list, w: int, generation: int) -> DaskHandle:
        handle = DaskHandle(self, args, f"{TASK_PREFIX}{self.token}-w{w}-g{generation}")
        self.handles.append(handle)
        self.place(handle)
        return handle

    def place(self, handle: DaskHandle) -> None:
        """Submit the engine's task to the Dask worker with the most free slots, if any."""
        if time.monotonic() - self.counted > PLACE_RETRY_S / 2:
            self.free = self._count_free()  # a generation's engines share one count
            self.counted = time.monotonic()
        where = max(self.free, key=self.free.get, default=None)
        if where is None or self.free[where] <= 0:
            return
        self.free[where] -= 1
        handle.placed_on = where
        handle.future = self.client.submit(
            run_engine, handle.args, self.keys.to_line(), key=handle.key, pure=False,
            resources={RESOURCE: 1}, workers=[where], allow_other_workers=False)

    def _count_free(self) -> dict:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        busy = self.client.processing()
        return {addr: int(ws.get("resources", {}).get(RESOURCE, 0))
                - sum(str(k).startswith(TASK_PREFIX) for k in busy.get(addr, ()))
                for addr, ws in workers.items() if addr not in self.gone}

    def worker_left(self, addr: str) -> None:
        """The scheduler says a Dask worker left (called on the client's event loop)."""
        self.gone.add(addr)

    def info(self) -> dict:
        """What the App shows of the cluster: its dashboard, scheduler, driver address."""
        try:
            return {"dask_dashboard": self.client.dashboard_link,
                    "dask_scheduler": self.client.scheduler.address,
                    "driver_address": self.driver_addr}
        except Exception:
            return {}

    def close(self) -> None:
        """Cancel what is left of the tasks (their engines are stopped or fenced by now)."""
        for h in self.handles:
            h._cancel()
        self.handles = []
        stop(self.auth)
        self.auth = None
        stop_watching(self.client, self)
        if self.own_client:
            self.client.close()


def watch_departures(client: Any, launcher: DaskLauncher) -> None:
    """Tell ``launcher`` when the scheduler removes a Dask worker: one handler on the
    client's "all" event topic for all launchers of that client (a handler that was
    there before is still called)."""
    launchers = getattr(client, "_wallaroo_nb_launchers", None)
    if launchers is None:
        launchers = client._wallaroo_nb_launchers = weakref.WeakSet()
        previous = client._wallaroo_nb_previous = getattr(client, "_event_handlers", {}).get("all")

        def on_event(event: tuple) -> None:
            msg = event[1] if isinstance(event, tuple) and len(event) == 2 else None
            if isinstance(msg, dict) and msg.get("action") == "remove-worker":
                for each in list(launchers):
                    each.worker_left(msg.get("worker"))
            if previous is not None:
                previous(event)

        client.subscribe_topic("all", on_event)
    launchers.add(launcher)


def stop_watching(client: Any, launcher: DaskLauncher) -> None:
    """The last launcher of a client is done: give the "all" topic back (else the
    scheduler writes to a closed client when it closes)."""
    launchers = getattr(client, "_wallaroo_nb_launchers", None)
    if launchers is None:
        return
    launchers.discard(launcher)
    if not launchers:
        del client._wallaroo_nb_launchers
        previous = client.__dict__.pop("_wallaroo_nb_previous", None)
        try:
            if previous is not None:
                client.subscribe_topic("all", previous)
            else:
                client.unsubscribe_topic("all")
                client._event_handlers.pop("all", None)
        except Exception:  # the client is closed already
            pass


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


def bind_reachable(sock: zmq.Socket, host: str, port: int) -> str:
    """Bind ``sock`` at ``host:port`` (port 0: any) and return the address to connect
    to; where ``host`` is not this machine's (NAT, a gateway forwarding to it) bind
    every interface on that port instead, and still return ``host``'s address."""
    try:
        sock.bind(f"tcp://{_bracket(host)}:{port}")
    except zmq.ZMQError as e:
        if e.errno != zmq.EADDRNOTAVAIL:
            raise
        sock.bind(f"tcp://{'[::]' if ':' in host else '0.0.0.0'}:{port}")
    bound = sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1]
    return f"tcp://{_bracket(host)}:{bound}"


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
