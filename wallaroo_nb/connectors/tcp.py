"""Wallaroo's TCP source: length-framed messages over plain sockets (the sink is in
tcp_sink.py; both are importable from here).

The source listens, accepts many clients at once and turns each complete frame
into one message through the user's decoder. It never blocks and never trusts
its input: an oversized frame, a truncated frame, a client that stalls, or a
decoder that raises costs only the offending connection or message, each one
counted and recorded. A client that sends faster than the application consumes
is simply not read from, so TCP flow control slows it down. It holds at most
``max_clients`` connections; idle ones time out, and at the cap the connection
idle longest gives way to a new one, so idle clients never lock out real ones.
"""

from __future__ import annotations

import logging
import selectors
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any, Callable, Optional

from .base import Source, SourceConfig
from .framing import (
    DEFAULT_HOST,
    DEFAULT_MAX_FRAME,
    ErrorLog,
    FrameError,
    FrameParser,
    decoder_parts,
    length_struct,
    tcp_port,
)
from .tcp_sink import TCPSink, TCPSinkConfig

__all__ = ["TCPSink", "TCPSinkConfig", "TCPSource", "TCPSourceConfig"]

log = logging.getLogger(__name__)

# Counters that stats() always reports, zero until something happens.
_SOURCE_COUNTERS = ("accepted", "closed", "refused", "bytes", "frames", "dropped", "oversize",
                    "truncated", "idle_closed", "evicted", "conn_errors")


# -- source --------------------------------------------------------------------


class TCPSourceConfig(SourceConfig):
    """Listen on ``host:port`` for framed messages; decode each with ``decoder``.

    ``decoder`` is a ``@decoder(header_length, length_fmt)`` object or a plain
    function ``bytes -> message | None`` (then a 4-byte big-endian header).
    ``max_frame`` bounds a payload in bytes; ``idle_timeout`` (seconds, None = never)
    closes a connection that sits that long without completing a frame, such as a
    client that connects and never sends; one quiet between whole frames is kept.
    ``max_clients`` bounds open connections. When a new connection comes at the cap,
    the open connection that has gone longest without completing a frame gives way
    to it (is closed), provided that is at least ``evict_after`` seconds (None: never
    evict); otherwise the new connection is accepted and closed at once (refused).
    ``reuse_port`` lets several workers listen on the same port (Linux SO_REUSEPORT).
    ``valid`` and ``parallelism`` are Wallaroo 0.6 arguments, accepted and ignored.
    """

    bounded = False

    def __init__(
        self,
        name: str,
        host: Optional[str],
        port: Any,
        decoder: Any,
        max_frame: int = DEFAULT_MAX_FRAME,
        event_time: Optional[Callable[[Any], int]] = None,
        idle_timeout: Optional[float] = 30.0,
        max_clients: int = 128,
        evict_after: Optional[float] = 1.0,
        recv_size: int = 65536,
        reuse_port: bool = False,
        valid: bool = True,
        parallelism: Optional[int] = None,
    ) -> None:
        self.name = name
        self.host = host or DEFAULT_HOST
        self.port = port
        self.decoder = decoder
        self.max_frame = max_frame
        self.event_time = event_time
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self.evict_after = evict_after
        self.recv_size = recv_size
        self.reuse_port = reuse_port

    def check(self) -> None:
        """Raise ValueError naming the problem (bad port, decoder or bounds)."""
        where = f"TCPSourceConfig {self.name!r}"
        try:
            tcp_port(self.port)
            _, header_length, length_fmt = decoder_parts(self.decoder)
            length_struct(header_length, length_fmt)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if not (isinstance(self.max_frame, int) and self.max_frame > 0):
            raise ValueError(f"{where}: max_frame must be a positive int, got {self.max_frame!r}")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ValueError(f"{where}: idle_timeout must be > 0 or None")
        if self.evict_after is not None and not self.evict_after >= 0:
            raise ValueError(f"{where}: evict_after must be >= 0 or None")
        if self.max_clients < 1 or self.recv_size < 1:
            raise ValueError(f"{where}: max_clients and recv_size must be >= 1")

    def make_source(self) -> "TCPSource":
        self.check()
        return TCPSource(self)


class _Client:
    """One accepted connection and the bytes read from it but not yet framed."""

    __slots__ = ("sock", "peer", "parser", "stalled_since", "last_frame", "eof", "closed",
                 "received")

    def __init__(self, sock: socket.socket, peer: str, parser: FrameParser, now: float) -> None:
        self.sock = sock
        self.peer = peer
        self.parser = parser
        self.stalled_since: Optional[float] = now  # when the pending partial frame began
        self.last_frame = now  # when it last completed a frame (or connected)
        self.eof = False
        self.closed = False
        # time.time_ns() when the bytes at the head of the parser's buffer came in
        self.received: Optional[int] = None


# Linux's SO_TIMESTAMPNS (the socket module has no name for it): recvmsg then says when
# the kernel received the newest bytes it returns, so time a frame waited in the
# kernel's buffer (a source paused by backpressure) counts in its latency
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
_TIMESPEC = struct.Struct("qq")
_ANC_SIZE = socket.CMSG_SPACE(16)


