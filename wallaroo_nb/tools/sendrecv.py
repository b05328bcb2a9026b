"""Send data into a TCP source and receive what a TCP sink writes (like Wallaroo's giles).

``send`` frames each line or record (4-byte big-endian length by default) and
sends it at a given rate; ``receive`` listens where a TCP sink connects and
writes what arrives, optionally unframing it into one message per line. Both are
plain functions for tests and notebooks, and ``wallaroo-nb send`` /
``wallaroo-nb receive`` subcommands through the ``*_add_arguments`` / ``*_main``
pairs at the bottom.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import selectors
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from ..connectors.connector_protocol import stream_frame_06, unstream_06, unstream_head
from ..connectors.framing import DEFAULT_LENGTH_FMT, FrameError, FrameParser, frame
from .connector_client import send_at_least_once

DEFAULT_HOST = "127.0.0.1"
SEND_CHUNK = 64 * 1024

Data = Union[str, os.PathLike, Iterable]


# -- send ----------------------------------------------------------------------


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    return bytes(item)


def _lines(f: Any) -> Iterator[bytes]:
    """A file's lines without their line endings, as bytes."""
    for line in f:
        yield _as_bytes(line).rstrip(b"\r\n")


def _framed(f: Any, length_fmt: str) -> Iterator[bytes]:
    """The records of a file of length-prefixed records (giles' framed-file format)."""
    hdr = struct.Struct(length_fmt)
    while True:
        head = f.read(hdr.size)
        if not head:
            return
        if len(head) < hdr.size:
            raise ValueError(f"framed file ends inside a {hdr.size}-byte length header")
        (n,) = hdr.unpack(head)
        payload = f.read(n)
        if len(payload) < n:
            raise ValueError(f"framed file ends inside a record ({len(payload)} of {n} bytes)")
        yield payload


def _one_pass(data: Data, framed_file: Optional[str] = None) -> Callable[[], Iterator[bytes]]:
    """A function giving the records once more each time it is called: a file's lines,
    or with ``framed_file`` (a length format) its length-prefixed records."""
    if isinstance(data, (str, os.PathLike)):
        path = "/dev/stdin" if str(data) == "-" else os.fspath(data)

        def from_file() -> Iterator[bytes]:
            with open(path, "rb") as f:
                yield from (_framed(f, framed_file) if framed_file else _lines(f))
        return from_file
    if hasattr(data, "read"):  # an open file: rewind for each pass if we can
        def from_handle() -> Iterator[bytes]:
            if data.seekable():
                data.seek(0)
            yield from _lines(data)
        return from_handle
    if isinstance(data, (list, tuple)):
        return lambda: (_as_bytes(x) for x in data)
    cache: list = []  # a one-shot iterable: keep it for later passes

    def from_iter() -> Iterator[bytes]:
        if cache:
            yield from cache
            return
        for x in data:
            cache.append(_as_bytes(x))
            yield cache[-1]
    return from_iter


def records(data: Data, repeat: int = 1, framed_file: Optional[str] = None) -> Iterator[bytes]:
    """The records of ``data``, ``repeat`` times over (0 = forever); ``framed_file``:
    ``data`` is a file of records each prefixed with a header of that struct format."""
    one_pass = _one_pass(data, framed_file)
    passes = itertools.count() if repeat == 0 else range(repeat)
    for _ in passes:
        yield from one_pass()


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """Connect, retrying while nothing listens yet, for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=max(0.1, timeout))
            sock.settimeout(None)
            return sock
        except (ConnectionRefusedError, ConnectionResetError, socket.timeout):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def send(
    host: str,
    port: int,
    data: Data,
    rate: Optional[float] = None,
    repeat: int = 1,
    framed: bool = True,
    length_fmt: str = DEFAULT_LENGTH_FMT,
    limit: Optional[int] = None,
    connect_timeout: float = 10.0,
    framed_file: Optional[str] = None,
    stream_frames: Optional[str] = None,
    cookie: Optional[str] = None,
    stream_name: str = "wallaroo-nb send",
) -> int:
    """Send each record of ``data`` (a path, "-", a file, or an iterable of str/bytes).

    Records are a file's lines, or with ``framed_file`` (a struct format such as
    ">I") the length-prefixed records of a binary file. Each record is framed with
    a ``length_fmt`` header unless ``framed`` is False (then records are sent as
    they are, a file's lines without their newlines). ``stream_frames="0.6"`` sends
    Wallaroo 0.6's stream messages instead (what a ``SourceConnectorConfig`` of
    0.6.0/0.6.1 reads); a ``cookie`` speaks the head's connector protocol (a
    ``SourceConnectorConfig(..., cookie=...)``) as one stream named ``stream_name``.
    ``rate`` is in records per second (None: as fast as the receiver takes them);
    ``repeat`` passes over the data (0: forever); ``limit`` stops after that many
    records. Returns the number of records sent.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 records/s, got {rate}")
    if stream_frames not in (None, "0.6"):
        raise ValueError(f"stream_frames must be '0.6' or None, got {stream_frames!r}")
    items = records(data, repeat, framed_file)
    if limit is not None:
        items = itertools.islice(items, limit)
    if cookie is not None:
        with connect(host, int(port), connect_timeout) as sock:
            return send_at_least_once(sock, items, cookie, stream_name, rate)
    if stream_frames == "0.6":
        wire: Callable[[bytes], bytes] = stream_frame_06
    elif framed:
        struct.calcsize(length_fmt)  # a bad format fails here, before connecting

        def wire(item: bytes) -> bytes:
            return frame(item, length_fmt)
    else:
        wire = bytes
    with connect(host, int(port), connect_timeout) as sock:
        return _send_paced(sock, items, rate, wire)


