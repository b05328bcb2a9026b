"""`import wallaroo`: every API form of both Wallaroo generations (0.6.0/0.6.1 and the
development head) and the behaviours that follow Wallaroo, one test per form."""

from __future__ import annotations

import datetime
import pickle
import struct

import cloudpickle
import pytest

import wallaroo_nb as wn
from wallaroo_nb import compat
from wallaroo_nb.api import BuildError
from wallaroo_nb.connectors.connector_protocol import ConnectorSource
from wallaroo_nb.connectors.tcp import TCPSource
from wallaroo_nb.testing import read_source as read_n
from wallaroo_nb.testing import run_local

wallaroo = compat.install_alias()  # `import wallaroo` and `wallaroo.experimental` from here on


@wallaroo.decoder(header_length=4, length_fmt=">I")
def dec(bs):
    return bs.decode()


@wallaroo.encoder
def enc(x):
    return f"{x}\n".encode()


@wallaroo.computation(name="double")
def double(x):
    return x * 2


class Count:
    n = 0


@wallaroo.state_computation(name="count", state=Count)
def count(x, c):
    c.n += 1
    return (x, c.n)


def sink():
    return wallaroo.TCPSinkConfig("127.0.0.1", 9, enc)


# -- source configs --------------------------------------------------------------------


@pytest.mark.parametrize("args, kw, name", [
    (("127.0.0.1", "7000", dec), {}, "127.0.0.1:7000"),  # 0.6.0/0.6.1
    (("127.0.0.1", "7000", dec, 10), {}, "127.0.0.1:7000"),
    ((), {"host": "127.0.0.1", "port": "7000", "decoder": dec}, "127.0.0.1:7000"),
    (("in", "127.0.0.1", "7000", dec), {}, "in"),  # the head
    (("in", "127.0.0.1", "7000", dec, True, 10, 4096, 50), {}, "in"),
    (("in", "127.0.0.1", "7000"), {"decoder": dec, "max_size": 4096}, "in"),
])
def test_tcp_source_config_both_forms(args, kw, name):
    cfg = wallaroo.TCPSourceConfig(*args, **kw)
    cfg.check()
    assert (cfg.name, cfg.host, cfg.port, cfg.decoder) == (name, "127.0.0.1", "7000", dec)
    if "max_size" in kw or len(args) > 6:
        assert cfg.recv_size == 4096
    pickle.loads(cloudpickle.dumps(cfg))


def test_tcp_source_config_missing_arguments_are_named():
    with pytest.raises(wallaroo.WallarooParameterError, match="needs decoder"):
        wallaroo.TCPSourceConfig("in", "h", "1")


class Countdown:
    """Wallaroo's generator protocol; None ends the stream (as Wallaroo's GenSource)."""

    def initial_value(self):
        return 3

    def apply(self, v):
        return v - 1 if v > 1 else None


@pytest.mark.parametrize("make", [lambda g: wallaroo.GenSourceConfig(g),
                                  lambda g: wallaroo.GenSourceConfig("gen", g)])
def test_gen_source_config_both_forms_and_none_ends_it(make):
    src = make(Countdown()).make_source()
    src.open(0)
    assert src.read(100) == [3, 2, 1] and src.read(100) is None


def test_tcp_parse_input_addrs_pairs_or_triples_by_the_form_of_in():
    assert wallaroo.tcp_parse_input_addrs(["--in", "127.0.0.1:7000,127.0.0.1:7001"]) == [
        ("127.0.0.1", "7000"), ("127.0.0.1", "7001")]
    assert wallaroo.tcp_parse_input_addrs(["--in", "orders@127.0.0.1:7000"]) == [
        ("orders", "127.0.0.1", "7000")]
    assert wallaroo.tcp_parse_output_addrs(["--out", "127.0.0.1:7002"]) == [("127.0.0.1", "7002")]


# -- keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("key, expected", [
    ("fido", "fido"), (97, "a"), (True, "\x01"), (b"fido", "fido"), (bytearray(b"k"), "k"),
    (b"\xff", "\udcff"),
])
def test_key_extractor_converts_keys_as_wallaroo(key, expected):
    ke = wallaroo.key_extractor(lambda d: d)
    assert ke(key) == expected
    assert ke(b"x") == ke("x")  # bytes and str are the same key, as in Wallaroo
    pickle.loads(cloudpickle.dumps(ke))


