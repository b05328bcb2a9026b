"""The worker process: ``python -m wallaroo_nb.engine.worker --driver ADDR --id N``.

A thin I/O shell around one engine Core (core.py). One thread, one loop: read
control messages from the driver, frames from peer workers, chunks from the
sources this worker runs; hand them to the core; send what it produced. Sends
never block (a blocked peer must not deadlock two workers sending to each
other): frames wait in a per-peer outbox and the sources pause while any
outbox is long, which is how a fast source slows down instead of growing memory.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import time
import traceback
from typing import Optional

import zmq

from .. import security
from ..protocol import (
    Barrier,
    Hello,
    Kind,
    Ready,
    Reply,
    Request,
    Start,
    decode,
    encode,
)
from .core import Core
from .endpoints import TURN_BUDGET_S, Endpoints
from .ops import OPS
from .transport import HWM, Transport
from .watchdog import Watchdog
from .worker_epochs import WorkerEpochs

FRAMES_PER_TURN = 16  # max peer frames handled per loop turn (fairness with sources)
IDLE_POLL_MS = 100
PARENT_CHECK_S = 0.25
DRIVER_SILENCE_S = 10.0  # no word from the driver this long: it is gone
SPIN_S = 40e-6  # the end of a sub-millisecond wait is spun, not slept (see wait_until)
TIMER_SLACK_NS = 1000  # how late Linux may wake a sleep of this process (default 50 us)
NO_START_EXIT = 5  # the exit code of an engine that never got its start record


class Worker(WorkerEpochs):
    """One worker process: its sockets, its live sources and sinks, and the Core.

    Life: ``handshake`` (hello -> Start), ``setup`` (core, connectors, sockets,
    restore), ``ready``/``go``, then ``run``'s loop until STOP, then ``shutdown``
    (drain, close connectors, bye)."""

    def __init__(self, driver: str, me: int, ident: str, keys: Optional[security.Keys] = None,
                 host: str = "", dask_worker: str = ""):
        self.me = me
        self.ident = ident
        self.keys, self.host, self.dask_worker = keys, host, dask_worker
        self.zctx = zmq.Context.instance()
        self.auth = security.authenticator(self.zctx, keys)  # before the data socket binds
        self.ctl = self.zctx.socket(zmq.DEALER)
        self.ctl.setsockopt(zmq.IDENTITY, ident.encode())
        self.ctl.setsockopt(zmq.LINGER, 2000)
        self.ctl.setsockopt(zmq.SNDHWM, HWM * 4)
        security.client(self.ctl, keys)
        self.ctl.connect(driver)
        self.ppid = os.getppid()
        self.watchdog = Watchdog(self.zctx, driver, ident + ".hb", self.ppid, keys=keys)
        self.stopping = False
        self.last_driver = time.monotonic()
        self.core: Optional[Core] = None
        self.net: Optional[Transport] = None
        self.io: Optional[Endpoints] = None
        self.ckpt_dir: Optional[str] = None
        self.barrier: Optional[Barrier] = None  # of the epoch in flight
        self.draining = False  # a final barrier passed: read no more
        self.applied: set = set()  # ids of the triggers applied here (checkpointed)
        self.acked: Optional[int] = None  # a rescaling epoch acknowledged, awaiting ADOPT

    # -- start-up ------------------------------------------------------------------------

    def next_control(self) -> list:
        """Block for the driver's next message, checking all the while that it lives."""
        while not self.ctl.poll(int(PARENT_CHECK_S * 1000)):
            self.check_parent()
            if self.core is None and time.monotonic() - self.last_driver > DRIVER_SILENCE_S:
                os._exit(NO_START_EXIT)  # the driver is gone, or fenced this (late) engine out
        self.last_driver = time.monotonic()
        return self.ctl.recv_multipart()

    def handshake(self) -> Start:
        self.ctl.send_multipart(encode(Kind.HELLO, Hello(os.getpid(), self.host, self.dask_worker)))
        while True:
            kind, *rest = self.next_control()
            if kind == Kind.START:
                return decode(kind, rest)
            if kind == Kind.STOP:
                sys.exit(0)

    def setup(self, start: Start) -> None:
        plan = start.plan
        self.start = start
        self.watchdog.start(plan)
        self.n = n = start.workers
        self.core = core = Core(plan, self.me, n, start.assign, start.owners, start.on_error,
                                start.metrics)
        self.ckpt_dir = start.checkpoint_dir
        self.io = Endpoints(plan, self.me, core, start.assign, start.resilience)
        if start.restore is not None:
            self.restore(start.restore)
        self.connect(start.data_bind, start.driver_stream)
        self.net.era = start.era

    def connect(self, bind: str, driver_stream: Optional[str] = None) -> None:
        """The data plane, and three pollers: while sources are paused their
        (level-triggered) fds must not wake the loop, or it would spin; while a live
        sink is not ready, peers' frames wait too (their senders' outboxes fill and
        their sources pause: backpressure reaches every worker)."""
        self.net = Transport(self.zctx, self.ctl, self.me, bind, self.keys, driver_stream,
                             self.ident.encode())
        self.poller_blocked = zmq.Poller()
        self.poller_blocked.register(self.ctl, zmq.POLLIN)
        self.poller_paused = zmq.Poller()
        self.poller = zmq.Poller()
        for p in (self.poller_paused, self.poller):
            p.register(self.ctl, zmq.POLLIN)
            self.net.watch(p)
        for src in self.io.sources.values():
            for fd in src.fds():
                self.poller.register(fd, zmq.POLLIN)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        self.setup(self.handshake())
        # everything loaded so far (modules, the plan, user code) lives as long as the
        # worker: keep the cyclic collector's full passes from walking it again and again
        gc.freeze()
        self.net.send_now(encode(Kind.READY, Ready(self.net.address)))
        self.wait_go()
        next_check = time.monotonic() + PARENT_CHECK_S
        watchdog = self.watchdog
        while not self.stopping:
            watchdog.turns += 1
            core = self.core  # a rollback makes a new one
            self.stage()
            self.io.flush_due(core)
            sinks_ready = self.io.ready()
            reading = (sinks_ready and not core.rt.halted and self.net.room()
                       and not core.aligner.active and not self.draining)
            # sending is the last work before waiting: a write to a Unix socket wakes its
            # reader on this CPU (a "sync" wake-up), where it runs once this process waits
            self.net.send()
            events = self.wait_events(self.poller if reading else self.poller_paused
                                      if sinks_ready else self.poller_blocked,
                                      self.io.wait_hint(core, not reading))
            if self.ctl in events:
                self.handle_control()
                if self.core is not core:
                    continue  # rolled back: a new core, a new era; start the turn again
            if self.net.readable(events):
                self.handle_frames(events)
            now = time.monotonic()
            if reading and not core.aligner.active:
                self.io.read(core)
            core.tick(now)
            if core.rt.recorder.due(now):
                self.send_metrics()
            if now >= next_check:
                next_check = now + PARENT_CHECK_S
                self.check_parent()
                self.collect_connector_errors()
        self.shutdown()

    def wait_go(self) -> None:
        while True:
            kind, *rest = self.next_control()
            if kind == Kind.GO:
                return
            if kind == Kind.PEERS:
                self.net.set_peers(decode(kind, rest).addrs)
            if kind == Kind.STOP:
                self.stopping = True
                self.shutdown()
                sys.exit(0)
            if kind == Kind.REQUEST:
                self.answer(decode(kind, rest))

    def poll_timeout_ms(self, hint: Optional[float]) -> float:
        """Until a source this turn may read has more or a sink wants flushing (``hint``,
        from Endpoints.wait_hint; at most IDLE_POLL_MS); at most 1 ms while frames wait
        to be sent, as zmq does not say when a peer takes more. A source that has more
        is read at once even then, as long as the outboxes have room: the worker goes
        on working while a peer catches up."""
        wait = IDLE_POLL_MS / 1000 if hint is None else min(IDLE_POLL_MS / 1000, hint)
        if self.net.busy:
            wait = min(wait, 0.001)
        if self.net.holding:
            wait = 0.0
        return max(wait, 0.0) * 1000

    def wait_events(self, poller: zmq.Poller, hint: Optional[float]) -> dict:
        """Poll for input; zmq counts whole milliseconds, so shorter waits (a paced source
        due in 100 us) look once and then sleep just that long."""
        timeout = self.poll_timeout_ms(hint)
        if timeout >= 1.0 or timeout == 0:
            return dict(poller.poll(int(timeout + 0.5)))
        events = dict(poller.poll(0))
        if not events:
            wait_until(time.perf_counter() + timeout / 1000)
        return events

    def handle_frames(self, events: dict) -> None:
        core = self.core
        deadline = time.perf_counter() + TURN_BUDGET_S
        for sender, groups in self.net.frames(FRAMES_PER_TURN, events):
            core.receive(sender, groups)
            self.check_epoch()
            if time.perf_counter() > deadline:
                return  # slow steps: answer the driver before the next frame

    # -- output ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand what the core produced to the live sinks and to the transport."""
        self.stage()
        self.net.send()

    def stage(self) -> None:
        """What the core produced: written to the live sinks, queued for sending."""
        out = self.core.take()
        self.io.write(out.sinks)
        self.net.queue(out)

    def collect_connector_errors(self) -> None:
        self.io.collect_errors(self.core)

    def send_metrics(self) -> None:
        delta = self.core.rt.metrics_delta()
        if delta["hist"] or delta["events"]:
            self.net.to_driver(encode(Kind.METRICS, (delta["hist"], delta["events"])))

    # -- control ---------------------------------------------------------------------------

    def handle_control(self) -> None:
        while True:
            try:
                kind, *rest = self.ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.last_driver = time.monotonic()
            if kind == Kind.REQUEST:
                self.answer(decode(kind, rest))
            elif kind == Kind.CHECKPOINT:
                self.begin_epoch(decode(kind, rest))
            elif kind == Kind.COMMIT:
                self.io.on_commit(decode(kind, rest))
            elif kind == Kind.ABORT:
                self.core.abort_epoch(decode(kind, rest))
            elif kind == Kind.ADOPT:
                self.adopt(decode(kind, rest))
            elif kind == Kind.PEERS:
                self.net.set_peers(decode(kind, rest).addrs)
            elif kind == Kind.ROLLBACK:
                self.rollback(decode(kind, rest))
            elif kind == Kind.STOP:
                self.stopping = True
                return

    def answer(self, req: Request) -> None:
        try:
            reply = Reply(req.req_id, True, OPS[req.op](self, **req.args))
        except Exception as e:
            reply = Reply(req.req_id, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        if self.net is None:  # before start-up: straight out
            self.ctl.send_multipart(encode(Kind.REPLY, reply))
            return
        self.flush()  # results produced so far go out before the reply (FIFO on ctl)
        self.net.to_driver(encode(Kind.REPLY, reply))
        self.net.send()

    def check_parent(self) -> None:
        if os.getppid() != self.ppid:
            os._exit(3)  # the driver died: never outlive it
        if self.core is not None and time.monotonic() - self.last_driver > DRIVER_SILENCE_S:
            # a long loop turn (slow user code) is not silence: read what came meanwhile
            self.handle_control()
            if time.monotonic() - self.last_driver > DRIVER_SILENCE_S:
                os._exit(4)

    def shutdown(self) -> None:
        if self.core is not None:
            self.io.close()
            self.collect_connector_errors()
            self.send_metrics()
            self.stage()
            self.net.send_now(encode(Kind.BYE))  # after everything else, on the same way
        else:
            self.ctl.send_multipart(encode(Kind.BYE))
        self.close_zmq()

    def close_zmq(self) -> None:
        """Let zmq deliver what it still holds (within the sockets' linger) before the
        process exits: a process that exits with its context alive loses what its zmq
        I/O thread had not sent (seen: a worker's last metrics, now and then)."""
        if self.watchdog.thread.is_alive():
            self.watchdog.stop.set()
            self.watchdog.thread.join(1.0)
        security.stop(self.auth)
        self.zctx.destroy(linger=2000)


def wait_until(t: float) -> None:
    """Sleep until ``perf_counter()`` reaches ``t``, spinning its last SPIN_S: Linux in a
    VM wakes a sleeper ~25 us late, and a paced source's messages would all be read
    that late (measured in bench/latency.py, "due -> driver" against "read -> driver")."""
    rest = t - time.perf_counter()
    if rest > SPIN_S:
        time.sleep(rest - SPIN_S)
    while time.perf_counter() < t:
        pass


def precise_sleeps() -> None:
    """Ask Linux to end this process's sleeps within TIMER_SLACK_NS of their time. A paced
    source at 10,000 messages/s sleeps ~100 us between reads; with the default slack of
    50 us each message would be read about that much after it was due (measured: median
    overshoot of a 100 us sleep 83 us with the default, 24 us with 1 us). Elsewhere: no-op."""
    try:
        ctypes.CDLL(None).prctl(29, TIMER_SLACK_NS, 0, 0, 0)  # 29: PR_SET_TIMERSLACK
    except (OSError, AttributeError, TypeError):
        pass


def main(argv: list | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--driver", required=True)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--ident", help="socket identity (worker id and generation)")
    p.add_argument("--wallaroo-alias", action="store_true",
                   help="make `import wallaroo` resolve to wallaroo_nb (running Wallaroo apps)")
    p.add_argument("--host", default="", help="where this engine binds (on a cluster)")
    p.add_argument("--dask-worker", default="", help="the Dask worker that started this engine")
    p.add_argument("--keys-stdin", action="store_true",
                   help="read the app's CurveZMQ keys from a line on stdin (security.py)")
    a = p.parse_args(argv)
    precise_sleeps()  # before any thread starts: threads inherit it
    keys = security.Keys.from_line(sys.stdin.buffer.readline()) if a.keys_stdin else None
    if a.wallaroo_alias:
        from ..compat import install_alias

        install_alias()
    w = Worker(a.driver, a.id, a.ident or f"w{a.id}", keys, a.host, a.dask_worker)
    try:
        w.run()
    except SystemExit:
        raise
    except BaseException:
        tb = traceback.format_exc()
        try:
            w.ctl.send_multipart(encode(Kind.CRASH, tb))
        finally:
            sys.stderr.write(tb)
            os._exit(2)


if __name__ == "__main__":
    main()
