"""wallaroo-nb send / receive against the real TCP source and sink on 127.0.0.1."""

import argparse
import io
import socket
import threading
import time

import pytest

from wallaroo_nb.connectors.framing import frame
from wallaroo_nb.connectors.tcp import TCPSinkConfig, TCPSourceConfig
from wallaroo_nb.testing import read_source as read_n
from wallaroo_nb.tools import sendrecv

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def source():
    src = TCPSourceConfig("in", "127.0.0.1", 0, bytes.decode).make_source()
    src.open(0)
    yield src
    src.close()


def in_thread(fn, *args, **kw):
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("value", fn(*args, **kw)), daemon=True)
    t.start()
    return t, result


def test_send_file_lines_repeated(source, tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("one\ntwo\r\nthree\n")
    t, result = in_thread(sendrecv.send, "127.0.0.1", source.address[1], path, repeat=2)
    got = read_n(source, 6)
    t.join(5)
    assert got == ["one", "two", "three"] * 2 and result["value"] == 6


def test_send_iterable_forever_with_limit(source):
    gen = (f"m{i}" for i in range(3))
    t, result = in_thread(sendrecv.send, "127.0.0.1", source.address[1], gen, repeat=0, limit=7)
    got = read_n(source, 7)
    t.join(5)
    assert got == ["m0", "m1", "m2", "m0", "m1", "m2", "m0"] and result["value"] == 7


def test_send_paces_at_the_rate(source):
    t0 = time.monotonic()
    t, _ = in_thread(sendrecv.send, "127.0.0.1", source.address[1], [b"x"] * 20, rate=100)
    got = read_n(source, 20)
    t.join(5)
    assert len(got) == 20
    assert time.monotonic() - t0 >= 0.15  # 20 records at 100/s cannot arrive sooner


def test_send_waits_for_the_listener_to_appear():
    port = sendrecv.parse_address("127.0.0.1:0")[1]
    src = TCPSourceConfig("late", "127.0.0.1", port, bytes.decode).make_source()
    src.open(0)
    port = src.address[1]
    src.close()  # nobody listens now ...
    t, result = in_thread(sendrecv.send, "127.0.0.1", port, ["hi"], connect_timeout=5)
    time.sleep(0.2)
    src = TCPSourceConfig("late", "127.0.0.1", port, bytes.decode).make_source()
    src.open(0)  # ... and then somebody does
    try:
        assert read_n(src, 1) == ["hi"]
        t.join(5)
        assert result["value"] == 1
    finally:
        src.close()


def start_receiver(**kw):
    ready = threading.Event()
    port = []

    def on_ready(p):
        port.append(p)
        ready.set()

    stop = threading.Event()
    t, result = in_thread(sendrecv.receive, "127.0.0.1", 0, ready=on_ready, stop=stop,
                          log=lambda m: None, **kw)
    assert ready.wait(5)
    return port[0], stop, t, result


def flush_until(sinks, cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        for s in sinks:
            s.flush()
        time.sleep(0.005)


def test_receive_unframes_messages_from_several_sinks():
    got = []
    port, stop, t, result = start_receiver(out=got.append, framed=True, count=6)
    sinks = [TCPSinkConfig("127.0.0.1", port, lambda s: frame(s.encode())).make_sink()
             for _ in range(2)]
    try:
        for i, s in enumerate(sinks):
            s.open(i)
            s.write([f"w{i}-{j}" for j in range(3)])
        flush_until(sinks, lambda: not t.is_alive())
        t.join(5)
    finally:
        stop.set()
        for s in sinks:
            s.close()
    assert sorted(got) == sorted(f"w{i}-{j}\n".encode() for i in range(2) for j in range(3))
    assert result["value"]["connections"] == 2 and result["value"]["messages"] == 6


def test_receive_writes_raw_bytes_to_a_file(tmp_path):
    path = tmp_path / "out.bin"
    port, stop, t, result = start_receiver(out=path, idle_timeout=0.5)
    sink = TCPSinkConfig("127.0.0.1", port, lambda s: s).make_sink()
    sink.open(0)
    try:
        sink.write(["abc", "def"])
        flush_until([sink], lambda: sink.stats()["sent"] == 2)
        t.join(5)
    finally:
        stop.set()
        sink.close()
    assert path.read_bytes() == b"abcdef"
    assert not t.is_alive()  # stopped by the idle timeout


def test_receive_survives_a_bad_frame_and_a_text_output():
    out = io.StringIO()
    port, stop, t, result = start_receiver(out=out, framed=True, max_frame=10, count=1)
    with socket.create_connection(("127.0.0.1", port)) as bad:
        bad.sendall(b"\xff\xff\xff\xff")
        time.sleep(0.1)
    with socket.create_connection(("127.0.0.1", port)) as good:
        good.sendall(frame("é".encode()))
        t.join(5)
    stop.set()
    assert out.getvalue() == "é\n" and result["value"]["errors"] == 1


def test_command_line_pairs(source, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("a\nb\n")
    parser = argparse.ArgumentParser()
    sendrecv.send_add_arguments(parser)
    args = parser.parse_args([str(source.address[1]), str(path), "--repeat", "2"])
    assert args.address == ("127.0.0.1", source.address[1])
    assert sendrecv.send_main(args) == 0
    assert read_n(source, 4) == ["a", "b", "a", "b"]

    parser = argparse.ArgumentParser()
    sendrecv.receive_add_arguments(parser)
    out = tmp_path / "out.txt"
    args = parser.parse_args(["127.0.0.1:0", "--framed", "--out", str(out), "--idle-timeout", "0.2"])
    assert sendrecv.receive_main(args) == 0  # nothing came: stops when idle
    assert out.read_bytes() == b""
    assert set(sendrecv.COMMANDS) == {"send", "receive"}
    with pytest.raises(argparse.ArgumentTypeError):
        sendrecv.parse_address("host:port")
