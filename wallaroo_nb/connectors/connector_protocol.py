"""Wallaroo's connector wire formats, and a source that speaks its connector protocol.

Wallaroo's ``wallaroo.experimental`` connectors use two framings of a "stream
message" (what ``@stream_message_encoder`` makes):

- 0.6.0/0.6.1: ``<I length`` (of what follows), ``<q event_time``, payload;
- the development head: ``>I length``, ``>q event_time``, ``>I key length``, key,
  payload.

The head's source connectors speak a protocol over ``>I``-framed frames whose
first byte is a tag: the connector says Hello (version, cookie, program,
instance) and gets Ok (credits); it opens streams with Notify (stream id, name,
point of reference) and gets NotifyAck (success, stream id, the last point of
reference Wallaroo has, 2**64-1 for none); it sends Message frames (stream id,
message id, event time, key, payload), one credit each, and EosMessage at a
stream's end; Wallaroo answers with Ack (new credits, [(stream id, point of
reference)]). ``ConnectorSource`` is that server side: it checks version and
cookie, keeps each stream's last message id (ids must grow; repeats are
skipped), refills credits when the client is down to ``refill_credits`` and acks
as it takes messages (at most once, like the TCP source: it cannot replay).
"""

from __future__ import annotations

import hashlib
import struct
from collections import namedtuple
from typing import Any, Optional

from .tcp import TCPSource, TCPSourceConfig, _Client

PROTOCOL_VERSION = "0.0.1"
NONE_SEEN = 2**64 - 1  # a point of reference meaning "nothing of this stream yet"

HELLO, OK, ERROR, NOTIFY, NOTIFY_ACK, MESSAGE, ACK, RESTART, EOS = range(9)
TAG_NAMES = ("Hello", "Ok", "Error", "Notify", "NotifyAck", "Message", "Ack", "Restart",
             "EosMessage")

Hello = namedtuple("Hello", "version cookie program_name instance_name")
Notify = namedtuple("Notify", "stream_id stream_name point_of_ref")
NotifyAck = namedtuple("NotifyAck", "success stream_id point_of_ref")
Message = namedtuple("Message", "stream_id message_id event_time key message")
Ack = namedtuple("Ack", "credits acks")


# -- stream messages (the payload framing of @stream_message_encoder) -----------------


def stream_frame_06(payload: bytes, event_time: int = 0) -> bytes:
    """0.6.0/0.6.1's stream message: ``<I`` length, ``<q`` event time, payload."""
    return struct.pack("<Iq", len(payload) + 8, event_time) + payload


def stream_frame_head(payload: bytes, event_time: int = 0, key: bytes = b"") -> bytes:
    """The head's stream message: ``>I`` length, ``>q`` event time, ``>I`` key length,
    key, payload (the length counts everything after itself)."""
    return struct.pack(">IqI", 12 + len(key) + len(payload), event_time, len(key)) + key + payload


def unstream_06(body: bytes) -> bytes:
    """The payload of a 0.6 stream message's body (after its length header)."""
    return body[8:]


def unstream_head(body: bytes) -> bytes:
    """The payload of a head stream message's body (after its length header)."""
    (klen,) = struct.unpack_from(">I", body, 8)
    return body[12 + klen:]


# -- protocol frames ---------------------------------------------------------------


def _text(s: Any) -> bytes:
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack(">H", len(b)) + b


def frame(tag: int, body: bytes) -> bytes:
    """One protocol frame: ``>I`` length (tag + body), tag byte, body."""
    return struct.pack(">IB", len(body) + 1, tag) + body


def hello(version: str, cookie: str, program: str, instance: str) -> bytes:
    return frame(HELLO, b"".join(_text(x) for x in (version, cookie, program, instance)))


def ok(credits: int) -> bytes:
    return frame(OK, struct.pack(">I", credits))


def error(message: str) -> bytes:
    return frame(ERROR, _text(message))


def notify(stream_id: int, name: Any, point_of_ref: int = 0) -> bytes:
    return frame(NOTIFY, struct.pack(">Q", stream_id) + _text(name)
                 + struct.pack(">Q", point_of_ref))


def notify_ack(success: bool, stream_id: int, point_of_ref: int) -> bytes:
    return frame(NOTIFY_ACK, struct.pack(">?QQ", success, stream_id, point_of_ref))


def message(stream_id: int, message_id: int, payload: bytes, event_time: int = 0,
            key: bytes = b"") -> bytes:
    return frame(MESSAGE, struct.pack(">QQq", stream_id, message_id, event_time)
                 + _text(key) + payload)


