"""Wallaroo's helper functions for application modules, on wallaroo_nb's connectors,
and the ``wallaroo`` alias that gives a module Wallaroo's whole API (compat_api.py,
compat_experimental.py).

An application module calls these from ``application_setup(args)``:
``tcp_parse_input_addrs`` / ``tcp_parse_output_addrs`` read ``--in`` / ``--out``,
and the Kafka CLI parsers build Kafka source and sink configs from
``--kafka_source_*`` / ``--kafka_sink_*`` options. As in Wallaroo, parsing uses
``parse_known_args``, so other options in ``args`` are left alone, and ports come
back as strings. Where Wallaroo's two API generations return different shapes and
the call cannot tell which is meant (``kafka_parse_*``), the head's is the default;
``set_generation("0.6")`` (``wallaroo-nb run --wallaroo-api 0.6``) picks 0.6's.

The ``Default...`` parsers take no args: in Wallaroo the runtime read its own
command line. Here the runner hands the application's args to ``set_app_args``
before calling ``application_setup``; without that they read ``sys.argv[1:]``.

``install_alias()`` makes ``import wallaroo`` resolve to wallaroo_nb's Wallaroo
API in this process only (the runner and, through it, the workers call it): the
name ``wallaroo`` on the package index belongs to an unrelated project.
"""

from __future__ import annotations

import argparse
import sys
import types
from typing import Any, Optional

from .connectors.kafka import LOG_LEVELS, KafkaSinkConfig, KafkaSourceConfig

__all__ = [
    "CustomKafkaSinkCLIParser",
    "CustomKafkaSourceCLIParser",
    "DefaultKafkaSinkCLIParser",
    "DefaultKafkaSourceCLIParser",
    "app_args",
    "install_alias",
    "kafka_parse_sink_options",
    "kafka_parse_source_options",
    "set_app_args",
    "set_generation",
    "tcp_parse_input_addrs",
    "tcp_parse_output_addrs",
]

KAFKA_LOG_LEVELS = list(LOG_LEVELS)  # Wallaroo's names, librdkafka's levels in kafka.py
DEFAULT_KAFKA_PORT = "9092"

_app_args: Optional[list] = None
GENERATIONS = ("head", "0.6")
_generation = "head"


def set_app_args(args: Optional[list]) -> None:
    """Record the application's args for the Default Kafka parsers and ``wallaroo._ARGS``
    (the runner calls this)."""
    global _app_args
    _app_args = None if args is None else list(args)
    mod = sys.modules.get(ALIAS)
    if mod is not None and getattr(mod, "__wallaroo_nb_alias__", False):
        mod._ARGS = tuple(app_args())


def set_generation(generation: str) -> None:
    """Which of Wallaroo's API generations decides the shapes that the call alone cannot
    (``kafka_parse_*`` results): "head" (default) or "0.6" (0.6.0/0.6.1)."""
    global _generation
    if generation not in GENERATIONS:
        raise ValueError(f"unknown Wallaroo API generation {generation!r}; use one of "
                         f"{', '.join(GENERATIONS)}")
    _generation = generation


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
    """``--in`` (or ``-i``) as Wallaroo parses it, entry by entry: ``host:port`` gives
    ``(host, port)`` (0.6.0/0.6.1's form), ``name@host:port`` gives ``(name, host, port)``
    (the head's form)."""
    value = _option(args, "-i", "--in")
    if not value:
        raise ValueError("missing --in host:port[,...] (or name@host:port[,...])")
    out = []
    for item in value.split(","):
        name, at, addr = item.strip().rpartition("@")
        host, port = _host_port(addr, "--in")
        out.append((name, host, port) if at else (host, port))
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


def _kafka_source_options(args: list) -> dict:
    return {
        "name": _option(args, "--kafka_source_name", default=None),
        "topic": _option(args, "--kafka_source_topic", default=""),
        "brokers": [_kafka_broker(b) for b in
                    _option(args, "--kafka_source_brokers", default="").split(",")],
        "log_level": _option(args, "--kafka_source_log_level", default="Warn",
                             choices=KAFKA_LOG_LEVELS),
    }


