"""Wallaroo's TCP sink: each output's encoded bytes to a receiver, never blocking the worker.

The sink connects to a receiver and writes the encoder's bytes unchanged (a
Wallaroo encoder includes its own framing). Every call advances a non-blocking
connection: connect when due (with backoff), notice a receiver that hung up, send
what the kernel takes, and learn what the receiver's TCP has acknowledged. A
message counts as written only once the receiver's TCP has acknowledged all its
bytes (Linux SIOCOUTQ); until then it is kept, and a new connection sends it
again, whole: at least once, never a gap, a new connection always starts at a
message boundary.

With resilience the sink holds outputs until their epoch commits, keeps in its
checkpoint what it has not yet seen acknowledged, and after a recovery sends that
again. A receiver that is slow or away applies backpressure (``ready()`` is False
and the worker stops reading its sources); dropping is an explicit option.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import select
import socket
import struct
import time
from collections import Counter, deque
from itertools import islice
from typing import Any, Optional

from .base import Sink, SinkConfig
from .framing import DEFAULT_HOST, ErrorLog, encoder_fn, tcp_port

try:
    from termios import TIOCOUTQ  # == SIOCOUTQ for sockets: bytes not yet acknowledged
except ImportError:  # not Linux: a message counts as written once the kernel took it
    TIOCOUTQ = None

log = logging.getLogger(__name__)

OVERFLOW = ("backpressure", "drop")
# Counters that stats() always reports, zero until something happens.
_COUNTERS = ("accepted", "sent", "sent_bytes", "acked", "resent", "restored", "dropped",
             "dropped_bytes", "backpressure", "connect_attempts", "connects", "connect_failures",
             "disconnects")
_INT = struct.Struct("i")
SEND_BATCH = 256  # messages per sendmsg call (Linux takes up to 1024 buffers)
ROOM_POLL_S = 0.005  # data waits for room in a full socket: look again this soon
ACK_POLL_S = 0.01  # sent, not yet acknowledged: look again this soon


class TCPSinkConfig(SinkConfig):
    """Write each output's encoded bytes to a receiver at ``host:port``.

    ``encoder`` is an ``@encoder`` object or a plain function ``output -> bytes``
    (str is sent as UTF-8); the encoder adds any framing. If the receiver is absent
    or restarts, the sink reconnects with exponential backoff (``reconnect_min`` to
    ``reconnect_max`` seconds); messages the receiver's TCP had not acknowledged
    are sent again, whole, on the new connection (at least once).

    ``max_buffer`` bounds the bytes waiting for the receiver (not yet sent, or sent
    and not yet acknowledged). Past it, with ``overflow="backpressure"`` (the
    default) the sink says it is not ready and the worker stops reading its sources
    until the receiver catches up: nothing is dropped, a receiver that stays away
    stops the pipeline. ``overflow="drop"`` instead drops the oldest whole messages
    not yet sent, counted in ``stats()['dropped']`` / ``['dropped_bytes']`` (and so
    in ``app.metrics_counters()``) and reported as errors. ``close`` waits up to
    ``close_timeout`` seconds for the rest and counts what is left as dropped.
    """

    def __init__(
        self,
        host: Optional[str],
        port: Any,
        encoder: Any,
        max_buffer: int = 8 * 1024 * 1024,
        overflow: str = "backpressure",
        close_timeout: float = 5.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 2.0,
        name: str = "tcp_sink",
    ) -> None:
        self.host = host or DEFAULT_HOST
        self.port = port
        self.encoder = encoder
        self.max_buffer = max_buffer
        self.overflow = overflow
        self.close_timeout = close_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.name = name

    def check(self) -> None:
        """Raise ValueError naming the problem (bad port, encoder, bounds or overflow)."""
        where = f"TCPSinkConfig {self.host}:{self.port}"
        try:
            tcp_port(self.port)
            encoder_fn(self.encoder)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if self.max_buffer < 1:
            raise ValueError(f"{where}: max_buffer must be >= 1 byte")
        if self.overflow not in OVERFLOW:
            raise ValueError(f"{where}: overflow must be one of {OVERFLOW}, got {self.overflow!r}")
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


def _unacked(sock: socket.socket) -> int:
    """Bytes written to ``sock`` that the peer's TCP has not acknowledged yet."""
    return _INT.unpack(fcntl.ioctl(sock.fileno(), TIOCOUTQ, b"\0\0\0\0"))[0]


