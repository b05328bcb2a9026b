"""Wallaroo's TCP source and sink: length-framed messages over plain sockets.

The source listens, accepts many clients at once and turns each complete frame
into one message through the user's decoder. It never blocks and never trusts
its input: an oversized frame, a truncated frame, a client that stalls, or a
decoder that raises costs only the offending connection or message, each one
counted and recorded. A client that sends faster than the application consumes
is simply not read from, so TCP flow control slows it down.

The sink connects to a receiver and writes the encoder's bytes unchanged (a
Wallaroo encoder includes its own framing). It reconnects with backoff when the
receiver goes away, and buffers a bounded amount meanwhile; see TCPSinkConfig
for what happens past the bound.
"""

from __future__ import annotations

import errno
import logging
import select
import selectors
import socket
import time
from collections import Counter, deque
from typing import Any, Callable, Optional

from .base import Sink, SinkConfig, Source, SourceConfig
from .framing import (
    DEFAULT_MAX_FRAME,
    ErrorLog,
    FrameError,
    FrameParser,
    decoder_parts,
    encoder_fn,
    length_struct,
)

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"

# Counters that stats() always reports, zero until something happens.
_SOURCE_COUNTERS = ("accepted", "closed", "refused", "bytes", "frames", "dropped", "oversize",
                    "truncated", "idle_closed", "conn_errors")
_SINK_COUNTERS = ("accepted", "sent", "sent_bytes", "dropped", "dropped_bytes", "blocked",
                  "connect_attempts", "connects", "connect_failures", "disconnects")


def _port(port: Any) -> int:
    """A TCP port from an int or a numeric string (Wallaroo's parsers give strings)."""
    try:
        p = int(port)
    except (TypeError, ValueError):
        raise ValueError(f"port must be a number, got {port!r}") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"port {p} is out of range 0..65535")
    return p


# -- source --------------------------------------------------------------------


