"""The TCP sink against a real receiver on 127.0.0.1: delivery, reconnects, the bound."""

import socket
import struct
import time

import pytest

from wallaroo_nb.connectors.framing import FrameParser, frame
from wallaroo_nb.connectors.tcp import TCPSinkConfig

pytestmark = pytest.mark.timeout(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A listening socket the test reads from, one connection at a time."""

    def __init__(self, port: int):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen()
        self.lsock.setblocking(False)
        self.conn = None

    def collect(self, sink, nbytes: int, timeout: float = 5.0) -> bytes:
        """Flush the sink and read until ``nbytes`` arrived on the current connection."""
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < nbytes and time.monotonic() < deadline:
            sink.flush()
            if self.conn is None:
                try:
                    self.conn, _ = self.lsock.accept()
                    self.conn.settimeout(0.02)
                except BlockingIOError:
                    time.sleep(0.01)
                    continue
            try:
                data += self.conn.recv(65536)
            except TimeoutError:
                pass
        return data

    def close(self):
        if self.conn:
            self.conn.close()
        self.lsock.close()


@pytest.fixture
def sinks():
    made = []

    def make(port, **kw):
        sink = TCPSinkConfig("127.0.0.1", port, kw.pop("encoder", lambda s: frame(s.encode())),
                             **kw).make_sink()
        sink.open(0)
        made.append(sink)
        return sink

    yield make
    for s in made:
        s.config.close_timeout = 0
        s.close()


@pytest.fixture
def receivers():
    made = []

    def make(port):
        r = Receiver(port)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def frames_of(data: bytes) -> list:
    p = FrameParser(max_frame=2**30)
    p.feed(data)
    out = []
    while (f := p.next_frame()) is not None:
        out.append(f.decode())
    assert p.buffered() == 0, "the stream must end on a frame boundary"
    return out


def test_writes_the_encoders_bytes_unchanged(sinks, receivers):
    port = free_port()
    rx = receivers(port)
    sink = sinks(port, encoder=lambda s: s)  # str goes out as UTF-8, no framing added
    sink.write(["a", "bc", "déf"])
    assert rx.collect(sink, 7) == "abcdéf".encode()
    assert sink.stats()["sent"] == 3 and sink.stats()["connected"]


def test_buffers_until_the_receiver_appears(sinks, receivers):
    port = free_port()
    sink = sinks(port, reconnect_min=0.01, reconnect_max=0.05)
    sink.write([f"m{i}" for i in range(10)])
    assert sink.stats()["buffered_messages"] == 10 and not sink.stats()["connected"]
    assert sink.wait_hint() is not None
    rx = receivers(port)
    out = frames_of(rx.collect(sink, 10 * 6))
    assert out == [f"m{i}" for i in range(10)]
    assert sink.stats()["connect_failures"] >= 1
    assert [e["where"] for e in sink.drain_errors()] == ["connection"]  # once, not per retry


def test_reconnects_after_the_receiver_restarts(sinks, receivers):
    port = free_port()
    rx = receivers(port)
    sink = sinks(port, reconnect_min=0.01, reconnect_max=0.05)
    sink.write(["one", "two"])
    assert frames_of(rx.collect(sink, 14)) == ["one", "two"]
    rx.close()  # the receiver goes away ...
    deadline = time.monotonic() + 5
    while sink.stats().get("disconnects", 0) == 0 and time.monotonic() < deadline:
        sink.flush()
        time.sleep(0.01)
    sink.write(["three", "four"])
    rx2 = receivers(port)  # ... and comes back on the same port
    assert frames_of(rx2.collect(sink, 9 + 8)) == ["three", "four"]
    stats = sink.stats()
    assert stats["connects"] == 2 and stats["disconnects"] == 1


def test_a_new_connection_starts_at_a_message_boundary(sinks, receivers):
    port = free_port()
    rx = receivers(port)
    sink = sinks(port, reconnect_min=0.01, max_buffer=64 * 2**20)
    big = "x" * (8 * 2**20)  # far more than the socket buffers hold
    sink.write([big, "after"])
    rx.collect(sink, 1, timeout=1)  # connect, take a little, then stop reading
    for _ in range(20):
        sink.flush()
    stats = sink.stats()
    assert stats["sent"] == 0 and stats["sent_bytes"] > 0  # the big one is half out
    rx.conn.close()  # the receiver dies mid-message
    rx.conn = None
    out = frames_of(rx.collect(sink, 4 + len(big) + 9, timeout=10))
    assert out == [big, "after"]  # sent again whole on the new connection


def test_with_overflow_drop_the_oldest_are_dropped_and_counted(sinks, receivers):
    port = free_port()
    sink = sinks(port, max_buffer=100, overflow="drop", reconnect_min=0.01)
    sink.write([f"{i:09d}" for i in range(30)])  # 13 bytes each, no receiver
    stats = sink.stats()
    assert stats["buffered_bytes"] <= 100 and sink.ready()
    kept = stats["buffered_messages"]
    assert stats["dropped"] == 30 - kept and stats["dropped_bytes"] == 13 * (30 - kept)
    errors = [e for e in sink.drain_errors() if e["where"] == "overflow"]
    assert "dropped" in errors[0]["error"] and "overflow='drop'" in errors[0]["error"]
    rx = receivers(port)
    assert frames_of(rx.collect(sink, 13 * kept)) == [f"{i:09d}" for i in range(30 - kept, 30)]


def test_by_default_an_absent_receiver_applies_backpressure_and_nothing_is_dropped(sinks, receivers):
    port = free_port()
    sink = sinks(port, max_buffer=100, reconnect_min=0.01, reconnect_max=0.02)
    assert sink.ready()
    t0 = time.monotonic()
    sink.write([f"{i:09d}" for i in range(30)])  # 390 bytes, no receiver: never blocks
    assert time.monotonic() - t0 < 0.5
    assert not sink.ready() and not sink.ready()
    stats = sink.stats()
    assert stats["dropped"] == 0 and stats["buffered_messages"] == 30
    assert stats["backpressure"] == 1  # one episode, however often it is asked
    rx = receivers(port)
    assert frames_of(rx.collect(sink, 13 * 30)) == [f"{i:09d}" for i in range(30)]
    deadline = time.monotonic() + 5
    while not sink.ready() and time.monotonic() < deadline:  # the receiver's TCP acks
        sink.flush()
        time.sleep(0.01)
    assert sink.ready() and sink.stats()["acked"] == 30


def test_unacknowledged_messages_are_sent_again_after_a_reset(sinks, receivers):
    port = free_port()
    rx = receivers(port)
    rx.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by the accepted
    sink = sinks(port, reconnect_min=0.01, max_buffer=64 * 2**20)
    msgs = [f"{i:07d}" * 10 for i in range(20_000)]  # 1.4 MB: far more than the receiver takes
    sink.write(msgs)
    rx.collect(sink, 1, timeout=1)  # accept, read nothing
    deadline = time.monotonic() + 2
    while sink.stats()["sent"] < 1000 and time.monotonic() < deadline:
        sink.flush()
    time.sleep(0.2)
    sink.flush()
    stats = sink.stats()
    acked = stats["acked"]
    assert stats["sent"] > acked + 100, stats  # in the sink's kernel, not yet acknowledged
    rx.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rx.conn.close()  # the receiver dies: a reset, its unread data is gone
    rx.conn = None
    data = rx.collect(sink, 74 * (len(msgs) - acked), timeout=10)
    got = frames_of(data)
    assert got == msgs[len(msgs) - len(got):]  # a whole suffix, in order
    assert len(got) >= len(msgs) - acked  # all that was not acknowledged came again
    assert sink.stats()["resent"] > 0


def test_held_outputs_wait_for_their_epoch_to_commit(sinks, receivers):
    port = free_port()
    rx = receivers(port)
    sink = sinks(port)
    sink.hold()
    sink.write(["a", "b"])
    state1 = sink.epoch_state(1)
    sink.write(["c"])  # epoch 2, not committed here
    assert state1 == {"unsent": [], "pending": [(1, [frame(b"a"), frame(b"b")])]}
    assert rx.collect(sink, 1, timeout=0.3) == b""  # nothing before the commit
    sink.commit(1)
    assert frames_of(rx.collect(sink, 10)) == ["a", "b"]
    assert sink.stats()["held_messages"] == 1


def test_restore_sends_what_the_checkpoint_did_not_know_was_written(sinks, receivers):
    port = free_port()
    sink = sinks(port, reconnect_min=0.01)
    sink.hold()
    sink.write(["x", "y"])
    sink.epoch_state(1)
    sink.commit(1)  # committed, but the receiver is away: not written
    sink.write(["z"])
    state = sink.epoch_state(2)  # the worker dies after this checkpoint commits
    assert state["unsent"] == [frame(b"x"), frame(b"y")] and state["pending"] == [(2, [frame(b"z")])]
    fresh = sinks(port, reconnect_min=0.01)
    fresh.hold()
    fresh.restore(state)
    rx = receivers(port)
    assert frames_of(rx.collect(fresh, 15)) == ["x", "y", "z"]
    assert fresh.stats()["restored"] == 3


def test_encoder_errors_are_recorded_and_skipped(sinks, receivers):
    port = free_port()
    rx = receivers(port)

    def enc(x):
        if x == "bad":
            raise KeyError(x)
        return frame(x.encode())

    sink = sinks(port, encoder=enc)
    sink.write(["a", "bad", "b"])
    assert frames_of(rx.collect(sink, 10)) == ["a", "b"]
    (err,) = sink.drain_errors()
    assert err["where"] == "encoder" and err["input"] == "'bad'" and "KeyError" in err["error"]


def test_close_counts_what_it_could_not_deliver(sinks):
    sink = sinks(free_port(), close_timeout=0.05)
    sink.write(["a", "b"])
    sink.close()
    assert sink.stats()["dropped"] == 2 and sink.stats()["buffered_messages"] == 0
