"""The driver's side of checkpoint epochs: start them, gather acks, commit, release.

One epoch is in flight at a time. Results that workers send while resilience is
on are held here, per worker, until the epoch that covers them commits: a
worker's results before its ack belong to that epoch. A commit runs on a thread
of its own (writing the results log and handing results over can take a while)
so that the driver's I/O thread keeps draining the workers meanwhile.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import traceback
from typing import Any, Optional, Protocol

from ..errors import WorkerFailure
from ..plan import Plan
from ..protocol import Barrier, EpochAck, Kind, Rescale, Trigger, encode
from .checkpoints import CheckpointDir, describe
from .stores import collector_keep


class Host(Protocol):
    """What epochs use of the driver (driver.Driver)."""

    n: int
    plan: Plan
    cb: Any  # driver.Callbacks
    ready: threading.Event
    stopped: threading.Event
    failure: Optional[BaseException]

    scaler: Any  # scaling.Scaler

    def send_all(self, frames: list, upto: Optional[int] = None) -> None: ...
    def table(self) -> dict: ...
    def deliver(self, sid: int, values: list) -> None: ...
    def fail(self, exc: BaseException) -> None: ...
    def wake(self) -> None: ...

CHECKPOINT_TIMEOUT_S = 30.0
RESULTS, ERRORS, METRICS = "results", "errors", "metrics"  # what epochs hold back


class Epochs:
    """Checkpoint epochs of one app. Without resilience there are none but those that
    rescale the app (their files only hand slots over; nothing is committed)."""

    def __init__(self, driver: Host, path: str, interval: float, resilient: bool = True):
        self.driver = driver
        self.resilient = resilient
        self.interval = interval if resilient else math.inf
        self.ckpt = CheckpointDir(path, collector_keep(driver.plan.steps))
        self.committed: Optional[dict] = None  # manifest of the last committed epoch
        self.epoch = 0  # last epoch started
        self.epoch_started = 0.0
        self.in_flight: Optional[int] = None
        self.acks: dict = {}
        self.force = False
        self.next_at = time.monotonic() + interval
        self.cond = threading.Condition()
        self.thread: Optional[threading.Thread] = None
        self.notices: list = []  # committed epochs the workers have not heard of yet
        self.times: list = []  # seconds from start to commit, per epoch
        # "close window" triggers apply at a barrier, so that a replay applies them again
        self.trigger_ids = itertools.count(1)
        self.queued: list[Trigger] = []  # for the next barrier
        self.applying: list[Trigger] = []  # at the barrier of the epoch in flight
        self.fired: dict = {}  # trigger id -> windows it closed, once committed
        self.final = False  # the next barrier is the last: the app is stopping
        self.rescale: Optional[Rescale] = None  # for the next barrier
        self.rescaling: Optional[Rescale] = None  # carried by the epoch in flight
        self.expected: frozenset = frozenset()  # workers that ack the epoch in flight
        self.adopt_ready: Optional[tuple] = None  # (epoch, acks) of a rescaling, for ADOPT
        self.reset(driver.n)

    def reset(self, n: int) -> None:
        """A new generation of workers: nothing they sent is held any more."""
        # per worker, what it sent since its last ack: (RESULTS, sid, values, payload, origin),
        # (ERRORS, records) or (METRICS, delta); released in order at commit
        self.uncommitted: dict = {w: [] for w in range(n)}
        self.acked_batches: dict = {}  # worker -> batches of the epoch in flight
        self.in_flight = None
        self._requeue(rolled_back=True)

    def _requeue(self, rolled_back: bool) -> None:
        """The epoch in flight will not commit: its triggers go to the next barrier (a
        worker that applied one already skips it, unless a recovery rolled it back)."""
        with self.cond:
            self.queued = self.applying + self.queued
            self.applying = []
            if rolled_back:
                self.fired_here: dict = {}  # trigger id -> windows closed, over the acks

    # -- start-up --------------------------------------------------------------------

    def resume(self) -> Optional[dict]:
        """Pick up the newest usable committed epoch and hand over its results; return
        its manifest (None: there is none)."""
        d = self.driver
        manifest, notes = self.ckpt.latest()
        for note in notes:
            d.cb.event(note)
        if manifest is not None:
            self.committed = manifest
            self.epoch = manifest["epoch"]
            base, batches = self.ckpt.results.resume(manifest)
            d.cb.skipped(base)  # results compacted away before this run: counted, not kept
            for sid, values in batches:
                d.cb.deliver(d.plan.steps[sid], values)
        d.cb.event(f"resuming from {describe(manifest)} in {self.ckpt.path}")
        return manifest

    @property
    def committed_epoch(self) -> int:
        return self.committed["epoch"] if self.committed else 0

    # -- from user threads ---------------------------------------------------------------

    def request(self) -> int:
        """Ask for an epoch that begins after this call; return its number."""
        with self.cond:
            self.force = True
            return self.epoch + 1

    def request_trigger(self, step: str, key: Any) -> int:
        """Close ``step``'s event windows (one key, or all with None) at the next barrier;
        returns the trigger's id for ``wait_fired``."""
        with self.cond:
            t = Trigger(next(self.trigger_ids), step, key)
            self.queued.append(t)
            self.force = True
        return t.id

    def wait_fired(self, tid: int, timeout: Optional[float]) -> Optional[int]:
        """Windows closed by trigger ``tid`` once its epoch committed; None if the app
        stopped or the time ran out first."""
        d = self.driver
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while tid not in self.fired:
                left = None if deadline is None else deadline - time.monotonic()
                if d.stopped.is_set() or d.failure is not None or (left is not None and left <= 0):
                    return None
                self.cond.wait(0.1 if left is None else min(left, 0.1))
            return self.fired.pop(tid)

    def request_rescale(self, rescale: Rescale) -> None:
        """The next barrier carries ``rescale`` (see cluster/scaling.py)."""
        with self.cond:
            self.rescale = rescale
            self.force = True

    def grow(self, n: int) -> None:
        """Joining workers: hold what they send too."""
        for w in range(n):
            self.uncommitted.setdefault(w, [])

    def request_final(self) -> int:
        """Make the next barrier the last: workers read no more after it. Returns its epoch."""
        with self.cond:
            self.final = True
            self.force = True
            return self.epoch + 1

    def wait_committed(self, epoch: int, timeout: Optional[float]) -> bool:
        d = self.driver
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self.committed_epoch < epoch:
                if d.stopped.is_set() or d.failure is not None:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(0.1 if left is None else min(left, 0.1))
        return True

    # -- on the I/O thread ------------------------------------------------------------------

    def hold(self, w: int, item: tuple) -> None:
        """Results, error records or metrics from worker ``w``: released when their epoch
        commits, dropped if it never does (a replay sends them again)."""
        self.uncommitted[w].append(item)

    def on_ack(self, w: int, ack: EpochAck) -> None:
        if ack.epoch != self.in_flight:
            return  # an aborted epoch
        self.acks[w] = ack
        for tid, n in ack.fired.items():
            self.fired_here[tid] = self.fired_here.get(tid, 0) + n
        self.acked_batches[w] = self.uncommitted[w]
        self.uncommitted[w] = []
        if set(self.acks) >= self.expected:
            self._commit()

    def drive(self, now: float) -> None:
        """Start an epoch when due, give up one that takes too long, tell workers of commits."""
        d = self.driver
        while self.notices:
            d.send_all(encode(Kind.COMMIT, self.notices.pop(0)))
        if self.adopt_ready is not None:  # after the commit notices: leaving workers deliver
            ready, self.adopt_ready = self.adopt_ready, None
            d.scaler.on_acked(*ready)
        if not d.ready.is_set() or (self.thread is not None and self.thread.is_alive()):
            return
        if self.in_flight is None:
            if now >= self.next_at or self.force:
                with self.cond:
                    self.epoch += 1
                    self.force = False
                    self.applying, self.queued = self.queued, []
                    self.rescaling, self.rescale = self.rescale, None
                    barrier = Barrier(self.epoch, self.applying, self.final, self.rescaling)
                self.in_flight = self.epoch
                self.epoch_started = now
                self.acks = {}
                self.acked_batches = {}
                n = max(d.n, self.rescaling.workers if self.rescaling else 0)
                self.expected = frozenset(range(n))
                d.send_all(encode(Kind.CHECKPOINT, barrier), upto=n)
        elif now - self.epoch_started > CHECKPOINT_TIMEOUT_S:
            d.cb.event(f"checkpoint {self.in_flight} did not complete in "
                       f"{CHECKPOINT_TIMEOUT_S:.0f}s: aborted, will retry")
            d.send_all(encode(Kind.ABORT, self.in_flight))
            for w, batches in self.acked_batches.items():
                self.uncommitted[w] = batches + self.uncommitted[w]
            self.in_flight = None
            self._requeue(rolled_back=False)
            self.next_at = now + self.interval
            if self.rescaling is not None:
                self.rescaling = None
                d.scaler.fail(TimeoutError("the rescaling barrier did not align in "
                                           f"{CHECKPOINT_TIMEOUT_S:.0f}s"))

    def _commit(self) -> None:
        """Every worker acknowledged: commit on a thread of its own (one commit at a
        time: in_flight stays set until it is done)."""
        workers = sorted(self.expected)
        batches = [b for w in workers for b in self.acked_batches[w]]
        acks = [self.acks[w] for w in workers]
        if not self.resilient:  # a rescaling epoch without checkpoints: hand over at once
            rescaling, self.in_flight, self.rescaling = self.rescaling, None, None
            if rescaling is not None:
                self.driver.scaler.on_acked(self.epoch, acks)
            return
        self.thread = threading.Thread(target=self._write, args=(self.in_flight, acks, batches),
                                       daemon=True, name="wallaroo_nb-commit")
        self.thread.start()

    def _write(self, epoch: int, acks: list, batches: list) -> None:
        d = self.driver
        try:
            persisted = [(b[1], len(b[2]), b[3]) for b in batches
                         if b[0] is RESULTS and d.plan.steps[b[1]].sink.collects]
            rs = self.rescaling
            table = ({"workers": rs.workers, "owners": list(rs.owners), "version": rs.version}
                     if rs is not None else d.table())
            manifest = self.ckpt.commit(epoch, acks, persisted, table)
            for b in batches:  # before anyone hears of the commit
                if b[0] is RESULTS:
                    d.deliver(b[1], b[2], b[4])
                elif b[0] is ERRORS:
                    d.cb.errors(b[1])
                else:
                    d.cb.metrics(b[1], b[2])
        except Exception as e:
            d.fail(WorkerFailure(f"committing checkpoint {epoch} failed: {e}\n"
                                 f"{traceback.format_exc()}"))
            return
        with self.cond:
            self.committed = manifest
            self.times.append(time.monotonic() - self.epoch_started)
            for t in self.applying:
                self.fired[t.id] = self.fired_here.pop(t.id, 0)
            self.applying = []
            self.in_flight = None
            self.notices.append(epoch)
            if self.rescaling is not None:
                self.adopt_ready, self.rescaling = (epoch, acks), None
            self.cond.notify_all()
        self.next_at = time.monotonic() + self.interval
        d.wake()  # the I/O thread tells the workers (their exactly-once sinks deliver)

    def wait_commit(self) -> None:
        """Let a commit under way finish (it decides the epoch to restore from)."""
        t = self.thread
        if t is not None and t.is_alive() and threading.current_thread() is not t:
            t.join(CHECKPOINT_TIMEOUT_S)

    def notify_all(self) -> None:
        with self.cond:
            self.cond.notify_all()
