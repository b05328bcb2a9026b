"""The TCP source against real clients on 127.0.0.1, good and bad."""

import os
import select
import socket
import struct
import threading
import time

import pytest

from wallaroo_nb.connectors.framing import frame
from wallaroo_nb.connectors.tcp import TCPSourceConfig

pytestmark = pytest.mark.timeout(30)


class Dec:
    """What api.decoder produces: fn plus the header description."""

    def __init__(self, fn, header_length=4, length_fmt=">I"):
        self.fn, self.header_length, self.length_fmt = fn, header_length, length_fmt


@pytest.fixture
def make_source():
    made = []

    def make(decoder=lambda b: b.decode(), **kw):
        src = TCPSourceConfig("src", "127.0.0.1", 0, decoder, **kw).make_source()
        src.open(0)
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


@pytest.fixture
def connect():
    socks = []

    def conn(src):
        s = socket.create_connection(src.address)
        socks.append(s)
        return s

    yield conn
    for s in socks:
        s.close()


def pump(src, until, timeout=5.0, max_n=100):
    """Drive the source like the worker loop: poll its fds, honour wait_hint, read."""
    out = []
    deadline = time.monotonic() + timeout
    while not until(out) and time.monotonic() < deadline:
        hint = src.wait_hint()
        wait = 0.05 if hint is None else min(hint, 0.05)
        select.select(src.fds(), [], [], wait)
        out += src.read(max_n)
    return out


def count(n):
    return lambda out: len(out) >= n


def test_binds_loopback_when_no_host_given():
    src = TCPSourceConfig("s", None, 0, bytes.decode).make_source()
    src.open(0)
    try:
        assert src.address[0] == "127.0.0.1"
    finally:
        src.close()


def test_one_stable_fd_wakes_the_worker_for_any_client(make_source, connect):
    src = make_source()
    fds = src.fds()
    assert len(fds) == 1  # registered once by the worker: must not change

    def readable():
        return bool(select.select(fds, [], [], 1.0)[0])

    c = connect(src)
    assert readable()  # a pending connection
    src.read(10)
    assert src.fds() == fds and not select.select(fds, [], [], 0)[0]
    c.sendall(frame(b"x"))
    assert readable()  # data on a client
    assert src.read(10) == ["x"]
    c.close()
    assert readable()  # its goodbye
    src.read(10)
    assert src.stats()["clients"] == 0 and not select.select(fds, [], [], 0)[0]


def test_config_is_unbounded_and_not_replayable():
    cfg = TCPSourceConfig("s", "127.0.0.1", "7000", bytes.decode)
    cfg.check()
    assert cfg.bounded is False and cfg.replayable is False


@pytest.mark.parametrize("bad", [dict(port=70000), dict(port="x"), dict(max_frame=0),
                                 dict(decoder=Dec(bytes.decode, 4, ">H"))])
def test_check_names_the_problem(bad):
    args = dict(name="s", host="127.0.0.1", port=0, decoder=bytes.decode) | bad
    with pytest.raises(ValueError, match="TCPSourceConfig 's'"):
        TCPSourceConfig(**args).check()


def test_many_clients_at_once_keep_their_order(make_source, connect):
    src = make_source(decoder=lambda b: tuple(b.decode().split(":")))
    clients = [connect(src) for _ in range(20)]
    for i, c in enumerate(clients):
        c.sendall(b"".join(frame(f"{i}:{j}".encode()) for j in range(50)))
    out = pump(src, count(1000))
    assert len(out) == 1000
    for i in range(20):
        assert [int(j) for c, j in out if c == str(i)] == list(range(50))
    assert src.stats()["accepted"] == 20


def test_custom_header_from_decorated_decoder(make_source, connect):
    src = make_source(decoder=Dec(lambda b: b.upper(), 2, "<H"))
    connect(src).sendall(b"".join(struct.pack("<H", len(m)) + m for m in [b"ab", b"", b"c"]))
    assert pump(src, count(3)) == [b"AB", b"", b"C"]


def test_origin_is_when_the_bytes_came_not_when_they_were_read(make_source, connect):
    """Frames that wait in the kernel while the source does not read (backpressure)
    keep the time they came: the pipeline's latency counts the wait."""
    src = make_source()
    c = connect(src)
    src.read(10)  # accept the client
    sent = time.time_ns()
    c.sendall(frame(b"early"))
    time.sleep(0.3)
    assert pump(src, count(1)) == ["early"]
    origin = src.origin_ns()
    assert sent <= origin < sent + 100_000_000, (origin - sent) / 1e6  # not ~300 ms later
    c.sendall(frame(b"later"))
    assert pump(src, count(1)) == ["later"] and src.origin_ns() > origin


