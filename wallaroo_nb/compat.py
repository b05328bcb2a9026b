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

``install_alias()`` makes ``import wallaroo`` resolve to wallaroo_nb's Wallaroo 0.6
API in this process only (the runner and, through it, the workers call it): the
name ``wallaroo`` on the package index belongs to an unrelated project.
"""

from __future__ import annotations

import argparse
import sys
import types
from typing import Any, Optional

from . import windows as _windows
from .connectors.kafka import LOG_LEVELS, KafkaSinkConfig, KafkaSourceConfig
from .connectors.tcp import TCPSourceConfig

__all__ = [
    "CustomKafkaSinkCLIParser",
    "CustomKafkaSourceCLIParser",
    "DefaultKafkaSinkCLIParser",
    "DefaultKafkaSourceCLIParser",
    "WallarooAggregation",
    "WallarooTCPSourceConfig",
    "app_args",
    "install_alias",
    "kafka_parse_sink_options",
    "kafka_parse_source_options",
    "set_app_args",
    "tcp_parse_input_addrs",
    "tcp_parse_output_addrs",
]

KAFKA_LOG_LEVELS = list(LOG_LEVELS)  # Wallaroo's names, librdkafka's levels in kafka.py
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
    """A Kafka source configured from ``args`` (``--kafka_source_topic`` etc.).

    ``event_time`` (message -> int ns) is a wallaroo_nb extension: range windows
    then follow the messages' own clock instead of their ingest time."""

    def __init__(self, args: list, decoder: Any, event_time: Any = None) -> None:
        topic, brokers, log_level, name = kafka_parse_source_options(args)
        super().__init__(topic, brokers, decoder=decoder, name=name or "kafka_source",
                         log_level=log_level, event_time=event_time)


class CustomKafkaSinkCLIParser(KafkaSinkConfig):
    """A Kafka sink configured from ``args`` (``--kafka_sink_topic`` etc.)."""

    def __init__(self, args: list, encoder: Any) -> None:
        _, topic, brokers, log_level, buffer_ms, max_size = kafka_parse_sink_options(args)
        super().__init__(topic, brokers, encoder, max_message_size=max_size,
                         max_produce_buffer_ms=buffer_ms, log_level=log_level)


class DefaultKafkaSourceCLIParser(CustomKafkaSourceCLIParser):
    """A Kafka source configured from the application's own command line."""

    def __init__(self, decoder: Any, name: str = "kafka_source", event_time: Any = None) -> None:
        super().__init__(app_args(), decoder, event_time=event_time)
        self.name = name


class DefaultKafkaSinkCLIParser(CustomKafkaSinkCLIParser):
    """A Kafka sink configured from the application's own command line."""

    def __init__(self, encoder: Any, name: str = "kafka_sink") -> None:
        super().__init__(app_args(), encoder)
        self.name = name


# -- `import wallaroo` ---------------------------------------------------------

ALIAS = "wallaroo"

# wallaroo_nb names that Wallaroo 0.6's module also has (the alias exposes only these,
# plus the windows API below).
WALLAROO_NAMES = (
    "source", "build_application", "Pipeline",
    "computation", "computation_multi", "state_computation", "state_computation_multi",
    "key_extractor", "decoder", "encoder",
    "TCPSinkConfig", "KafkaSourceConfig", "KafkaSinkConfig", "GenSourceConfig",
    "tcp_parse_input_addrs", "tcp_parse_output_addrs",
    "DefaultKafkaSourceCLIParser", "DefaultKafkaSinkCLIParser",
    "CustomKafkaSourceCLIParser", "CustomKafkaSinkCLIParser",
    "nanoseconds", "microseconds", "milliseconds", "seconds", "minutes", "hours",
)
WINDOW_NAMES = ("range_windows", "count_windows")


class WallarooTCPSourceConfig(TCPSourceConfig):
    """``TCPSourceConfig(name, host, port, decoder)``, also taking Wallaroo's older
    ``TCPSourceConfig(host, port, decoder)`` (then named ``host:port``)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        if len(args) == 3 and callable(args[2]) and "decoder" not in kw:
            host, port, dec = args
            args = (f"{host}:{port}", host, port, dec)
        super().__init__(*args, **kw)


def _keep_acc(update: Any) -> Any:
    def update_acc(self: Any, input: Any, acc: Any) -> Any:
        out = update(self, input, acc)
        return acc if out is None else out

    update_acc.__name__ = getattr(update, "__name__", "update")
    update_acc.__qualname__ = getattr(update, "__qualname__", "update")
    update_acc.__wrapped__ = update
    return update_acc


class WallarooAggregation(_windows.Aggregation):
    """Wallaroo's Aggregation: ``update(input, acc)`` may change ``acc`` in place
    and return nothing, as Wallaroo's examples do; the accumulator is kept then."""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        update = cls.__dict__.get("update")
        if callable(update) and not hasattr(update, "__wrapped__"):
            cls.update = _keep_acc(update)


def _alias_namespace() -> dict:
    """What ``import wallaroo`` offers: Wallaroo 0.6's names, from wallaroo_nb."""
    import wallaroo_nb

    ns = {name: getattr(wallaroo_nb, name) for name in WALLAROO_NAMES}
    ns["TCPSourceConfig"] = WallarooTCPSourceConfig
    ns["Aggregation"] = WallarooAggregation
    ns.update({name: getattr(_windows, name) for name in WINDOW_NAMES})
    return ns


def install_alias() -> types.ModuleType:
    """Make ``import wallaroo`` give wallaroo_nb's Wallaroo 0.6 API in this process.

    Idempotent. Raises RuntimeError if another module named ``wallaroo`` is
    already imported (the unrelated package of that name, say)."""
    mod = sys.modules.get(ALIAS)
    if mod is not None:
        if getattr(mod, "__wallaroo_nb_alias__", False):
            return mod
        raise RuntimeError(
            f"a different module named 'wallaroo' is already imported ({mod!r}); "
            "wallaroo_nb cannot make `import wallaroo` mean Wallaroo's API in this process")
    mod = types.ModuleType(ALIAS, "Wallaroo 0.6's Python API, provided by wallaroo_nb.")
    mod.__dict__.update(_alias_namespace())
    mod.__wallaroo_nb_alias__ = True
    mod.__all__ = sorted(k for k in vars(mod) if not k.startswith("_"))
    sys.modules[ALIAS] = mod
    return mod