@pytest.mark.parametrize("key, error, match", [
    (1.5, TypeError, "must return str, bytes or int .* got float 1.5"),
    (None, TypeError, "got NoneType None"),
    (("a", 1), TypeError, "got tuple"),
    (-1, ValueError, "the int -1; Wallaroo makes an int key n into chr"),
])
def test_key_extractor_refuses_what_wallaroo_cannot_key_by(key, error, match):
    with pytest.raises(error, match=match):
        wallaroo.key_extractor(lambda d: d)(key)


def test_key_extractor_arity_is_checked():
    with pytest.raises(BuildError, match="must take 1 argument"):
        wallaroo.key_extractor(lambda a, b: a)


# -- pipelines ----------------------------------------------------------------------


def source():
    return wallaroo.source("p", wallaroo.GenSourceConfig(Countdown()))


def test_pipeline_methods_return_new_pipelines_and_nothing_follows_a_sink():
    p = source()
    q = p.to(double)
    assert q is not p and p.inner.node.kind == "source"
    done = q.key_by(wallaroo.key_extractor(lambda x: str(x))).to(count).to_sink(sink())
    for add in (lambda: done.to(double), lambda: done.key_by(lambda x: x),
                lambda: done.to_sink(sink()), lambda: done.collect()):
        with pytest.raises(wallaroo.WallarooParameterError, match="after to_sink"):
            add()
    with pytest.raises(wallaroo.WallarooParameterError, match="must end with to_sink"):
        wallaroo.build_application("open", q)
    app = wallaroo.build_application("app", done)
    assert [s.kind for s in app.steps] == ["map", "state", "sink"]


def test_merge_and_to_sinks():
    a, b = source(), wallaroo.source("q", wallaroo.GenSourceConfig("g2", Countdown()))
    app = wallaroo.build_application("m", a.merge(b).to(double).to_sinks([sink(), sink()]))
    assert len(app.sources) == 2
    with pytest.raises(wallaroo.WallarooParameterError, match="merge"):
        a.merge("not a pipeline")


class Triple(wallaroo.Computation):
    """A hand-made computation object, as machida accepts: name() and compute()."""

    def name(self):
        return "triple"

    def compute(self, data):
        return data * 3


class Tally(wallaroo.StateComputation):
    def name(self):
        return "tally"

    def initial_state(self):
        return Count()

    def compute_multi(self, data, state):
        state.n += 1
        return [data, None]


def test_hand_made_computation_objects_are_steps():
    app = wallaroo.build_application("h", source().to(Triple()).key_by(lambda x: "k")
                                     .to(Tally()).to_sink(sink()))
    steps = app.steps
    assert [(s.name, s.kind) for s in steps[:2]] == [("triple", "map"), ("tally", "state_multi")]
    assert steps[0].fn(2) == 6 and isinstance(steps[1].state_cls(), Count)


def test_serialize_parameter_error_args_and_helpers():
    assert wallaroo.deserialize(wallaroo.serialize({"a": (1, 2)})) == {"a": (1, 2)}
    assert wallaroo.WallarooParameterError is BuildError
    compat.set_app_args(["--cluster-initializer", "--in", "h:1"])
    try:
        assert "--cluster-initializer" in wallaroo._ARGS
    finally:
        compat.set_app_args(None)
    wallaroo._validate_arity_compatability("f", lambda a: a, 1)
    with pytest.raises(wallaroo.WallarooParameterError, match="must have 2 parameters"):
        wallaroo._validate_arity_compatability("f", lambda a: a, 2)
    assert wallaroo._kafka_parse_broker("h") == ("h", "9092")
    assert wallaroo.dt_to_timestamp(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
                                    ) == 1577836800.0
    assert wallaroo.seconds(2) == 2_000_000_000 and wallaroo.milliseconds(5) == 5_000_000


