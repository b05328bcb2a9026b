"""A connector that feeds records to a source speaking Wallaroo's connector protocol.

What Wallaroo's ``AtLeastOnceSourceConnector`` scripts do for a
``wallaroo.experimental.SourceConnectorConfig(..., cookie=...)``, for
``wallaroo-nb send --at-least-once``: Hello (version, cookie), then one stream
(Notify, wait for its NotifyAck), then each record as a Message while credits
last (waiting for Acks to top them up), then EosMessage and its Ack. A stream
the source already has a point of reference for resumes after it.
"""

from __future__ import annotations

import itertools
import socket
import struct
import time
from typing import Iterable, Optional

from ..connectors import connector_protocol as cp

ACK_TIMEOUT_S = 10.0


class ConnectorError(RuntimeError):
    """The source refused or broke the protocol; the message says how."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectorError("the source closed the connection")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> tuple:
    """The next frame from the source, as ``(tag, fields)``; an Error frame raises."""
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    tag, fields = cp.decode(_recv_exact(sock, n))
    if tag == cp.ERROR:
        raise ConnectorError(f"the source refused: {fields}")
    return tag, fields


class Connection:
    """One connector connection: the handshake done, credits counted."""

    def __init__(self, sock: socket.socket, cookie: str, program: str = "wallaroo-nb send",
                 instance: str = "0", version: str = cp.PROTOCOL_VERSION) -> None:
        self.sock = sock
        sock.settimeout(ACK_TIMEOUT_S)
        sock.sendall(cp.hello(version, cookie, program, instance))
        tag, credits = read_frame(sock)
        if tag != cp.OK:
            raise ConnectorError(f"expected Ok after Hello, got {cp.TAG_NAMES[tag]}")
        self.credits = credits
        self.acked: dict = {}  # stream id -> point of reference acked

    def open_stream(self, name: bytes) -> tuple:
        """Notify a stream; returns (stream id, the source's point of reference)."""
        sid = cp.stream_id(name)
        self._spend(cp.notify(sid, name, 0))
        while True:
            tag, fields = read_frame(self.sock)
            if tag == cp.NOTIFY_ACK and fields.stream_id == sid:
                if not fields.success:
                    raise ConnectorError(f"the source would not open stream {name!r}")
                return sid, fields.point_of_ref
            self._note(tag, fields)

    def send(self, sid: int, message_id: int, payload: bytes, event_time: int = 0) -> None:
        self._spend(cp.message(sid, message_id, payload, event_time))

    def close_stream(self, sid: int, last_id: Optional[int]) -> None:
        """End the stream and wait until the source acks it up to its last message id
        (so that closing the connection then loses nothing in flight)."""
        self.sock.sendall(cp.eos(sid))
        want = cp.NONE_SEEN if last_id is None else last_id
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while time.monotonic() < deadline:
            tag, fields = read_frame(self.sock)
            self._note(tag, fields)
            if tag == cp.ACK and (sid, want) in fields.acks:
                return
        raise ConnectorError(f"no Ack for the end of stream {sid} in {ACK_TIMEOUT_S}s")

    def drain(self) -> None:
        """Read what the source sent and we did not need, so that closing the socket
        does not reset the connection (unread data makes the kernel send a RST)."""
        self.sock.setblocking(False)
        try:
            while self.sock.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _spend(self, data: bytes) -> None:
        while self.credits <= 0:
            self._note(*read_frame(self.sock))
        self.sock.sendall(data)
        self.credits -= 1

    def _note(self, tag: int, fields: object) -> None:
        if tag == cp.ACK:
            self.credits += fields.credits
            self.acked.update(fields.acks)
        elif tag == cp.RESTART:
            raise ConnectorError("the source asked for a restart")


def send_at_least_once(sock: socket.socket, items: Iterable[bytes], cookie: str,
                       stream_name: str = "wallaroo-nb send",
                       rate: Optional[float] = None) -> int:
    """Send ``items`` as one stream over the connected ``sock``; message ids count
    records from 0. A stream the source knows already resumes after its point of
    reference. Returns the records sent."""
    conn = Connection(sock, cookie)
    sid, por = conn.open_stream(stream_name.encode())
    start = 0 if por == cp.NONE_SEEN else por + 1
    sent, last, t0 = 0, None, time.monotonic()
    for i, item in enumerate(itertools.islice(items, start, None), start):
        conn.send(sid, i, item)
        sent, last = sent + 1, i
        if rate is not None:
            ahead = t0 + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    conn.close_stream(sid, last)
    conn.drain()
    return sent