class TCPSourceConfig(SourceConfig):
    """Listen on ``host:port`` for framed messages; decode each with ``decoder``.

    ``decoder`` is a ``@decoder(header_length, length_fmt)`` object or a plain
    function ``bytes -> message | None`` (then a 4-byte big-endian header).
    ``max_frame`` bounds a payload in bytes; ``idle_timeout`` (seconds, None = never)
    closes a connection that sits that long without completing a frame, such as a
    client that connects and never sends; one quiet between whole frames is kept.
    ``max_clients`` bounds open connections (more are accepted and closed at once).
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
        self.recv_size = recv_size
        self.reuse_port = reuse_port

    def check(self) -> None:
        """Raise ValueError naming the problem (bad port, decoder or bounds)."""
        where = f"TCPSourceConfig {self.name!r}"
        try:
            _port(self.port)
            _, header_length, length_fmt = decoder_parts(self.decoder)
            length_struct(header_length, length_fmt)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if not (isinstance(self.max_frame, int) and self.max_frame > 0):
            raise ValueError(f"{where}: max_frame must be a positive int, got {self.max_frame!r}")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ValueError(f"{where}: idle_timeout must be > 0 or None")
        if self.max_clients < 1 or self.recv_size < 1:
            raise ValueError(f"{where}: max_clients and recv_size must be >= 1")

    def make_source(self) -> "TCPSource":
        self.check()
        return TCPSource(self)


class _Client:
    """One accepted connection and the bytes read from it but not yet framed."""

    __slots__ = ("sock", "peer", "parser", "stalled_since", "eof", "closed")

    def __init__(self, sock: socket.socket, peer: str, parser: FrameParser, now: float) -> None:
        self.sock = sock
        self.peer = peer
        self.parser = parser
        self.stalled_since: Optional[float] = now  # when the pending partial frame began
        self.eof = False
        self.closed = False


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
            sock.bind((c.host, _port(c.port)))
            sock.listen(min(c.max_clients, socket.SOMAXCONN))
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
            if len(self.clients) >= self.config.max_clients:
                self.errors.record("connection", peer,
                                   f"refused: max_clients={self.config.max_clients} reached")
                self.counts["refused"] += 1
                sock.close()
                continue
            sock.setblocking(False)
            parser = FrameParser(self.header_length, self.length_fmt, self.config.max_frame)
            self.clients.append(_Client(sock, peer, parser, now))
            self._sel.register(sock, selectors.EVENT_READ)
            self.counts["accepted"] += 1

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
                self._decode(payload, out)
                # Whatever follows is the start of a new frame, begun about now.
                cl.stalled_since = now if cl.parser.buffered() else None
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
            data = cl.sock.recv(self.config.recv_size)
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


# -- sink ----------------------------------------------------------------------


class TCPSinkConfig(SinkConfig):
    """Write each output's encoded bytes to a receiver at ``host:port``.

    ``encoder`` is an ``@encoder`` object or a plain function ``output -> bytes``
    (str is sent as UTF-8). Bytes go out as the encoder made them: the encoder adds
    any framing. If the receiver is absent or restarts, the sink reconnects with
    exponential backoff (``reconnect_min`` to ``reconnect_max`` seconds) and keeps
    outputs in a buffer of up to ``max_buffer`` bytes; every new connection starts
    at a message boundary.

    Past the bound the sink applies backpressure: ``write`` blocks the worker (and
    so its sources) while it drains and reconnects, for at most ``max_block``
    seconds per call (short by default, so the worker still answers its driver:
    a receiver that stays away slows the pipeline to one batch per ``max_block``). If the buffer is still over the bound after that, the oldest
    whole messages are dropped to fit, counted in ``stats()['dropped']`` /
    ``['dropped_bytes']`` and reported through ``drain_errors()``. ``max_block=None``
    never drops (it blocks until the receiver takes the data); ``max_block=0`` never
    blocks. ``close`` waits up to ``close_timeout`` seconds for the rest and counts
    what is left as dropped. Delivery is at least once per connection and best
    effort across a receiver crash: bytes the kernel had accepted for the dead
    connection cannot be recovered.
    """

    def __init__(
        self,
        host: Optional[str],
        port: Any,
        encoder: Any,
        max_buffer: int = 8 * 1024 * 1024,
        max_block: Optional[float] = 1.0,
        close_timeout: float = 5.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 2.0,
        name: str = "tcp_sink",
    ) -> None:
        self.host = host or DEFAULT_HOST
        self.port = port
        self.encoder = encoder
        self.max_buffer = max_buffer
        self.max_block = max_block
        self.close_timeout = close_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.name = name

    def check(self) -> None:
        """Raise ValueError naming the problem (bad port, encoder or bounds)."""
        where = f"TCPSinkConfig {self.host}:{self.port}"
        try:
            _port(self.port)
            encoder_fn(self.encoder)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if self.max_buffer < 1:
            raise ValueError(f"{where}: max_buffer must be >= 1 byte")
        if self.max_block is not None and self.max_block < 0:
            raise ValueError(f"{where}: max_block must be >= 0 or None")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError(f"{where}: need 0 < reconnect_min <= reconnect_max")

    def make_sink(self) -> "TCPSink":
        self.check()
        return TCPSink(self)


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    raise TypeError(f"encoder must return bytes, got {type(data).__name__}")


class TCPSink(Sink):
    """A live TCP sink: a queue of encoded messages and a non-blocking connection.

    Every call (``write``, ``flush``) advances the connection: it starts or
    completes a connect when due, notices a receiver that hung up, and sends what
    the kernel will take. Nothing here blocks except ``write`` over the bound and
    ``close`` (see TCPSinkConfig).
    """

    def __init__(self, config: TCPSinkConfig) -> None:
        self.config = config
        self.fn = encoder_fn(config.encoder)
        self.errors = ErrorLog(config.name, log)
        self.counts: Counter = Counter()
        self.queue: deque = deque()  # encoded messages not yet fully sent
        self.head_sent = 0  # bytes of queue[0] already sent on this connection
        self.buffered = 0  # bytes in queue not yet sent
        self.sock: Optional[socket.socket] = None
        self.connecting = False
        self.next_attempt = 0.0
        self.backoff = config.reconnect_min
        self.was_up = False  # connected before: report the outage once
        self.addr = (config.host, _port(config.port))

    def open(self, worker: int) -> None:
        self._pump()

    # -- writing

    def write(self, batch: list) -> None:
        """Encode and queue each output, send what the socket takes, apply the bound."""
        for obj in batch:
            try:
                data = _as_bytes(self.fn(obj))
            except Exception as e:
                self.errors.record("encoder", obj, e, with_traceback=True)
                continue
            if data:
                self.queue.append(data)
                self.buffered += len(data)
                self.counts["accepted"] += 1
        self._pump()
        if self.buffered > self.config.max_buffer:
            self._wait_for_room()

    def flush(self) -> None:
        """Send what the socket takes now and retry a due reconnect; never blocks."""
        self._pump()

    def close(self) -> None:
        """Try for ``close_timeout`` seconds to deliver the rest, then count it as dropped."""
        deadline = time.monotonic() + self.config.close_timeout
        while self.queue and time.monotonic() < deadline:
            self._pump()
            self._wait(deadline)
        if self.queue:
            self._drop(len(self.queue), "undelivered at close")
        self._disconnect(None)

    def wait_hint(self) -> Optional[float]:
        """Seconds until the sink wants ``flush`` again (a retry), or None if idle."""
        if not self.queue:
            return None
        if self.sock is None:
            return max(0.0, self.next_attempt - time.monotonic())
        return 0.01

    def _wait_for_room(self) -> None:
        """Block while over the bound, up to ``max_block``; then drop the oldest."""
        max_block = self.config.max_block
        deadline = None if max_block is None else time.monotonic() + max_block
        self.counts["blocked"] += 1
        while self.buffered > self.config.max_buffer:
            if deadline is not None and time.monotonic() >= deadline:
                self._drop_oldest()
                return
            self._wait(deadline)
            self._pump()

    def _wait(self, deadline: Optional[float]) -> None:
        """Sleep until the socket can make progress, a retry is due, or the deadline."""
        now = time.monotonic()
        timeout = 0.1 if deadline is None else max(0.0, min(0.1, deadline - now))
        if self.sock is None:
            time.sleep(max(0.0, min(timeout, self.next_attempt - now)))
            return
        try:
            select.select([self.sock], [self.sock], [], timeout)
        except (OSError, ValueError):
            pass

    def _drop_oldest(self) -> None:
        """Drop whole messages, oldest first, until the buffer fits the bound."""
        keep_head = self.head_sent > 0  # dropping it would break the receiver's framing
        n = 0
        excess = self.buffered - self.config.max_buffer
        dropped_bytes = 0
        while dropped_bytes < excess and len(self.queue) > keep_head:
            i = 1 if keep_head else 0
            data = self.queue[i]
            del self.queue[i]
            dropped_bytes += len(data)
            n += 1
        self.buffered -= dropped_bytes
        self._count_dropped(n, dropped_bytes, f"buffer over max_buffer={self.config.max_buffer}"
                                              f" for max_block={self.config.max_block}s")

    def _drop(self, n: int, why: str) -> None:
        self.queue.clear()
        nbytes, self.buffered, self.head_sent = self.buffered, 0, 0
        self._count_dropped(n, nbytes, why)

    def _count_dropped(self, n: int, nbytes: int, why: str) -> None:
        if n:
            self.counts["dropped"] += n
            self.counts["dropped_bytes"] += nbytes
            self.errors.record("overflow", f"{self.addr[0]}:{self.addr[1]}",
                               f"dropped {n} messages ({nbytes} bytes): {why}")

    # -- the connection state machine

    def _pump(self) -> None:
        now = time.monotonic()
        if self.sock is None and now >= self.next_attempt:
            self._start_connect()
        if self.connecting:
            self._finish_connect()
        if self.sock is not None and not self.connecting:
            self._check_hangup()
        if self.sock is not None and not self.connecting:
            self._send()

    def _start_connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.counts["connect_attempts"] += 1
        err = sock.connect_ex(self.addr)
        self.sock = sock
        if err == 0:
            self._connected()
        elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            self.connecting = True
        else:
            self._connect_failed(OSError(err, errno.errorcode.get(err, str(err))))

    def _finish_connect(self) -> None:
        try:
            _, writable, _ = select.select([], [self.sock], [], 0)
        except (OSError, ValueError) as e:
            self._connect_failed(e)
            return
        if not writable:
            return
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_failed(OSError(err, errno.errorcode.get(err, str(err))))
        else:
            self._connected()

    def _connected(self) -> None:
        self.connecting = False
        self.backoff = self.config.reconnect_min
        self.head_sent = 0  # a fresh connection starts at a message boundary
        self.counts["connects"] += 1
        self.was_up = True
        log.info("TCP sink connected to %s:%d", *self.addr)

    def _connect_failed(self, error: BaseException) -> None:
        if self.was_up or self.counts["connect_failures"] == 0:
            self.errors.record("connection", f"{self.addr[0]}:{self.addr[1]}",
                               f"cannot connect ({error}); retrying with backoff")
            self.was_up = False
        self.counts["connect_failures"] += 1
        self._disconnect(None)

    def _check_hangup(self) -> None:
        """Notice a receiver that closed; whatever it sent us is read and ignored."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable and not self.sock.recv(65536):
                self._disconnect("receiver closed the connection")
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            self._disconnect(e)

    def _send(self) -> None:
        while self.queue:
            head = self.queue[0]
            try:
                n = self.sock.send(memoryview(head)[self.head_sent:])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._disconnect(e)
                return
            self.head_sent += n
            self.buffered -= n
            self.counts["sent_bytes"] += n
            if self.head_sent == len(head):
                self.queue.popleft()
                self.head_sent = 0
                self.counts["sent"] += 1

    def _disconnect(self, why: Any) -> None:
        """Drop the socket; with ``why``, record the outage and schedule a reconnect."""
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.connecting = False
        # The partly sent head goes again, whole, on the next connection.
        self.buffered += self.head_sent
        self.head_sent = 0
        if why is not None:
            self.counts["disconnects"] += 1
            self.errors.record("connection", f"{self.addr[0]}:{self.addr[1]}",
                               f"lost connection ({why}); reconnecting")
            self.backoff = self.config.reconnect_min
        self.next_attempt = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, self.config.reconnect_max)

    # -- reporting

    def drain_errors(self) -> list:
        """Recent error records since the last drain (see ErrorLog)."""
        return self.errors.drain()

    def stats(self) -> dict:
        """Counters: accepted, sent, dropped, connects, failures, and what is buffered."""
        out = self.errors.stats(self.counts, _SINK_COUNTERS)
        out["buffered_bytes"] = self.buffered
        out["buffered_messages"] = len(self.queue)
        out["connected"] = self.sock is not None and not self.connecting
        return out
