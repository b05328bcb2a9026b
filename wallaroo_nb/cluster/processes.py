"""Worker processes of one app: spawn a generation, name them, notice and reap the dead.

Workers are separate OS processes started with the driver's interpreter
(``python -m wallaroo_nb.engine.worker``), never ``multiprocessing``: functions
defined in a notebook cell travel by cloudpickle in the start record instead.
Where they run is the launcher's business (launchers.py: here, or on a Dask cluster).
"""

from __future__ import annotations

import time
from typing import Any, Optional

from .launchers import Handle, Launcher, LocalLauncher

HEARTBEAT_FRESH_S = 3.0  # a heartbeat older than this says nothing any more


class WorkerProcesses:
    """The current generation of worker processes and their socket identities."""

    def __init__(self, driver_addr: str, n: int, wallaroo_alias: bool = False,
                 launcher: Optional[Launcher] = None):
        self.addr = driver_addr
        self.n = n
        self.alias = wallaroo_alias
        self.launcher = launcher or LocalLauncher()
        self.generation = 0
        self.procs: list[Handle] = []
        self.exited: list[bool] = []

    def ident(self, w: int) -> bytes:
        """Worker ``w``'s socket identity: id and generation, so that late messages
        from a replaced generation are told apart."""
        return f"w{w}.{self.generation}".encode()

    @staticmethod
    def parse_ident(ident: bytes) -> tuple:
        """(worker, generation) of a socket identity (its watchdog's has ".hb" after);
        (None, None) for one that no engine of ours has."""
        try:
            name, _, rest = ident.decode().partition(".")
            return int(name[1:]), int(rest.split(".")[0] or 0)
        except (UnicodeDecodeError, ValueError):
            return None, None

    def hello(self, w: int, hello: Any) -> bool:
        """Engine ``w`` said hello (pid, host, Dask worker); False if an engine of the same
        name and generation had already: a cluster re-ran its task, the first is gone."""
        return 0 <= w < len(self.procs) and self.procs[w].hello(hello)

    def placement(self) -> list:
        """Where each engine runs: {worker, pid, host, dask_worker} (for app.workers())."""
        return [{"worker": w, "pid": p.pid, "host": p.host, "dask_worker": p.dask_worker}
                for w, p in enumerate(self.procs)]

    def start(self, generation: int) -> None:
        self.generation = generation
        self.procs = [self._spawn(i) for i in range(self.n)]
        self.exited = [False] * self.n
        self.heartbeats: dict = {}  # worker -> (protocol.Busy, monotonic time heard)

    def heard(self, w: int, busy: Any) -> None:
        """A heartbeat from worker ``w``'s watchdog."""
        self.heartbeats[w] = (busy, time.monotonic())
        self.procs[w].heard()

    def turning(self, w: int) -> None:
        """Worker ``w``'s loop sent something: whatever kept it busy is done."""
        if self.heartbeats:
            self.heartbeats.pop(w, None)

    def busy(self) -> list:
        """(worker, Busy) of workers whose loop has been in one turn for a while."""
        now = time.monotonic()
        return [(w, b) for w, (b, at) in sorted(self.heartbeats.items())
                if b.seconds and now - at < HEARTBEAT_FRESH_S]

    def _spawn(self, i: int) -> Handle:
        args = ["--driver", self.addr, "--id", str(i), "--ident", self.ident(i).decode()]
        if self.alias:
            args.append("--wallaroo-alias")
        return self.launcher.launch(args, i, self.generation)

    @property
    def pids(self) -> list:
        return [p.pid for p in self.procs]

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.procs)

    @property
    def all_exited(self) -> bool:
        return all(self.exited)

    def newly_exited(self) -> Optional[tuple]:
        """(worker, pid, exit code) of a worker that exited since the last look, or None."""
        for i, p in enumerate(self.procs):
            code = p.poll()
            if code is not None and not self.exited[i]:
                self.exited[i] = True
                return i, p.pid, code
        return None

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(10)

    def reap(self, kill: bool) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                self.exited[i] = True
            elif kill:
                p.kill()
                p.wait(5)
                self.exited[i] = True
