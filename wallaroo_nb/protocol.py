"""Every message between the driver and its workers, and between workers.

Control plane (a worker's DEALER to the driver's ROUTER): a message is
``[kind, body...]``, ``kind`` one of :class:`Kind`; bodies are the typed
records below, pickled (the start record with cloudpickle: it carries user
code). Results and metrics keep compact bodies of their own (msgpack heads,
pickled batches) because they are frequent. Both sides encode and decode here
only; nothing crosses a process boundary as a loose dict.

Data plane (worker PUSH -> worker PULL): one frame is msgpack
``[sender, [group, ...]]`` with the group shapes given by ``GROUP_*``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Optional

import cloudpickle
import msgpack

from .errors import ErrorRecord

# -- data plane groups -------------------------------------------------------------
# (0, step, source, ingest ts, origin ts, event times | None, watermarks | None,
#  weights | None, pickled values): the per-value lists only where they vary
GROUP_DATA = 0
GROUP_BARRIER = 1  # (1, step, epoch)
GROUP_WATERMARK = 2  # (2, step, source, watermark ns)


def pack_frame(era: int, sender: int, groups: list) -> bytes:
    return msgpack.packb([era, sender, groups])


def unpack_frame(frame: bytes) -> tuple:
    """(era, sender, groups) of a data-plane frame; a frame of an era before a
    rollback is dropped by its receiver."""
    return msgpack.unpackb(frame)


class Kind:
    """Control-plane message kinds (the first frame of every message)."""

    # worker -> driver
    HELLO = b"hello"  # Hello: a worker started and asks for its plan
    READY = b"ready"  # Ready: set up (its data socket bound), waiting for GO
    RESULTS = b"results"  # msgpack [[sink step, count, origin], ...], then a pickled batch each
    ERRORS = b"errors"  # [ErrorRecord, ...]
    METRICS = b"metrics"  # MetricsDelta
    REPLY = b"reply"  # Reply to a Request
    ACK = b"ack"  # EpochAck: this worker's snapshot of an epoch is on disk
    CRASH = b"crash"  # the worker's engine raised: a traceback (utf-8)
    HEARTBEAT = b"beat"  # Busy, from the worker's watchdog thread every second
    BYE = b"bye"  # the worker is exiting after STOP
    # driver -> worker
    START = b"start"  # Start
    PEERS = b"peers"  # Peers: where every worker's data socket is (before GO, and on change)
    GO = b"go"  # every worker is ready: begin
    STOP = b"stop"  # drain, close connectors, exit
    PING = b"ping"  # the driver lives
    REQUEST = b"req"  # Request
    CHECKPOINT = b"ckpt"  # Barrier: begin an epoch
    COMMIT = b"commit"  # an epoch is committed: msgpack epoch
    ABORT = b"abort"  # an epoch is given up: msgpack epoch
    ADOPT = b"adopt"  # Adopt: a rescaling epoch is done everywhere: take the new table
    ROLLBACK = b"rollback"  # Rollback: a peer died; go back to the last committed epoch


@dataclass(frozen=True)
class Hello:
    pid: int
    host: str = ""  # where the engine binds (its Dask worker's host); "" on this machine
    dask_worker: str = ""  # the address of the Dask worker whose task started it, if any


@dataclass(frozen=True)
class Ready:
    data_addr: str  # where this worker's data socket is bound (peers connect there)


@dataclass(frozen=True)
class Peers:
    addrs: list  # worker id -> its data address (None: no such worker)


@dataclass(frozen=True)
class Restore:
    """Where a restarted worker finds the committed epoch it resumes from."""

    dir: str
    epoch: int
    files: dict  # snapshot file name -> SHA-256 hex
    positions: dict  # source id -> SourcePosition


@dataclass(frozen=True)
class Start:
    """Everything a worker needs to run: the plan (with user code) and its place."""

    plan: Any  # plan.Plan (sources it does not run have config None)
    workers: int
    assign: dict  # source id -> the workers that run it (Plan.source_workers)
    owners: list  # slot -> worker
    data_bind: str  # where to bind this worker's data socket (tcp port 0: any)
    era: int = 0  # data frames of an older era are dropped (see Rollback)
    resilience: bool = False  # checkpoints (else checkpoint_dir only serves rescaling)
    on_error: str = "record"
    metrics: bool = True
    checkpoint_dir: Optional[str] = None
    restore: Optional[Restore] = None
    driver_stream: Optional[str] = None  # unix://: send to the driver there (else on ctl)


class SourcePosition(NamedTuple):
    """A source's replay point at a barrier: where to seek, and what it had seen."""

    position: Any
    done: bool
    watermark: float