def test_unsupported_and_unknown_names_say_so():
    with pytest.raises(NotImplementedError, match="_wallaroo_wrap is not supported.*decorators"):
        _ = wallaroo._wallaroo_wrap
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'.*import wallaroo_nb"):
        _ = wallaroo.nonesuch
    with pytest.raises(NotImplementedError, match="AtLeastOnceSourceConnector.*use `wallaroo-nb send"):
        from wallaroo.experimental import AtLeastOnceSourceConnector  # noqa: F401
    with pytest.raises(NotImplementedError, match="connectors.FramedFileReader"):
        from wallaroo.experimental.connectors import FramedFileReader  # noqa: F401


# -- windows ------------------------------------------------------------------------


class Total(wallaroo.Aggregation):
    def initial_accumulator(self):
        return Count()

    def update(self, data, acc):
        acc.n += data  # returns nothing, as Wallaroo's examples

    def combine(self, a, b):
        c = Count()
        c.n = a.n + b.n
        return c

    def output(self, key, acc):
        return (key, acc.n)


def test_range_windows_as_wallaroo_builds_them():
    b = wallaroo.range_windows(wallaroo.seconds(9))
    assert b.with_slide(wallaroo.seconds(3)) is b  # the builder itself, as in Wallaroo
    b.with_delay(wallaroo.seconds(4))
    spec = b.with_late_data_policy("fire-per-message").over(Total)
    assert (spec.range, spec.slide) == (9 * 10**9, 3 * 10**9)
    assert spec.delay == 6 * 10**9  # rounded up to whole slides, as Wallaroo does
    assert spec.align == "key" and spec.late_data_policy == "fire-per-message"
    assert isinstance(spec.aggregation, Total)
    for again in (b.with_slide, b.with_delay, b.with_late_data_policy):
        with pytest.raises(wallaroo.WallarooParameterError, match="once per window"):
            again(1)
    plain = wallaroo.range_windows(10).over(Total)
    assert (plain.slide, plain.delay, plain.late_data_policy) == (10, 0, "drop")
    assert wallaroo.range_windows(10).with_late_data_policy(
        "place_in_oldest_window").over(Total).late_data_policy == "place-in-oldest-window"


def test_window_mistakes_are_parameter_errors():
    with pytest.raises(wallaroo.WallarooParameterError, match="slide .* larger than the range"):
        wallaroo.range_windows(10).with_slide(20).over(Total)
    with pytest.raises(wallaroo.WallarooParameterError, match="finish it with .over"):
        source().key_by(lambda x: "k").to(wallaroo.range_windows(10))
    with pytest.raises(wallaroo.WallarooParameterError, match="unknown late data policy"):
        wallaroo.range_windows(10).with_late_data_policy("later").over(Total)


def test_count_windows_time_out_as_wallaroo():
    spec = wallaroo.count_windows(5).over(Total)
    assert (spec.count, spec.timeout_ns, spec.kind) == (5, 5_000_000_000, "count")
    assert isinstance(spec.aggregation, Total)
    # Total.update changes acc and returns None, as Wallaroo's examples: the engine keeps acc
    pipeline = wallaroo.source("n", wn.IterableSourceConfig("n", [1, 2, 3, 4, 5, 6, 7])) \
        .key_by(lambda x: "all").to(spec).to_sink(wn.CollectorSinkConfig())
    assert run_local(wallaroo.build_application("t", pipeline)) == [("all", 15), ("all", 13)]


# -- wallaroo.experimental -------------------------------------------------------------


@wallaroo.experimental.stream_message_decoder
def decode_feed(bs):
    return struct.unpack(">f", bs)[0]


@wallaroo.experimental.stream_message_encoder
def encode_conversion(x):
    return f"{x}\n".encode()


def test_source_connector_config_0_6_is_a_tcp_source_of_0_6_stream_messages():
    cfg = wallaroo.experimental.SourceConnectorConfig(
        "celsius_feed", encoder=encode_conversion, decoder=decode_feed, port=0)
    src = cfg.make_source()
    assert type(src) is TCPSource and cfg.host == "127.0.0.1"
    src.open(0)
    try:
        from wallaroo_nb.tools import sendrecv

        sendrecv.send("127.0.0.1", src.address[1], [struct.pack(">f", 2.5)], stream_frames="0.6")
        assert read_n(src, 1) == [2.5]
    finally:
        src.close()


