"""The driver side of a running app: spawn workers, talk to them, collect results.

One background thread owns the driver's sockets: the ROUTER (control) and, when
the engines run on this machine, a Unix stream listener (streams.py) on which
they send results, errors, metrics, replies and checkpoint acks. Everything the
workers send is read there (inbound.py handles it), so a notebook cell never
blocks on it and a busy cell never stops it.
User threads send requests through a queue plus an inproc wake-up socket, and
wait on a per-request future. Every message is a protocol.py record.

With resilience on, the same thread drives the checkpoint epochs (epochs.py)
and recovers from a dead worker: every worker is restarted from the last
committed epoch and the sources are rewound.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

import zmq

from .. import streams
from ..errors import Recovering, WorkerFailure
from ..metrics.recorder import SharedRecorder
from ..plan import Plan
from ..protocol import (
    Kind,
    Start,
    encode,
    worker_plan,
)
from . import cpu_wakeup
from .epochs import Epochs
from .inbound import Inbound
from .launchers import Launcher, LocalLauncher
from .placement import Placement
from .processes import WorkerProcesses
from .recovery import Recovery
from .requests import Requests
from .scaling import Scaler

PING_S = 1.0
LIVENESS_S = 0.2
STOP_GRACE_S = 5.0
LAST_QUIET_MS = 50  # after the workers exit: no message this long, nothing more is coming
LAST_DRAIN_S = 1.0
ROUTER_HWM = 64  # messages queued per worker at the driver before the worker waits
INBOX_PER_TURN = 256  # stream messages handled between looks at the ROUTER

__all__ = ["Callbacks", "Driver", "Options", "Recovering", "WorkerFailure"]


@dataclass
class Options:
    on_error: str = "record"
    metrics: bool = True
    resilience: bool = False
    checkpoint_dir: Optional[str] = None
    checkpoint_interval: float = 1.0
    resume: bool = False
    wallaroo_alias: bool = False
    step_timeout: Optional[float] = None  # seconds one message may take; None: no limit
    metrics_port: Optional[int] = None  # serve Prometheus metrics here (0: any free port)
    launcher: Optional[Launcher] = None  # where engines run (launchers.py); None: here
    low_latency: bool = False  # keep idle CPUs quick to wake while the app runs (cpu_wakeup.py)


@dataclass
class Callbacks:
    """How the driver hands things to the App (called on the I/O thread)."""

    deliver: Callable[[Any, list], None]
    errors: Callable[[list], None]
    event: Callable[[str], None]
    metrics: Callable[[int, Any], None]
    skipped: Callable[[int], None]  # results before this run that a resume does not have


class Driver(Recovery, Inbound):
    """Sockets, worker processes and the I/O thread of one app. Knows nothing of notebooks."""

    def __init__(self, plan: Plan, n_workers: int, opts: Options, cb: Callbacks):
        # first, so that a refusal comes before anything starts; released in _finish
        self.qos_fd = cpu_wakeup.hold() if opts.low_latency else None
        try:
            self._init(plan, n_workers, opts, cb)
        except BaseException:
            cpu_wakeup.release(self.qos_fd)
            raise

    def _init(self, plan: Plan, n_workers: int, opts: Options, cb: Callbacks) -> None:
        self.plan = plan
        self.n = n_workers
        self.opts = opts
        self.cb = cb
        self.rundir = tempfile.mkdtemp(prefix="wallaroo_nb-")
        os.chmod(self.rundir, 0o700)  # ipc sockets carry pickles: owner only
        self.zctx = zmq.Context()
        self.launcher = opts.launcher or LocalLauncher()
        self.router = self.zctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        # bounded: a driver that cannot keep up makes workers wait (their sends return
        # EAGAIN, their outboxes fill, their sources pause) instead of growing here
        self.router.setsockopt(zmq.RCVHWM, ROUTER_HWM)
        self.addr = self.launcher.bind_driver(self.router, self.rundir)  # (CURVE: its keys)
        # what engines send here (results, metrics, acks, replies) comes on Unix stream
        # sockets on one machine (streams.py: a tenth of a zmq hop), else on the ROUTER
        self.stream_addr = self.launcher.driver_stream(self.rundir)
        self.inbox = streams.Listener(self.stream_addr) if self.stream_addr else None
        self.wake_addr = f"inproc://wake-{id(self)}"
        self.wake_rx = self.zctx.socket(zmq.PAIR)
        self.wake_rx.bind(self.wake_addr)
        self.wake_tx = self.zctx.socket(zmq.PAIR)
        self.wake_tx.connect(self.wake_addr)
        self.wake_lock = threading.Lock()
        self.requests = Requests()
        self.ready = threading.Event()
        self.failure: Optional[BaseException] = None
        self.stop_requested = False
        self.stopped = threading.Event()
        self.generation = 0
        self.recoveries: list = []  # monotonic times of recoveries
        self.recovery_started = 0.0
        self.rolling: set = set()  # workers rolling back: their messages until READY are void
        self.procs = WorkerProcesses(self.addr, n_workers, opts.wallaroo_alias, self.launcher)
        self.visible = SharedRecorder()  # results' latency to the driver (see deliver)
        self.resilient = opts.resilience
        self.place = Placement(plan, n_workers)  # the slot table, the sources' workers
        self.scaler = Scaler(self)
        # epochs always: without resilience the only ones are rescalings (their files
        # hand slots over, in the run directory; on a cluster in checkpoint_dir, shared)
        shared = opts.resilience or opts.launcher is not None
        path = opts.checkpoint_dir if shared and opts.checkpoint_dir else \
            os.path.join(self.rundir, "checkpoints" if opts.resilience else "handoff")
        self.epochs = Epochs(self, path, opts.checkpoint_interval, opts.resilience)
        if opts.resume:
            self.place.resume(self.epochs.resume(), n_workers)
        else:
            self.epochs.ckpt.clear()
        self._start_generation()
        self.thread = threading.Thread(target=self._loop, name="wallaroo_nb-driver", daemon=True)
        self.thread.start()

    # -- processes -------------------------------------------------------------------

    def _start_generation(self) -> None:
        """Every worker (re)started from the last committed epoch."""
        self._begin_era()
        self.procs.start(self.n)

    def _begin_era(self) -> None:
        """Wait for READY from every worker again; nothing sent before counts."""
        self.ready.clear()
        self.ready_count = 0
        self.data_addrs: list = [None] * self.n  # where each worker's data socket is
        self.results_received = [0] * self.n
        self.epochs.reset(self.n)

    def table(self) -> dict:
        """The slot table, as a manifest records it."""
        return self.place.table(self.n)

    def scale(self, n: int, timeout: Optional[float] = None) -> Any:
        """Grow or shrink to ``n`` workers (see scaling.py); returns the finished request."""
        req = self.scaler.request(n)
        if not req.done.wait(timeout):
            raise TimeoutError(f"scaling to {n} workers did not finish in {timeout}s")
        if req.error is not None:
            raise req.error
        return req

    @property
    def pids(self) -> list:
        return self.procs.pids

    def _start_record(self, w: int) -> Start:
        restore = None
        if w < self.n and self.epochs.committed is not None:  # joining workers start empty
            restore = self.epochs.ckpt.restore_info(self.epochs.committed)
        bind = self.launcher.data_bind(self.rundir, w, self.generation, self.procs.procs[w].host)
        workers = max(self.n, len(self.data_addrs))
        place = self.place
        return Start(worker_plan(self.plan, w, place.assign), workers, place.assign,
                     list(place.owners), bind, on_error=self.opts.on_error,
                     metrics=self.opts.metrics, checkpoint_dir=self.epochs.ckpt.path,
                     restore=restore, resilience=self.resilient, era=self.generation,
                     driver_stream=self.stream_addr)

    # -- requests from user threads ---------------------------------------------------------

    def call(self, op: str, args: Optional[dict] = None, workers: Optional[list] = None,
             timeout: float = 30.0) -> list:
        """Send ``op`` to workers (default all); return their values in worker order."""
        if self.failure is not None:
            raise self.failure
        if self.stopped.is_set():
            raise RuntimeError("the app is stopped")
        if not self.ready.wait(timeout):
            if self.failure is not None:
                raise self.failure
            raise TimeoutError(f"workers did not start within {timeout}s")
        targets = list(range(self.n)) if workers is None else list(workers)
        req_id, future = self.requests.ask(op, args or {}, targets)
        self.wake()
        if not future.done.wait(timeout):
            self.requests.forget(req_id)
            raise TimeoutError(f"workers {sorted(set(targets) - set(future.values))} did not "
                               f"answer {op!r} within {timeout}s")
        if future.error is not None:
            raise future.error
        out = []
        for w in targets:
            reply = future.values[w]
            if not reply.ok:
                raise RuntimeError(f"worker {w} failed {op!r}: {reply.value}")
            out.append(reply.value)
        return out

    def checkpoint_now(self) -> int:
        """Ask for an epoch that begins after this call; return its number."""
        target = self.epochs.request()
        self.wake()
        return target

    def wait_committed(self, epoch: int, timeout: Optional[float]) -> bool:
        return self.epochs.wait_committed(epoch, timeout)

    @property
    def committed_epoch(self) -> int:
        return self.epochs.committed_epoch

    def wake(self) -> None:
        with self.wake_lock:
            if not self.wake_tx.closed:
                try:
                    self.wake_tx.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # wake-ups already queued: the I/O thread will look

    def stop(self) -> None:
        """Ask workers to finish, wait for them, kill stragglers; idempotent."""
        self.stop_requested = True
        if threading.current_thread() is not self.thread:
            self.wake()
            self.thread.join(STOP_GRACE_S + 5)
        self.procs.reap(kill=True)
        self.launcher.close()  # before the context goes (its ZAP handler lives there)
        if not self.thread.is_alive():
            with self.wake_lock:
                self.wake_tx.close(0)
            self.zctx.destroy(linger=0)
            shutil.rmtree(self.rundir, ignore_errors=True)

    # -- the I/O thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.wake_rx, zmq.POLLIN)
        if self.inbox is not None:
            self.inbox.watch(poller)
        next_ping = next_live = time.monotonic()
        stop_deadline = None
        try:
            while True:
                self._drain(dict(poller.poll(50)))
                self._send_requests()
                now = time.monotonic()
                if self.stop_requested and stop_deadline is None:
                    stop_deadline = now + STOP_GRACE_S
                    self.send_all(encode(Kind.STOP))
                if stop_deadline is not None:
                    self.procs.reap(kill=False)
                    if self.procs.all_exited or now > stop_deadline:
                        self._drain_last(poller)
                        break
                    continue
                if now >= next_ping:
                    next_ping = now + PING_S
                    self.send_all(encode(Kind.PING))
                    self._send_visible()
                if now >= next_live:
                    next_live = now + LIVENESS_S
                    self._check_alive()
                self.epochs.drive(now)
                self.scaler.drive(now)
        except Exception:
            tb = traceback.format_exc()
            self.fail(WorkerFailure(f"driver I/O thread crashed: {tb.strip().splitlines()[-1]}\n{tb}"))
        finally:
            self._finish()

    def _drain(self, events: dict) -> None:
        """Read what ``events`` (of the loop's poller) says is there."""
        if self.inbox is not None and self.inbox.readable(events):
            self._drain_inbox(events)
        if self.router in events:
            self._drain_router()
        if self.wake_rx in events:
            while self.wake_rx.poll(0):
                self.wake_rx.recv()

    def _drain_last(self, poller: zmq.Poller) -> None:
        """What workers sent just before they exited (their last metrics, errors and
        results) may still be unread in the driver's sockets, or on its way through
        its zmq I/O thread: take it before they close."""
        deadline = time.monotonic() + LAST_DRAIN_S
        while time.monotonic() < deadline:
            events = dict(poller.poll(LAST_QUIET_MS))
            if not events:
                return
            self._drain(events)

    def _finish(self) -> None:
        self.epochs.wait_commit()
        self.procs.reap(kill=True)
        self.requests.cancel_all(RuntimeError("the app stopped"))
        self.router.close(0)
        self.wake_rx.close(0)
        if self.inbox is not None:
            self.inbox.close()
        cpu_wakeup.release(self.qos_fd)
        self.qos_fd = None
        self.stopped.set()
        self.epochs.notify_all()

    def _send(self, w: int, frames: list) -> None:
        try:
            self.router.send_multipart([self.procs.ident(w)] + frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # not connected yet or gone; liveness checks report the cause

    def send_all(self, frames: list, upto: Optional[int] = None) -> None:
        """To workers 0 .. upto - 1 (default: the app's workers)."""
        for i in range(self.n if upto is None else upto):
            self._send(i, frames)

    def send_to(self, w: int, frames: list) -> None:
        self._send(w, frames)

    def _send_requests(self) -> None:
        for req, targets in self.requests.queued():
            if not self.ready.is_set():  # recovering: the new workers did not see it
                self.requests.cancel(req.req_id, Recovering(
                    f"workers restarted while {req.op!r} was asked; ask again"))
                continue
            frames = encode(Kind.REQUEST, req)
            for w in targets:
                self._send(w, frames)

    def _drain_router(self) -> None:
        while True:
            try:
                ident, kind, *rest = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._dispatch(ident, kind, rest)

    def _drain_inbox(self, events: dict) -> None:
        for ident, (kind, *rest) in self.inbox.take(INBOX_PER_TURN, events):
            self._dispatch(ident, kind, rest)
