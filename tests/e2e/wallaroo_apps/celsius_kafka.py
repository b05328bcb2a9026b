"""Celsius to Fahrenheit over Kafka, written against Wallaroo's API (0.6.0/0.6.1 and
the development head have the same form here): the runner's --kafka_source_* and
--kafka_sink_* options configure both ends (the Default CLI parsers)."""

import wallaroo


def application_setup(args):
    readings = wallaroo.source("convert", wallaroo.DefaultKafkaSourceCLIParser(parse_celsius))
    pipeline = (readings.to(times_1_8)
                .to(plus_32)
                .to_sink(wallaroo.DefaultKafkaSinkCLIParser(as_record)))
    return wallaroo.build_application("Celsius to Fahrenheit with Kafka", pipeline)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def parse_celsius(bs):
    try:
        return float(bs.decode("utf-8"))
    except ValueError:
        return 0.0  # as Wallaroo's example: unreadable readings count as 0


@wallaroo.computation(name="multiply by 1.8")
def times_1_8(c):
    return c * 1.8


@wallaroo.computation(name="add 32")
def plus_32(x):
    return x + 32


@wallaroo.encoder
def as_record(f):
    return ("%.6f" % f, None, None)  # (value, key, partition) for the Kafka sink
