"""Length-prefixed framing, plus the small helpers the TCP and Kafka connectors share.

Wallaroo's TCP wire format is a fixed-size length header (by default 4 bytes,
big-endian) then that many payload bytes. The parser is incremental, so bytes may
arrive split at any point, and it bounds the frame size so garbage on the wire
cannot make it allocate without limit.
"""

from __future__ import annotations

import collections
import logging
import struct
from typing import Any, Callable, Optional

from ..errors import error_record, short_repr

DEFAULT_HEADER_LENGTH = 4
DEFAULT_LENGTH_FMT = ">I"
DEFAULT_MAX_FRAME = 1024 * 1024
DEFAULT_HOST = "127.0.0.1"  # TCP connectors bind and connect here unless told otherwise


class FrameError(ValueError):
    """The byte stream broke the framing rules (for example a frame too large)."""


def length_struct(header_length: int, length_fmt: str) -> struct.Struct:
    """The struct that reads a header; ValueError if the format and length disagree."""
    try:
        st = struct.Struct(length_fmt)
    except struct.error as e:
        raise ValueError(f"bad length_fmt {length_fmt!r}: {e}") from None
    if st.size != header_length:
        raise ValueError(
            f"length_fmt {length_fmt!r} reads {st.size} bytes but header_length is {header_length}"
        )
    if len(st.unpack(bytes(st.size))) != 1:
        raise ValueError(f"length_fmt {length_fmt!r} must unpack exactly one integer")
    return st


def frame(payload: bytes, length_fmt: str = DEFAULT_LENGTH_FMT) -> bytes:
    """``payload`` with its length header in front."""
    return struct.pack(length_fmt, len(payload)) + payload


class FrameParser:
    """Incremental parser: ``feed`` bytes, then ``next_frame`` until it returns None.

    The buffer never holds more than one partial frame plus what was fed since the
    last complete frame was taken, so its size is bounded by the caller's reads.
    """

    def __init__(
        self,
        header_length: int = DEFAULT_HEADER_LENGTH,
        length_fmt: str = DEFAULT_LENGTH_FMT,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self._hdr = length_struct(header_length, length_fmt)
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0  # start of unparsed data in _buf

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]  # compact rarely: amortized O(1) per byte
            self._pos = 0
        self._buf += data

    def next_frame(self) -> Optional[bytes]:
        """The next complete payload, or None; FrameError if the header is out of bounds."""
        hsize = self._hdr.size
        avail = len(self._buf) - self._pos
        if avail < hsize:
            return None
        (n,) = self._hdr.unpack_from(self._buf, self._pos)
        if n < 0 or n > self.max_frame:
            raise FrameError(f"frame of {n} bytes exceeds max_frame={self.max_frame}")
        if avail < hsize + n:
            return None
        start = self._pos + hsize
        self._pos = start + n
        return bytes(self._buf[start : self._pos])

    def has_frame(self) -> bool:
        """Whether ``next_frame`` would return a payload (or raise) right now."""
        hsize = self._hdr.size
        avail = len(self._buf) - self._pos
        if avail < hsize:
            return False
        (n,) = self._hdr.unpack_from(self._buf, self._pos)
        return n < 0 or n > self.max_frame or avail >= hsize + n

    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf) - self._pos


def decoder_parts(decoder: Any) -> tuple[Callable[[bytes], Any], int, str]:
    """(fn, header_length, length_fmt) of a ``@decoder`` object or a plain function."""
    fn = getattr(decoder, "fn", decoder)
    if not callable(fn):
        raise ValueError(f"decoder {decoder!r} is not callable")
    header_length = getattr(decoder, "header_length", DEFAULT_HEADER_LENGTH)
    length_fmt = getattr(decoder, "length_fmt", DEFAULT_LENGTH_FMT)
    # Wallaroo's own decoder classes expose header_length as a method.
    if callable(header_length):
        header_length = header_length()
    return fn, int(header_length), str(length_fmt)


def encoder_fn(encoder: Any) -> Callable[[Any], Any]:
    """The function behind an ``@encoder`` object or a plain function."""
    fn = getattr(encoder, "fn", encoder)
    if not callable(fn):
        raise ValueError(f"encoder {encoder!r} is not callable")
    return fn


class ErrorLog:
    """Recent errors of one connector, for the engine to drain, and their counts.

    Records are dicts of ``errors.ErrorRecord``'s fields (the connector contract of
    ``drain_errors``), made as the engine makes its own. At most
    ``limit`` undrained records are kept (older ones are dropped and counted in
    ``lost``); counts are never lost. Logging is rate-limited so garbage input cannot
    flood the worker's log.
    """

    def __init__(self, step: str, logger: logging.Logger, limit: int = 100) -> None:
        self.step = step
        self.log = logger
        self.counts: collections.Counter = collections.Counter()
        self.lost = 0
        self._recent: collections.deque = collections.deque(maxlen=limit)

    def record(self, where: str, input: Any, error: Any, with_traceback: bool = False) -> None:
        """Count and keep one error; ``error`` is an exception or a message."""
        self.counts[where] += 1
        if len(self._recent) == self._recent.maxlen:
            self.lost += 1
        record = error_record(self.step, where, error, value=input,
                              with_traceback=with_traceback)
        self._recent.append(record)
        n = self.counts[where]
        if n <= 5 or n % 1000 == 0:
            self.log.warning("%s: %s error #%d: %s (input %s)", self.step, where, n,
                             record.error, short_repr(input, 80))

    def drain(self) -> list:
        """The records kept since the last drain, oldest first."""
        out = [r._asdict() for r in self._recent]
        self._recent.clear()
        return out

    def stats(self, counts: dict, names: tuple) -> dict:
        """A connector's stats(): ``names`` (0 until counted), its ``counts``, and this
        log's errors by kind as ``errors_<kind>``."""
        out = dict.fromkeys(names, 0)
        out.update(counts)
        out.update({f"errors_{k}": v for k, v in self.counts.items()})
        return out


def tcp_port(port: Any) -> int:
    """A TCP port from an int or a numeric string (Wallaroo's parsers give strings)."""
    try:
        p = int(port)
    except (TypeError, ValueError):
        raise ValueError(f"port must be a number, got {port!r}") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"port {p} is out of range 0..65535")
    return p
