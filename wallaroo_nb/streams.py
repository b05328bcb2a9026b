"""Messages over Unix stream sockets: how processes on one machine send data to each
other (worker -> worker frames; worker -> driver results, metrics, acks and replies).

A ZeroMQ message between two processes passes through both processes' zmq I/O
threads: three thread wake-ups, about 45 us a hop at 10,000 messages/s on a 2-core
machine. A write to a Unix socket wakes the reading thread itself: about 4 us
(``bench/latency.py`` prints both hops). ZeroMQ stays where its features count:
the driver's control messages and everything between machines (tcp://, CurveZMQ).

Wire format: every message is a list of byte strings, sent as ``<I size><H count>``,
``<I len>`` per part, then the parts. The first message on a connection is the
sender's name. Sends never block: what the kernel does not take now waits in the
connection (``Outgoing.pending``) and the next message is refused until it is out,
as a full zmq socket refuses with EAGAIN; the caller keeps that message and retries.
"""

from __future__ import annotations

import os
import socket
import struct
from collections import deque
from typing import Iterator, Optional

SCHEME = "unix://"
HEAD = struct.Struct("<IH")  # size of what follows, number of parts
ONE = struct.Struct("<IHI")  # the head of a one-part message, with that part's length
READ_BYTES = 1 << 18
POLLIN = 1  # zmq.POLLIN and select.POLLIN alike


def is_stream(addr: Optional[str]) -> bool:
    return bool(addr) and addr.startswith(SCHEME)


def path_of(addr: str) -> str:
    return addr[len(SCHEME):]


def _head(parts: list) -> bytes:
    n = len(parts)
    if n == 1:
        return ONE.pack(6 + len(parts[0]), 1, len(parts[0]))
    lens = [len(p) for p in parts]
    return struct.pack(f"<IH{n}I", 2 + 4 * n + sum(lens), n, *lens)


class Outgoing:
    """One connection to a Listener. ``send`` never blocks; it returns False (and keeps
    nothing) while an earlier message is still partly unsent."""

    __slots__ = ("path", "name", "sock", "backlog", "broken")

    def __init__(self, addr: str, name: bytes):
        self.path, self.name = path_of(addr), name
        self.sock: Optional[socket.socket] = None
        self.backlog: Optional[memoryview] = None
        self.broken = False  # the reader went away: what it would get is void

    def _connect(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.path)
        except OSError:  # not bound yet (a peer starting): the next send tries again
            s.close()
            return False
        s.setblocking(False)
        self.sock = s
        self._write([self.name])
        return True

    @property
    def pending(self) -> bool:
        """Part of a message waits to be sent (``flush`` sends more of it)."""
        return self.backlog is not None

    def send(self, parts: list) -> bool:
        """Queue one message (a list of bytes); False: try again later (nothing taken)."""
        if self.sock is None and (self.broken or not self._connect()):
            return self.broken  # gone: dropped (recovery replays); not yet bound: retry
        if self.backlog is not None and not self.flush():
            return False
        self._write(parts)
        return True

    def _write(self, parts: list) -> None:
        head = _head(parts)
        try:
            sent = self.sock.sendmsg([head, *parts])
        except BlockingIOError:
            sent = 0
        except OSError:  # EPIPE, ECONNRESET: the reader is gone
            return self._break()
        total = len(head) + sum(len(p) for p in parts)
        if sent < total:
            self.backlog = memoryview(b"".join([head, *parts]))[sent:]

    def flush(self) -> bool:
        """Send what waits; True when nothing does."""
        if self.backlog is None:
            return True
        try:
            sent = self.sock.send(self.backlog)
        except BlockingIOError:
            return False
        except OSError:
            self._break()
            return True
        self.backlog = self.backlog[sent:] if sent < len(self.backlog) else None
        return self.backlog is None

    def _break(self) -> None:
        self.broken, self.backlog = True, None
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Incoming:
    """One accepted connection: whole messages as their bytes arrive."""

    __slots__ = ("sock", "fd", "name", "buf", "need")

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.sock, self.fd = sock, sock.fileno()
        self.name: Optional[bytes] = None
        self.buf = bytearray()
        self.need = 0  # bytes in buf before its first message is whole

    def read(self) -> Optional[list]:
        """The messages that are whole now ([] if none); None once the sender is gone."""
        try:
            data = self.sock.recv(READ_BYTES)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        if self.buf:
            self.buf += data
            if len(self.buf) < self.need:
                return []
            data, self.buf = bytes(self.buf), bytearray()
        out: list = []
        off = _split(data, out)
        if off < len(data):
            rest = memoryview(data)[off:]
            self.buf = bytearray(rest)
            self.need = 6 if len(rest) < 6 else 4 + HEAD.unpack_from(rest)[0]
        return out


def _split(data: bytes, out: list) -> int:
    """Append the whole messages at the start of ``data`` to ``out``; where they end."""
    off, end = 0, len(data)
    while end - off >= 6:
        size, n = HEAD.unpack_from(data, off)
        if end - off - 4 < size:
            break
        if n == 1:
            p = off + 10
            out.append([data[p:off + 4 + size]])
        else:
            lens = struct.unpack_from(f"<{n}I", data, off + 6)
            p, parts = off + 6 + 4 * n, []
            for length in lens:
                parts.append(data[p:p + length])
                p += length
            out.append(parts)
        off += 4 + size
    return off


class Listener:
    """A bound Unix socket and what its connections send: (sender name, message), in
    order per sender. Its file descriptors are registered on the pollers it is told to
    ``watch`` (any object with ``register(fd, flags)``/``unregister(fd)``, as zmq.Poller)."""

    def __init__(self, addr: str):
        self.addr = addr
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path_of(addr))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.conns: dict[int, Incoming] = {}
        self.ready: deque = deque()  # (name, message) read but not yet taken
        self.pollers: list = []

    def watch(self, poller: object) -> None:
        """Register this listener and its connections on one more poller."""
        self.pollers.append(poller)
        for fd in (self.fd, *self.conns):
            poller.register(fd, POLLIN)

    def readable(self, events: dict) -> bool:
        """Something to take: buffered messages, or one of our fds in ``events``."""
        if self.ready:
            return True
        return self.fd in events or any(fd in events for fd in self.conns)

    def take(self, limit: int, events: Optional[dict] = None) -> Iterator[tuple]:
        """Up to ``limit`` (sender name, message), as far as they are here; ``events`` (what
        a poll said) spares looking at connections with nothing to read."""
        ready = self.ready
        if len(ready) < limit:
            self._fill(events)
        for _ in range(min(limit, len(ready))):
            yield ready.popleft()

    def _fill(self, events: Optional[dict]) -> None:
        if events is None or self.fd in events:
            self._accept()
        for fd, conn in list(self.conns.items()):
            if events is not None and fd not in events:
                continue
            msgs = conn.read()
            if msgs is None:
                self._drop(conn)
                continue
            if conn.name is None and msgs:
                conn.name = bytes(msgs.pop(0)[0])
            name = conn.name
            for m in msgs:
                self.ready.append((name, m))

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn = Incoming(s)
            self.conns[conn.fd] = conn
            for p in self.pollers:
                p.register(conn.fd, POLLIN)

    def _drop(self, conn: Incoming) -> None:
        for p in self.pollers:
            p.unregister(conn.fd)
        del self.conns[conn.fd]
        conn.sock.close()

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._drop(conn)
        for p in self.pollers:
            p.unregister(self.fd)
        self.sock.close()
        try:
            os.unlink(path_of(self.addr))
        except OSError:
            pass
