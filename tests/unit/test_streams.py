"""streams.py: messages over Unix stream sockets arrive whole, in order, once; a
sender never blocks, refuses while it has a backlog, and survives a reader that went."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallaroo_nb import streams

messages = st.lists(st.lists(st.binary(max_size=3000), min_size=1, max_size=5), max_size=40)


@pytest.fixture
def addr():
    folder = tempfile.mkdtemp(prefix="streams-")
    yield f"unix://{folder}/s"
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


def pump(out: streams.Outgoing, inbox: streams.Listener, msgs: list, limit: int = 1000) -> list:
    """Send every message (retrying refusals) while taking what arrives."""
    got, i = [], 0
    for _ in range(100_000):
        if i < len(msgs) and out.send(msgs[i]):
            i += 1
        out.flush()
        got += list(inbox.take(limit))
        if i == len(msgs) and not out.pending and len(got) >= len(msgs):
            break
    return got


def test_messages_arrive_whole_in_order_with_the_senders_name(addr):
    inbox = streams.Listener(addr)
    out = streams.Outgoing(addr, b"w1.0")
    msgs = [[b"kind", os.urandom(n)] for n in (0, 1, 5, 70_000, 1_000_000, 3)] + [[b""]]
    got = pump(out, inbox, msgs)
    assert [m for _, m in got] == msgs
    assert {name for name, _ in got} == {b"w1.0"}
    out.close()
    inbox.close()


@settings(max_examples=30, deadline=None)
@given(msgs=messages, chunk=st.integers(1, 64))
def test_any_split_of_the_bytes_gives_the_same_messages(msgs, chunk):
    """The reader reassembles messages whatever pieces the kernel hands it."""
    a, b = socket.socketpair()
    conn = streams.Incoming(b)
    wire = b"".join(streams._head(m) + b"".join(m) for m in [[b"name"], *msgs])
    got: list = []
    for i in range(0, len(wire), chunk):
        a.sendall(wire[i:i + chunk])
        got += conn.read()
    a.close()
    assert conn.read() is None  # the sender went: the end
    b.close()
    assert got == [[b"name"], *msgs]


def test_a_full_socket_refuses_the_next_message_until_it_is_out(addr):
    inbox = streams.Listener(addr)
    out = streams.Outgoing(addr, b"w0.0")
    big = [os.urandom(4_000_000)]  # more than the kernel buffers take at once
    assert out.send(big)
    assert out.pending
    assert not out.send([b"next"])  # refused, not queued: the caller keeps it
    got = pump(out, inbox, [[b"next"]])
    assert [m for _, m in got] == [big, [b"next"]]
    out.close()
    inbox.close()


def test_a_sender_before_the_listener_binds_is_refused_then_connects(addr):
    out = streams.Outgoing(addr, b"w2.0")
    assert not out.send([b"early"])  # nothing bound there yet: try again later
    inbox = streams.Listener(addr)
    assert [m for _, m in pump(out, inbox, [[b"early"]])] == [[b"early"]]
    out.close()
    inbox.close()


def test_a_reader_that_went_makes_sends_void_not_errors(addr):
    inbox = streams.Listener(addr)
    out = streams.Outgoing(addr, b"w3.0")
    assert out.send([b"one"])
    inbox.close()  # the peer died
    for _ in range(5):  # the first writes may still land in the dead socket's buffer
        assert out.send([os.urandom(100_000)])
    assert out.broken and not out.pending


def test_a_closed_connection_is_forgotten_and_a_new_one_accepted(addr):
    inbox = streams.Listener(addr)
    first = streams.Outgoing(addr, b"w4.0")
    assert [m for _, m in pump(first, inbox, [[b"a"]])] == [[b"a"]]
    first.close()
    list(inbox.take(10))
    assert len(inbox.conns) == 0
    second = streams.Outgoing(addr, b"w4.1")
    got = pump(second, inbox, [[b"b"]])
    assert got == [(b"w4.1", [b"b"])]
    second.close()
    inbox.close()
