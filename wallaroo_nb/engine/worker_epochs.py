"""The worker shell's part in checkpoints and rescaling (mixed into worker.Worker).

A barrier enters between two chunks (``begin_epoch``); once every barrier of the
epoch is aligned the worker writes its snapshot and acknowledges it
(``complete_epoch``). A checkpoint then goes on at once; a rescaling epoch waits for
the driver's ADOPT (``adopt``: see rescale.py). After a peer died the driver sends
ROLLBACK (``rollback``): the worker goes back to the last committed epoch in place.
"""

from __future__ import annotations

import os
import pickle
from typing import TYPE_CHECKING, Any, Optional

import zmq

from ..connectors.base import open_source
from ..protocol import Adopt, Barrier, EpochAck, Kind, Ready, Rollback, Start, encode
from . import rescale, snapshots
from .core import Core
from .epochs import read_checked, write_atomic

if TYPE_CHECKING:  # the attributes worker.Worker gives its mixin
    from .endpoints import Endpoints
    from .transport import Transport


class WorkerEpochs:
    """Barriers, snapshots, ADOPT and ROLLBACK for worker.Worker."""

    me: int
    n: int
    core: Core
    io: "Endpoints"
    net: "Transport"
    ckpt_dir: Optional[str]
    barrier: Optional[Barrier]
    draining: bool
    applied: set
    acked: Optional[int]  # the epoch acknowledged and not finished yet (rescaling: ADOPT)
    start: Start
    ctl: Any
    poller: Any

    def flush(self) -> None: ...
    def send_metrics(self) -> None: ...
    def wait_go(self) -> None: ...

    def begin_epoch(self, barrier: Barrier) -> None:
        """The barrier enters here: sources stop at this chunk boundary (for good if it
        is the final one of a stopping app)."""
        positions = self.io.positions(barrier.epoch)
        self.barrier = barrier
        self.draining = self.draining or barrier.final
        if barrier.rescale is not None:
            rescale.prepare(self.core, barrier.rescale)
        self.core.begin_epoch(barrier.epoch, positions)
        self.check_epoch()

    def check_epoch(self) -> None:
        if self.core.epoch_ready and self.acked != self.core.aligner.epoch:
            self.complete_epoch()

    def complete_epoch(self) -> None:
        """Every barrier is aligned: snapshot, acknowledge, then go on with what was held
        (a rescaling epoch goes on at ADOPT)."""
        core = self.core
        epoch = core.aligner.epoch
        # "close window" clicks of this epoch, at the same cut on every worker
        fired = {t.id: core.trigger(t.step, t.key) for t in self.barrier.triggers
                 if t.id not in self.applied}
        self.applied.update(fired)
        self.flush()  # outputs of the epoch reach sinks and the driver before the ack
        self.send_metrics()  # and so do its counters: the driver counts them at the commit
        sinks = self.io.sink_states(epoch)
        rs = self.barrier.rescale
        moving = None  # without checkpoints a rescaling writes only the slots that leave
        if rs is not None and not self.start.resilience:
            moving = {s for s, (a, b) in enumerate(zip(core.rt.owners, rs.owners))
                      if a == self.me and b != self.me}
        payload = snapshots.snapshot(core, epoch, sinks, sorted(self.applied), moving)
        name = f"epoch-{epoch}-worker-{self.me}.ckpt"
        sha = write_atomic(os.path.join(self.ckpt_dir, name), payload)
        ack = EpochAck(epoch, self.me, name, sha, len(payload), core.epoch_positions, fired)
        self.net.to_driver(encode(Kind.ACK, ack))
        if self.barrier.rescale is None:
            core.finish_epoch()
        else:
            self.acked = epoch

    def adopt(self, a: Adopt) -> None:
        """The rescaling epoch is written everywhere: take the new table and go on."""
        rs = self.barrier.rescale
        datas = [pickle.loads(read_checked(os.path.join(a.dir, f), sha))
                 for f, sha in sorted(a.files.items())]
        opened, closed = rescale.adopt(self.core, rs, datas, a.positions, a.sources)
        for sid in closed:
            self.io.close_source(sid)
        for sid in opened:
            sp = a.sources.get(sid) or self.core.plan.sources[sid]
            src = open_source(sp.config, self.me, rs.assign[sid], self.io.checkpoints)
            self.io.add_source(sid, src, self.core)
            for fd in src.fds():
                self.poller.register(fd, zmq.POLLIN)
            pos = a.positions.get(sid)
            if pos is not None and sp.config.replayable:
                self.io.seek({sid: pos[0]})
        self.n = rs.workers
        self.acked = None
        self.core.finish_epoch()

    def restore(self, r: Any) -> None:
        """Load the slots this worker owns from every snapshot of the epoch; rewind. The
        shell state (sinks, applied triggers) of a worker that is no more (fewer workers
        now) goes to the worker its id wraps to."""
        core = self.core
        datas = [pickle.loads(read_checked(os.path.join(r.dir, name), sha))
                 for name, sha in sorted(r.files.items())]
        for data in datas:
            snapshots.load_slots(core, data)
        snapshots.apply_watermarks(core, datas)
        for data in datas:
            w = data["worker"]
            if w == self.me or (w >= self.n and w % self.n == self.me):
                shell = snapshots.shell_state(data)
                self.io.restore_sinks(shell["sinks"])
            self.applied.update(snapshots.shell_state(data)["triggers"])
        self.io.seek(snapshots.rewind(core, r.positions))

    def rollback(self, rb: Rollback) -> None:
        """A peer died: everything since the committed epoch is void. Start over from it
        in place with a fresh core, keeping sockets and connectors (the sources seek back,
        exactly-once sinks take the epoch's state), then wait for PEERS and GO."""
        start = self.start
        self.n = rb.workers
        self.core = Core(start.plan if self.core is None else self.core.plan, self.me,
                         rb.workers, rb.assign, list(rb.owners), start.on_error, start.metrics)
        self.io.uncommitted.clear()
        self.applied, self.acked, self.barrier, self.draining = set(), None, None, False
        self.restore(rb.restore)
        self.net.reset(rb.era)
        self.net.send_now(encode(Kind.READY, Ready(self.net.address)))
        self.wait_go()
