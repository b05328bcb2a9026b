"""A worker's transport: its data-plane sockets to the peers and its control socket
to the driver, with outboxes that never block.

Sends never block (a blocked peer must not deadlock two workers sending to each
other): frames wait in a per-peer outbox, and ``room()`` says when the worker
should pause its sources because an outbox is long. While a peer (or the
driver) is slow, what waits is coalesced into the frame already waiting: under
pressure batches grow instead of frames piling up.
"""

from __future__ import annotations

from collections import deque
from typing import Iterator, Optional

import zmq

from .. import security
from ..protocol import Kind, encode, pack_frame, results_frames, unpack_frame
from .core import Output

OUTBOX_LIMIT = 8  # frames waiting for one peer before sources pause
GROUPS_PER_FRAME = 16  # batches coalesced into one waiting frame, at most
HWM = 16  # zmq high-water mark, in frames, on every data and control socket
# pyzmq's flags are enums: `SNDMORE | NOBLOCK` per frame in send_multipart costs ~2 µs
# a message in Python; plain ints don't
NOBLOCK = int(zmq.NOBLOCK)
MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


class ResultsMessage:
    """Output batches for the driver's sinks, sent as one message (protocol.results_frames)."""

    __slots__ = ("heads", "payloads")

    def __init__(self) -> None:
        self.heads: list = []
        self.payloads: list = []

    @property
    def full(self) -> bool:
        return len(self.payloads) >= GROUPS_PER_FRAME

    def add(self, sid: int, n: int, payload: bytes, origin: int) -> None:
        self.heads.append((sid, n, origin))
        self.payloads.append(payload)

    def frames(self) -> list:
        return results_frames(self.heads, self.payloads)


def send_frames(sock: zmq.Socket, frames: list) -> None:
    """``sock.send_multipart(frames, zmq.NOBLOCK)`` at a third of the cost, frame by frame
    as pyzmq does; zmq.Again comes from the first frame (the high-water mark counts
    whole messages)."""
    for f in frames[:-1]:
        sock.send(f, MORE_NOBLOCK)
    sock.send(frames[-1], NOBLOCK)


class Transport:
    """The data plane (a PULL bound here, a PUSH to every peer) and the queue of
    messages for the driver, with the counters termination detection reads."""

    def __init__(self, zctx: zmq.Context, ctl: zmq.Socket, me: int, bind: str,
                 keys: Optional[security.Keys] = None):
        self.zctx = zctx
        self.me = me
        self.ctl = ctl
        self.keys = keys  # the app's CurveZMQ keys on a cluster (security.py), else None
        self.data_in = zctx.socket(zmq.PULL)
        self.data_in.setsockopt(zmq.RCVHWM, HWM)
        security.server(self.data_in, keys)
        self.data_in.bind(bind)
        self.address = self.data_in.getsockopt(zmq.LAST_ENDPOINT).decode()  # port 0 resolved
        self.addrs: list = []
        self.peers: list = []
        self.outbox: list = []
        self.driver_out: deque = deque()
        self.sent: list = []  # frames sent to each peer
        self.recv: list = []  # frames received from each peer
        self.results_sent = 0
        self.era = 0  # frames of another era are dropped (a rollback began a new one)

    def reset(self, era: int) -> None:
        """A rollback: what waits to be sent belongs to the void era; counters restart."""
        self.era = era
        for q in self.outbox:
            q.clear()
        self.driver_out.clear()
        self.sent = [0] * len(self.sent)
        self.recv = [0] * len(self.recv)
        self.results_sent = 0

    def set_peers(self, addrs: list) -> None:
        """Connect to the peers' data sockets (``addrs``: worker id -> address, None for
        none); sockets to peers that went or moved are closed, counters kept."""
        n = len(addrs)
        self.peers += [None] * (n - len(self.peers))
        self.outbox += [deque() for _ in range(n - len(self.outbox))]
        self.sent += [0] * (n - len(self.sent))
        self.recv += [0] * (n - len(self.recv))
        self.addrs += [None] * (n - len(self.addrs))
        for w in range(len(self.peers)):
            addr = addrs[w] if w < n and w != self.me else None
            if addr == self.addrs[w]:
                continue
            if self.peers[w] is not None:
                self.peers[w].close(0)
                self.peers[w] = None
                self.outbox[w].clear()
            if addr is not None:
                self.peers[w] = self._push(addr)
            self.addrs[w] = addr

    def _push(self, addr: str) -> zmq.Socket:
        s = self.zctx.socket(zmq.PUSH)
        s.setsockopt(zmq.SNDHWM, HWM)
        s.setsockopt(zmq.LINGER, 2000)
        # a peer may not have bound yet: retry in 10 ms, not zmq's default 100 ms
        s.setsockopt(zmq.RECONNECT_IVL, 10)
        security.client(s, self.keys)
        s.connect(addr)
        return s

    def room(self) -> bool:
        """False while an outbox is long: the worker's sources pause."""
        return len(self.driver_out) < OUTBOX_LIMIT * 4 and all(
            len(q) < OUTBOX_LIMIT for q in self.outbox)

    @property
    def busy(self) -> bool:
        """Something is still waiting to be sent."""
        return bool(self.driver_out) or any(self.outbox)

    def queue(self, out: Output) -> None:
        """Queue the core's groups for the peers and its results and errors for the driver."""
        for w, groups in enumerate(out.groups):
            if groups:
                q = self.outbox[w]
                if q and len(q[-1]) + len(groups) <= GROUPS_PER_FRAME:
                    q[-1].extend(groups)
                else:
                    q.append(groups)
        if out.results:
            dq = self.driver_out
            last = dq[-1] if dq and isinstance(dq[-1], ResultsMessage) else None
            for sid, payload, n, origin in out.results:
                if last is None or last.full:
                    last = ResultsMessage()
                    dq.append(last)
                last.add(sid, n, payload, origin)
        if out.errors:
            self.driver_out.append(encode(Kind.ERRORS, out.errors))

    def to_driver(self, frames: list) -> None:
        self.driver_out.append(frames)

    def send(self) -> None:
        """Send what zmq takes now; the rest waits for the next call."""
        for w, q in enumerate(self.outbox):
            sock = self.peers[w]
            while q and sock is not None:
                try:
                    sock.send(pack_frame(self.era, self.me, q[0]), NOBLOCK)
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

    def frames(self, limit: int) -> Iterator[tuple]:
        """Up to ``limit`` (sender, groups) frames from the peers, as far as they are here."""
        for _ in range(limit):
            try:
                frame = self.data_in.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            era, sender, groups = unpack_frame(frame)
            if era != self.era:
                continue  # sent before a rollback: void
            if sender >= len(self.recv):  # a joining peer, before the PEERS that names it
                self.recv += [0] * (sender + 1 - len(self.recv))
            self.recv[sender] += 1
            yield sender, groups
