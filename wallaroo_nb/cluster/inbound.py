"""What the driver does with what workers send (mixed into driver.Driver): results
to the sinks (held for their commit under resilience), errors, metrics, replies,
acks, heartbeats, hellos and READYs. ``_dispatch`` fences out messages of replaced
generations and of workers rolling back, whichever socket they came on.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, Optional

from ..errors import StepTimeout, error_record
from ..protocol import Busy, Kind, MetricsDelta, Peers, Ready, Reply, decode, encode
from .checkpoints import describe
from .epochs import ERRORS, METRICS, RESULTS


class Inbound:
    """The handlers of driver.Driver for what workers send."""

    n: int
    plan: Any
    opts: Any
    cb: Any
    procs: Any
    epochs: Any
    scaler: Any
    requests: Any
    ready: Any
    rolling: set
    resilient: bool
    failure: Any
    generation: int
    data_addrs: list
    results_received: list
    visible: Any
    recovery_started: float

    def _dispatch(self, ident: bytes, kind: bytes, rest: list) -> None:
        w, gen = self.procs.parse_ident(ident)
        if not self.procs.current(w, gen):
            return  # a message from a worker of a generation already replaced
        if w in self.rolling and kind not in _DURING_ROLLBACK:
            return  # sent before it rolled back: of a void era
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
    Kind.HELLO: Inbound._on_hello,
    Kind.READY: Inbound._on_ready,
    Kind.RESULTS: Inbound._on_results,
    Kind.ERRORS: Inbound._on_errors,
    Kind.METRICS: Inbound._on_metrics,
    Kind.REPLY: Inbound._on_reply,
    Kind.CRASH: Inbound._on_crash,
    Kind.ACK: Inbound._on_ack,
    Kind.HEARTBEAT: Inbound._on_heartbeat,
}

_DURING_ROLLBACK = (Kind.READY, Kind.HEARTBEAT, Kind.CRASH, Kind.BYE)