class TCPSink(Sink):
    """A live TCP sink: encoded messages in three stages, and a non-blocking connection.

    ``held`` / ``pending``: outputs of epochs not yet committed (resilience only);
    ``queue``: messages to send, the head maybe partly sent on this connection;
    ``inflight``: messages sent whole on this connection, with the connection's
    byte count at their end, until the receiver's TCP acknowledges them.
    """

    commits = True

    def __init__(self, config: TCPSinkConfig) -> None:
        self.config = config
        self.fn = encoder_fn(config.encoder)
        self.errors = ErrorLog(config.name, log)
        self.counts: Counter = Counter()
        self.holding = False
        self.held: list = []
        self.pending: list = []  # (epoch, messages) checkpointed, not yet committed
        self.queue: deque = deque()
        self.queued_bytes = 0
        self.head_sent = 0  # bytes of queue[0] already sent on this connection
        self.inflight: deque = deque()  # (connection bytes at its end, message)
        self.inflight_bytes = 0
        self.conn_sent = 0  # bytes sent on this connection
        self.sock: Optional[socket.socket] = None
        self.connecting = False
        self.next_attempt = 0.0
        self.backoff = config.reconnect_min
        self.was_up = False  # connected before: report the outage once
        self.was_ready = True
        self.last_pump = 0.0
        self.addr = (config.host, tcp_port(config.port))

    def open(self, worker: int) -> None:
        self._pump()

    # -- resilience: hold until commit, checkpoint what is not acknowledged

    def hold(self) -> None:
        self.holding = True

    def epoch_state(self, epoch: int) -> dict:
        """Close the held outputs into ``epoch``; the state is every message not yet
        known written: committed ones not acknowledged, then the pending epochs."""
        if self.held:
            self.pending.append((epoch, self.held))
            self.held = []
        return {"unsent": [m for _, m in self.inflight] + list(self.queue),
                "pending": list(self.pending)}

    def commit(self, epoch: int) -> None:
        """The app committed ``epoch``: send the outputs of every epoch up to it."""
        due = [msgs for e, msgs in self.pending if e <= epoch]
        self.pending = [(e, msgs) for e, msgs in self.pending if e > epoch]
        for msgs in due:
            self._enqueue(msgs)
        self._pump()
        self._drop_over_bound()

    def restore(self, state: dict) -> None:
        """After a recovery: send again what the checkpoint did not know was written
        (its epoch is committed, so its pending epochs are too)."""
        self.held, self.pending = [], []  # a rollback in place: they are of a void era
        msgs = list(state.get("unsent", ()))
        for _epoch, ms in state.get("pending", ()):
            msgs.extend(ms)
        self.counts["restored"] += len(msgs)
        self._enqueue(msgs)
        self._pump()

    # -- writing

    def write(self, batch: list) -> None:
        """Encode each output; hold it (resilience) or queue it and send what the socket takes."""
        out = []
        for obj in batch:
            try:
                data = _as_bytes(self.fn(obj))
            except Exception as e:
                self.errors.record("encoder", obj, e, with_traceback=True)
                continue
            if data:
                out.append(data)
        self.counts["accepted"] += len(out)
        if self.holding:
            self.held.extend(out)
            return
        self._enqueue(out)
        self._pump()
        self._drop_over_bound()

    def _enqueue(self, msgs: list) -> None:
        self.queue.extend(msgs)
        self.queued_bytes += sum(map(len, msgs))

    def ready(self) -> bool:
        """False while more than ``max_buffer`` bytes wait for the receiver (backpressure)."""
        if self.config.overflow == "drop":
            return True
        ok = self.queued_bytes + self.inflight_bytes <= self.config.max_buffer
        if not ok and self.was_ready:
            self.counts["backpressure"] += 1
        self.was_ready = ok
        return ok

    def flush(self) -> None:
        """Send what the socket takes now, note acknowledgements, retry a due reconnect."""
        self._pump()

    def wait_hint(self) -> Optional[float]:
        """Seconds until the sink wants ``flush`` again (a retry, room, acks), or None."""
        now = time.monotonic()
        if self.queue:
            if self.sock is None:
                return max(0.0, self.next_attempt - now)
            return max(0.0, self.last_pump + ROOM_POLL_S - now)
        return max(0.0, self.last_pump + ACK_POLL_S - now) if self.inflight else None

    def close(self) -> None:
        """Try for ``close_timeout`` seconds to deliver the rest, then count it as dropped."""
        deadline = time.monotonic() + self.config.close_timeout
        while (self.queue or self.inflight) and time.monotonic() < deadline:
            self._pump()
            self._wait(deadline)
        if self.queue:
            self._drop(len(self.queue), "undelivered at close")
        if self.inflight:
            self.counts["unacked_at_close"] += len(self.inflight)
        self.counts["uncommitted_at_close"] += len(self.held) + sum(len(m) for _, m in self.pending)
        self.inflight.clear()
        self.inflight_bytes = 0
        self._close_socket()

    def _wait(self, deadline: float) -> None:
        """Sleep until the socket can make progress, a retry is due, or 10 ms passed."""
        now = time.monotonic()
        timeout = max(0.0, min(0.01, deadline - now))
        if self.sock is None:
            time.sleep(max(0.0, min(timeout, self.next_attempt - now)))
            return
        try:
            select.select([self.sock], [self.sock] if self.queue else [], [], timeout)
        except (OSError, ValueError):
            pass

    # -- dropping (only with overflow="drop", and at close)

    def _drop_over_bound(self) -> None:
        """With ``overflow="drop"``: drop the oldest whole unsent messages over the bound."""
        c = self.config
        excess = self.queued_bytes + self.inflight_bytes - c.max_buffer
        if c.overflow != "drop" or excess <= 0:
            return
        keep_head = 1 if self.head_sent else 0  # dropping it would break the receiver's framing
        n = nbytes = 0
        while nbytes < excess and len(self.queue) > keep_head:
            data = self.queue[keep_head]
            del self.queue[keep_head]
            nbytes += len(data)
            n += 1
        self.queued_bytes -= nbytes
        self._count_dropped(n, nbytes, f"more than max_buffer={c.max_buffer} bytes waiting "
                                       f"for the receiver (overflow='drop')")

    def _drop(self, n: int, why: str) -> None:
        nbytes = self.queued_bytes
        self.queue.clear()
        self.queued_bytes = self.head_sent = 0
        self._count_dropped(n, nbytes, why)

    def _count_dropped(self, n: int, nbytes: int, why: str) -> None:
        if n:
            self.counts["dropped"] += n
            self.counts["dropped_bytes"] += nbytes
            self.errors.record("overflow", f"{self.addr[0]}:{self.addr[1]}",
                               f"dropped {n} messages ({nbytes} bytes): {why}")

    # -- the connection state machine

    def _pump(self) -> None:
        self.last_pump = now = time.monotonic()
        if self.sock is None and now >= self.next_attempt:
            self._start_connect()
        if self.connecting:
            self._finish_connect()
        if self.sock is not None and not self.connecting:
            self._check_hangup()
        if self.sock is not None and not self.connecting:
            self._send()
            self._note_acks()

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
        self.head_sent = self.conn_sent = 0  # a fresh connection starts at a message boundary
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
        """Send queued messages, many per system call, until the socket is full."""
        queue = self.queue
        while queue:
            bufs = list(islice(queue, SEND_BATCH))
            if self.head_sent:
                bufs[0] = memoryview(bufs[0])[self.head_sent:]
            try:
                n = self.sock.sendmsg(bufs)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._disconnect(e)
                return
            self.counts["sent_bytes"] += n
            full = n < sum(map(len, bufs))
            self._sent(n)
            if full:
                return

    def _sent(self, n: int) -> None:
        """``n`` more bytes went out: whole messages move to ``inflight`` (or are done)."""
        queue, inflight = self.queue, self.inflight
        end = self.conn_sent - self.head_sent  # where queue[0] starts on this connection
        self.conn_sent += n
        left = n + self.head_sent
        done = nbytes = 0
        while queue and left >= len(queue[0]):
            head = queue.popleft()
            size = len(head)
            left -= size
            end += size
            nbytes += size
            done += 1
            if TIOCOUTQ is not None:
                inflight.append((end, head))
        self.head_sent = left
        self.queued_bytes -= nbytes
        self.counts["sent"] += done
        if TIOCOUTQ is None:
            self.counts["acked"] += done
        else:
            self.inflight_bytes += nbytes

    def _note_acks(self) -> None:
        """Forget the messages whose every byte the receiver's TCP has acknowledged."""
        if not self.inflight or self.sock is None:
            return
        try:
            acked = self.conn_sent - _unacked(self.sock)
        except OSError:
            return
        inflight = self.inflight
        n = 0
        while inflight and inflight[0][0] <= acked:
            self.inflight_bytes -= len(inflight.popleft()[1])
            n += 1
        self.counts["acked"] += n

    def _disconnect(self, why: Any) -> None:
        """Drop the socket; what it did not get acknowledged goes again, whole, on the
        next connection. With ``why``, record the outage and reconnect soon."""
        self._note_acks()
        if self.inflight:
            self.counts["resent"] += len(self.inflight)
            self.queue.extendleft(m for _, m in reversed(self.inflight))
            self.queued_bytes += self.inflight_bytes
            self.inflight.clear()
            self.inflight_bytes = 0
        self.head_sent = 0
        self._close_socket()
        if why is not None:
            self.counts["disconnects"] += 1
            self.errors.record("connection", f"{self.addr[0]}:{self.addr[1]}",
                               f"lost connection ({why}); reconnecting")
            self.backoff = self.config.reconnect_min
        self.next_attempt = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, self.config.reconnect_max)

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.connecting = False

    # -- reporting

    def drain_errors(self) -> list:
        """Recent error records since the last drain (see ErrorLog)."""
        return self.errors.drain()

    def stats(self) -> dict:
        """Counters (accepted, sent, acked, resent, dropped, connects...) and what waits."""
        out = self.errors.stats(self.counts, _COUNTERS)
        out["buffered_bytes"] = self.queued_bytes + self.inflight_bytes
        out["buffered_messages"] = len(self.queue) + len(self.inflight)
        out["held_messages"] = len(self.held) + sum(len(m) for _, m in self.pending)
        out["connected"] = self.sock is not None and not self.connecting
        return out
