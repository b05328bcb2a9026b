"""Celsius to Fahrenheit through the development head's connectors: an at-least-once
source connector (cookie and credits) on --in host:port reads ">f" floats; a TCP sink
on --out sends each Fahrenheit value as a stream message ("value\\n")."""

import struct

import wallaroo
import wallaroo.experimental


def application_setup(args):
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    source_config = wallaroo.experimental.SourceConnectorConfig(
        "celsius_feed",
        encoder=encode_feed,
        decoder=decode_feed,
        host=in_host,
        port=in_port,
        cookie="Dragons-Love-Tacos",
        max_credits=10,
        refill_credits=8)
    sink_config = wallaroo.TCPSinkConfig(out_host, out_port, encode_conversion)
    pipeline = (wallaroo.source("convert temperature readings", source_config)
                .to(to_fahrenheit)
                .to_sink(sink_config))
    return wallaroo.build_application("Celsius to Fahrenheit", pipeline)


@wallaroo.computation(name="convert")
def to_fahrenheit(celsius):
    return celsius * 1.8 + 32


@wallaroo.experimental.stream_message_encoder
def encode_feed(data):
    return data


@wallaroo.experimental.stream_message_decoder
def decode_feed(data):
    return struct.unpack(">f", data)[0]


@wallaroo.experimental.stream_message_encoder
def encode_conversion(data):
    return "{}\n".format(data).encode("utf-8")
