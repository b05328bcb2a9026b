"""A framed TCP receiver for tests of the TCP sink: a thread on a fixed port that can
go away and come back, collecting every whole frame as a JSON value (a tuple)."""

from __future__ import annotations

import json
import selectors
import socket
import threading

import pytest

from wallaroo_nb.connectors.framing import FrameParser, frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def encode_json(out) -> bytes:
    """A TCP sink encoder: the output as framed JSON."""
    return frame(json.dumps(out).encode())


class Receiver:
    """A framed TCP receiver on a fixed port, in a thread, that can go away and come back.

    It leaves gracefully, as a receiver that is shut down does: it stops listening,
    half-closes each connection and reads it to the end, so it loses nothing its TCP
    acknowledged (a receiver that crashes loses its unread socket buffer, which no
    sender can know about)."""

    def __init__(self, port: int):
        self.port = port
        self.got: list = []
        self.lock = threading.Lock()
        self.thread = None
        self.start()

    def start(self) -> None:
        self.stop_flag = threading.Event()
        lsock = socket.socket()
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", self.port))
        lsock.listen()
        self.thread = threading.Thread(target=self._run, args=(lsock,), daemon=True)
        self.thread.start()

    def leave(self) -> None:
        self.stop_flag.set()
        self.thread.join(10)
        assert not self.thread.is_alive()

    def messages(self) -> list:
        with self.lock:
            return list(self.got)

    def _run(self, lsock: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(lsock, selectors.EVENT_READ)
        conns: dict = {}
        while not self.stop_flag.is_set():
            for key, _ in sel.select(0.05):
                if key.fileobj is lsock:
                    c, _ = lsock.accept()
                    conns[c] = FrameParser(max_frame=2**20)
                    sel.register(c, selectors.EVENT_READ)
                elif not self._pull(key.fileobj, conns[key.fileobj]):
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    del conns[key.fileobj]
        sel.unregister(lsock)
        lsock.close()  # away: connecting is refused from now on
        for c, parser in conns.items():
            c.shutdown(socket.SHUT_WR)  # the sink sees us go and closes its side
            c.settimeout(5)
            while self._pull(c, parser):
                pass
            c.close()
        sel.close()

    def _pull(self, c: socket.socket, parser: FrameParser) -> bool:
        try:
            data = c.recv(65536)
        except (ConnectionResetError, TimeoutError):
            data = b""
        if not data:
            return False  # a partial frame left in the parser is a message sent again
        parser.feed(data)
        out = []
        while (payload := parser.next_frame()) is not None:
            out.append(tuple(json.loads(payload)))
        with self.lock:
            self.got.extend(out)
        return True

    def close(self) -> None:
        """Leave, if still there (the end of a test)."""
        if self.thread is not None and self.thread.is_alive():
            self.leave()


@pytest.fixture(name="receiver")
def receiver_fixture():
    """receiver(port) -> a started Receiver; every one is closed at the end of the test
    (request it before ``start``, so the apps stop first and no sink holds it up)."""
    made = []

    def make(port: int) -> Receiver:
        made.append(Receiver(port))
        return made[-1]

    yield make
    for r in made:
        r.close()
