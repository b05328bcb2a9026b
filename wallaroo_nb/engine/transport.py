"""A worker's transport: its data-plane sockets to the peers and its way to the
driver, with outboxes that never block.

On one machine both are Unix stream sockets (``streams.py``: a hop costs a tenth of
a zmq one); between machines, ZeroMQ: PUSH/PULL to the peers and the control DEALER
to the driver, with CurveZMQ. The worker sees one interface either way.

Sends never block (a blocked peer must not deadlock two workers sending to each
other): frames wait in a per-peer outbox, and ``room()`` says when the worker
should pause its sources because an outbox is long. While a peer (or the
driver) is slow, what waits is coalesced into the frame already waiting: under
pressure batches grow instead of frames piling up.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Iterator, Optional

import zmq

from .. import security, streams
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


class ZmqOut:
    """A zmq socket with streams.Outgoing's interface: ``send`` is False on EAGAIN."""

    __slots__ = ("sock",)
    pending = False

    def __init__(self, sock: zmq.Socket):
        self.sock = sock

    def send(self, frames: list) -> bool:
        try:
            send_frames(self.sock, frames)
        except zmq.Again:
            return False
        return True

    def flush(self) -> bool:
        return True

    def close(self) -> None:
        self.sock.close(0)


class Transport:
    """The data plane (bound here, a connection to every peer) and the queue of
    messages for the driver, with the counters termination detection reads."""

    def __init__(self, zctx: zmq.Context, ctl: zmq.Socket, me: int, bind: str,
                 keys: Optional[security.Keys] = None, driver_stream: Optional[str] = None,
                 name: bytes = b""):
        self.zctx = zctx
        self.me = me
        self.name = name  # how the driver knows this worker's stream (its zmq identity)
        self.keys = keys  # the app's CurveZMQ keys on a cluster (security.py), else None
        if streams.is_stream(bind):
            self.inbox: Optional[streams.Listener] = streams.Listener(bind)
            self.data_in = None
            self.address = bind
        else:
            self.inbox = None
            self.data_in = zctx.socket(zmq.PULL)
            self.data_in.setsockopt(zmq.RCVHWM, HWM)
            security.server(self.data_in, keys)
            self.data_in.bind(bind)
            self.address = self.data_in.getsockopt(zmq.LAST_ENDPOINT).decode()  # port 0
        self.driver = streams.Outgoing(driver_stream, name) if driver_stream else ZmqOut(ctl)
        self.addrs: list = []
        self.peers: list = []
        self.outbox: list = []
        self.driver_out: deque = deque()
        self.sent: list = []  # frames sent to each peer
        self.recv: list = []  # frames received from each peer
        self.results_sent = 0
        self.era = 0  # frames of another era are dropped (a rollback began a new one)

    def watch(self, poller: zmq.Poller) -> None:
        """Wake ``poller`` when peers' frames arrive."""
        if self.inbox is not None:
            self.inbox.watch(poller)
        else:
            poller.register(self.data_in, zmq.POLLIN)

    def readable(self, events: dict) -> bool:
        """Peers' frames wait (``events``: what the poller said)."""
        if self.inbox is not None:
            return self.inbox.readable(events)
        return self.data_in in events

    @property
    def holding(self) -> bool:
        """Frames already read wait to be taken: poll without waiting."""
        return self.inbox is not None and bool(self.inbox.ready)

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
                self.peers[w].close()
                self.peers[w] = None
                self.outbox[w].clear()
            if addr is not None:
                self.peers[w] = self._push(addr)
            self.addrs[w] = addr

    def _push(self, addr: str) -> Any:
        if streams.is_stream(addr):
            return streams.Outgoing(addr, self.name)
        s = self.zctx.socket(zmq.PUSH)
        s.setsockopt(zmq.SNDHWM, HWM)
        s.setsockopt(zmq.LINGER, 2000)
        # a peer may not have bound yet: retry in 10 ms, not zmq's default 100 ms
        s.setsockopt(zmq.RECONNECT_IVL, 10)
        security.client(s, self.keys)
        s.connect(addr)
        return ZmqOut(s)

    def room(self) -> bool:
        """False while an outbox is long: the worker's sources pause."""
        return len(self.driver_out) < OUTBOX_LIMIT * 4 and all(
            len(q) < OUTBOX_LIMIT for q in self.outbox)

    @property
    def busy(self) -> bool:
        """Something is still waiting to be sent."""
        return bool(self.driver_out) or any(self.outbox) or self.driver.pending or any(
            p is not None and p.pending for p in self.peers)

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
        """Send what the sockets take now; the rest waits for the next call."""
        era, me = self.era, self.me
        for w, q in enumerate(self.outbox):
            out = self.peers[w]
            if out is None:
                continue
            if out.pending:
                out.flush()
            while q:
                if not out.send([pack_frame(era, me, q[0])]):
                    break
                q.popleft()
                self.sent[w] += 1
        q, out = self.driver_out, self.driver
        if out.pending:
            out.flush()
        while q:
            item = q[0]
            is_results = isinstance(item, ResultsMessage)
            if not out.send(item.frames() if is_results else item):
                break
            q.popleft()
            if is_results:
                self.results_sent += 1

    def send_now(self, frames: list, timeout: float = 2.0) -> None:
        """Queue ``frames`` for the driver (after everything else) and send until nothing
        waits, to the driver or to a peer (or ``timeout``)."""
        self.to_driver(frames)
        deadline = time.monotonic() + timeout
        self.send()
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.001)
            self.send()

    def frames(self, limit: int, events: Optional[dict] = None) -> Iterator[tuple]:
        """Up to ``limit`` (sender, groups) frames from the peers, as far as they are here
        (``events``: what the poll said, to look only where something came)."""
        for frame in self._incoming(limit, events):
            era, sender, groups = unpack_frame(frame)
            if era != self.era:
                continue  # sent before a rollback: void
            if sender >= len(self.recv):  # a joining peer, before the PEERS that names it
                self.recv += [0] * (sender + 1 - len(self.recv))
            self.recv[sender] += 1
            yield sender, groups

    def _incoming(self, limit: int, events: Optional[dict]) -> Iterator[bytes]:
        if self.inbox is not None:
            for _name, parts in self.inbox.take(limit, events):
                yield parts[0]
            return
        for _ in range(limit):
            try:
                yield self.data_in.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
