"""The worker process: ``python -m wallaroo_nb.engine.worker --driver ADDR --id N``.

One thread, one loop: read control messages from the driver, frames from peer
workers, chunks from the sources this worker runs; feed values one at a time
through the fused steps; ship what each chunk produced. Sends never block (a
blocked peer must not deadlock two workers sending to each other): frames wait
in a per-peer outbox and the sources pause while any outbox is long, which is
how a fast source slows down instead of growing memory.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import pickle
import sys
import time
import traceback
from collections import deque
from typing import Any

import msgpack
import zmq

from ..plan import reached_keyed
from .codec import dumps, dumps_by_value, from_plain_state, plain_state
from .epochs import Aligner, read_checked, write_atomic
from .ops import OPS
from .runtime import GROUP_BARRIER, GROUP_DATA, GROUP_WATERMARK, Runtime
from .steps import build, fan_out
from .watermarks import NEG_INF, Table, advance, channels

CHUNK = 1024  # max values read from a source per loop turn
FRAMES_PER_TURN = 16  # max peer frames handled per loop turn (fairness with sources)
OUTBOX_LIMIT = 8  # frames waiting for one peer before sources pause
GROUPS_PER_FRAME = 16  # batches coalesced into one waiting frame, at most
HWM = 16  # zmq high-water mark, in frames, on every data and control socket
IDLE_POLL_MS = 100
MARKER_INTERVAL_S = 0.005  # at most this often a source's watermark marker goes out
# pyzmq's flags are enums: `SNDMORE | NOBLOCK` per frame in send_multipart costs ~2 µs
# a message in Python; plain ints don't
NOBLOCK = int(zmq.NOBLOCK)
MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
PARENT_CHECK_S = 0.25
DRIVER_SILENCE_S = 10.0  # no word from the driver this long: it is gone


class ResultsMessage:
    """Output batches for the driver's sinks, sent as one message: [b"results",
    msgpack [[sink step, count], ...], payload, payload, ...]."""

    __slots__ = ("heads", "payloads")

    def __init__(self) -> None:
        self.heads: list = []
        self.payloads: list = []

    @property
    def full(self) -> bool:
        return len(self.payloads) >= GROUPS_PER_FRAME

    def add(self, sid: int, n: int, payload: bytes) -> None:
        self.heads.append((sid, n))
        self.payloads.append(payload)

    def frames(self) -> list:
        return [b"results", msgpack.packb(self.heads), *self.payloads]


class SourceRun:
    """A source this worker reads, with the feed of its first steps."""

    def __init__(self, sp: Any):
        self.sp = sp
        self.id = sp.id
        self.name = sp.name
        self.source = sp.config.make_source()
        self.feed: Any = None  # set by Worker.wire()
        self.event_time = sp.config.event_time
        self.done = False
        self.count = 0
        self.wm = NEG_INF  # largest event time read so far (ingest time without event_time)
        self.marked: dict = {}  # step id -> watermark last marked for it
        self.marked_at = 0.0


def send_frames(sock: Any, frames: list) -> None:
    """``sock.send_multipart(frames, zmq.NOBLOCK)`` at a third of the cost, frame by frame
    as pyzmq does; zmq.Again comes from the first frame (the high-water mark counts
    whole messages)."""
    for f in frames[:-1]:
        sock.send(f, MORE_NOBLOCK)
    sock.send(frames[-1], NOBLOCK)


class Worker:
    def __init__(self, driver: str, me: int, ident: str):
        self.me = me
        self.zctx = zmq.Context.instance()
        self.ctl = self.zctx.socket(zmq.DEALER)
        self.ctl.setsockopt(zmq.IDENTITY, ident.encode())
        self.ctl.setsockopt(zmq.LINGER, 2000)
        self.ctl.setsockopt(zmq.SNDHWM, HWM * 4)
        self.ctl.connect(driver)
        self.ppid = os.getppid()
        self.stopping = False
        self.last_driver = time.monotonic()
        self.driver_out: deque = deque()

    # -- startup ---------------------------------------------------------------------

    def next_control(self) -> list:
        """Block for the driver's next message, checking all the while that it lives."""
        while not self.ctl.poll(int(PARENT_CHECK_S * 1000)):
            self.check_parent()
        self.last_driver = time.monotonic()
        return self.ctl.recv_multipart()

    def handshake(self) -> dict:
        self.ctl.send_multipart([b"hello", msgpack.packb({"pid": os.getpid()})])
        while True:
            kind, *rest = self.next_control()
            if kind == b"plan":
                return pickle.loads(rest[0])
            if kind == b"stop":
                sys.exit(0)

    def setup(self, start: dict) -> None:
        plan = start["plan"]
        self.n = start["workers"]
        self.rt = rt = Runtime(plan, self.me, self.n, start.get("on_error", "record"),
                               metrics=start.get("metrics", True))
        for step in plan.steps:
            if step.kind == "window":
                from .windowing import make_window_runner

                rt.windows[step.id] = make_window_runner(step.spec, with_keys=True)
            elif step.kind == "sink" and not step.sink.to_driver:
                sink = step.sink.make_sink()
                sink.open(self.me)
                rt.sinks[step.id] = sink
        assign = start["assign"]
        if rt.track_wm:
            chans = channels(plan, self.n, assign, rt.wm_steps)
            rt.wm_tables = {sid: Table(chans[sid]) for sid in rt.wm_steps}
        self.aligner = Aligner(plan, self.me, self.n)
        self.ckpt_dir = start.get("checkpoint_dir")
        # exactly-once sinks hold outputs back until their epoch commits
        self.committing_sinks = {plan.steps[sid].name: sink for sid, sink in rt.sinks.items()
                                 if self.ckpt_dir and getattr(sink, "commits", False)}
        for sink in self.committing_sinks.values():
            sink.hold()
        self.sources = []
        for sp in plan.sources:
            if assign[sp.id] == self.me:
                run = SourceRun(sp)
                run.source.open(self.me)
                self.sources.append(run)
        self.wire()
        self.wm_direct: dict = {}  # local source id -> watermark steps it feeds directly
        self.wm_down: dict = {}  # watermark step -> watermark steps it feeds directly
        if rt.track_wm:
            for run in self.sources:
                self.wm_direct[run.id] = sorted(reached_keyed(plan, run.sp.children) & rt.wm_steps)
            for sid in rt.wm_steps:
                down = reached_keyed(plan, plan.steps[sid].children) & rt.wm_steps
                if down:
                    self.wm_down[sid] = sorted(down)
        self.forwarded: dict = {}  # (step, source) -> watermark forwarded downstream
        if start.get("restore"):
            self.restore(start["restore"])
        self.data_in = self.zctx.socket(zmq.PULL)
        self.data_in.setsockopt(zmq.RCVHWM, HWM)
        self.data_in.bind(start["data_addrs"][self.me])
        self.peers: list = [None] * self.n
        for w, addr in enumerate(start["data_addrs"]):
            if w != self.me:
                s = self.zctx.socket(zmq.PUSH)
                s.setsockopt(zmq.SNDHWM, HWM)
                s.setsockopt(zmq.LINGER, 2000)
                # a peer may not have bound yet: retry in 10 ms, not zmq's default 100 ms
                s.setsockopt(zmq.RECONNECT_IVL, 10)
                s.connect(addr)
                self.peers[w] = s
        self.outbox = [deque() for _ in range(self.n)]
        self.sent = [0] * self.n
        self.recv = [0] * self.n
        self.results_sent = 0
        # two pollers: while sources are paused their (level-triggered) fds must not
        # wake the loop, or it would spin
        self.poller_paused = zmq.Poller()
        self.poller_paused.register(self.ctl, zmq.POLLIN)
        self.poller_paused.register(self.data_in, zmq.POLLIN)
        self.poller = zmq.Poller()
        self.poller.register(self.ctl, zmq.POLLIN)
        self.poller.register(self.data_in, zmq.POLLIN)
        for run in self.sources:
            for fd in run.source.fds():
                self.poller.register(fd, zmq.POLLIN)
        self.connectors = [(r.name, r.source) for r in self.sources] + [
            (rt.plan.steps[sid].name, sink) for sid, sink in rt.sinks.items()]
        self.reported_stats: dict = {}

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        start = self.handshake()
        self.setup(start)
        # everything loaded so far (modules, the plan, user code) lives as long as the
        # worker: keep the cyclic collector's full passes from walking it again and again
        gc.freeze()
        self.ctl.send_multipart([b"ready"])
        self.wait_go()
        next_check = time.monotonic() + PARENT_CHECK_S
        while not self.stopping:
            reading = not self.rt.halted and self.outbox_room() and not self.aligner.active
            poller = self.poller if reading else self.poller_paused
            events = self.wait_events(poller)
            if self.ctl in events:
                self.handle_control()
            if self.data_in in events:
                self.handle_frames()
            if reading and not self.aligner.active:
                self.read_sources()
            if self.rt.track_wm and not self.aligner.active:
                self.advance_watermarks()
            self.flush()
            self.flush_sinks()
            now = time.monotonic()
            if self.rt.recorder.due(now):
                self.send_metrics()
            if now >= next_check:
                next_check = now + PARENT_CHECK_S
                self.check_parent()
                self.collect_connector_errors()
        self.shutdown()

    def wire(self) -> None:
        """Compile the steps into fused feeds and hand each local source its first ones
        (at start-up, and again when a hot reload swaps a step's function)."""
        self.entry, self.remote = build(self.rt)
        for run in self.sources:
            run.feed = fan_out([self.entry[c] for c in run.sp.children])

    def wait_go(self) -> None:
        while True:
            kind, *rest = self.next_control()
            if kind == b"go":
                return
            if kind == b"stop":
                self.stopping = True
                self.shutdown()
                sys.exit(0)
            if kind == b"req":
                self.answer(rest)

    def poll_timeout_ms(self) -> float:
        if any(self.outbox) or self.driver_out:
            return 1.0
        wait = IDLE_POLL_MS / 1000
        for sink in self.rt.sinks.values():
            hint = sink.wait_hint()
            if hint is not None:
                wait = min(wait, hint)
        if self.rt.halted or self.aligner.active:
            return wait * 1000
        for run in self.sources:
            if not run.done:
                hint = run.source.wait_hint()
                if hint is not None:
                    wait = min(wait, hint)
        return max(wait, 0.0) * 1000

    def wait_events(self, poller: Any) -> dict:
        """Poll for input; zmq counts whole milliseconds, so shorter waits (a paced source
        due in 100 us) look once and then sleep just that long."""
        timeout = self.poll_timeout_ms()
        if timeout >= 1.0 or timeout == 0:
            return dict(poller.poll(int(timeout + 0.5)))
        events = dict(poller.poll(0))
        if not events:
            time.sleep(timeout / 1000)
        return events

    def outbox_room(self) -> bool:
        return len(self.driver_out) < OUTBOX_LIMIT * 4 and all(
            len(q) < OUTBOX_LIMIT for q in self.outbox)

    def read_sources(self) -> None:
        rt, ctx = self.rt, self.rt.ctx
        for run in self.sources:
            if run.done:
                continue
            try:
                vals = run.source.read(CHUNK)
            except Exception as e:
                rt.source_error(run.name, None, e, "source")
                run.done = True
                continue
            if vals is None:
                run.done = True
                continue
            if not vals:
                continue
            run.count += len(vals)
            ctx.src, ctx.sender = run.id, self.me
            ctx.ts = ctx.arrived = time.time_ns()
            feed, etf = run.feed, run.event_time
            if etf is None:
                ctx.et = ctx.ts
                ctx.wm = run.wm
                for v in vals:
                    feed(v)
                run.wm = ctx.ts
            else:
                wm = run.wm
                for v in vals:
                    try:
                        et = etf(v)
                        if not isinstance(et, int):
                            raise TypeError(f"event_time must return int nanoseconds, got {et!r}")
                    except Exception as e:
                        rt.source_error(run.name, v, e, "event_time")
                        continue
                    ctx.et, ctx.wm = et, wm
                    feed(v)
                    if et > wm:
                        wm = et
                run.wm = wm
            rt.seal()

    def handle_frames(self) -> None:
        for _ in range(FRAMES_PER_TURN):
            try:
                frame = self.data_in.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            sender, groups = msgpack.unpackb(frame)
            self.recv[sender] += 1
            aligner = self.aligner
            for g in groups:
                if g[0] == GROUP_BARRIER:
                    aligner.on_barrier(sender, g[1], g[2])
                elif aligner.holds(sender, g[1]):  # past the sender's barrier: wait
                    aligner.held.append((sender, g))
                else:
                    self.dispatch(g, sender)
            if aligner.active:
                self.advance_epoch()

    def process_group(self, g: tuple, sender: int = -1) -> None:
        rt, ctx = self.rt, self.rt.ctx
        _, sid, src, ts, ets, wms, payload = g
        vals = pickle.loads(payload)
        ctx.src, ctx.ts, ctx.arrived, ctx.sender = src, ts, time.time_ns(), sender
        feed = self.remote[sid]
        if ets is None and wms is None:
            ctx.et = ts
            for v in vals:
                feed(v)
        else:
            ets = ets or [ts] * len(vals)
            wms = wms or [NEG_INF] * len(vals)
            for v, e, m in zip(vals, ets, wms):
                ctx.et, ctx.wm = e, m
                feed(v)
        rt.seal()

    # -- watermarks -------------------------------------------------------------------

    def on_marker(self, step: int, src: int, channel: int, wm: float) -> None:
        """A watermark heard for ``step`` from ``src`` on ``channel``."""
        table = self.rt.wm_tables.get(step)
        if table is None:
            return
        before = table.current
        new = table.observe(src, channel, wm)
        runner = self.rt.windows.get(step)
        if new is not None and runner is not None:
            self.rt.stamp_internal(src)
            self.rt.emit_window_outputs(self.rt.plan.steps[step], advance(runner, new), before)
            self.rt.seal()

    def mark(self, step: int, src: int, wm: float) -> None:
        for p in range(self.n):
            if p != self.me:
                self.rt.out_groups[p].append((GROUP_WATERMARK, step, src, wm))
        self.on_marker(step, src, self.me, wm)

    def advance_watermarks(self) -> None:
        """Markers from local sources, then forwarded along keyed steps (between chunks)."""
        now = time.monotonic()
        for run in self.sources:
            steps = self.wm_direct.get(run.id)
            if not steps:
                continue
            if run.done:
                wm = math.inf
            elif run.event_time is None:
                wm = time.time_ns()  # every later read is stamped later than now
            else:
                wm = run.wm
            if wm != math.inf and now - run.marked_at < MARKER_INTERVAL_S:
                continue
            run.marked_at = now
            for step in steps:
                if wm > run.marked.get(step, NEG_INF):
                    run.marked[step] = wm
                    self.mark(step, run.id, wm)
        for sid, down in self.wm_down.items():
            for src, wm in self.rt.wm_tables[sid].by_source.items():
                if wm > self.forwarded.get((sid, src), NEG_INF):
                    self.forwarded[(sid, src)] = wm
                    for d in down:
                        self.mark(d, src, wm)

    def flush(self) -> None:
        """Frame what seal() produced and hand it to zmq without blocking.

        While a peer (or the driver) is slow, what waits is coalesced into the frame
        already waiting: under pressure batches grow instead of frames piling up."""
        rt = self.rt
        for w, groups in enumerate(rt.out_groups):
            if groups:
                q = self.outbox[w]
                if q and len(q[-1]) + len(groups) <= GROUPS_PER_FRAME:
                    q[-1].extend(groups)
                else:
                    q.append(groups)
                rt.out_groups[w] = []
        if rt.out_results:
            out = self.driver_out
            last = out[-1] if out and isinstance(out[-1], ResultsMessage) else None
            for sid, payload, n in rt.out_results:
                if last is None or last.full:
                    last = ResultsMessage()
                    out.append(last)
                last.add(sid, n, payload)
            rt.out_results = []
        if rt.errors:
            self.driver_out.append([b"errors", pickle.dumps(rt.errors)])
            rt.errors = []
        for w, q in enumerate(self.outbox):
            sock = self.peers[w]
            while q:
                try:
                    sock.send(msgpack.packb([self.me, q[0]]), NOBLOCK)
                except zmq.Again:
                    break
                q.popleft()
                self.sent[w] += 1
        q = self.driver_out
        while q:
            item = q[0]
            is_results = isinstance(item, ResultsMessage)
            try:
                send_frames(self.ctl, item.frames() if is_results else item)
            except zmq.Again:
                break
            q.popleft()
            if is_results:
                self.results_sent += 1

    def flush_sinks(self) -> None:
        for sink in self.rt.sinks.values():
            hint = sink.wait_hint()
            if hint is not None and hint <= 0:
                try:
                    sink.flush()
                except Exception as e:
                    self.rt.source_error(type(sink).__name__, None, e, "sink flush")

    def collect_connector_errors(self) -> None:
        """Connectors keep their own error logs and counters; bring them to the driver."""
        rt = self.rt
        for name, conn in self.connectors:
            for e in conn.drain_errors():
                rt.connector_error(name, e)
            stats = conn.stats()
            seen = self.reported_stats.setdefault(name, {})
            for key, value in stats.items():
                if isinstance(value, int) and value != seen.get(key, 0):
                    rt.recorder.count("pipeline", name, key, value - seen.get(key, 0))
                    seen[key] = value

    # -- checkpoints --------------------------------------------------------------------

    def begin_epoch(self, epoch: int) -> None:
        """The barrier enters here: sources stop at this chunk boundary."""
        self.epoch_positions = {r.id: (r.source.position(), r.done, r.wm) for r in self.sources}
        self.aligner.begin(epoch)
        self.advance_epoch()

    def advance_epoch(self) -> None:
        aligner = self.aligner
        for step in aligner.advance():
            for p in aligner.peers:
                self.rt.out_groups[p].append((GROUP_BARRIER, step, aligner.epoch))
        if aligner.complete:
            epoch = aligner.epoch
            ack = self.snapshot(epoch)
            self.flush()  # outputs of the epoch go to the driver before its ack
            self.driver_out.append([b"ack", pickle.dumps(ack)])
            self.release(aligner.finish())

    def release(self, held: list) -> None:
        for sender, g in held:
            self.dispatch(g, sender)

    def dispatch(self, g: tuple, sender: int) -> None:
        """A data group or a watermark marker from ``sender``, no longer held back."""
        if g[0] == GROUP_DATA:
            self.process_group(g, sender)
        else:
            self.on_marker(g[1], g[2], sender, g[3])

    def snapshot(self, epoch: int) -> dict:
        """Write this worker's state, by step and slot, for ``epoch``; return the ack."""
        rt = self.rt
        state: dict = {}
        for sid, states in rt.states.items():
            state[rt.plan.steps[sid].name] = self._by_slot(
                (k, plain_state(v)) for k, v in states.items())
        for sid, runner in rt.windows.items():
            state[rt.plan.steps[sid].name] = self._by_slot(runner.snapshot().items())
        marks = {rt.plan.steps[sid].name: r.watermark for sid, r in rt.windows.items()}
        sinks = {name: sink.epoch_state(epoch) for name, sink in self.committing_sinks.items()}
        payload = dumps({"epoch": epoch, "worker": self.me, "state": state,
                         "watermarks": marks, "sinks": sinks})
        name = f"epoch-{epoch}-worker-{self.me}.ckpt"
        sha = write_atomic(os.path.join(self.ckpt_dir, name), payload)
        return {"epoch": epoch, "worker": self.me, "file": name, "sha256": sha,
                "bytes": len(payload), "positions": self.epoch_positions}

    def _by_slot(self, items: Any) -> dict:
        cache, miss = self.rt.slot_cache, self.rt.slot_miss
        out: dict = {}
        for k, v in items:
            s = cache.get(k)
            if s is None:
                s = miss(k)
            d = out.get(s)
            if d is None:
                d = out[s] = {}
            d[k] = v
        return out

    def restore(self, r: dict) -> None:
        """Load the state of the slots this worker owns and rewind its sources."""
        rt = self.rt
        by_name = {s.name: s for s in rt.plan.steps}
        for name, sha in r["files"].items():
            data = pickle.loads(read_checked(os.path.join(r["dir"], name), sha))
            for step_name, slots in data["state"].items():
                step = by_name[step_name]
                mine = {}
                for slot, entries in slots.items():
                    if rt.owners[slot] == self.me:
                        mine.update(entries)
                if step.kind == "window":
                    rt.windows[step.id].restore(mine)
                else:
                    cls = step.state_cls
                    rt.states[step.id].update(
                        (k, from_plain_state(cls, f)) for k, f in mine.items())
            if data["worker"] == self.me:
                # keys with nothing open keep no state: the step's own watermark is what
                # stops a replayed message from reopening a window that already fired
                for step_name, wm in data.get("watermarks", {}).items():
                    rt.windows[by_name[step_name].id].on_watermark(wm)
                for sink_name, sink_state in data.get("sinks", {}).items():
                    self.committing_sinks[sink_name].restore(sink_state)
        for run in self.sources:
            pos = r["positions"].get(run.id)
            if pos is not None and run.sp.config.replayable:
                run.source.seek(pos[0])
                run.count = pos[0] if isinstance(pos[0], int) else run.count
                run.wm = pos[2]

    def send_metrics(self) -> None:
        delta = self.rt.metrics_delta()
        if delta["hist"] or delta["events"]:
            self.driver_out.append([b"metrics", msgpack.packb(delta)])

    # -- control -----------------------------------------------------------------------

    def handle_control(self) -> None:
        while True:
            try:
                kind, *rest = self.ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.last_driver = time.monotonic()
            if kind == b"req":
                self.answer(rest)
            elif kind == b"ckpt":
                self.begin_epoch(msgpack.unpackb(rest[0]))
            elif kind == b"commit":
                epoch = msgpack.unpackb(rest[0])
                for sink in self.committing_sinks.values():
                    sink.commit(epoch)
            elif kind == b"abort":
                self.release(self.aligner.abort(msgpack.unpackb(rest[0])))
            elif kind == b"stop":
                self.stopping = True
                return

    def answer(self, rest: list) -> None:
        req_id, op = msgpack.unpackb(rest[0])
        args = pickle.loads(rest[1]) if len(rest) > 1 else {}
        try:
            value = (True, OPS[op](self, **args))
        except Exception as e:
            value = (False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        self.flush()  # results produced so far go out before the reply (FIFO on ctl)
        try:
            payload = pickle.dumps(value)
        except Exception:
            payload = dumps_by_value(value)
        self.driver_out.append([b"reply", msgpack.packb(req_id), payload])
        self.flush()

    def check_parent(self) -> None:
        if os.getppid() != self.ppid:
            os._exit(3)  # the driver died: never outlive it
        if hasattr(self, "rt") and time.monotonic() - self.last_driver > DRIVER_SILENCE_S:
            os._exit(4)

    def shutdown(self) -> None:
        rt = getattr(self, "rt", None)
        if rt is not None:
            for run in self.sources:
                _quietly(run.source.close)
            for sink in rt.sinks.values():
                _quietly(sink.flush)
                _quietly(sink.close)
            self.collect_connector_errors()
            self.send_metrics()
            self.flush()
            deadline = time.monotonic() + 2.0
            while (self.driver_out or any(self.outbox)) and time.monotonic() < deadline:
                time.sleep(0.005)
                self.flush()
        self.ctl.send_multipart([b"bye"])


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception:
        traceback.print_exc()


def main(argv: list | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--driver", required=True)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--ident", help="socket identity (worker id and generation)")
    p.add_argument("--wallaroo-alias", action="store_true",
                   help="make `import wallaroo` resolve to wallaroo_nb (running Wallaroo apps)")
    a = p.parse_args(argv)
    if a.wallaroo_alias:
        from ..compat import install_alias

        install_alias()
    w = Worker(a.driver, a.id, a.ident or f"w{a.id}")
    try:
        w.run()
    except SystemExit:
        raise
    except BaseException:
        tb = traceback.format_exc()
        try:
            w.ctl.send_multipart([b"crash", tb.encode()])
        finally:
            sys.stderr.write(tb)
            os._exit(2)


if __name__ == "__main__":
    main()
