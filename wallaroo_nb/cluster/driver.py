"""The driver side of a running app: spawn workers, talk to them, collect results.

One background thread owns the driver's ROUTER socket. Everything the workers
send (results, errors, metrics, replies, checkpoint acks, crashes) is read
there, so a notebook cell never blocks on it and a busy cell never stops it.
User threads send requests through a queue plus an inproc wake-up socket, and
wait on a per-request future. Every message is a protocol.py record.

With resilience on, the same thread drives the checkpoint epochs (epochs.py)
and recovers from a dead worker: every worker is restarted from the last
committed epoch and the sources are rewound.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

import zmq

from ..errors import Recovering, StepTimeout, WorkerFailure, error_record
from ..metrics.recorder import SharedRecorder
from ..plan import Plan
from ..protocol import (
    Busy,
    Kind,
    MetricsDelta,
    Peers,
    Ready,
    Reply,
    Start,
    decode,
    encode,
    worker_plan,
)
from .checkpoints import describe
from .epochs import ERRORS, METRICS, RESULTS, Epochs
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


@dataclass
class Callbacks:
    """How the driver hands things to the App (called on the I/O thread)."""

    deliver: Callable[[Any, list], None]
    errors: Callable[[list], None]
    event: Callable[[str], None]
    metrics: Callable[[int, Any], None]
    skipped: Callable[[int], None]  # results before this run that a resume does not have


class Driver(Recovery):
    """Sockets, worker processes and the I/O thread of one app. Knows nothing of notebooks."""

    def __init__(self, plan: Plan, n_workers: int, opts: Options, cb: Callbacks):
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
                     restore=restore, resilience=self.resilient, era=self.generation)

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
        next_ping = next_live = time.monotonic()
        stop_deadline = None
        try:
            while True:
                events = dict(poller.poll(50))
                if self.router in events:
                    self._drain_router()
                if self.wake_rx in events:
                    while self.wake_rx.poll(0):
                        self.wake_rx.recv()
                self._send_requests()
                now = time.monotonic()
                if self.stop_requested and stop_deadline is None:
                    stop_deadline = now + STOP_GRACE_S
                    self.send_all(encode(Kind.STOP))
                if stop_deadline is not None:
                    self.procs.reap(kill=False)
                    if self.procs.all_exited or now > stop_deadline:
                        self._drain_last()
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

    def _drain_last(self) -> None:
        """What workers sent just before they exited (their last metrics, errors and
        results: zmq flushes them on exit) may still be on its way through the
        driver's zmq I/O thread: take it before the socket closes."""
        deadline = time.monotonic() + LAST_DRAIN_S
        while self.router.poll(LAST_QUIET_MS) and time.monotonic() < deadline:
            self._drain_router()

    def _finish(self) -> None:
        self.epochs.wait_commit()
        self.procs.reap(kill=True)
        self.requests.cancel_all(RuntimeError("the app stopped"))
        self.router.close(0)
        self.wake_rx.close(0)
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
            w, gen = self.procs.parse_ident(ident)
            if not self.procs.current(w, gen):
                continue  # a message from a worker of a generation already replaced
            if w in self.rolling and kind not in _DURING_ROLLBACK:
                continue  # sent before it rolled back: of a void era
            if kind != Kind.HEARTBEAT:
                self.procs.turning(w)
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(self, w, decode(kind, rest))

    # -- what workers send ----------------------------------------------------------------------

    def _on_hello(self, w: int, hello: Any) -> None:
        if not self.procs.hello(w, hello):  # a cluster re-ran its task: the first is gone
            return self._lost(w, f"worker {w} was started again by the cluster (the first is gone)")
        self._send(w, encode(Kind.START, self._start_record(w)))

    def _on_ready(self, w: int, ready: Ready) -> None:
        self.data_addrs[w] = ready.data_addr
        self.rolling.discard(w)
        if self.ready.is_set():  # a worker joining a running app
            self.scaler.on_ready(w)
            return
        self.ready_count += 1
        if self.ready_count == self.n:
            self.send_all(encode(Kind.PEERS, Peers(list(self.data_addrs))))
            self.send_all(encode(Kind.GO))
            self.ready.set()
            if self.generation == 0:
                self.cb.event(f"{self.n} workers started")
            else:
                self.cb.event(f"recovered from {describe(self.epochs.committed)} in "
                              f"{time.monotonic() - self.recovery_started:.2f}s")
            self.epochs.next_at = time.monotonic() + self.epochs.interval

    def _on_results(self, w: int, body: tuple) -> None:
        heads, payloads = body
        self.results_received[w] += 1
        for (sid, _n, origin), payload in zip(heads, payloads):
            values = pickle.loads(payload)
            if self.resilient:
                # released when its epoch commits; the bytes go to the results log as they are
                self.epochs.hold(w, (RESULTS, sid, values, payload, origin))
            else:
                self.deliver(sid, values, origin)

    def deliver(self, sid: int, values: list, origin: Optional[int] = None) -> None:
        """Hand a batch to its driver-side sink; time it from its messages' origin
        ("visible": what the user sees, the commit hold included)."""
        step = self.plan.steps[sid]
        try:
            self.cb.deliver(step, values)
        except Exception as e:  # a user's callback sink raised
            self.cb.errors([error_record(step.name, "sink", e, worker="driver",
                                         value=f"<batch of {len(values)}>", input_repr=False)])
        if origin is not None:
            self.visible.record("visible", step.pipeline, time.time_ns() - origin, len(values))

    def _send_visible(self) -> None:
        delta = self.visible.take_delta()
        if delta["hist"]:
            self.cb.metrics("driver", MetricsDelta(delta["hist"], delta["events"]))

    def _on_metrics(self, w: int, delta: Any) -> None:
        if self.resilient:  # counted once: a replay's deltas are never committed
            self.epochs.hold(w, (METRICS, w, delta))
        else:
            self.cb.metrics(w, delta)

    def _on_errors(self, w: int, records: list) -> None:
        if self.resilient:
            self.epochs.hold(w, (ERRORS, records))
        else:
            self.cb.errors(records)

    def _on_reply(self, w: int, reply: Reply) -> None:
        self.requests.on_reply(w, reply)

    def _on_crash(self, w: int, tb: str) -> None:
        self._lost(w, f"worker {w} crashed:\n{tb}")

    def _on_heartbeat(self, w: int, busy: Busy) -> None:
        self.procs.heard(w, busy)
        limit = self.opts.step_timeout
        if limit is not None and busy.seconds > limit and self.failure is None:
            where = f"step {busy.step!r}" if busy.step else "the engine"
            key = f" on key {busy.key}" if busy.key else ""
            self.fail(StepTimeout(
                f"{where} on worker {w} has been busy with one message{key} for "
                f"{busy.seconds:.0f}s, longer than step_timeout={limit:g}s; the app was "
                "stopped (raise step_timeout, or leave it None to let slow steps run)"))

    def busy(self) -> list:
        """(worker, Busy) of workers whose loop has been in one turn for a while."""
        return self.procs.busy()

    def _on_ack(self, w: int, ack: Any) -> None:
        self.epochs.on_ack(w, ack)


_HANDLERS = {
    Kind.HELLO: Driver._on_hello,
    Kind.READY: Driver._on_ready,
    Kind.RESULTS: Driver._on_results,
    Kind.ERRORS: Driver._on_errors,
    Kind.METRICS: Driver._on_metrics,
    Kind.REPLY: Driver._on_reply,
    Kind.CRASH: Driver._on_crash,
    Kind.ACK: Driver._on_ack,
    Kind.HEARTBEAT: Driver._on_heartbeat,
}

_DURING_ROLLBACK = (Kind.READY, Kind.HEARTBEAT, Kind.CRASH, Kind.BYE)