def _kafka_sink_options(args: list) -> dict:
    return {
        "topic": _option(args, "--kafka_sink_topic", default=""),
        "brokers": [_kafka_broker(b) for b in
                    _option(args, "--kafka_sink_brokers", default="").split(",")],
        "log_level": _option(args, "--kafka_sink_log_level", default="Warn",
                             choices=KAFKA_LOG_LEVELS),
        "max_produce_buffer_ms": _option(args, "--kafka_sink_max_produce_buffer_ms", type=int,
                                         default=0),
        "max_message_size": _option(args, "--kafka_sink_max_message_size", type=int,
                                    default=100000),
    }


def kafka_parse_source_options(args: list) -> tuple:
    """Wallaroo's parse of ``--kafka_source_*``: ``(name, topic, brokers, log_level)``
    (the head), or ``(topic, brokers, log_level)`` under ``set_generation("0.6")``."""
    o = _kafka_source_options(args)
    shape = (o["topic"], o["brokers"], o["log_level"])
    return shape if _generation == "0.6" else (o["name"],) + shape


def kafka_parse_sink_options(args: list) -> tuple:
    """Wallaroo's parse of ``--kafka_sink_*``: ``(name, topic, brokers, log_level,
    max_produce_buffer_ms, max_message_size)`` (the head; name is ""), or without the
    name under ``set_generation("0.6")``."""
    o = _kafka_sink_options(args)
    shape = (o["topic"], o["brokers"], o["log_level"], o["max_produce_buffer_ms"],
             o["max_message_size"])
    return shape if _generation == "0.6" else ("",) + shape


def _checked(o: dict, side: str) -> dict:
    """The options a Kafka config needs, or a ValueError naming the missing one."""
    if not o["topic"]:
        raise ValueError(f"missing --kafka_{side}_topic")
    if not any(host for host, _ in o["brokers"]):
        raise ValueError(f"missing --kafka_{side}_brokers host[:port][,host[:port]...]")
    o["brokers"] = [(h, p) for h, p in o["brokers"] if h]
    return o


class CustomKafkaSourceCLIParser(KafkaSourceConfig):
    """A Kafka source configured from ``args`` (``--kafka_source_topic`` etc.).

    ``event_time`` (message -> int ns) is a wallaroo_nb extension: range windows
    then follow the messages' own clock instead of their ingest time."""

    def __init__(self, args: list, decoder: Any, event_time: Any = None) -> None:
        o = _checked(_kafka_source_options(args), "source")
        super().__init__(o["topic"], o["brokers"], decoder=decoder,
                         name=o["name"] or "kafka_source", log_level=o["log_level"],
                         event_time=event_time)


class CustomKafkaSinkCLIParser(KafkaSinkConfig):
    """A Kafka sink configured from ``args`` (``--kafka_sink_topic`` etc.)."""

    def __init__(self, args: list, encoder: Any) -> None:
        o = _checked(_kafka_sink_options(args), "sink")
        super().__init__(o["topic"], o["brokers"], encoder,
                         max_message_size=o["max_message_size"],
                         max_produce_buffer_ms=o["max_produce_buffer_ms"],
                         log_level=o["log_level"])


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