def _send_paced(sock: socket.socket, items: Iterable[bytes], rate: Optional[float],
                wire: Callable[[bytes], bytes]) -> int:
    buf = bytearray()
    sent = 0
    t0 = time.monotonic()
    for item in items:
        buf += wire(item)
        sent += 1
        if rate is not None:
            ahead = t0 + sent / rate - time.monotonic()
            if ahead > 0.001:  # batch what is due, sleep only for real gaps
                sock.sendall(buf)
                buf.clear()
                time.sleep(ahead)
        if len(buf) >= SEND_CHUNK:
            sock.sendall(buf)
            buf.clear()
    if buf:
        sock.sendall(buf)
    return sent


# -- receive -------------------------------------------------------------------


def _writer(out: Any) -> tuple:
    """(write(bytes), flush(), close()) for a path, a file object, a callable or stdout."""
    if out is None:
        out = sys.stdout
    if callable(out) and not hasattr(out, "write"):
        return out, lambda: None, lambda: None
    if isinstance(out, (str, os.PathLike)):
        f = open(out, "wb")
        return f.write, f.flush, f.close
    if hasattr(out, "buffer"):  # text stdout or a text file: write bytes underneath
        out.flush()
        return out.buffer.write, out.buffer.flush, lambda: None
    if isinstance(out, io.TextIOBase):
        return (lambda b: out.write(b.decode(errors="replace"))), out.flush, lambda: None
    return out.write, getattr(out, "flush", lambda: None), lambda: None


# Wallaroo's stream messages: (length header format, payload of a frame's body)
STREAM_FRAMES = {"0.6": ("<I", unstream_06), "head": (">I", unstream_head)}


class _Conn:
    __slots__ = ("sock", "peer", "parser", "unwrap", "tail")

    def __init__(self, sock: socket.socket, peer: str, parser: Optional[FrameParser],
                 unwrap: Optional[Callable[[bytes], bytes]] = None,
                 lines: bool = False) -> None:
        self.sock, self.peer, self.parser, self.unwrap = sock, peer, parser, unwrap
        self.tail: Optional[bytearray] = bytearray() if lines else None  # an unfinished line


