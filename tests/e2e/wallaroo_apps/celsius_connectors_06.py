"""Celsius to Fahrenheit through Wallaroo 0.6.0/0.6.1's experimental connectors: the
source connector listens for stream messages carrying ">f" floats, the sink connector
sends the Fahrenheit values as text stream messages. Wallaroo's example fixes the
ports at 7100 and 7200; --feed-port and --conversion-port move them."""

import argparse
import struct

import wallaroo
import wallaroo.experimental


def application_setup(args):
    parser = argparse.ArgumentParser(prog="celsius")
    parser.add_argument("--feed-port", type=int, default=7100)
    parser.add_argument("--conversion-port", type=int, default=7200)
    ports = parser.parse_known_args(args)[0]
    feed = wallaroo.experimental.SourceConnectorConfig(
        "celsius_feed", encoder=encode_feed, decoder=decode_feed, port=ports.feed_port)
    conversion = wallaroo.experimental.SinkConnectorConfig(
        "fahrenheit_conversion", encoder=encode_conversion, decoder=decode_conversion,
        port=ports.conversion_port)
    pipeline = (wallaroo.source("convert temperature readings", feed)
                .to(multiply)
                .to(add)
                .to_sink(conversion))
    return wallaroo.build_application("Celsius to Fahrenheit", pipeline)


@wallaroo.computation(name="multiply by 1.8")
def multiply(data):
    return data * 1.8


@wallaroo.computation(name="add 32")
def add(data):
    return data + 32


@wallaroo.experimental.stream_message_encoder
def encode_feed(data):
    return data


@wallaroo.experimental.stream_message_decoder
def decode_feed(data):
    return struct.unpack(">f", data)[0]


@wallaroo.experimental.stream_message_encoder
def encode_conversion(data):
    return str(data).encode("utf-8")


@wallaroo.experimental.stream_message_decoder
def decode_conversion(data):
    return data.decode("utf-8")