class Trigger(NamedTuple):
    """A "close window" of ``app.trigger`` under resilience: applied at a barrier."""

    id: int
    step: str
    key: Any  # None: every key


class Rescale(NamedTuple):
    """What a rescaling barrier changes (applied at ADOPT): workers, slots, sources."""

    workers: int  # workers after the change (ids 0 .. workers - 1)
    owners: list  # the new slot table: slot -> worker
    version: int  # the table's version (one more than the last)
    assign: dict  # source id -> the workers that run it after the change


class Barrier(NamedTuple):
    """Begin checkpoint ``epoch``; at its aligned barrier apply ``triggers``; ``final``:
    read no more from the sources after it (the app is stopping); ``rescale``: the
    epoch ends with a change of workers (see Adopt)."""

    epoch: int
    triggers: list  # [Trigger, ...]
    final: bool = False
    rescale: Optional[Rescale] = None


@dataclass(frozen=True)
class Adopt:
    """Every worker has written its state at a rescaling epoch's barrier: load the slots
    now yours from these files, drop those that left, open the sources you gain."""

    epoch: int
    dir: str
    files: dict  # snapshot file name -> SHA-256 hex
    positions: dict  # source id -> SourcePosition at the barrier
    sources: dict = field(default_factory=dict)  # id -> SourcePlan of sources that move


@dataclass(frozen=True)
class Rollback:
    """A peer died: start era ``era`` from the committed epoch in ``restore``."""

    era: int
    restore: Any  # Restore
    workers: int
    owners: list
    assign: dict


@dataclass(frozen=True)
class EpochAck:
    epoch: int
    worker: int
    file: str
    sha256: str
    bytes: int
    positions: dict  # source id -> SourcePosition
    fired: dict = field(default_factory=dict)  # trigger id -> windows it closed here


@dataclass(frozen=True)
class Request:
    req_id: int
    op: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    req_id: int
    ok: bool
    value: Any  # the op's value, or the error text when not ok


class SourceStatus(NamedTuple):
    done: bool
    count: int  # messages read so far


@dataclass(frozen=True)
class Status:
    """One worker's counters, for ``wait()`` (termination detection) and ``status()``."""

    worker: int
    sources: dict  # source id -> SourceStatus
    sent: list  # frames sent to each worker
    recv: list  # frames received from each worker
    results_sent: int  # results messages sent to the driver
    idle: bool  # nothing waiting to be sent, no epoch in flight
    halted: bool  # stopped by on_error="stop"
    filtered: dict  # step name -> messages filtered out
    errors: dict  # step name -> errors
    sink_counts: dict  # sink step id -> outputs
    connectors: dict  # connector name -> its stats()


class WorkerInfo(NamedTuple):
    """One row of ``app.workers()``, from the worker."""

    worker: int
    pid: int
    host: str
    slots: int  # slots this worker owns
    keys: int  # keys holding state here (state steps and open windows)
    state_bytes: int  # their size pickled (estimated from a sample)
    events_in: int  # messages read from this worker's sources
    events_out: int  # outputs that reached sinks here


@dataclass(frozen=True)
class Flow:
    """One worker's counts and watermarks for the notebook's live views (``app.flow()``)."""

    worker: int
    sources: dict  # source id -> messages read so far
    sinks: dict  # sink step id -> outputs so far
    watermarks: dict  # window step id -> the step's watermark on this worker (ns)


@dataclass(frozen=True)
class StateRows:
    """``app.state(step)``'s rows from one worker."""

    kind: str  # the step's kind
    rows: list  # state steps: (key, fields); windows: dicts
    worker: int