def test_oversized_frame_closes_only_that_client(make_source, connect):
    src = make_source(max_frame=100)
    bad, good = connect(src), connect(src)
    bad.sendall(frame(b"before") + struct.pack(">I", 101) + b"x" * 101)
    good.sendall(frame(b"g1"))
    out = pump(src, lambda o: src.stats().get("oversize"))
    good.sendall(frame(b"g2"))
    out += pump(src, lambda o: "g2" in o)
    assert sorted(out) == ["before", "g1", "g2"]  # what came before the bad frame is kept
    errors = src.drain_errors()
    assert [e["where"] for e in errors] == ["frame"] and "max_frame=100" in errors[0]["error"]
    bad.settimeout(2)
    assert bad.recv(10) == b""  # the offender was disconnected
    assert src.stats()["clients"] == 1


def test_truncated_frame_at_disconnect_is_counted(make_source, connect):
    src = make_source()
    c = connect(src)
    c.sendall(frame(b"whole") + frame(b"cut short")[:7])
    c.close()
    out = pump(src, lambda o: src.stats().get("truncated"))
    assert out == ["whole"]
    (err,) = src.drain_errors()
    assert err["where"] == "frame" and "mid-frame" in err["error"]
    assert src.stats()["clients"] == 0


def test_random_bytes_hurt_only_their_sender(make_source, connect):
    src = make_source(max_frame=1000)
    junk, good = connect(src), connect(src)
    junk.sendall(os.urandom(20_000))
    for i in range(100):
        good.sendall(frame(f"m{i}".encode()))
    out = pump(src, lambda o: sum(x.startswith("m") for x in o if isinstance(x, str)) >= 100)
    assert [x for x in out if x.startswith("m") and x[1:].isdigit()][-100:] == [
        f"m{i}" for i in range(100)]
    stats = src.stats()
    assert stats.get("oversize", 0) + stats.get("errors_decoder", 0) >= 1
    assert stats["clients"] >= 1  # the good client is still connected


def test_decoder_none_drops_and_raise_records(make_source, connect):
    def decode(b):
        if b == b"skip":
            return None
        if b == b"boom":
            raise ValueError("cannot decode")
        return b.decode()

    src = make_source(decoder=decode)
    connect(src).sendall(b"".join(frame(m) for m in [b"a", b"skip", b"boom", b"b"]))
    assert pump(src, count(2)) == ["a", "b"]
    stats = src.stats()
    assert stats["dropped"] == 1 and stats["errors_decoder"] == 1 and stats["frames"] == 4
    (err,) = src.drain_errors()
    assert err["step"] == "src" and err["where"] == "decoder"
    assert err["input"] == repr(b"boom") and err["error"] == "ValueError: cannot decode"
    assert "cannot decode" in err["traceback"]
    assert src.drain_errors() == []  # drained


def test_silent_client_is_closed_after_idle_timeout(make_source, connect):
    src = make_source(idle_timeout=0.3)
    silent, quiet = connect(src), connect(src)
    quiet.sendall(frame(b"hi"))  # whole frames, then quiet: that is allowed
    assert pump(src, count(1)) == ["hi"]
    hint = src.wait_hint()
    assert hint is not None and hint <= 0.3
    pump(src, lambda o: src.stats().get("idle_closed"), timeout=3)
    (err,) = src.drain_errors()
    assert err["where"] == "idle" and "no data" in err["error"]
    silent.settimeout(2)
    assert silent.recv(1) == b""
    assert src.stats()["clients"] == 1


def test_stalled_partial_frame_is_closed(make_source, connect):
    src = make_source(idle_timeout=0.3)
    c = connect(src)
    c.sendall(frame(b"ok") + frame(b"never finished")[:5])
    out = pump(src, lambda o: src.stats().get("idle_closed"), timeout=3)
    assert out == ["ok"]
    assert "partial frame" in src.drain_errors()[0]["error"]