# wallaroo_nb's own names that Wallaroo's module has under the same name and meaning
WALLAROO_NAMES = (
    "TCPSinkConfig", "KafkaSourceConfig", "KafkaSinkConfig",
    "nanoseconds", "microseconds", "milliseconds", "seconds", "minutes", "hours",
)
# Wallaroo's names that compat_api provides
COMPAT_NAMES = (
    "WallarooParameterError", "serialize", "deserialize", "dt_to_timestamp", "Unbuffered",
    "_validate_arity_compatability",
    "source", "build_application", "Pipeline",
    "computation", "computation_multi", "state_computation", "state_computation_multi",
    "key_extractor", "decoder", "encoder",
    "BaseWrapped", "Computation", "ComputationMulti", "StateComputation",
    "StateComputationMulti", "KeyExtractor", "Encoder", "Decoder", "OctetDecoder",
    "OctetEncoder", "ConnectorDecoder", "ConnectorEncoder", "Aggregation",
    "TCPSourceConfig", "GenSourceConfig",
    "range_windows", "count_windows", "RangeWindowsBuilder", "RangeWindows",
    "CountWindowsBuilder", "CountWindows",
)
# Wallaroo's names that this module provides
PARSER_NAMES = (
    "tcp_parse_input_addrs", "tcp_parse_output_addrs", "kafka_parse_source_options",
    "kafka_parse_sink_options", "DefaultKafkaSourceCLIParser", "DefaultKafkaSinkCLIParser",
    "CustomKafkaSourceCLIParser", "CustomKafkaSinkCLIParser",
)


def _alias_namespace() -> dict:
    """What ``import wallaroo`` offers: Wallaroo's names, from wallaroo_nb."""
    import wallaroo_nb

    from . import compat_api

    ns = {name: getattr(wallaroo_nb, name) for name in WALLAROO_NAMES}
    ns.update({name: getattr(compat_api, name) for name in COMPAT_NAMES})
    ns.update({name: globals()[name] for name in PARSER_NAMES})
    ns["_kafka_parse_broker"] = _kafka_broker
    ns["_ARGS"] = tuple(app_args())
    return ns


def _missing(name: str) -> Any:
    """Module ``__getattr__`` of the alias: Wallaroo names not supported say so."""
    from . import compat_api

    if name in compat_api.UNSUPPORTED:
        raise compat_api.unsupported(name, compat_api.UNSUPPORTED[name])
    raise AttributeError(f"module 'wallaroo' (wallaroo_nb's Wallaroo API) has no attribute "
                         f"{name!r}; wallaroo_nb's own API is `import wallaroo_nb`")


def _experimental() -> types.ModuleType:
    """``wallaroo.experimental`` and its submodules, registered in ``sys.modules``."""
    from . import compat_experimental as ce

    mod = types.ModuleType(ALIAS + ".experimental", ce.__doc__)
    public = ("SourceConnectorConfig", "SinkConnectorConfig", "stream_message_decoder",
              "stream_message_encoder", "octet_message_decoder", "octet_message_encoder",
              "ConnectorError", "ProtocolError", "UnexpectedSocketError")
    mod.__dict__.update({name: getattr(ce, name) for name in public})
    mod.__getattr__ = ce.__getattr__  # type: ignore[method-assign]
    mod.__path__ = []  # a package: its submodules import
    for sub in ce.SUBMODULES:
        sys.modules[f"{mod.__name__}.{sub}"] = submod = ce.client_module(sub)
        setattr(mod, sub, submod)
    sys.modules[mod.__name__] = mod
    return mod


def install_alias() -> types.ModuleType:
    """Make ``import wallaroo`` (and ``import wallaroo.experimental``) give wallaroo_nb's
    Wallaroo API in this process.

    Idempotent. Raises RuntimeError if another module named ``wallaroo`` is
    already imported (the unrelated package of that name, say)."""
    mod = sys.modules.get(ALIAS)
    if mod is not None:
        if getattr(mod, "__wallaroo_nb_alias__", False):
            return mod
        raise RuntimeError(
            f"a different module named 'wallaroo' is already imported ({mod!r}); "
            "wallaroo_nb cannot make `import wallaroo` mean Wallaroo's API in this process")
    mod = types.ModuleType(ALIAS, "Wallaroo's Python API (0.6 and the development head), "
                                  "provided by wallaroo_nb.")
    mod.__dict__.update(_alias_namespace())
    mod.__wallaroo_nb_alias__ = True
    mod.__getattr__ = _missing  # type: ignore[method-assign]
    mod.__path__ = []  # a package, so that `import wallaroo.experimental` works
    mod.__all__ = sorted(k for k in vars(mod) if not k.startswith("_"))
    sys.modules[ALIAS] = mod
    mod.experimental = _experimental()
    return mod