class Busy(NamedTuple):
    """A heartbeat: the step (and key) one loop turn has been in for ``seconds``;
    an empty step with 0 seconds when the loop turns freely."""

    step: str
    key: str
    seconds: float


class MetricsDelta(NamedTuple):
    """What a worker measured since its last delta (see metrics/recorder.py)."""

    hist: list
    events: list


@dataclass(frozen=True)
class DriverSink:
    """What workers see of a sink that lives in the driver: just that it does."""

    name: str
    to_driver: bool = True


def worker_plan(plan: Any, w: int, assign: dict) -> Any:
    """The plan as worker ``w`` gets it: configs only of the sources it runs, and
    stand-ins for the driver's sinks (a callback may hold locks: it stays home)."""
    sources = tuple(sp if w in assign[sp.id] else replace(sp, config=None) for sp in plan.sources)
    steps = tuple(replace(st, sink=DriverSink(st.sink.name))
                  if st.is_sink and st.sink.to_driver else st for st in plan.steps)
    return replace(plan, sources=sources, steps=steps)


# -- encoding ------------------------------------------------------------------


def encode(kind: bytes, record: Any = None) -> list:
    """The frames of one control message."""
    if record is None:
        return [kind]
    if kind == Kind.START:
        return [kind, cloudpickle.dumps(record)]
    if kind == Kind.CHECKPOINT:
        rs = record.rescale
        rescale = None if rs is None else [rs.workers, list(rs.owners), rs.version,
                                           [[sid, list(ws)] for sid, ws in rs.assign.items()]]
        return [kind, msgpack.packb([record.epoch, [list(t) for t in record.triggers],
                                     record.final, rescale])]
    if kind in (Kind.COMMIT, Kind.ABORT):
        return [kind, msgpack.packb(record)]
    if kind in (Kind.METRICS, Kind.HEARTBEAT):
        return [kind, msgpack.packb(tuple(record))]
    if kind == Kind.CRASH:
        return [kind, record.encode()]
    return [kind, _dumps(record)]


def decode(kind: bytes, rest: list) -> Any:
    """The record of a control message (``rest``: the frames after the kind)."""
    if not rest:
        return None
    if kind == Kind.CHECKPOINT:
        # tuples stay tuples: a trigger's key is compared with the keys the engine holds
        epoch, triggers, final, rs = msgpack.unpackb(rest[0], use_list=False)
        rescale = None if rs is None else Rescale(
            rs[0], list(rs[1]), rs[2], {sid: tuple(ws) for sid, ws in rs[3]})
        return Barrier(epoch, [Trigger(*t) for t in triggers], final, rescale)
    if kind in (Kind.COMMIT, Kind.ABORT):
        return msgpack.unpackb(rest[0])
    if kind == Kind.METRICS:
        return MetricsDelta(*msgpack.unpackb(rest[0]))
    if kind == Kind.HEARTBEAT:
        return Busy(*msgpack.unpackb(rest[0]))
    if kind == Kind.CRASH:
        return rest[0].decode(errors="replace")
    if kind == Kind.RESULTS:
        return msgpack.unpackb(rest[0]), rest[1:]
    return pickle.loads(rest[0])


def _dumps(record: Any) -> bytes:
    """Pickle a record; values from notebook cells need cloudpickle's by-value form."""
    try:
        return pickle.dumps(record, 5)
    except Exception:
        from .engine.codec import dumps_by_value

        return dumps_by_value(record)


def results_frames(heads: list, payloads: list) -> list:
    """A results message: batches for the driver's sinks (pickled by the engine)."""
    return [Kind.RESULTS, msgpack.packb(heads), *payloads]


__all__ = [
    "WorkerInfo", "Adopt", "Barrier", "Busy", "Rescale", "Rollback", "DriverSink", "Peers", "Ready", "EpochAck", "Flow", "Trigger", "ErrorRecord", "GROUP_BARRIER", "GROUP_DATA", "GROUP_WATERMARK", "Hello",
    "Kind", "MetricsDelta", "Reply", "Request", "Restore", "SourcePosition", "SourceStatus",
    "Start", "StateRows", "Status", "decode", "encode", "pack_frame", "results_frames",
    "unpack_frame", "worker_plan",
]
