"""Framing survives any TCP segmentation: the parser alone, and a real source socket."""

import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wallaroo_nb.connectors.framing import FrameError, FrameParser, decoder_parts, frame
from wallaroo_nb.connectors.tcp import TCPSourceConfig
from wallaroo_nb.testing import read_source as read_n

payloads = st.lists(st.binary(max_size=300), max_size=30)


def split_at(data: bytes, cuts: list) -> list:
    """``data`` cut at the given (sorted, deduplicated) offsets."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0] + points + [len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@given(payloads, st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
       st.sampled_from([(4, ">I"), (2, ">H"), (4, "<I"), (8, ">Q")]))
def test_parser_reassembles_frames_cut_anywhere(msgs, cuts, header):
    header_length, fmt = header
    wire = b"".join(frame(m, fmt) for m in msgs)
    p = FrameParser(header_length, fmt, max_frame=1000)
    got = []
    for chunk in split_at(wire, cuts):
        p.feed(chunk)
        while (f := p.next_frame()) is not None:
            got.append(f)
    assert got == msgs
    assert p.buffered() == 0


def test_parser_rejects_oversized_header_before_buffering_payload():
    p = FrameParser(max_frame=10)
    p.feed(struct.pack(">I", 11))
    assert p.has_frame()  # "ready": next_frame will raise rather than wait
    with pytest.raises(FrameError):
        p.next_frame()


def test_parser_keeps_partial_frame_until_complete():
    p = FrameParser()
    p.feed(frame(b"hello")[:6])
    assert p.next_frame() is None and not p.has_frame()
    p.feed(b"llo")
    assert p.next_frame() == b"hello"


def test_header_format_must_match_header_length():
    with pytest.raises(ValueError, match="header_length"):
        FrameParser(4, ">H")


def test_decoder_parts_reads_decorated_objects_and_plain_functions():
    class Dec:
        header_length = 2
        length_fmt = ">H"

        @staticmethod
        def fn(b):
            return b

    assert decoder_parts(Dec)[1:] == (2, ">H")
    assert decoder_parts(bytes.upper)[1:] == (4, ">I")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads, st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
       st.integers(min_value=1, max_value=9))
def test_source_reassembles_frames_over_a_real_socket(msgs, cuts, recv_size):
    # A tiny recv_size makes the source see the stream cut at arbitrary points, and the
    # sender's own cuts (sent with TCP_NODELAY) add real segment boundaries.
    cfg = TCPSourceConfig("seg", "127.0.0.1", 0, lambda b: b, recv_size=recv_size)
    src = cfg.make_source()
    src.open(0)
    try:
        with socket.create_connection(src.address) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for chunk in split_at(b"".join(frame(m) for m in msgs), cuts):
                c.sendall(chunk)
            got = read_n(src, len(msgs), timeout=5.0, max_n=64)
        assert got == msgs
        assert src.drain_errors() == []
    finally:
        src.close()
