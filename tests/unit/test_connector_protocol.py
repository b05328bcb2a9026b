"""Wallaroo's connector wire formats: the connector-protocol source against our own
connector client and against hand-written frames (bad cookie, unknown stream, repeats),
and send/receive of framed files and stream messages, all over 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from wallaroo_nb.connectors import connector_protocol as cp
from wallaroo_nb.connectors.tcp import TCPSourceConfig
from wallaroo_nb.testing import read_source as read_n
from wallaroo_nb.tools import sendrecv
from wallaroo_nb.tools.connector_client import Connection, ConnectorError, read_frame

pytestmark = pytest.mark.timeout(30)


def in_thread(fn, *args, **kw):
    result = {}

    def target():
        try:
            result["value"] = fn(*args, **kw)
        except Exception as e:  # handed to the test
            result["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, result


@pytest.fixture
def source():
    made = []

    def make(cookie="tacos", max_credits=4, refill_credits=1, decoder=bytes.decode):
        src = cp.ConnectorSourceConfig("feed", "127.0.0.1", 0, decoder, cookie=cookie,
                                       max_credits=max_credits,
                                       refill_credits=refill_credits).make_source()
        src.open(0)
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


def pump_until_done(src, thread, n, timeout=10.0):
    """Read the source (answering the connector) until ``n`` messages and the thread ends."""
    got = read_n(src, n, timeout=timeout)
    while thread.is_alive():
        got += src.read(100)
        thread.join(0.01)
    return got


def test_a_stream_goes_through_with_credits_refilled_and_is_acked_at_its_end(source):
    src = source(max_credits=4, refill_credits=1)  # 20 messages need many refills
    records = [f"r{i}".encode() for i in range(20)]
    t, result = in_thread(sendrecv.send, "127.0.0.1", src.address[1], records, cookie="tacos",
                          stream_name="s1")
    got = pump_until_done(src, t, 20)
    assert "error" not in result, result.get("error")
    assert got == [r.decode() for r in records] and result["value"] == 20
    stats = src.stats()
    assert stats["acks"] >= 5 and stats["streams"] == 1
    assert src.last_seen[cp.stream_id(b"s1")] == 19


def test_a_known_stream_resumes_after_its_point_of_reference(source):
    src = source()
    records = [f"r{i}".encode() for i in range(6)]
    t, _ = in_thread(sendrecv.send, "127.0.0.1", src.address[1], records[:4], cookie="tacos",
                     stream_name="s")
    assert pump_until_done(src, t, 4) == ["r0", "r1", "r2", "r3"]
    t, result = in_thread(sendrecv.send, "127.0.0.1", src.address[1], records, cookie="tacos",
                          stream_name="s")
    assert pump_until_done(src, t, 2) == ["r4", "r5"] and result["value"] == 2


def test_a_bad_cookie_gets_an_error_and_the_connection_closes(source):
    src = source(cookie="right")
    t, result = in_thread(sendrecv.send, "127.0.0.1", src.address[1], [b"x"], cookie="wrong")
    pump_until_done(src, t, 0, timeout=0.2)
    assert isinstance(result["error"], ConnectorError)
    assert "Bad cookie: wrong, wanted: right" in str(result["error"])
    assert src.stats()["errors_connector"] == 1 and src.stats()["clients"] == 0


def test_messages_of_an_unknown_stream_and_repeats(source):
    """Hand-written frames: a repeated message id is skipped; a message for a stream
    that was never notified closes the connection with an Error naming it."""
    src = source(max_credits=50)
    with socket.create_connection(src.address) as sock:
        t, result = in_thread(_raw_session, sock)
        got = pump_until_done(src, t, 2)
    assert "error" not in result, result.get("error")
    assert got == ["a", "b"]
    assert result["value"] == "Bad/unregistered stream_id 99 with message_id 7"
    assert src.stats()["repeats"] == 1


def _raw_session(sock):
    sock.settimeout(5)
    conn = Connection(sock, "tacos")
    sid, por = conn.open_stream(b"raw")
    assert por == cp.NONE_SEEN
    for mid, payload in ((1, b"a"), (1, b"a again"), (2, b"b")):
        conn.send(sid, mid, payload)
    sock.sendall(cp.message(99, 7, b"nobody"))
    while True:
        try:
            read_frame(sock)
        except ConnectorError as e:
            return str(e).removeprefix("the source refused: ")


def test_frames_round_trip():
    for data, tag, fields in [
        (cp.hello("0.0.1", "c", "p", "i"), cp.HELLO, cp.Hello("0.0.1", "c", "p", "i")),
        (cp.notify(5, b"n", 3), cp.NOTIFY, cp.Notify(5, b"n", 3)),
        (cp.notify_ack(True, 5, cp.NONE_SEEN), cp.NOTIFY_ACK, cp.NotifyAck(True, 5, cp.NONE_SEEN)),
        (cp.message(5, 9, b"pay", -3, b"k"), cp.MESSAGE, cp.Message(5, 9, -3, b"k", b"pay")),
        (cp.ack(7, [(5, 9), (6, 1)]), cp.ACK, cp.Ack(7, [(5, 9), (6, 1)])),
        (cp.eos(5), cp.EOS, 5), (cp.ok(10), cp.OK, 10), (cp.error("no"), cp.ERROR, "no"),
    ]:
        (n,) = struct.unpack_from(">I", data)
        assert n == len(data) - 4 and cp.decode(data[4:]) == (tag, fields)
    with pytest.raises(ValueError, match="malformed Notify"):
        cp.decode(bytes([cp.NOTIFY]) + b"\x00")


def test_stream_message_framings():
    assert cp.stream_frame_06(b"hi", 7) == struct.pack("<Iq", 10, 7) + b"hi"
    assert cp.stream_frame_head(b"hi", 7, b"k") == struct.pack(">IqI", 15, 7, 1) + b"khi"
    assert cp.unstream_06(cp.stream_frame_06(b"hi")[4:]) == b"hi"
    assert cp.unstream_head(cp.stream_frame_head(b"hi", 0, b"key")[4:]) == b"hi"


def test_send_a_framed_file_with_repeat_and_limit(tmp_path):
    path = tmp_path / "votes.bin"
    recs = [struct.pack(">sI", c.encode(), i) for i, c in enumerate("abc")]
    path.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in recs))
    src = TCPSourceConfig("in", "127.0.0.1", 0, bytes).make_source()
    src.open(0)
    try:
        t, result = in_thread(sendrecv.send, "127.0.0.1", src.address[1], path, repeat=0,
                              limit=7, framed_file=">I")
        got = read_n(src, 7)
        t.join(5)
    finally:
        src.close()
    assert got == (recs * 3)[:7] and result["value"] == 7
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="ends inside a record"):
        list(sendrecv.records(path, framed_file=">I"))


@pytest.mark.parametrize("generation, make", [("0.6", cp.stream_frame_06),
                                              ("head", cp.stream_frame_head)])
def test_receive_unframes_stream_messages(generation, make, tmp_path):
    out = tmp_path / "out.txt"
    ready = threading.Event()
    port = {}

    def on_ready(p):
        port["p"] = p
        ready.set()

    t, result = in_thread(sendrecv.receive, "127.0.0.1", 0, out=out, count=3, ready=on_ready,
                          stream_frames=generation)
    assert ready.wait(5)
    with socket.create_connection(("127.0.0.1", port["p"])) as s:
        s.sendall(b"".join(make(x) for x in (b"32.0", b"33.8", b"35.6")))
        t.join(5)
    assert out.read_text().splitlines() == ["32.0", "33.8", "35.6"]
    assert result["value"]["messages"] == 3


def test_send_06_stream_messages_to_a_0_6_source_connector_framing():
    """What a 0.6.0/0.6.1 SourceConnectorConfig reads: <I length, 8 bytes of event
    time, payload (compat maps it onto a TCP source with that framing)."""
    from wallaroo_nb.api import Decoder

    src = TCPSourceConfig("in", "127.0.0.1", 0,
                          Decoder(lambda b: b[8:].decode(), 4, "<I")).make_source()
    src.open(0)
    try:
        t, result = in_thread(sendrecv.send, "127.0.0.1", src.address[1], [b"1.5", b"2"],
                              stream_frames="0.6")
        got = read_n(src, 2)
        t.join(5)
    finally:
        src.close()
    assert got == ["1.5", "2"] and result["value"] == 2


def test_receive_lines_keeps_lines_of_two_connections_whole(tmp_path):
    """Wallaroo's examples write newline-terminated text; with one sink connection per
    worker, --lines writes only whole lines, so two writers never interleave mid-line."""
    out = tmp_path / "out.txt"
    ready = threading.Event()
    port = {}

    def on_ready(p):
        port["p"] = p
        ready.set()

    t, result = in_thread(sendrecv.receive, "127.0.0.1", 0, out=out, count=4, ready=on_ready,
                          lines=True)
    assert ready.wait(5)
    a = socket.create_connection(("127.0.0.1", port["p"]))
    b = socket.create_connection(("127.0.0.1", port["p"]))
    a.sendall(b"alpha => 1\nalp")
    b.sendall(b"beta => 1\nbe")
    a.sendall(b"ha => 2\n")
    b.sendall(b"ta => 2\n")
    t.join(5)
    a.close()
    b.close()
    assert sorted(out.read_text().splitlines()) == [
        "alpha => 1", "alpha => 2", "beta => 1", "beta => 2"]
    assert result["value"]["messages"] == 4


def test_an_unknown_protocol_version_is_refused_by_name(source):
    src = source()
    with socket.create_connection(src.address) as sock:
        t, result = in_thread(Connection, sock, "tacos", version="9.9.9")
        pump_until_done(src, t, 0, timeout=0.2)
    assert "Unknown protocol version: 9.9.9" in str(result["error"])
