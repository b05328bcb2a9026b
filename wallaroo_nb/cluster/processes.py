"""Worker processes of one app: spawn them, name them, notice and reap the dead.

Workers are separate OS processes started with the driver's interpreter
(``python -m wallaroo_nb.engine.worker``), never ``multiprocessing``: functions
defined in a notebook cell travel by cloudpickle in the start record instead.
Each worker's socket identity carries its generation: a worker restarted after a
crash gets a new one, so that late messages of the one it replaces are told apart.
Where they run is the launcher's business (launchers.py: here, or on a Dask cluster).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Optional

from .launchers import Handle, Launcher, LocalLauncher

HEARTBEAT_FRESH_S = 3.0  # a heartbeat older than this says nothing any more


class WorkerProcesses:
    """The worker processes, by worker id, and their socket identities."""

    def __init__(self, driver_addr: str, n: int, wallaroo_alias: bool = False,
                 launcher: Optional[Launcher] = None):
        self.addr = driver_addr
        self.alias = wallaroo_alias
        self.launcher = launcher or LocalLauncher()
        self.next_gen = 0
        self.procs: list[Handle] = []
        self.gens: list[int] = []  # worker -> its generation
        self.exited: list[bool] = []
        self.stopping: set = set()  # workers asked to leave: their exit is no failure
        self.heartbeats: dict = {}  # worker -> (protocol.Busy, monotonic time heard)

    def ident(self, w: int) -> bytes:
        """Worker ``w``'s socket identity: its id and generation."""
        return f"w{w}.{self.gens[w]}".encode()

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def parse_ident(ident: bytes) -> tuple:
        """(worker, generation) of a socket identity (its watchdog's has ".hb" after);
        (-1, -1) for one that no engine of ours has."""
        try:
            name, _, rest = ident.decode().partition(".")
            return int(name[1:]), int(rest.split(".")[0] or 0)
        except (UnicodeDecodeError, ValueError):
            return -1, -1

    def current(self, w: int, gen: int) -> bool:
        """Is ``gen`` worker ``w``'s generation now (else its message is stale)?"""
        return 0 <= w < len(self.gens) and self.gens[w] == gen

    def hello(self, w: int, hello: Any) -> bool:
        """Engine ``w`` said hello (pid, host, Dask worker); False if an engine of the same
        name and generation had already: a cluster re-ran its task, the first is gone."""
        return self.procs[w].hello(hello)

    def placement(self) -> list:
        """Where each engine runs: {worker, pid, host, dask_worker}."""
        return [{"worker": w, "pid": p.pid, "host": p.host, "dask_worker": p.dask_worker}
                for w, p in enumerate(self.procs)]

    def generation_of(self, w: int) -> int:
        return self.gens[w]

    def start(self, n: int) -> None:
        """A whole new set of ``n`` workers (at start, or to restart everything)."""
        self.kill_all()
        self.gens = [self._gen() for _ in range(n)]
        self.stopping = set()
        self.heartbeats = {}
        procs = [self._spawn(i) for i in range(n)]  # the list is replaced whole: others read it
        self.procs, self.exited = procs, [False] * n

    def add_workers(self, first: int, n: int) -> None:
        """Start workers ``first`` .. ``n - 1`` (growing)."""
        for i in range(first, n):
            self.gens.append(self._gen())
            self.procs.append(self._spawn(i))
            self.exited.append(False)

    def respawn(self, w: int) -> None:
        """Replace worker ``w`` (it died) with a new process of a new generation."""
        self.gens[w] = self._gen()
        self.procs[w] = self._spawn(w)
        self.exited[w] = False
        self.heartbeats.pop(w, None)

    def remove_from(self, first: int) -> None:
        """Forget workers ``first`` and above (they left; any still there is killed)."""
        for p in self.procs[first:]:
            if p.poll() is None:
                p.kill()
            p.wait(5)
        del self.procs[first:], self.gens[first:], self.exited[first:]
        self.stopping = {w for w in self.stopping if w < first}

    def exited_from(self, first: int) -> bool:
        """Have workers ``first`` and above all exited?"""
        return all(p.poll() is not None for p in self.procs[first:])

    def _gen(self) -> int:
        self.next_gen += 1
        return self.next_gen

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
        return self.launcher.launch(args, i, self.gens[i])

    @property
    def pids(self) -> list:
        return [p.pid for p in self.procs]

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.procs)

    @property
    def all_exited(self) -> bool:
        return all(p.poll() is not None for p in self.procs)

    def newly_exited(self) -> Optional[tuple]:
        """(worker, pid, exit code) of a worker that exited since the last look (not one
        asked to leave), or None."""
        for i, p in enumerate(self.procs):
            code = p.poll()
            if code is not None and not self.exited[i]:
                self.exited[i] = True
                if i not in self.stopping:
                    return i, p.pid, code
        return None

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(10)

    def kill(self, w: int) -> None:
        p = self.procs[w]
        if p.poll() is None:
            p.kill()
        p.wait(10)

    def reap(self, kill: bool) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                self.exited[i] = True
            elif kill:
                p.kill()
                p.wait(5)
                self.exited[i] = True
