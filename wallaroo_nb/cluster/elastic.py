"""The App's elasticity: ``app.scale(n)`` and ``app.workers()`` (mixed into App)."""

from __future__ import annotations

from typing import Any

from ..errors import BuildError
from ..plan import Plan
from ..protocol import WorkerInfo

SCALE_TIMEOUT_S = 120.0
WORKER_COLUMNS = ["worker", "pid", "host", "slots", "keys", "state_bytes", "events_in",
                  "events_out", "busy_step", "busy_s", "dask_worker"]


class Elastic:
    """Grow, shrink and look at the workers of a running app."""

    plan: Plan
    worker_count: int
    _driver: Any

    def scale(self, n: int, timeout: float = SCALE_TIMEOUT_S) -> dict:
        """Grow or shrink the running app to ``n`` worker processes.

        At a barrier, routing switches to a new slot table that moves the fewest slots;
        the keys of moved slots (state, open windows) go with them, sources of leaving
        workers move to others at their position, and the outputs are those a run
        that never scaled would give. Returns what it did: workers, slots moved,
        seconds from the barrier to the switch."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"scale() takes a positive number of workers, got {n!r}")
        self._raise_failure()
        if n < self.worker_count:
            self._check_sources_can_move(n)
        req = self._call_scale(n, timeout)
        self.worker_count = n
        return {"workers": n, "slots_moved": req.moved, "seconds": round(req.seconds, 3)}

    def _check_sources_can_move(self, n: int) -> None:
        assign = self._driver.place.assign_for(n)
        now = self._driver.place.assign
        for sp in self.plan.sources:
            if assign[sp.id] != now[sp.id] and not sp.config.replayable:
                raise BuildError(
                    f"source {sp.name!r} runs on worker {now[sp.id][0]}, which scaling to {n} "
                    "removes, and it cannot replay, so it cannot move; scale to at least "
                    f"{max(now[sp.id]) + 1} workers")

    def _call_scale(self, n: int, timeout: float) -> Any:
        try:
            return self._driver.scale(n, timeout)
        except Exception:
            self._raise_failure()
            raise

    def workers(self) -> Any:
        """One row per worker: pid, host, slots and keys it holds, their size pickled
        (estimated), messages it read and outputs it sent to sinks, the step it has
        been busy in, if one message has kept it busy for a while, and on a Dask
        cluster the Dask worker whose task started it (else None)."""
        import pandas as pd

        infos: list[WorkerInfo] = self._call("info") if self.running else []
        busy = {w: b for w, b in self._driver.busy()}
        where = self._driver.procs.placement()
        rows = [(*i, busy[i.worker].step if i.worker in busy else "",
                 busy[i.worker].seconds if i.worker in busy else 0.0,
                 where[i.worker]["dask_worker"] if i.worker < len(where) else None)
                for i in infos]
        return pd.DataFrame(rows, columns=WORKER_COLUMNS)

    # provided by App
    def _raise_failure(self) -> None: ...
    def _call(self, op: str, args: Any = None, timeout: float = 30.0) -> list: ...
    def _event(self, text: str) -> None: ...
    running: bool
