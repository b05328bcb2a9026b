"""Wallaroo 0.6's helper functions for application modules, on wallaroo_nb's connectors.

An application module calls these from ``application_setup(args)``:
``tcp_parse_input_addrs`` / ``tcp_parse_output_addrs`` read ``--in`` / ``--out``,
and the Kafka CLI parsers build Kafka source and sink configs from
``--kafka_source_*`` / ``--kafka_sink_*`` options. As in Wallaroo, parsing uses
``parse_known_args``, so other options in ``args`` are left alone, and ports come
back as strings.

The ``Default...`` parsers take no args: in Wallaroo the runtime read its own
command line. Here the runner hands the application's args to ``set_app_args``
before calling ``application_setup``; without that they read ``sys.argv[1:]``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from .connectors.kafka import KafkaSinkConfig, KafkaSourceConfig

__all__ = [
    "CustomKafkaSinkCLIParser",
    "CustomKafkaSourceCLIParser",
    "DefaultKafkaSinkCLIParser",
    "DefaultKafkaSourceCLIParser",
    "app_args",
    "kafka_parse_sink_options",
    "kafka_parse_source_options",
    "set_app_args",
    "tcp_parse_input_addrs",
    "tcp_parse_output_addrs",
]

KAFKA_LOG_LEVELS = ["Fine", "Info", "Warn", "Error"]
DEFAULT_KAFKA_PORT = "9092"

_app_args: Optional[list] = None


def set_app_args(args: Optional[list]) -> None:
    """Record the application's args for the Default Kafka parsers (the runner calls this)."""
    global _app_args
    _app_args = None if args is None else list(args)


def app_args() -> list:
    """The args given to ``set_app_args``, else this process's command line."""
    return list(_app_args) if _app_args is not None else sys.argv[1:]


def _option(args: list, *flags: str, **kw: Any) -> Any:
    """The value of one option in ``args``, ignoring everything else there."""
    parser = argparse.ArgumentParser(prog="wallaroo", add_help=False, exit_on_error=False)
    parser.add_argument(*flags, dest="value", **kw)
    try:
        return parser.parse_known_args(list(args))[0].value
    except argparse.ArgumentError as e:  # a ValueError, not the exit argparse would do
        raise ValueError(str(e)) from None


# -- TCP -----------------------------------------------------------------------


def tcp_parse_input_addrs(args: list) -> list:
    """``--in name@host:port[,...]`` (or ``-i``) -> ``[(name, host, port), ...]``.

    An entry without ``name@`` is named after its address.
    """
    value = _option(args, "-i", "--in")
    if not value:
        raise ValueError("missing --in name@host:port[,name@host:port...]")
    out = []
    for item in value.split(","):
        name, _, addr = item.strip().rpartition("@")
        host, port = _host_port(addr, "--in")
        out.append((name or f"{host}:{port}", host, port))
    return out


def tcp_parse_output_addrs(args: list) -> list:
    """``--out host:port[,...]`` (or ``-o``) -> ``[(host, port), ...]``."""
    value = _option(args, "-o", "--out")
    if not value:
        raise ValueError("missing --out host:port[,host:port...]")
    return [_host_port(item.strip(), "--out") for item in value.split(",")]


def _host_port(addr: str, flag: str) -> tuple:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{flag}: expected host:port, got {addr!r}")
    return host, port


# -- Kafka ---------------------------------------------------------------------


def _kafka_broker(broker: str) -> tuple:
    """``host[:port]`` -> ``(host, port)``, port defaulting to 9092 as in Wallaroo."""
    host, _, port = broker.strip().partition(":")
    return host, port or DEFAULT_KAFKA_PORT


def _kafka_brokers(value: str, flag: str) -> list:
    brokers = [_kafka_broker(b) for b in value.split(",") if b.strip()]
    if not brokers:
        raise ValueError(f"missing {flag} host[:port][,host[:port]...]")
    return brokers


def kafka_parse_source_options(args: list) -> tuple:
    """``(topic, brokers, log_level, name)`` from ``--kafka_source_*`` options."""
    topic = _option(args, "--kafka_source_topic", default="")
    brokers = _option(args, "--kafka_source_brokers", default="")
    log_level = _option(args, "--kafka_source_log_level", default="Warn",
                        choices=KAFKA_LOG_LEVELS)
    name = _option(args, "--kafka_source_name", default=None)
    if not topic:
        raise ValueError("missing --kafka_source_topic")
    return topic, _kafka_brokers(brokers, "--kafka_source_brokers"), log_level, name


def kafka_parse_sink_options(args: list) -> tuple:
    """``(name, topic, brokers, log_level, max_produce_buffer_ms, max_message_size)``."""
    topic = _option(args, "--kafka_sink_topic", default="")
    brokers = _option(args, "--kafka_sink_brokers", default="")
    log_level = _option(args, "--kafka_sink_log_level", default="Warn",
                        choices=KAFKA_LOG_LEVELS)
    buffer_ms = _option(args, "--kafka_sink_max_produce_buffer_ms", type=int, default=0)
    max_size = _option(args, "--kafka_sink_max_message_size", type=int, default=100000)
    if not topic:
        raise ValueError("missing --kafka_sink_topic")
    brokers = _kafka_brokers(brokers, "--kafka_sink_brokers")
    return "", topic, brokers, log_level, buffer_ms, max_size


class CustomKafkaSourceCLIParser(KafkaSourceConfig):
    """A Kafka source configured from ``args`` (``--kafka_source_topic`` etc.)."""

    def __init__(self, args: list, decoder: Any) -> None:
        topic, brokers, log_level, name = kafka_parse_source_options(args)
        super().__init__(topic, brokers, decoder=decoder, name=name or "kafka_source",
                         log_level=log_level)


class CustomKafkaSinkCLIParser(KafkaSinkConfig):
    """A Kafka sink configured from ``args`` (``--kafka_sink_topic`` etc.)."""

    def __init__(self, args: list, encoder: Any) -> None:
        _, topic, brokers, log_level, buffer_ms, max_size = kafka_parse_sink_options(args)
        super().__init__(topic, brokers, encoder, max_message_size=max_size,
                         max_produce_buffer_ms=buffer_ms, log_level=log_level)


class DefaultKafkaSourceCLIParser(CustomKafkaSourceCLIParser):
    """A Kafka source configured from the application's own command line."""

    def __init__(self, decoder: Any, name: str = "kafka_source") -> None:
        super().__init__(app_args(), decoder)
        self.name = name


class DefaultKafkaSinkCLIParser(CustomKafkaSinkCLIParser):
    """A Kafka sink configured from the application's own command line."""

    def __init__(self, encoder: Any, name: str = "kafka_sink") -> None:
        super().__init__(app_args(), encoder)
        self.name = name