def receive(
    host: str = DEFAULT_HOST,
    port: int = 0,
    out: Any = None,
    framed: bool = False,
    length_fmt: str = DEFAULT_LENGTH_FMT,
    separator: bytes = b"\n",
    count: Optional[int] = None,
    idle_timeout: Optional[float] = None,
    max_frame: int = 64 * 1024 * 1024,
    ready: Optional[Callable[[int], None]] = None,
    stop: Optional[threading.Event] = None,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    stream_frames: Optional[str] = None,
    lines: bool = False,
) -> dict:
    """Listen on ``host:port`` and write what arrives to ``out`` until told to stop.

    Accepts any number of connections, at once or one after another (a sink
    reconnecting, or one sink per worker). Unframed, bytes are written as they
    arrive; ``framed`` writes each payload followed by ``separator``, so whole
    messages never interleave. ``out`` is a path, a file (text or binary), a
    callable taking bytes, or None for stdout. Stops after ``count`` messages
    (framed) or chunks, after ``idle_timeout`` seconds without data, when ``stop``
    is set, or on Ctrl-C. ``ready(port)`` is called once listening. Returns counts.
    ``stream_frames`` ("0.6" or "head") unframes Wallaroo's stream messages and writes
    their payloads, one per line; ``lines`` (unframed) writes each connection's whole
    lines only, so lines of several connections never interleave (a line a message).
    """
    reading = _reading(framed, length_fmt, stream_frames, lines, max_frame)
    write, flush, close_out = _writer(out)
    stats = {"messages": 0, "bytes": 0, "connections": 0, "errors": 0}
    sel = selectors.DefaultSelector()
    try:
        lsock = _listener(host, port)
        sel.register(lsock, selectors.EVENT_READ, None)
        if ready is not None:
            ready(lsock.getsockname()[1])
        last_data = time.monotonic()
        while not (stop is not None and stop.is_set()):
            if count is not None and stats["messages"] >= count:
                break
            if idle_timeout is not None and time.monotonic() - last_data > idle_timeout:
                break
            for key, _ in sel.select(0.1):
                if key.data is None:
                    _accept(lsock, sel, reading, stats)
                elif _pull(key.data, sel, write, separator, stats, log, count):
                    last_data = time.monotonic()
            flush()
    except KeyboardInterrupt:
        pass
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()
        flush()
        close_out()
    return stats


def _reading(framed: bool, length_fmt: str, stream_frames: Optional[str], lines: bool,
             max_frame: int) -> tuple:
    """How to read each connection: (length format or None, max frame, unwrap, lines)."""
    if stream_frames is None:
        return (length_fmt if framed else None), max_frame, None, lines and not framed
    if stream_frames not in STREAM_FRAMES:
        raise ValueError(f"stream_frames must be one of {sorted(STREAM_FRAMES)} or None, "
                         f"got {stream_frames!r}")
    fmt, unwrap = STREAM_FRAMES[stream_frames]
    return fmt, max_frame, unwrap, False


def _listener(host: str, port: int) -> socket.socket:
    lsock = socket.socket()
    try:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((host, int(port)))
        lsock.listen()
        lsock.setblocking(False)
    except OSError:
        lsock.close()
        raise
    return lsock


def _accept(lsock: socket.socket, sel: selectors.BaseSelector, reading: tuple,
            stats: dict) -> None:
    try:
        sock, addr = lsock.accept()
    except BlockingIOError:
        return
    sock.setblocking(False)
    length_fmt, max_frame, unwrap, lines = reading
    parser = (FrameParser(struct.calcsize(length_fmt), length_fmt, max_frame)
              if length_fmt is not None else None)
    sel.register(sock, selectors.EVENT_READ,
                 _Conn(sock, f"{addr[0]}:{addr[1]}", parser, unwrap, lines))
    stats["connections"] += 1


def _pull(conn: _Conn, sel: selectors.BaseSelector, write: Callable, separator: bytes,
          stats: dict, log: Callable[[str], None], count: Optional[int]) -> bool:
    """Read from one connection and write what it completes; False if it closed."""
    try:
        data = conn.sock.recv(SEND_CHUNK)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as e:
        log(f"receive: {conn.peer}: {e}")
        data = b""
    if not data:
        if conn.tail:
            write(bytes(conn.tail) + b"\n")  # the last line had no newline
            stats["messages"] += 1
        if conn.parser is not None and conn.parser.buffered():
            stats["errors"] += 1
            log(f"receive: {conn.peer} closed mid-frame ({conn.parser.buffered()} bytes lost)")
        sel.unregister(conn.sock)
        conn.sock.close()
        return False
    stats["bytes"] += len(data)
    if conn.tail is not None:
        conn.tail += data
        end = conn.tail.rfind(b"\n") + 1
        if end:
            write(bytes(conn.tail[:end]))
            stats["messages"] += conn.tail.count(b"\n", 0, end)
            del conn.tail[:end]
        return True
    if conn.parser is None:
        write(data)
        stats["messages"] += 1
        return True
    conn.parser.feed(data)
    try:
        while count is None or stats["messages"] < count:
            payload = conn.parser.next_frame()
            if payload is None:
                break
            if conn.unwrap is not None:
                payload = conn.unwrap(payload)
            write(payload + separator)
            stats["messages"] += 1
    except (FrameError, struct.error) as e:
        stats["errors"] += 1
        log(f"receive: {conn.peer}: {e}; closing that connection")
        sel.unregister(conn.sock)
        conn.sock.close()
    return True


# -- command line --------------------------------------------------------------