def ack(credits: int, acks: list) -> bytes:
    return frame(ACK, struct.pack(">II", credits, len(acks))
                 + b"".join(struct.pack(">QQ", s, p) for s, p in acks))


def eos(stream_id: int) -> bytes:
    return frame(EOS, struct.pack(">Q", stream_id))


def _read_text(body: bytes, at: int) -> tuple:
    (n,) = struct.unpack_from(">H", body, at)
    return body[at + 2:at + 2 + n], at + 2 + n


def decode(payload: bytes) -> tuple:
    """``(tag, fields)`` of a frame without its length header; ValueError if malformed."""
    if not payload:
        raise ValueError("empty connector frame")
    tag, body = payload[0], payload[1:]
    try:
        return tag, _decode_body(tag, body)
    except struct.error as e:
        raise ValueError(f"malformed {_tag_name(tag)} frame: {e}") from None


def _decode_body(tag: int, body: bytes) -> Any:
    if tag == HELLO:
        parts, at = [], 0
        for _ in range(4):
            text, at = _read_text(body, at)
            parts.append(text.decode())
        return Hello(*parts)
    if tag in (OK, EOS):
        return struct.unpack(">I" if tag == OK else ">Q", body)[0]
    if tag == ERROR:
        return _read_text(body, 0)[0].decode(errors="replace")
    if tag == NOTIFY:
        (sid,) = struct.unpack_from(">Q", body)
        name, at = _read_text(body, 8)
        return Notify(sid, name, struct.unpack_from(">Q", body, at)[0])
    if tag == NOTIFY_ACK:
        return NotifyAck(*struct.unpack(">?QQ", body))
    if tag == MESSAGE:
        sid, mid, et = struct.unpack_from(">QQq", body)
        key, at = _read_text(body, 24)
        return Message(sid, mid, et, key or None, body[at:])
    if tag == ACK:
        credits, n = struct.unpack_from(">II", body)
        return Ack(credits, [struct.unpack_from(">QQ", body, 8 + 16 * i) for i in range(n)])
    if tag == RESTART:
        return body
    raise ValueError(f"unknown connector frame tag {tag}")


def _tag_name(tag: int) -> str:
    return TAG_NAMES[tag] if 0 <= tag < len(TAG_NAMES) else f"tag {tag}"


def stream_id(name: bytes) -> int:
    """A stream id from its name: the first 64 bits of its SHA-256 (stable everywhere)."""
    return int(hashlib.sha256(name).hexdigest()[:16], 16)


# -- the source ------------------------------------------------------------------


class ConnectorSourceConfig(TCPSourceConfig):
    """Listen on ``host:port`` for Wallaroo connectors (the head's protocol); decode
    each Message's payload with ``decoder`` (``bytes -> message | None``).

    ``cookie`` must match the connector's Hello; a connector gets ``max_credits``
    credits and is topped up when it has ``refill_credits`` left.
    """

    def __init__(self, name: str, host: Optional[str], port: Any, decoder: Any, cookie: str,
                 max_credits: int = 10, refill_credits: int = 8, **kw: Any) -> None:
        super().__init__(name, host, port, decoder, **kw)
        self.cookie = cookie
        self.max_credits = max_credits
        self.refill_credits = refill_credits

    def check(self) -> None:
        """Raise ValueError naming the problem (as TCPSourceConfig, plus the credits)."""
        super().check()
        if not (isinstance(self.max_credits, int) and self.max_credits > 0
                and isinstance(self.refill_credits, int)
                and 0 <= self.refill_credits < self.max_credits):
            raise ValueError(
                f"SourceConnectorConfig {self.name!r}: need max_credits > 0 and "
                f"0 <= refill_credits < max_credits, got {self.max_credits!r} and "
                f"{self.refill_credits!r}")

    def make_source(self) -> "ConnectorSource":
        self.check()
        return ConnectorSource(self)


class _Session:
    """One connector's connection: handshake state, credits, its open streams, replies."""

    __slots__ = ("streaming", "credits", "streams", "acks", "out", "closing")

    def __init__(self) -> None:
        self.streaming = False
        self.credits = 0
        self.streams: set = set()
        self.acks: dict = {}  # stream id -> last message id not yet acked
        self.out = bytearray()
        self.closing = False


