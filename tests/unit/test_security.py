"""CurveZMQ on real sockets (security.py), and generation fencing of data frames
(engine/transport.py): the pieces that keep strangers and late engines out."""

from __future__ import annotations

import time

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from wallaroo_nb import security
from wallaroo_nb.cluster.dask_launcher import bind_reachable, driver_endpoint
from wallaroo_nb.cluster.launchers import LocalHandle
from wallaroo_nb.engine.transport import Transport
from wallaroo_nb.protocol import Hello


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(0)


def _events(sock: zmq.Socket, mon: zmq.Socket, seconds: float) -> set:
    """What ``sock``'s monitor (made before it connected) saw within ``seconds``."""
    out = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and zmq.EVENT_HANDSHAKE_SUCCEEDED not in out:
        if mon.poll(20):
            out.add(recv_monitor_message(mon)["event"])
    sock.disable_monitor()
    mon.close(0)
    return out


def test_only_the_apps_client_key_gets_through(ctx):
    keys = security.new_keys()
    auth = security.authenticator(ctx, keys)
    try:
        pull = ctx.socket(zmq.PULL)
        security.server(pull, keys)
        pull.bind("tcp://127.0.0.1:0")
        addr = pull.getsockopt(zmq.LAST_ENDPOINT).decode()
        other_public, other_secret = zmq.curve_keypair()

        def stranger(setup) -> set:
            s = ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            setup(s)
            mon = s.get_monitor_socket()
            s.connect(addr)
            s.send(b"let me in", zmq.NOBLOCK) if s.poll(0, zmq.POLLOUT) else None
            return _events(s, mon, 0.7)

        def unknown(s):
            s.curve_serverkey = keys.server_public  # the server's key is public
            s.curve_publickey, s.curve_secretkey = other_public, other_secret

        for setup in (unknown, lambda s: None):  # another key; no key at all
            seen = stranger(setup)
            assert seen & {zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                           zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}, seen
            assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in seen, seen
        assert not pull.poll(100), "a stranger's message arrived"

        app = ctx.socket(zmq.PUSH)
        security.client(app, keys)
        app.connect(addr)
        app.send(b"from the app")
        assert pull.poll(5000) and pull.recv() == b"from the app"
    finally:
        security.stop(auth)


def test_keys_travel_as_one_line_and_stay_out_of_reprs():
    keys = security.new_keys()
    assert security.Keys.from_line(keys.to_line()) == keys
    assert keys.server_secret.decode() not in repr(keys)
    assert keys.client_secret.decode() not in repr(keys)
    with pytest.raises(ValueError, match="four z85 CurveZMQ keys"):
        security.Keys.from_line(b"not keys\n")


def test_without_keys_nothing_is_configured(ctx):
    s = ctx.socket(zmq.PULL)
    security.server(s, None)
    security.client(s, None)
    assert s.getsockopt(zmq.MECHANISM) == zmq.NULL
    assert security.authenticator(ctx, None) is None


def test_frames_from_an_older_era_are_dropped_over_curve(ctx):
    """A late engine of era 0 sends to an engine of era 1 (a recovery began it): its
    frame is dropped; the same frame of era 1 is taken."""
    keys = security.new_keys()
    auth = security.authenticator(ctx, keys)
    ctl = ctx.socket(zmq.PAIR)
    try:
        late = Transport(ctx, ctl, 0, "tcp://127.0.0.1:0", keys)
        receiver = Transport(ctx, ctl, 1, "tcp://127.0.0.1:0", keys)
        addrs = [late.address, receiver.address]
        receiver.set_peers(addrs)
        late.set_peers(addrs)
        receiver.era, late.era = 1, 0  # the late engine never heard of the new era

        def deliver(value: str) -> list:
            late.outbox[1].append([[9, value]])
            deadline = time.monotonic() + 5
            while late.outbox[1] and time.monotonic() < deadline:
                late.send()
                time.sleep(0.01)
            receiver.data_in.poll(2000)
            return list(receiver.frames(16))

        assert deliver("stale") == []
        late.era = 1  # as the current engine 0 of era 1
        assert deliver("fresh") == [(0, [[9, "fresh"]])]
        assert receiver.recv[0] == 1
    finally:
        security.stop(auth)  # the fixture's destroy closes the sockets


def test_a_second_hello_of_the_same_engine_is_refused():
    class Proc:
        pid = 1

    handle = LocalHandle(Proc())
    assert handle.hello(Hello(1, "", "")) is True
    assert handle.hello(Hello(1, "", "")) is False  # the driver takes it as a lost engine


@pytest.mark.parametrize("given,expected", [
    ("10.1.2.3", ("10.1.2.3", 0)),
    ("10.1.2.3:7000", ("10.1.2.3", 7000)),
    ("[fd00::5]:7000", ("fd00::5", 7000)),
    ("notebook.example", ("notebook.example", 0)),
])
def test_driver_address_forms(given, expected):
    assert driver_endpoint("tcp://127.0.0.1:8786", given) == expected


def test_the_driver_binds_where_the_scheduler_is_reached_from():
    # a UDP connect picks the route: no packet leaves (loopback scheduler -> loopback)
    assert driver_endpoint("tcp://127.0.0.1:8786", None) == ("127.0.0.1", 0)
    assert driver_endpoint("inproc://127.0.0.1/1/2", None) == ("127.0.0.1", 0)


def test_behind_nat_the_driver_binds_every_interface_and_names_the_given_host(ctx):
    s = ctx.socket(zmq.ROUTER)
    addr = bind_reachable(s, "127.0.0.1", 0)  # a local address: bound there
    assert addr.startswith("tcp://127.0.0.1:") and addr == s.getsockopt(zmq.LAST_ENDPOINT).decode()
    t = ctx.socket(zmq.ROUTER)
    # 192.0.2.1 (TEST-NET-1) is no address of this machine, as a NAT's outside address
    # is not: bind fails there, so every interface is bound; nothing is sent anywhere
    addr = bind_reachable(t, "192.0.2.1", 0)
    port = addr.rsplit(":", 1)[1]
    assert addr == f"tcp://192.0.2.1:{port}"
    assert t.getsockopt(zmq.LAST_ENDPOINT).decode() == f"tcp://0.0.0.0:{port}"