def parse_address(text: str) -> tuple:
    """``host:port`` or ``port`` -> ``(host, port)``, host defaulting to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected [host:]port, got {text!r}")
    return host or DEFAULT_HOST, int(port)


def send_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``wallaroo-nb send``."""
    parser.add_argument("address", type=parse_address, help="[host:]port of a TCP source")
    parser.add_argument("file", nargs="?", default="-",
                        help="records, one per line (default: stdin)")
    parser.add_argument("--framed-file", action="store_true",
                        help="the file holds length-prefixed binary records (giles' framed "
                             "files; header as --length-fmt), not lines")
    parser.add_argument("--rate", type=float, default=None, help="records per second (default: as fast as possible)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the file (0: forever)")
    parser.add_argument("--messages", "--limit", dest="messages", type=int, default=None,
                        help="stop after this many records")
    parser.add_argument("--stream-frames", choices=["0.6"], default=None,
                        help="send Wallaroo 0.6's stream messages (for a 0.6.0/0.6.1 "
                             "SourceConnectorConfig)")
    parser.add_argument("--at-least-once", dest="cookie", metavar="COOKIE", default=None,
                        help="speak the connector protocol with this cookie (for a "
                             "SourceConnectorConfig(..., cookie=...))")
    parser.add_argument("--stream-name", default="wallaroo-nb send",
                        help="the stream's name with --at-least-once")
    parser.add_argument("--no-framing", dest="framed", action="store_false",
                        help="send lines as they are, without a length header")
    parser.add_argument("--length-fmt", default=DEFAULT_LENGTH_FMT,
                        help="struct format of the length header (default >I)")
    parser.add_argument("--connect-timeout", type=float, default=10.0,
                        help="seconds to keep trying to connect")


def send_main(args: argparse.Namespace) -> int:
    """Run ``wallaroo-nb send``; returns the exit status."""
    host, port = args.address
    data = args.file if args.file == "-" else Path(args.file)
    t0 = time.monotonic()
    try:
        n = send(host, port, data, rate=args.rate, repeat=args.repeat, framed=args.framed,
                 length_fmt=args.length_fmt, limit=args.messages,
                 connect_timeout=args.connect_timeout,
                 framed_file=args.length_fmt if args.framed_file else None,
                 stream_frames=args.stream_frames, cookie=args.cookie,
                 stream_name=args.stream_name)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError, RuntimeError) as e:
        print(f"send: {host}:{port}: {e}", file=sys.stderr)
        return 1
    print(f"sent {n} records in {time.monotonic() - t0:.2f}s", file=sys.stderr)
    return 0


def receive_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``wallaroo-nb receive``."""
    parser.add_argument("address", type=parse_address, help="[host:]port to listen on")
    parser.add_argument("--out", default=None, help="file to write (default: stdout)")
    parser.add_argument("--framed", action="store_true",
                        help="unframe length-prefixed messages, write one per line")
    parser.add_argument("--length-fmt", default=DEFAULT_LENGTH_FMT,
                        help="struct format of the length header (default >I)")
    parser.add_argument("--lines", action="store_true",
                        help="unframed data is newline-separated: write whole lines only, so "
                             "lines from several connections (workers) never interleave")
    parser.add_argument("--stream-frames", choices=sorted(STREAM_FRAMES), default=None,
                        help="unframe Wallaroo's stream messages (a stream_message_encoder's "
                             "output: 0.6 for 0.6.0/0.6.1, head for the development head) and "
                             "write their payloads, one per line")
    parser.add_argument("--count", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop after this many seconds without data")


def receive_main(args: argparse.Namespace) -> int:
    """Run ``wallaroo-nb receive``; returns the exit status."""
    host, port = args.address

    def ready(bound: int) -> None:
        print(f"receiving on {host}:{bound}", file=sys.stderr, flush=True)

    try:
        stats = receive(host, port, out=args.out, framed=args.framed,
                        length_fmt=args.length_fmt, count=args.count,
                        idle_timeout=args.idle_timeout, ready=ready,
                        stream_frames=args.stream_frames, lines=args.lines)
    except OSError as e:
        print(f"receive: {host}:{port}: {e}", file=sys.stderr)
        return 1
    print(f"received {stats['messages']} messages, {stats['bytes']} bytes "
          f"over {stats['connections']} connections", file=sys.stderr)
    return 0 if stats["errors"] == 0 else 1


COMMANDS = {
    "send": (send_add_arguments, send_main, "send framed records to a TCP source"),
    "receive": (receive_add_arguments, receive_main, "listen for a TCP sink and write what arrives"),
}
