"""The driver side of a running app: spawn workers, talk to them, collect results.

One background thread owns the driver's ROUTER socket. Everything the workers
send (results, errors, metrics, replies, checkpoint acks, crashes) is read
there, so a notebook cell never blocks on it and a busy cell never stops it.
User threads send requests through a queue plus an inproc wake-up socket, and
wait on a per-request future.

With resilience on, the same thread runs the checkpoint epochs (one in flight at
a time), commits them, releases the results of committed epochs only, and
recovers from a dead worker: every worker is restarted from the last committed
epoch and the sources are rewound.
"""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import cloudpickle
import msgpack
import zmq

from .checkpoints import CheckpointDir, describe

PING_S = 1.0
LIVENESS_S = 0.2
STOP_GRACE_S = 5.0
CHECKPOINT_TIMEOUT_S = 30.0
MAX_RECOVERIES_PER_MINUTE = 20


class WorkerFailure(RuntimeError):
    """A worker process died or its engine raised (and resilience is off)."""


class Recovering(RuntimeError):
    """The workers were restarted while a request was in flight; ask again."""


@dataclass
class Options:
    on_error: str = "record"
    metrics: bool = True
    resilience: bool = False
    checkpoint_dir: Optional[str] = None
    checkpoint_interval: float = 1.0
    resume: bool = False
    wallaroo_alias: bool = False


@dataclass
class Callbacks:
    """How the driver hands things to the App (called on the I/O thread)."""

    deliver: Callable[[Any, list], None]
    errors: Callable[[list], None]
    event: Callable[[str], None]
    metrics: Callable[[int, dict], None]


@dataclass(frozen=True)
class DriverSink:
    """What workers see of a sink that lives in the driver: just that it does."""

    name: str
    to_driver: bool = True


