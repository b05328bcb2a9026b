"""Growing and shrinking a running app (``app.scale(n)``), driven on the I/O thread.

1. Growing: start the new workers (ids n .. n'-1) with the current table and no
   sources; once they are ready, every worker gets everyone's address (PEERS) and
   the new ones GO.
2. A rescaling barrier (protocol.Rescale: the new slot table, moving the fewest
   slots, and the sources' new places) goes through the epoch machinery: every
   worker, joining ones included, aligns it, writes its state by slot and acks.
   With resilience the epoch commits like any checkpoint (its manifest has the new
   table).
3. ADOPT: each worker moves the keys of the slots that change owner through the
   epoch's files, takes the new table and goes on (engine/rescale.py).
4. Shrinking: the leaving workers (the highest ids) stop once their sinks have
   delivered the epoch; the others forget their addresses.

Only one change at a time; a worker lost during one fails the change (the app
recovers with the workers it had).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from ..keys import moved_slots, rebalance
from ..protocol import Adopt, Kind, Peers, Rescale, encode
from .checkpoints import merged_positions

SCALE_TIMEOUT_S = 120.0


class ScaleRequest:
    """A user's ``app.scale(n)``, answered from the I/O thread."""

    def __init__(self, n: int):
        self.n = n
        self.done = threading.Event()
        self.error: Optional[BaseException] = None
        self.moved = 0  # slots that changed owner
        self.seconds = 0.0  # from the barrier to the adoption

    def finish(self, error: Optional[BaseException] = None) -> None:
        self.error = error
        self.done.set()


class Scaler:
    """The state of the change under way, if any (see the module docstring)."""

    def __init__(self, driver: Any):  # driver.Driver (not imported: it imports this module)
        self.d = driver
        self.queue: list[ScaleRequest] = []
        self.req: Optional[ScaleRequest] = None
        self.phase = "idle"
        self.started = 0.0
        self.rescale: Optional[Rescale] = None

    def request(self, n: int) -> ScaleRequest:
        req = ScaleRequest(n)
        self.queue.append(req)
        self.d.wake()
        return req

    @property
    def busy(self) -> bool:
        return self.req is not None

    # -- on the I/O thread -------------------------------------------------------------

    def drive(self, now: float) -> None:
        d = self.d
        if self.req is None:
            if not self.queue or not d.ready.is_set():
                return
            self._begin(self.queue.pop(0), now)
        elif now - self.started > SCALE_TIMEOUT_S:
            self.fail(TimeoutError(f"scaling to {self.req.n} workers did not finish in "
                                   f"{SCALE_TIMEOUT_S:.0f}s"))
        elif self.phase == "leaving" and d.procs.exited_from(self.req.n):
            self._finish_leaving()

    def _begin(self, req: ScaleRequest, now: float) -> None:
        d = self.d
        self.req, self.started = req, now
        if req.n == d.n:
            self._done()
            return
        place = d.place
        new_owners = rebalance(place.owners, req.n)
        self.rescale = Rescale(req.n, new_owners, place.version + 1, place.assign_for(req.n))
        req.moved = len(moved_slots(place.owners, new_owners))
        if req.n > d.n:
            self.phase = "joining"
            d.data_addrs += [None] * (req.n - len(d.data_addrs))
            d.results_received += [0] * (req.n - len(d.results_received))
            d.epochs.grow(req.n)
            d.procs.add_workers(d.n, req.n)
        else:
            self._barrier()

    def on_ready(self, w: int) -> None:
        """A joining worker is set up; once all are, everyone learns the addresses."""
        d = self.d
        if self.phase != "joining" or any(a is None for a in d.data_addrs[:self.req.n]):
            return
        d.send_all(encode(Kind.PEERS, Peers(list(d.data_addrs))), upto=self.req.n)
        for i in range(d.n, self.req.n):
            d.send_to(i, encode(Kind.GO))
        self._barrier()

    def _barrier(self) -> None:
        self.phase = "barrier"
        self.barrier_at = time.monotonic()
        self.d.epochs.request_rescale(self.rescale)

    def on_acked(self, epoch: int, acks: list) -> None:
        """Every worker wrote its state at the rescaling barrier (and, with resilience,
        the epoch committed): ADOPT, then let leaving workers go."""
        d, rs = self.d, self.rescale
        moving = {sid for sid, ws in rs.assign.items()
                  if tuple(ws) != tuple(d.place.assign.get(sid, ()))}
        positions = merged_positions(acks)
        adopt = Adopt(epoch, d.epochs.ckpt.path, {a.file: a.sha256 for a in acks},
                      positions, {sid: d.plan.sources[sid] for sid in moving})
        d.send_all(encode(Kind.ADOPT, adopt), upto=max(d.n, rs.workers))
        self.req.seconds = time.monotonic() - self.barrier_at
        leaving = d.n > rs.workers
        d.place.adopt(rs)
        d.n = rs.workers
        d.cb.event(f"scaled to {rs.workers} workers: {self.req.moved} of {len(rs.owners)} "
                   f"slots moved in {self.req.seconds:.2f}s")
        if leaving:  # they deliver what they committed, then go
            self.phase = "leaving"
            for w in range(rs.workers, len(d.data_addrs)):
                d.procs.stopping.add(w)
                d.send_to(w, encode(Kind.STOP))
        else:
            self._done()

    def _finish_leaving(self) -> None:
        d, n = self.d, self.req.n
        d.procs.remove_from(n)
        del d.data_addrs[n:]
        del d.results_received[n:]
        d.send_all(encode(Kind.PEERS, Peers(list(d.data_addrs))))
        self._done()

    def _done(self) -> None:
        req, self.req, self.phase = self.req, None, "idle"
        req.finish()

    def fail(self, error: BaseException) -> None:
        """The change cannot go on (a worker died, a timeout): tell the caller."""
        if self.req is not None:
            req, self.req, self.phase = self.req, None, "idle"
            req.finish(error)
        for req in self.queue:
            req.finish(error)
        self.queue.clear()