def test_source_connector_config_head_speaks_the_connector_protocol():
    cfg = wallaroo.experimental.SourceConnectorConfig(
        "celsius_feed", encoder=encode_conversion, decoder=decode_feed, host="127.0.0.1",
        port="7100", cookie="Dragons-Love-Tacos", max_credits=10, refill_credits=8)
    src = cfg.make_source()
    assert type(src) is ConnectorSource
    assert (cfg.cookie, cfg.max_credits, cfg.refill_credits) == ("Dragons-Love-Tacos", 10, 8)
    pickle.loads(cloudpickle.dumps(cfg))
    with pytest.raises(wallaroo.WallarooParameterError, match="needs max_credits"):
        wallaroo.experimental.SourceConnectorConfig("c", encode_conversion, decode_feed, 1,
                                                    cookie="c", refill_credits=1)


@pytest.mark.parametrize("args, kw, frame", [
    (("conv", encode_conversion, decode_feed, 7200), {}, struct.pack("<Iq", 14, 0)),
    (("conv", encode_conversion, decode_feed, 7200, "localhost"), {}, struct.pack("<Iq", 14, 0)),
    (("conv", encode_conversion, decode_feed, 7200, "cookie"), {},
     struct.pack(">IqI", 18, 0, 0)),
    (("conv", encode_conversion, decode_feed, 7200), {"cookie": "c", "host": "localhost"},
     struct.pack(">IqI", 18, 0, 0)),
])
def test_sink_connector_config_writes_stream_messages(args, kw, frame):
    cfg = wallaroo.experimental.SinkConnectorConfig(*args, **kw)
    cfg.check()
    assert cfg.port == 7200 and cfg.name == "conv"
    assert cfg.encoder.fn(212.0) == frame + b"212.0\n"


def test_stream_message_encoder_encode_as_the_head():
    when = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    out = encode_conversion.encode(1.5, when, "k")
    assert out == struct.pack(">IqI", 17, 1577836800000, 1) + b"k1.5\n"
    assert isinstance(encode_conversion, wallaroo.ConnectorEncoder)
    assert decode_feed.decode(struct.pack(">f", 1.0)) == 1.0
    octet = wallaroo.experimental.octet_message_decoder(lambda b: b.upper())
    assert (octet.fn(b"x"), octet.header_length, octet.length_fmt) == (b"X", 4, ">I")


# Every public name of Wallaroo's `wallaroo` module, 0.6.1 and the head, and of
# `wallaroo.experimental` (its connector-program classes included), by hand.
WALLAROO_PUBLIC = """
    serialize deserialize WallarooParameterError source build_application range_windows
    count_windows Pipeline attach_to_module BaseWrapped Computation ComputationMulti
    StateComputation StateComputationMulti Aggregation KeyExtractor Encoder Decoder
    OctetDecoder OctetEncoder ConnectorDecoder ConnectorEncoder computation
    state_computation computation_multi state_computation_multi key_extractor decoder
    encoder TCPSourceConfig GenSourceConfig TCPSinkConfig CustomKafkaSourceCLIParser
    CustomKafkaSinkCLIParser DefaultKafkaSourceCLIParser DefaultKafkaSinkCLIParser
    tcp_parse_input_addrs tcp_parse_output_addrs kafka_parse_source_options
    kafka_parse_sink_options RangeWindowsBuilder RangeWindows CountWindowsBuilder
    CountWindows nanoseconds microseconds milliseconds seconds minutes hours Unbuffered
    dt_to_timestamp experimental _ARGS _kafka_parse_broker _validate_arity_compatability
""".split()
EXPERIMENTAL_PUBLIC = """
    stream_message_decoder stream_message_encoder octet_message_decoder
    octet_message_encoder SourceConnectorConfig SinkConnectorConfig SourceConnector
    SinkConnector BaseConnector AtLeastOnceSourceConnector UnexpectedSocketError
    ConnectorError ProtocolError parse_connector_args Stream connectors
    connector_wire_messages
""".split()


@pytest.mark.parametrize("module, name", [(wallaroo, n) for n in WALLAROO_PUBLIC]
                         + [(wallaroo.experimental, n) for n in EXPERIMENTAL_PUBLIC])
def test_every_wallaroo_name_is_there_or_says_it_is_not_supported(module, name):
    try:
        getattr(module, name)
    except NotImplementedError as e:
        assert "is not supported by wallaroo_nb" in str(e) and "; use " in str(e)
