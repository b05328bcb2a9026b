"""Wallaroo 0.6's helpers for application modules: address and Kafka option parsing."""

import pickle

import pytest

from wallaroo_nb import compat
from wallaroo_nb.connectors.kafka import KafkaSinkConfig, KafkaSourceConfig


def dec(b):
    return b.decode()


def enc(x):
    return (x.encode(), None, None)


def test_input_addrs_with_names_and_other_args_around():
    args = ["--workers", "2", "--in", "Celsius@127.0.0.1:7000,Other@localhost:7001", "-x"]
    assert compat.tcp_parse_input_addrs(args) == [
        ("Celsius", "127.0.0.1", "7000"), ("Other", "localhost", "7001")]


def test_input_addrs_without_names_are_pairs_as_in_wallaroo_0_6():
    assert compat.tcp_parse_input_addrs(["-i", "127.0.0.1:7000"]) == [("127.0.0.1", "7000")]
    assert compat.tcp_parse_input_addrs(["--in", "h1:1,h2:2"]) == [("h1", "1"), ("h2", "2")]
    # entry by entry, as Wallaroo's own parser splits each one
    assert compat.tcp_parse_input_addrs(["--in", "a@h1:1,h2:2"]) == [("a", "h1", "1"),
                                                                   ("h2", "2")]


def test_output_addrs():
    assert compat.tcp_parse_output_addrs(["--out", "127.0.0.1:5555,h:6"]) == [
        ("127.0.0.1", "5555"), ("h", "6")]
    assert compat.tcp_parse_output_addrs(["-o", "h:1"]) == [("h", "1")]


@pytest.mark.parametrize("fn, args, match", [
    (compat.tcp_parse_input_addrs, [], "missing --in"),
    (compat.tcp_parse_input_addrs, ["--in", "n@h:x"], "host:port"),
    (compat.tcp_parse_input_addrs, ["--in", "n@nohost"], "host:port"),
    (compat.tcp_parse_output_addrs, ["--out", "h:port"], "host:port"),
    (compat.tcp_parse_output_addrs, ["--in", "a@h:1"], "missing --out"),
])
def test_bad_addresses_say_what_is_expected(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(args)


SOURCE_ARGS = ["--kafka_source_topic", "in", "--kafka_source_brokers", "b1:9093,b2",
               "--kafka_source_log_level", "Info", "--unrelated", "1"]
SINK_ARGS = ["--kafka_sink_topic", "out", "--kafka_sink_brokers", "127.0.0.1:9092",
             "--kafka_sink_max_message_size", "5000", "--kafka_sink_max_produce_buffer_ms", "7"]


def test_kafka_option_parsers_match_wallaroo():
    """The head's shapes by default (a name first), 0.6.0/0.6.1's without it."""
    assert compat.kafka_parse_source_options(SOURCE_ARGS) == (
        None, "in", [("b1", "9093"), ("b2", "9092")], "Info")
    assert compat.kafka_parse_source_options(SOURCE_ARGS + ["--kafka_source_name", "n"])[0] == "n"
    assert compat.kafka_parse_sink_options(SINK_ARGS) == (
        "", "out", [("127.0.0.1", "9092")], "Warn", 7, 5000)
    compat.set_generation("0.6")
    try:
        assert compat.kafka_parse_source_options(SOURCE_ARGS) == (
            "in", [("b1", "9093"), ("b2", "9092")], "Info")
        assert compat.kafka_parse_sink_options(SINK_ARGS) == (
            "out", [("127.0.0.1", "9092")], "Warn", 7, 5000)
    finally:
        compat.set_generation("head")
    # as in Wallaroo, missing options parse to empty values (the configs refuse them)
    assert compat.kafka_parse_source_options([]) == (None, "", [("", "9092")], "Warn")
    with pytest.raises(ValueError, match="unknown Wallaroo API generation '0.7'"):
        compat.set_generation("0.7")


def test_custom_parsers_are_ready_configs():
    src = compat.CustomKafkaSourceCLIParser(SOURCE_ARGS, dec)
    assert isinstance(src, KafkaSourceConfig)
    src.check()
    assert (src.topic, src.log_level, src.decoder, src.name) == ("in", "Info", dec, "kafka_source")
    sink = compat.CustomKafkaSinkCLIParser(SINK_ARGS, enc)
    assert isinstance(sink, KafkaSinkConfig)
    sink.check()
    assert (sink.topic, sink.max_message_size, sink.max_produce_buffer_ms) == ("out", 5000, 7)
    pickle.loads(pickle.dumps(sink))  # configs travel to the workers


def test_default_parsers_read_the_app_args(monkeypatch):
    compat.set_app_args(SOURCE_ARGS + SINK_ARGS)
    try:
        src = compat.DefaultKafkaSourceCLIParser(dec)
        sink = compat.DefaultKafkaSinkCLIParser(enc, name="out sink")
        assert (src.topic, src.name) == ("in", "kafka_source")
        assert (sink.topic, sink.name) == ("out", "out sink")
    finally:
        compat.set_app_args(None)
    monkeypatch.setattr("sys.argv", ["app.py", "--kafka_source_topic", "argv", "--kafka_source_brokers", "h"])
    assert compat.DefaultKafkaSourceCLIParser(dec).topic == "argv"


def test_missing_kafka_options_are_named():
    with pytest.raises(ValueError, match="--kafka_source_topic"):
        compat.CustomKafkaSourceCLIParser(["--kafka_source_brokers", "h"], dec)
    with pytest.raises(ValueError, match="--kafka_sink_brokers"):
        compat.CustomKafkaSinkCLIParser(["--kafka_sink_topic", "t"], enc)
    with pytest.raises(ValueError, match="Loud"):
        compat.kafka_parse_source_options(SOURCE_ARGS + ["--kafka_source_log_level", "Loud"])
    with pytest.raises(ValueError, match="max_message_size"):
        compat.kafka_parse_sink_options(SINK_ARGS + ["--kafka_sink_max_message_size", "big"])
