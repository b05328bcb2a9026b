"""What the driver does when a worker dies (mixed into driver.Driver).

Without resilience the app fails, naming the worker. With it, only the dead worker
is restarted: the others roll back in place to the last committed epoch (a fresh
engine core restored from the epoch's files; sockets, connectors and processes
kept), the new worker starts from the same files, and a new era begins: data frames
of the old one are dropped, and until a rolled-back worker says READY whatever it
sent is of the old era too. With no committed epoch yet, a rescaling under way, or a
recovery not finished yet, every worker restarts from the last committed epoch.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import Recovering, WorkerFailure
from ..protocol import Kind, Rollback, encode
from .checkpoints import describe

MAX_RECOVERIES_PER_MINUTE = 20


class Recovery:
    """Failures and recovery for driver.Driver."""

    n: int
    resilient: bool
    stop_requested: bool
    failure: Any
    recoveries: list
    generation: int
    procs: Any
    epochs: Any
    scaler: Any
    requests: Any
    place: Any
    cb: Any
    ready: Any
    rolling: set

    def _lost(self, w: int, reason: str) -> None:
        if self.stop_requested:
            return
        if not self.resilient:
            self.fail(WorkerFailure(reason))
            return
        now = time.monotonic()
        self.recoveries = [t for t in self.recoveries if now - t < 60] + [now]
        if len(self.recoveries) > MAX_RECOVERIES_PER_MINUTE:
            self.fail(WorkerFailure(f"{reason}\n(gave up: {len(self.recoveries)} recoveries "
                                    "in a minute)"))
            return
        self._recover(w, reason.splitlines()[0])

    def _recover(self, w: int, reason: str) -> None:
        self.recovery_started = time.monotonic()
        self.epochs.wait_commit()  # a commit under way decides the epoch to restore from
        committed = self.epochs.committed
        self.requests.cancel_all(Recovering("workers restarted during the request; ask again"))
        self.generation += 1  # a new era
        if committed is None or self.scaler.busy or not self.ready.is_set():
            # nothing to roll back to, a rescaling, or a recovery still going on
            self.scaler.fail(WorkerFailure(f"{reason}: the app recovered with {self.n} "
                                           "workers; scale again"))
            self.cb.event(f"{reason}; restarting every worker from {describe(committed)}")
            self.rolling = set()
            self._start_generation()
            return
        self.cb.event(f"{reason}; restarting worker {w}, the others roll back to "
                      f"{describe(committed)}")
        self.procs.kill(w)
        self._begin_era()
        self.procs.respawn(w)
        rb = Rollback(self.generation, self.epochs.ckpt.restore_info(committed), self.n,
                      list(self.place.owners), dict(self.place.assign))
        self.rolling = {s for s in range(self.n) if s != w}
        for s in self.rolling:
            self._send(s, encode(Kind.ROLLBACK, rb))

    def fail(self, exc: BaseException) -> None:
        """Stop the app with ``exc`` as its failure (the first failure wins)."""
        if self.failure is None:
            self.failure = exc
            self.cb.event(str(exc).splitlines()[0])
        self.requests.cancel_all(exc)
        self.ready.set()  # wake anyone waiting for start-up: they will see the failure
        self.stop_requested = True

    def _check_alive(self) -> None:
        dead = self.procs.newly_exited()
        if dead is not None:
            w, pid, code = dead
            gen = self.procs.generation_of(w)
            self._drain_router()  # a worker that crashed said why just before it went
            if self.stop_requested or self.procs.generation_of(w) != gen:
                return  # its crash report failed the app or already restarted it
            self._lost(w, f"worker {w} (pid {pid}) exited with code {code}")

    # provided by driver.Driver
    def _send(self, w: int, frames: list) -> None: ...
    def _start_generation(self) -> None: ...
    def _begin_era(self) -> None: ...
    def _drain_router(self) -> None: ...
