"""Where engine processes run: a Launcher places engine ``w`` of generation ``g`` and
hands back a handle to watch and end it.

The driver and WorkerProcesses know engines only through this small interface, so
the same driver runs engines as local child processes (LocalLauncher: ipc:// sockets
in the driver's owner-only run directory, no keys) or as children of Dask tasks on
other machines (dask_launcher.DaskLauncher: tcp:// with CurveZMQ).

A handle looks like a ``subprocess.Popen``: ``pid``, ``poll()``, ``kill()``,
``wait(timeout)``; plus where the engine runs (``host``, ``dask_worker``, known once
it said hello) and ``hello()``/``heard()``, which the driver calls as the engine
speaks.
"""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any, Optional, Protocol

import zmq

from ..security import Keys
from .engine_command import engine_command, engine_env


class Handle(Protocol):
    """One engine process as its launcher sees it."""

    pid: Optional[int]
    host: str
    dask_worker: Optional[str]

    def poll(self) -> Optional[int]: ...
    def kill(self) -> None: ...
    def wait(self, timeout: Optional[float] = None) -> Optional[int]: ...
    def hello(self, hello: Any) -> bool: ...
    def heard(self) -> None: ...


class Launcher(Protocol):
    """Places engines and says which addresses and keys their sockets use."""

    keys: Optional[Keys]  # the app's CurveZMQ keys; None: no CURVE (one machine, ipc://)

    def bind_driver(self, sock: zmq.Socket, rundir: str) -> str: ...
    def driver_stream(self, rundir: str) -> Optional[str]: ...
    def data_bind(self, rundir: str, w: int, generation: int, host: str) -> str: ...
    def launch(self, args: list, w: int, generation: int) -> Handle: ...
    def info(self) -> dict: ...
    def close(self) -> None: ...


class LocalHandle:
    """A local engine: a child process of the driver."""

    dask_worker = None

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.pid: Optional[int] = proc.pid
        self.host = socket.gethostname()
        self.greeted = False

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    def kill(self) -> None:
        self.proc.kill()

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        return self.proc.wait(timeout)

    def hello(self, hello: Any) -> bool:
        """The engine said hello; False if it had already (a second engine of the same
        name and generation: never the case for a child process, see DaskHandle)."""
        seen, self.greeted = self.greeted, True
        return not seen

    def heard(self) -> None:
        pass  # poll() sees a dead child at once: heartbeats are not needed for liveness


class LocalLauncher:
    """Engines as child processes on this machine. Data (between engines, and what
    they send the driver) goes over Unix stream sockets in the run directory
    (``streams.py``); the driver's control messages over ZeroMQ ipc://. With
    ``WALLAROO_NB_LOCAL_TRANSPORT=zmq`` in the driver's environment, data goes over
    ZeroMQ ipc:// too (bench/latency.py measures both)."""

    keys = None

    def __init__(self) -> None:
        self.streams = os.environ.get("WALLAROO_NB_LOCAL_TRANSPORT", "unix") != "zmq"

    def bind_driver(self, sock: zmq.Socket, rundir: str) -> str:
        addr = f"ipc://{rundir}/driver.sock"
        sock.bind(addr)
        return addr

    def driver_stream(self, rundir: str) -> Optional[str]:
        return f"unix://{rundir}/driver.stream" if self.streams else None

    def data_bind(self, rundir: str, w: int, generation: int, host: str) -> str:
        scheme = "unix" if self.streams else "ipc"
        return f"{scheme}://{rundir}/w{w}.g{generation}.data"

    def launch(self, args: list, w: int, generation: int) -> LocalHandle:
        # own session: a Ctrl-C meant for the driver does not tear workers down mid-stop
        return LocalHandle(subprocess.Popen(engine_command(args), env=engine_env(),
                                            start_new_session=True, stdin=subprocess.DEVNULL))

    def info(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def launcher_for(cluster: Any, driver_address: Optional[str], workers: int,
                 resilience: bool, checkpoint_dir: Optional[str]) -> Optional[Launcher]:
    """The launcher of ``run(..., cluster=, driver_address=)``: None (local processes)
    without a cluster, else a DaskLauncher ready for ``workers`` engines."""
    if cluster is None:
        if driver_address is not None:
            raise ValueError("driver_address= says where engines on a Dask cluster reach the "
                             "driver: it needs cluster= (a dask.distributed Client)")
        return None
    if resilience and not checkpoint_dir:
        raise ValueError("with cluster= and resilience=True, give checkpoint_dir=: a directory "
                         "that the driver and every Dask worker reach under the same path "
                         "(a shared file system), where engines write their snapshots")
    try:
        from .dask_launcher import DaskLauncher
    except ImportError as e:  # pragma: no cover - wallaroo_nb[dask] not installed
        raise ImportError(f"cluster= needs Dask: pip install 'wallaroo_nb[dask]' ({e})") from e
    launcher = DaskLauncher(cluster, driver_address)
    try:  # (without resilience checkpoint_dir still carries state when app.scale() runs)
        launcher.prepare(workers, checkpoint_dir)
    except BaseException:
        launcher.close()
        raise
    return launcher