class Reply:
    """A future for one request sent to several workers."""

    def __init__(self, n: int):
        self.values: dict = {}
        self.n = n
        self.error: Optional[BaseException] = None
        self.done = threading.Event()

    def put(self, worker: int, value: Any) -> None:
        self.values[worker] = value
        if len(self.values) >= self.n:
            self.done.set()

    def cancel(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class Driver:
    """Processes, sockets and the I/O thread of one app. Knows nothing of notebooks."""

    def __init__(self, plan: Any, n_workers: int, opts: Options, cb: Callbacks):
        self.plan = plan
        self.n = n_workers
        self.opts = opts
        self.cb = cb
        self.rundir = tempfile.mkdtemp(prefix="wallaroo_nb-")
        os.chmod(self.rundir, 0o700)  # ipc sockets carry pickles: owner only
        self.zctx = zmq.Context()
        self.router = self.zctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.RCVHWM, 0)
        self.addr = f"ipc://{self.rundir}/driver.sock"
        self.router.bind(self.addr)
        self.wake_addr = f"inproc://wake-{id(self)}"
        self.wake_rx = self.zctx.socket(zmq.PAIR)
        self.wake_rx.bind(self.wake_addr)
        self.wake_tx = self.zctx.socket(zmq.PAIR)
        self.wake_tx.connect(self.wake_addr)
        self.wake_lock = threading.Lock()
        self.requests: queue.Queue = queue.Queue()
        self.pending: dict = {}
        self.req_ids = itertools.count(1)
        self.ready = threading.Event()
        self.failure: Optional[BaseException] = None
        self.stop_requested = False
        self.stopped = threading.Event()
        self.generation = 0
        self.recoveries: list = []  # monotonic times of recoveries
        self._setup_checkpoints()
        self._start_generation()
        self.thread = threading.Thread(target=self._loop, name="wallaroo_nb-driver", daemon=True)
        self.thread.start()

    # -- checkpoints: setup ----------------------------------------------------------

    def _setup_checkpoints(self) -> None:
        self.ckpt: Optional[CheckpointDir] = None
        self.committed: Optional[dict] = None  # manifest of the last committed epoch
        self.epoch = 0  # last epoch started
        self.epoch_started = 0.0
        self.in_flight: Optional[int] = None
        self.acks: dict = {}
        self.force_checkpoint = False
        self.next_checkpoint = time.monotonic() + self.opts.checkpoint_interval
        self.commit_cond = threading.Condition()
        self.commit_thread: Optional[threading.Thread] = None
        self.commit_notices: list = []
        self.checkpoint_times: list = []  # seconds from start to commit, per epoch
        if not self.opts.resilience:
            return
        path = self.opts.checkpoint_dir or os.path.join(self.rundir, "checkpoints")
        self.ckpt = CheckpointDir(path)
        if self.opts.resume:
            manifest, notes = self.ckpt.latest()
            for note in notes:
                self.cb.event(note)
            if manifest is not None:
                self.committed = manifest
                self.epoch = manifest["epoch"]
                self.ckpt.truncate_results(manifest["results_offset"])
                for batch in self.ckpt.committed_results(manifest["results_offset"]):
                    sid, values = batch
                    self.cb.deliver(self.plan.steps[sid], values)
            self.cb.event(f"resuming from {describe(manifest)} in {self.ckpt.path}")
        else:
            self.ckpt.clear()

    # -- processes -------------------------------------------------------------------

    def _start_generation(self) -> None:
        self.ready.clear()
        self.ready_count = 0
        self.results_received = [0] * self.n
        self.uncommitted: list = [[] for _ in range(self.n)]  # (sid, values, payload) since last ack
        self.acked_batches: dict = {}  # worker -> batches of the epoch in flight
        self.procs = [self._spawn(i) for i in range(self.n)]
        self.exited = [False] * self.n

    def _ident(self, i: int) -> bytes:
        return f"w{i}.{self.generation}".encode()

    def _spawn(self, i: int) -> subprocess.Popen:
        env = dict(os.environ)
        # workers import what the driver can: functions from importable modules
        # travel by reference, those from __main__ (a notebook) by value
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        cmd = [sys.executable, "-m", "wallaroo_nb.engine.worker", "--driver", self.addr,
               "--id", str(i), "--ident", self._ident(i).decode()]
        if self.opts.wallaroo_alias:
            cmd.append("--wallaroo-alias")
        # own session: a Ctrl-C meant for the driver does not tear workers down mid-stop
        return subprocess.Popen(cmd, env=env, start_new_session=True, stdin=subprocess.DEVNULL)

    @property
    def pids(self) -> list:
        return [p.pid for p in self.procs]

    def _start_message(self, w: int) -> bytes:
        assign = {sp.id: sp.id % self.n for sp in self.plan.sources}
        sources = [sp if assign[sp.id] == w else replace(sp, config=None) for sp in self.plan.sources]
        restore = None
        if self.ckpt is not None and self.committed is not None:
            restore = self.ckpt.restore_info(self.committed)
        # driver-side sinks (a callback may hold locks) stay here: workers get a stand-in
        steps = [replace(st, sink=DriverSink(st.sink.name)) if st.kind == "sink" and st.sink.to_driver
                 else st for st in self.plan.steps]
        return cloudpickle.dumps({
            "plan": replace(self.plan, sources=sources, steps=steps),
            "workers": self.n,
            "assign": assign,
            "on_error": self.opts.on_error,
            "metrics": self.opts.metrics,
            "checkpoint_dir": self.ckpt.path if self.ckpt else None,
            "restore": restore,
            "data_addrs": [f"ipc://{self.rundir}/w{i}.g{self.generation}.data" for i in range(self.n)],
        })

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
        req_id = next(self.req_ids)
        reply = Reply(len(targets))
        self.pending[req_id] = reply
        self.requests.put((req_id, op, args or {}, targets))
        self._wake()
        if not reply.done.wait(timeout):
            self.pending.pop(req_id, None)
            raise TimeoutError(f"workers {sorted(set(targets) - set(reply.values))} did not "
                               f"answer {op!r} within {timeout}s")
        if reply.error is not None:
            raise reply.error
        out = []
        for w in targets:
            ok, value = reply.values[w]
            if not ok:
                raise RuntimeError(f"worker {w} failed {op!r}: {value}")
            out.append(value)
        return out

    def checkpoint_now(self) -> int:
        """Ask for an epoch that begins after this call; return its number."""
        with self.commit_cond:
            target = self.epoch + 1
            self.force_checkpoint = True
        self._wake()
        return target

    def wait_committed(self, epoch: int, timeout: Optional[float]) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.commit_cond:
            while self.committed_epoch < epoch:
                if self.stopped.is_set() or self.failure is not None:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.commit_cond.wait(0.1 if left is None else min(left, 0.1))
        return True

    @property
    def committed_epoch(self) -> int:
        return self.committed["epoch"] if self.committed else 0

    def _wake(self) -> None:
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
            self._wake()
            self.thread.join(STOP_GRACE_S + 5)
        self._reap(kill=True)
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
                    for i in range(self.n):
                        self._send(i, [b"stop"])
                if stop_deadline is not None:
                    self._reap(kill=False)
                    if all(self.exited) or now > stop_deadline:
                        break
                    continue
                if now >= next_ping:
                    next_ping = now + PING_S
                    for i in range(self.n):
                        self._send(i, [b"ping"])
                if now >= next_live:
                    next_live = now + LIVENESS_S
                    self._check_alive()
                if self.ckpt is not None:
                    self._drive_checkpoints(now)
        except Exception:
            tb = traceback.format_exc()
            self.fail(WorkerFailure(f"driver I/O thread crashed: {tb.strip().splitlines()[-1]}\n{tb}"))
        finally:
            self._wait_commit()
            self._reap(kill=True)
            for r in list(self.pending.values()):
                r.cancel(RuntimeError("the app stopped"))
            self.router.close(0)
            self.wake_rx.close(0)
            self.stopped.set()
            with self.commit_cond:
                self.commit_cond.notify_all()

    def _send(self, w: int, frames: list) -> None:
        try:
            self.router.send_multipart([self._ident(w)] + frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # not connected yet or gone; liveness checks report the cause

    def _send_requests(self) -> None:
        while True:
            try:
                req_id, op, args, targets = self.requests.get_nowait()
            except queue.Empty:
                return
            if not self.ready.is_set():  # recovering: the new workers did not see it
                reply = self.pending.pop(req_id, None)
                if reply is not None:
                    reply.cancel(Recovering(f"workers restarted while {op!r} was asked; ask again"))
                continue
            body = cloudpickle.dumps(args)
            for w in targets:
                self._send(w, [b"req", msgpack.packb([req_id, op]), body])

    def _drain_router(self) -> None:
        while True:
            try:
                ident, kind, *rest = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            name, _, gen = ident.decode().partition(".")
            if int(gen or 0) != self.generation:
                continue  # a message from a worker of a generation already replaced
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(self, int(name[1:]), rest)

    def _on_hello(self, w: int, rest: list) -> None:
        self._send(w, [b"plan", self._start_message(w)])

    def _on_ready(self, w: int, rest: list) -> None:
        self.ready_count += 1
        if self.ready_count == self.n:
            for i in range(self.n):
                self._send(i, [b"go"])
            self.ready.set()
            if self.generation == 0:
                self.cb.event(f"{self.n} workers started")
            else:
                self.cb.event(f"recovered from {describe(self.committed)} in "
                              f"{time.monotonic() - self.recovery_started:.2f}s")
            self.next_checkpoint = time.monotonic() + self.opts.checkpoint_interval

    def _on_results(self, w: int, rest: list) -> None:
        self.results_received[w] += 1
        for (sid, _n), payload in zip(msgpack.unpackb(rest[0]), rest[1:]):
            values = pickle.loads(payload)
            if self.ckpt is not None:
                # released when its epoch commits; the bytes go to the results log as they are
                self.uncommitted[w].append((sid, values, payload))
            else:
                self._deliver(sid, values)

    def _deliver(self, sid: int, values: list) -> None:
        try:
            self.cb.deliver(self.plan.steps[sid], values)
        except Exception as e:  # a user's callback sink raised
            self.cb.errors([{
                "step": self.plan.steps[sid].name, "where": "sink", "key": "",
                "input": f"<batch of {len(values)}>", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(), "worker": "driver", "time": time.time(),
            }])

    def _on_metrics(self, w: int, rest: list) -> None:
        self.cb.metrics(w, msgpack.unpackb(rest[0]))

    def _on_errors(self, w: int, rest: list) -> None:
        self.cb.errors(pickle.loads(rest[0]))

    def _on_reply(self, w: int, rest: list) -> None:
        req_id = msgpack.unpackb(rest[0])
        value = pickle.loads(rest[1])
        reply = self.pending.get(req_id)
        if reply is not None:
            reply.put(w, value)
            if reply.done.is_set():
                self.pending.pop(req_id, None)

    def _on_crash(self, w: int, rest: list) -> None:
        self._lost(w, f"worker {w} crashed:\n{rest[0].decode(errors='replace')}")

    def _on_bye(self, w: int, rest: list) -> None:
        pass

    def _on_ack(self, w: int, rest: list) -> None:
        ack = pickle.loads(rest[0])
        if ack["epoch"] != self.in_flight:
            return  # an aborted epoch
        self.acks[w] = ack
        self.acked_batches[w] = self.uncommitted[w]
        self.uncommitted[w] = []
        if len(self.acks) == self.n:
            self._commit()

    # -- checkpoints: epochs ------------------------------------------------------------------

    def _drive_checkpoints(self, now: float) -> None:
        self._send_commit_notices()
        if not self.ready.is_set() or (self.commit_thread is not None
                                       and self.commit_thread.is_alive()):
            return
        if self.in_flight is None:
            if now >= self.next_checkpoint or self.force_checkpoint:
                with self.commit_cond:
                    self.epoch += 1
                    self.force_checkpoint = False
                self.in_flight = self.epoch
                self.epoch_started = now
                self.acks = {}
                self.acked_batches = {}
                for i in range(self.n):
                    self._send(i, [b"ckpt", msgpack.packb(self.epoch)])
        elif now - self.epoch_started > CHECKPOINT_TIMEOUT_S:
            self.cb.event(f"checkpoint {self.in_flight} did not complete in "
                          f"{CHECKPOINT_TIMEOUT_S:.0f}s: aborted, will retry")
            for i in range(self.n):
                self._send(i, [b"abort", msgpack.packb(self.in_flight)])
            for w, batches in self.acked_batches.items():
                self.uncommitted[w] = batches + self.uncommitted[w]
            self.in_flight = None
            self.next_checkpoint = now + self.opts.checkpoint_interval

    def _commit(self) -> None:
        """Every worker acknowledged: commit on a thread of its own, so that the I/O
        thread keeps draining the workers while the results log is written and the
        results are handed over (one commit at a time: in_flight stays set)."""
        epoch = self.in_flight
        batches = [b for w in range(self.n) for b in self.acked_batches[w]]
        acks = [self.acks[w] for w in range(self.n)]
        self.commit_thread = threading.Thread(
            target=self._write_commit, args=(epoch, acks, batches), daemon=True,
            name="wallaroo_nb-commit")
        self.commit_thread.start()

    def _write_commit(self, epoch: int, acks: list, batches: list) -> None:
        try:
            persisted = [(sid, payload) for sid, _values, payload in batches
                         if self.plan.steps[sid].sink.collects]
            manifest = self.ckpt.commit(epoch, acks, persisted)
            for sid, values, _payload in batches:  # before anyone hears of the commit
                self._deliver(sid, values)
        except Exception as e:
            self.fail(WorkerFailure(f"committing checkpoint {epoch} failed: {e}\n"
                                     f"{traceback.format_exc()}"))
            return
        with self.commit_cond:
            self.committed = manifest
            self.checkpoint_times.append(time.monotonic() - self.epoch_started)
            self.in_flight = None
            self.commit_notices.append(epoch)
            self.commit_cond.notify_all()
        self.next_checkpoint = time.monotonic() + self.opts.checkpoint_interval
        self._wake()  # the I/O thread tells the workers (their exactly-once sinks deliver)

    def _send_commit_notices(self) -> None:
        while self.commit_notices:
            epoch = self.commit_notices.pop(0)
            for i in range(self.n):
                self._send(i, [b"commit", msgpack.packb(epoch)])

    def _wait_commit(self) -> None:
        t = self.commit_thread
        if t is not None and t.is_alive() and threading.current_thread() is not t:
            t.join(CHECKPOINT_TIMEOUT_S)

    # -- failures and recovery ------------------------------------------------------------------

    def _lost(self, w: int, reason: str) -> None:
        if self.stop_requested:
            return
        if self.ckpt is None:
            self.fail(WorkerFailure(reason))
            return
        now = time.monotonic()
        self.recoveries = [t for t in self.recoveries if now - t < 60] + [now]
        if len(self.recoveries) > MAX_RECOVERIES_PER_MINUTE:
            self.fail(WorkerFailure(f"{reason}\n(gave up: {len(self.recoveries)} recoveries "
                                     "in a minute)"))
            return
        self._recover(reason.splitlines()[0])

    def _recover(self, reason: str) -> None:
        self.recovery_started = time.monotonic()
        self._wait_commit()  # a commit under way decides the epoch to restore from
        self.cb.event(f"{reason}; restarting every worker from {describe(self.committed)}")
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(10)
        self.in_flight = None
        for r in list(self.pending.values()):
            r.cancel(Recovering("workers restarted during the request; ask again"))
        self.pending.clear()
        self.generation += 1
        self._start_generation()

    def fail(self, exc: BaseException) -> None:
        """Stop the app with ``exc`` as its failure (the first failure wins)."""
        if self.failure is None:
            self.failure = exc
            self.cb.event(str(exc).splitlines()[0])
        for r in list(self.pending.values()):
            r.cancel(exc)
        self.ready.set()  # wake anyone waiting for start-up: they will see the failure
        self.stop_requested = True

    def _check_alive(self) -> None:
        for i, p in enumerate(self.procs):
            code = p.poll()
            if code is not None and not self.exited[i]:
                self.exited[i] = True
                self._lost(i, f"worker {i} (pid {p.pid}) exited with code {code}")
                return  # a recovery replaced every process

    def _reap(self, kill: bool) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                self.exited[i] = True
            elif kill:
                p.kill()
                p.wait(5)
                self.exited[i] = True


_HANDLERS = {
    b"hello": Driver._on_hello,
    b"ready": Driver._on_ready,
    b"results": Driver._on_results,
    b"errors": Driver._on_errors,
    b"metrics": Driver._on_metrics,
    b"reply": Driver._on_reply,
    b"crash": Driver._on_crash,
    b"bye": Driver._on_bye,
    b"ack": Driver._on_ack,
}
