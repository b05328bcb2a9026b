"""The driver side of a running app: spawn workers, talk to them, collect results.

One background thread owns the driver's ROUTER socket. Everything the workers
send (results, errors, replies, crashes) is read there, so a notebook cell never
blocks on it and a busy cell never stops it. User threads send requests through
a queue plus an inproc wake-up socket, and wait on a per-request future.
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
from dataclasses import replace
from typing import Any, Callable, Optional

import cloudpickle
import msgpack
import zmq

PING_S = 1.0
LIVENESS_S = 0.2
STOP_GRACE_S = 5.0


class WorkerFailure(RuntimeError):
    """A worker process died or its engine raised."""


class Reply:
    """A future for one request sent to several workers."""

    def __init__(self, n: int):
        self.values: dict = {}
        self.n = n
        self.done = threading.Event()

    def put(self, worker: int, value: Any) -> None:
        self.values[worker] = value
        if len(self.values) >= self.n:
            self.done.set()


class Driver:
    """Processes, sockets and the I/O thread of one app. Knows nothing of notebooks."""

    def __init__(self, plan: Any, n_workers: int, on_error: str,
                 deliver: Callable[[Any, list], None], on_errors: Callable[[list], None],
                 on_event: Callable[[str], None], on_metrics: Callable[[int, dict], None],
                 metrics: bool = True):
        self.plan = plan
        self.n = n_workers
        self.on_error = on_error
        self.deliver = deliver
        self.on_errors = on_errors
        self.on_event = on_event
        self.on_metrics = on_metrics
        self.metrics = metrics
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
        self.results_received = [0] * n_workers
        self.ready = threading.Event()
        self.ready_count = 0
        self.failure: Optional[BaseException] = None
        self.stop_requested = False
        self.stopped = threading.Event()
        self.procs = [self._spawn(i) for i in range(n_workers)]
        self.exited = [False] * n_workers
        self.thread = threading.Thread(target=self._loop, name="wallaroo_nb-driver", daemon=True)
        self.thread.start()

    # -- processes -------------------------------------------------------------------

    def _spawn(self, i: int) -> subprocess.Popen:
        env = dict(os.environ)
        # workers import what the driver can: functions from importable modules
        # travel by reference, those from __main__ (a notebook) by value
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        cmd = [sys.executable, "-m", "wallaroo_nb.engine.worker", "--driver", self.addr, "--id", str(i)]
        # own session: a Ctrl-C meant for the driver does not tear workers down mid-stop
        return subprocess.Popen(cmd, env=env, start_new_session=True, stdin=subprocess.DEVNULL)

    @property
    def pids(self) -> list:
        return [p.pid for p in self.procs]

    def _start_message(self, w: int) -> bytes:
        assign = {sp.id: sp.id % self.n for sp in self.plan.sources}
        sources = [sp if assign[sp.id] == w else replace(sp, config=None) for sp in self.plan.sources]
        return cloudpickle.dumps({
            "plan": replace(self.plan, sources=sources),
            "workers": self.n,
            "assign": assign,
            "on_error": self.on_error,
            "metrics": self.metrics,
            "data_addrs": [f"ipc://{self.rundir}/w{i}.data" for i in range(self.n)],
        })

    # -- requests from user threads ---------------------------------------------------------

    def call(self, op: str, args: Optional[dict] = None, workers: Optional[list] = None,
             timeout: float = 30.0) -> list:
        """Send ``op`` to workers (default all); return their values in worker order."""
        if self.stopped.is_set():
            raise RuntimeError("the app is stopped")
        if not self.ready.wait(timeout):
            raise TimeoutError(f"workers did not start within {timeout}s")
        targets = list(range(self.n)) if workers is None else list(workers)
        req_id = next(self.req_ids)
        reply = Reply(len(targets))
        self.pending[req_id] = reply
        self.requests.put((req_id, op, args or {}, targets))
        self._wake()
        if not reply.done.wait(timeout):
            self.pending.pop(req_id, None)
            if self.failure is not None:
                raise self.failure
            raise TimeoutError(f"workers {sorted(set(targets) - set(reply.values))} did not "
                               f"answer {op!r} within {timeout}s")
        out = []
        for w in targets:
            ok, value = reply.values[w]
            if not ok:
                raise RuntimeError(f"worker {w} failed {op!r}: {value}")
            out.append(value)
        return out

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
        except Exception:
            self._fail(WorkerFailure("driver I/O thread crashed:\n" + traceback.format_exc()))
        finally:
            self._reap(kill=True)
            for r in list(self.pending.values()):
                r.done.set()
            self.router.close(0)
            self.wake_rx.close(0)
            self.stopped.set()

    def _send(self, w: int, frames: list) -> None:
        try:
            self.router.send_multipart([f"w{w}".encode()] + frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # not connected yet or gone; liveness checks report the cause

    def _send_requests(self) -> None:
        while True:
            try:
                req_id, op, args, targets = self.requests.get_nowait()
            except queue.Empty:
                return
            body = cloudpickle.dumps(args)
            for w in targets:
                self._send(w, [b"req", msgpack.packb([req_id, op]), body])

    def _drain_router(self) -> None:
        while True:
            try:
                ident, kind, *rest = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            w = int(ident[1:])
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(self, w, rest)

    def _on_hello(self, w: int, rest: list) -> None:
        self.router.send_multipart([f"w{w}".encode(), b"plan", self._start_message(w)])

    def _on_ready(self, w: int, rest: list) -> None:
        self.ready_count += 1
        if self.ready_count == self.n:
            for i in range(self.n):
                self._send(i, [b"go"])
            self.ready.set()
            self.on_event(f"{self.n} workers started")

    def _on_results(self, w: int, rest: list) -> None:
        sid, _n = msgpack.unpackb(rest[0])
        self.results_received[w] += 1
        values = pickle.loads(rest[1])
        try:
            self.deliver(self.plan.steps[sid], values)
        except Exception as e:  # a user's callback sink raised
            self.on_errors([{
                "step": self.plan.steps[sid].name, "where": "sink", "key": "",
                "input": f"<batch of {len(values)}>", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(), "worker": "driver", "time": time.time(),
            }])

    def _on_metrics(self, w: int, rest: list) -> None:
        self.on_metrics(w, msgpack.unpackb(rest[0]))

    def _on_errors(self, w: int, rest: list) -> None:
        self.on_errors(pickle.loads(rest[0]))

    def _on_reply(self, w: int, rest: list) -> None:
        req_id = msgpack.unpackb(rest[0])
        value = pickle.loads(rest[1])
        reply = self.pending.get(req_id)
        if reply is not None:
            reply.put(w, value)
            if reply.done.is_set():
                self.pending.pop(req_id, None)

    def _on_crash(self, w: int, rest: list) -> None:
        self._fail(WorkerFailure(f"worker {w} crashed:\n{rest[0].decode(errors='replace')}"))

    def _on_bye(self, w: int, rest: list) -> None:
        pass

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            self.on_event(str(exc).splitlines()[0])
        for r in list(self.pending.values()):
            r.done.set()
        self.stop_requested = True

    def _check_alive(self) -> None:
        for i, p in enumerate(self.procs):
            code = p.poll()
            if code is not None and not self.exited[i]:
                self.exited[i] = True
                if not self.stop_requested:
                    self._fail(WorkerFailure(f"worker {i} (pid {p.pid}) exited with code {code}"))

    def _reap(self, kill: bool) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                self.exited[i] = True
            elif kill:
                p.kill()
                p.wait(5)
                self.exited[i] = True
        if kill and all(self.exited):
            shutil.rmtree(self.rundir, ignore_errors=True)


_HANDLERS = {
    b"hello": Driver._on_hello,
    b"ready": Driver._on_ready,
    b"results": Driver._on_results,
    b"errors": Driver._on_errors,
    b"metrics": Driver._on_metrics,
    b"reply": Driver._on_reply,
    b"crash": Driver._on_crash,
    b"bye": Driver._on_bye,
}