def closed_by_peer(sock, timeout=2.0) -> bool:
    """What a client sees when the source closes it: EOF, or a reset if it had sent data."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_at_the_cap_a_new_client_is_refused_while_all_are_busy(make_source, connect):
    src = make_source(max_clients=2)  # evict_after=1s: the two fresh ones stay
    a, _b, c = connect(src), connect(src), connect(src)
    pump(src, lambda o: src.stats().get("refused"), timeout=3)
    assert closed_by_peer(c)
    (err,) = src.drain_errors()
    assert err["where"] == "connection" and "max_clients=2" in err["error"]
    a.sendall(frame(b"a"))
    assert pump(src, count(1)) == ["a"]


@pytest.mark.parametrize("evict_after,evicted", [(None, 0), (0, 1)])
def test_evict_after_none_never_evicts_and_zero_always_does(make_source, connect, evict_after, evicted):
    src = make_source(max_clients=1, evict_after=evict_after)
    old = connect(src)
    src.read(10)
    new = connect(src)
    pump(src, lambda o: src.stats()["refused"] + src.stats()["evicted"], timeout=3)
    assert src.stats()["evicted"] == evicted and src.stats()["refused"] == 1 - evicted
    assert closed_by_peer(new if evict_after is None else old)


def test_a_burst_of_idle_connections_never_locks_out_a_real_client(make_source, connect):
    src = make_source(max_clients=4, evict_after=0.2)
    idle = [connect(src) for _ in range(10)]  # a burst: 4 fit, 6 are refused
    src.read(10)
    assert src.stats()["clients"] == 4 and src.stats()["refused"] == 6
    time.sleep(0.3)
    real = connect(src)  # the cap is reached, but those four have sent nothing for 0.3 s
    real.sendall(frame(b"hello") + frame(b"world"))
    assert pump(src, count(2)) == ["hello", "world"]
    stats = src.stats()
    assert stats["evicted"] == 1 and stats["clients"] == 4
    assert closed_by_peer(idle[0])  # the oldest idle connection gave way
    evicted = [e for e in src.drain_errors() if e["where"] == "idle"]
    assert "gave way to a new connection at max_clients=4" in evicted[0]["error"]
    later = connect(src)  # the real client is busy, three idle ones are left: one goes
    later.sendall(frame(b"again"))
    assert pump(src, count(1)) == ["again"]
    real.sendall(frame(b"still here"))
    assert pump(src, count(1)) == ["still here"]
    assert src.stats()["evicted"] == 2


def test_the_client_longest_without_a_frame_gives_way_first(make_source, connect):
    src = make_source(max_clients=2, evict_after=0.1)
    talker, quiet = connect(src), connect(src)
    src.read(10)
    time.sleep(0.15)
    talker.sendall(frame(b"news"))  # the talker completes a frame; quiet never does
    assert pump(src, count(1)) == ["news"]
    newcomer = connect(src)
    newcomer.sendall(frame(b"hi"))
    assert pump(src, count(1)) == ["hi"]
    assert closed_by_peer(quiet)
    talker.sendall(frame(b"more"))
    assert pump(src, count(1)) == ["more"]


def test_fast_client_is_backpressured_and_loses_nothing(make_source, connect):
    src = make_source(recv_size=4096)
    fast = connect(src)
    fast.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    n = 50_000
    data = b"".join(frame(b"%06d" % i) for i in range(n))  # 500 KB
    done = threading.Event()

    def send():
        fast.sendall(data)
        done.set()

    t = threading.Thread(target=send, daemon=True)
    t.start()
    got = []
    for _ in range(20):  # the application takes 10 messages at a time, slowly
        got += src.read(10)
        time.sleep(0.01)
    assert src.stats()["buffered_bytes"] <= 4096 + 10  # one recv plus a partial frame
    assert not done.is_set()  # the sender is held back by TCP flow control
    slow = connect(src)
    slow.sendall(frame(b"slow"))
    got += pump(src, count(n + 1 - len(got)), timeout=20, max_n=1000)
    t.join(5)
    assert done.is_set()
    assert got.index("slow") < 200 + 3000  # served within a few reads, not after the flood
    assert [x for x in got if x != "slow"] == ["%06d" % i for i in range(n)]


def test_close_releases_the_port(make_source):
    src = make_source()
    port = src.address[1]
    src.close()
    again = TCPSourceConfig("s", "127.0.0.1", port, bytes.decode).make_source()
    again.open(0)
    again.close()


def test_port_in_use_names_the_source():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        src = TCPSourceConfig("busy", "127.0.0.1", blocker.getsockname()[1], bytes.decode)
        with pytest.raises(OSError, match="busy"):
            src.make_source().open(0)
    finally:
        blocker.close()


def test_decoder_from_the_api_decorator(make_source, connect):
    from wallaroo_nb.api import decoder

    @decoder(header_length=2, length_fmt=">H")
    def dec(payload):
        return payload.decode()[::-1]

    src = make_source(decoder=dec)
    connect(src).sendall(struct.pack(">H", 3) + b"abc")
    assert pump(src, count(1)) == ["cba"]