def received_ns(ancdata: list) -> Optional[int]:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, ns = _TIMESPEC.unpack(data[:16])
            return sec * 1_000_000_000 + ns
    return None


class TCPSource(Source):
    """A live TCP source: listener plus clients, all non-blocking.

    ``read(max_n)`` accepts new clients, then takes up to ``max_n`` frames from the
    clients round-robin (a fair share each, so one fast client cannot starve the
    rest), decodes them and closes clients that broke the rules or timed out. It
    reads a client's socket only while that client has no complete frame buffered
    and the budget is not spent, so at most one partial frame plus one ``recv`` is
    buffered per client and unread data waits in the kernel (TCP backpressure).
    """

    def __init__(self, config: TCPSourceConfig) -> None:
        self.config = config
        self.fn, self.header_length, self.length_fmt = decoder_parts(config.decoder)
        self.errors = ErrorLog(config.name, log)
        self.counts: Counter = Counter()
        self.listener: Optional[socket.socket] = None
        self.clients: list[_Client] = []
        self._rr = 0  # round-robin start
        self._origin: Optional[int] = None  # when the oldest frame of the last read came
        # One epoll fd stands for the listener and every client, so fds() never changes
        # and the worker registers it once.
        self._sel = selectors.DefaultSelector()

    # -- lifecycle

    def open(self, worker: int) -> None:
        c = self.config
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if c.reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((c.host, tcp_port(c.port)))
            sock.listen(socket.SOMAXCONN)  # a burst waits to be accepted (and refused), not in SYN retries
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"TCP source {c.name!r} cannot listen on {c.host}:{c.port}: "
                                   f"{e.strerror}") from None
        self.listener = sock
        self._sel.register(sock, selectors.EVENT_READ)
        log.info("TCP source %r listening on %s:%d", c.name, *self.address)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound: useful when the config asked for port 0."""
        assert self.listener is not None, "open() first"
        return self.listener.getsockname()[:2]

    def close(self) -> None:
        for cl in list(self.clients):
            self.counts["discarded_bytes_at_close"] += cl.parser.buffered()
            self._drop_client(cl)
        if self.listener is not None:
            self._sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
        self._sel.close()

    # -- reading

    def fds(self) -> list:
        """One fd, readable when a connection is pending or a client has sent data.

        It is an epoll fd covering the listener and all clients, so it stays the same
        for the source's lifetime (without epoll: the listener and each client's fd).
        """
        if self.listener is None:
            return []
        if hasattr(self._sel, "fileno"):
            return [self._sel.fileno()]
        return [self.listener.fileno()] + [cl.sock.fileno() for cl in self.clients if not cl.eof]

    def origin_ns(self) -> Optional[int]:
        """When the bytes of the last read's oldest frame came in (see SO_TIMESTAMPNS)."""
        return self._origin

    def wait_hint(self) -> Optional[float]:
        """0 when frames are already buffered; else the time to the next idle check."""
        if any(cl.eof or cl.parser.has_frame() for cl in self.clients):
            return 0.0
        timeout = self.config.idle_timeout
        stalled = [cl.stalled_since for cl in self.clients if cl.stalled_since is not None]
        if timeout is None or not stalled:
            return None
        return max(0.0, min(stalled) + timeout - time.monotonic())

    def read(self, max_n: int) -> list:
        """Up to ``max_n`` decoded messages; never blocks, never returns None (unbounded)."""
        now = time.monotonic()
        ready = {key.fileobj for key, _ in self._sel.select(0)}
        if self.listener in ready:
            self._accept(now)
        out: list = []
        self._origin = None
        budget = max_n  # frames, decoded or not, so a read's work stays bounded
        active = self._rotated()
        while budget > 0 and active:
            share = max(1, budget // len(active))
            still = []
            for cl in active:
                took = self._take(cl, out, min(share, budget), now, cl.sock in ready)
                budget -= took
                if took and not cl.closed:
                    still.append(cl)
                if budget <= 0:
                    break
            active = still
        self._expire_idle(now)
        return out

    def _rotated(self) -> list:
        """Clients in round-robin order, starting one further along each read."""
        n = len(self.clients)
        if not n:
            return []
        self._rr = (self._rr + 1) % n
        return self.clients[self._rr:] + self.clients[: self._rr]

    def _accept(self, now: float) -> None:
        for _ in range(64):  # bounded per read: a connection storm cannot stall the loop
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. EMFILE: count it, keep serving the others
                self.errors.record("accept", "", e)
                return
            peer = f"{addr[0]}:{addr[1]}"
            if len(self.clients) >= self.config.max_clients and not self._make_room(now):
                self.errors.record("connection", peer,
                                   f"refused: max_clients={self.config.max_clients} reached and "
                                   f"no connection idle for evict_after={self.config.evict_after}s")
                self.counts["refused"] += 1
                sock.close()
                continue
            sock.setblocking(False)
            if SO_TIMESTAMPNS is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                except OSError:
                    pass  # no kernel timestamps: the recv's own time stands in
            parser = FrameParser(self.header_length, self.length_fmt, self.config.max_frame)
            self.clients.append(_Client(sock, peer, parser, now))
            self._sel.register(sock, selectors.EVENT_READ)
            self.counts["accepted"] += 1

    def _make_room(self, now: float) -> bool:
        """At the cap: close the connection longest without a complete frame, if it has
        been so for ``evict_after`` seconds; False if none qualifies."""
        after = self.config.evict_after
        idle = [cl for cl in self.clients if not cl.eof and not cl.parser.has_frame()]
        if after is None or not idle:
            return False
        victim = min(idle, key=lambda cl: cl.last_frame)
        quiet = now - victim.last_frame
        if quiet < after:
            return False
        self.counts["evicted"] += 1
        self._close_bad(victim, "idle", f"no complete frame for {quiet:.1f}s: gave way to a new "
                                        f"connection at max_clients={self.config.max_clients}")
        return True

    def _take(self, cl: _Client, out: list, limit: int, now: float, readable: bool) -> int:
        """Take up to ``limit`` frames from one client, reading its socket as needed.

        ``readable``: the socket had data when this read began; after a successful
        recv we try again, since more may have come.
        """
        took = 0
        while took < limit:
            try:
                payload = cl.parser.next_frame()
            except FrameError as e:
                self.counts["oversize"] += 1
                self._close_bad(cl, "frame", e)
                return took
            if payload is not None:
                took += 1
                cl.last_frame = now
                if cl.received is not None and (self._origin is None
                                                or cl.received < self._origin):
                    self._origin = cl.received
                self._decode(payload, out)
                # Whatever follows is the start of a new frame, begun about now.
                cl.stalled_since = now if cl.parser.buffered() else None
                if not cl.parser.buffered():
                    cl.received = None
                continue
            if cl.eof or not readable:
                break
            readable = self._recv(cl, now)
        if cl.eof and not cl.parser.has_frame():
            self._finish(cl)
        return took

    def _recv(self, cl: _Client, now: float) -> bool:
        """Read once from a client; False when nothing more is available now."""
        if cl.eof:
            return False
        try:
            data, anc, _flags, _addr = cl.sock.recvmsg(self.config.recv_size, _ANC_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:  # reset by peer and the like: keep what was framed
            self.errors.record("connection", cl.peer, e)
            self.counts["conn_errors"] += 1
            data = b""
        if not data:
            cl.eof = True
            self._sel.unregister(cl.sock)  # an EOF'd socket would stay readable forever
            return False
        self.counts["bytes"] += len(data)
        if cl.received is None:
            cl.received = received_ns(anc) or time.time_ns()
        cl.parser.feed(data)
        if cl.stalled_since is None:
            cl.stalled_since = now
        return True

    def _decode(self, payload: bytes, out: list) -> None:
        self.counts["frames"] += 1
        try:
            msg = self.fn(payload)
        except Exception as e:
            self.errors.record("decoder", payload, e, with_traceback=True)
            return
        if msg is None:
            self.counts["dropped"] += 1  # the decoder filtered it, as Wallaroo allows
        else:
            out.append(msg)

    def _finish(self, cl: _Client) -> None:
        """Close a client that said goodbye, once its complete frames are taken."""
        left = cl.parser.buffered()
        if left:
            self.counts["truncated"] += 1
            self.errors.record("frame", cl.peer, f"connection closed mid-frame: "
                                                 f"{left} bytes of an incomplete frame dropped")
        self._drop_client(cl)

    def _close_bad(self, cl: _Client, where: str, error: Any) -> None:
        self.errors.record(where, cl.peer, f"{error}; connection closed")
        self._drop_client(cl)

    def _expire_idle(self, now: float) -> None:
        timeout = self.config.idle_timeout
        if timeout is None:
            return
        for cl in list(self.clients):
            if cl.stalled_since is None or now - cl.stalled_since < timeout:
                continue
            # Unread data may be waiting in the kernel only because we were busy:
            # if it completes the frame, serve the client rather than close it.
            while not cl.parser.has_frame() and self._recv(cl, now):
                pass
            if cl.parser.has_frame():
                continue
            if cl.eof:
                self._finish(cl)
                continue
            self.counts["idle_closed"] += 1
            what = "a partial frame" if cl.parser.buffered() else "no data"
            self._close_bad(cl, "idle", f"{what} for {timeout:g}s (idle_timeout)")

    def _drop_client(self, cl: _Client) -> None:
        cl.closed = True
        if not cl.eof:
            self._sel.unregister(cl.sock)
        cl.sock.close()
        if cl in self.clients:
            self.clients.remove(cl)
            self.counts["closed"] += 1

    # -- reporting

    def drain_errors(self) -> list:
        """Recent error records since the last drain (see ErrorLog)."""
        return self.errors.drain()

    def stats(self) -> dict:
        """Counters: frames, dropped (decoder None), errors by kind, connections, bytes."""
        out = self.errors.stats(self.counts, _SOURCE_COUNTERS)
        out["clients"] = len(self.clients)
        out["buffered_bytes"] = sum(cl.parser.buffered() for cl in self.clients)
        return out