class ConnectorSource(TCPSource):
    """The server side of Wallaroo's connector protocol (see the module docstring)."""

    def __init__(self, config: ConnectorSourceConfig) -> None:
        super().__init__(config)
        self.sessions: dict = {}  # client -> _Session
        self.last_seen: dict = {}  # stream id -> last message id taken (kept across connections)
        self._cl: Optional[_Client] = None

    def read(self, max_n: int) -> list:
        out = super().read(max_n)
        for cl, session in list(self.sessions.items()):
            self._flush(cl, session)
        return out

    def _take(self, cl: _Client, out: list, limit: int, now: float, readable: bool) -> int:
        session = self.sessions.get(cl)
        if session is None:
            session = self.sessions[cl] = _Session()
        self._cl = cl
        took = super()._take(cl, out, limit, now, readable)
        self._flush(cl, session)
        if session.closing and not cl.closed:
            self._drop_client(cl)
        return took

    def _drop_client(self, cl: _Client) -> None:
        self.sessions.pop(cl, None)
        super()._drop_client(cl)

    def _decode(self, payload: bytes, out: list) -> None:
        session = self.sessions[self._cl]
        if session.closing:
            return
        self.counts["connector_frames"] += 1
        try:
            tag, fields = decode(payload)
        except ValueError as e:
            self._fail(session, str(e))
            return
        if tag == HELLO:
            self._hello(session, fields)
            return
        if not session.streaming:
            self._fail(session, f"{_tag_name(tag)} before Hello")
            return
        session.credits -= 1
        if tag == NOTIFY:
            self._notify(session, fields)
        elif tag == MESSAGE:
            self._message(session, fields, out)
        elif tag == EOS:
            self._eos(session, fields)
            return  # its Ack is the last word: a connector may close right after it
        elif tag == ERROR:
            self.errors.record("connector", self._cl.peer, f"the connector said: {fields}")
            session.closing = True
        else:
            self._fail(session, f"Invalid message: {_tag_name(tag)}")
        if session.credits <= self.config.refill_credits and not session.closing:
            self._refill(session)

    def _fail(self, session: _Session, why: str) -> None:
        """Tell the connector what is wrong and close its connection (as Wallaroo does)."""
        self.errors.record("connector", self._cl.peer, f"{why}; connection closed")
        session.out += error(why)
        session.closing = True

    def _hello(self, session: _Session, h: Hello) -> None:
        c = self.config
        if session.streaming:
            self._fail(session, "Hello twice")
        elif h.version != PROTOCOL_VERSION:
            self._fail(session, f"Unknown protocol version: {h.version}")
        elif h.cookie != c.cookie:
            self._fail(session, f"Bad cookie: {h.cookie}, wanted: {c.cookie}")
        else:
            session.streaming, session.credits = True, c.max_credits
            session.out += ok(c.max_credits)

    def _notify(self, session: _Session, n: Notify) -> None:
        taken = any(n.stream_id in s.streams for s in self.sessions.values())
        session.out += notify_ack(not taken, n.stream_id, self.last_seen.get(n.stream_id, NONE_SEEN))
        if not taken:
            session.streams.add(n.stream_id)
            self.counts["streams"] += 1

    def _message(self, session: _Session, m: Message, out: list) -> None:
        if m.stream_id not in session.streams:
            self._fail(session, f"Bad/unregistered stream_id {m.stream_id} with message_id "
                                f"{m.message_id}")
            return
        seen = self.last_seen.get(m.stream_id)
        if seen is not None and m.message_id <= seen:
            self.counts["repeats"] += 1  # already taken: a connector resending after a restart
            return
        self.last_seen[m.stream_id] = session.acks[m.stream_id] = m.message_id
        if m.message:
            super()._decode(m.message, out)

    def _eos(self, session: _Session, sid: int) -> None:
        session.streams.discard(sid)
        session.acks.pop(sid, None)
        session.out += ack(0, [(sid, self.last_seen.get(sid, NONE_SEEN))])

    def _refill(self, session: _Session) -> None:
        new = self.config.max_credits - session.credits
        acks = sorted(session.acks.items())
        session.acks.clear()
        if new > 0 or acks:
            session.out += ack(max(new, 0), acks)
            self.counts["acks"] += 1
        session.credits += max(new, 0)

    def _flush(self, cl: _Client, session: _Session) -> None:
        """Send queued replies without blocking; what the socket does not take waits."""
        if not session.out or cl.closed:
            return
        try:
            n = cl.sock.send(session.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.errors.record("connection", cl.peer, e)
            session.closing = True
            return
        del session.out[:n]
