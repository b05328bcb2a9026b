"""The driver's requests a worker answers between two chunks: status, state,
trigger (close event windows) and update (hot reload). Each takes the worker
shell and the request's keyword arguments and returns a protocol record or
plain, picklable data."""

from __future__ import annotations

import os
import pickle
import socket
from typing import Any, Protocol

from ..protocol import SourceStatus, StateRows, Status, WorkerInfo
from .codec import SAMPLE, estimate_bytes
from .core import Core
from .transport import Transport


class Worker(Protocol):
    """What the ops read of the worker shell (worker.Worker)."""

    me: int
    core: Core
    net: Transport
    io: Any  # endpoints.Endpoints
    watchdog: Any  # watchdog.Watchdog

    def collect_connector_errors(self) -> None: ...


def op_status(w: Worker) -> Status:
    w.collect_connector_errors()  # so that a drained app has every error at the driver
    core = w.core
    rt = core.rt
    names = [s.name for s in core.plan.steps]
    return Status(
        worker=w.me,
        sources={sid: SourceStatus(st.done, st.count) for sid, st in core.sources.items()},
        sent=list(w.net.sent),
        recv=list(w.net.recv),
        results_sent=w.net.results_sent,
        idle=not (w.net.busy or core.aligner.busy or core.has_output),
        halted=rt.halted,
        filtered={names[i]: n for i, n in enumerate(rt.filtered) if n},
        errors={names[i]: n for i, n in enumerate(rt.error_counts) if n},
        sink_counts=dict(rt.sink_counts),
        connectors=w.io.stats(),
    )


def op_info(w: Worker) -> WorkerInfo:
    """This worker's row of app.workers()."""
    core = w.core
    rt = core.rt
    keys = sum(len(s) for s in rt.states.values()) + sum(len(r.keys()) for r in rt.windows.values())
    size = sum(estimate_bytes(s) for s in rt.states.values())
    size += sum(estimate_bytes(r.snapshot(r.keys()[:SAMPLE]), as_plain=False)
                * max(1, len(r.keys())) // max(1, min(SAMPLE, len(r.keys())))
                for r in rt.windows.values() if r.keys())
    return WorkerInfo(w.me, os.getpid(), socket.gethostname(), rt.owners.count(w.me), keys, size,
                      sum(st.count for st in core.sources.values()), sum(rt.sink_counts.values()))


def op_state(w: Worker, step: str) -> StateRows:
    return w.core.state_rows(step)


def op_trigger(w: Worker, step: str, key: Any = None) -> int:
    return w.core.trigger(step, key)


def op_update(w: Worker, step: str, fn: bytes) -> str:
    """Hot reload: swap a step's function between two chunks; state stays as it is."""
    name = w.core.update(step, pickle.loads(fn))  # cloudpickle's output loads with pickle
    w.watchdog.watch(w.core.plan)  # the watchdog names the new function's step too
    return name


OPS = {"status": op_status, "state": op_state, "trigger": op_trigger, "update": op_update,
       "info": op_info}
