"""What ``import wallaroo.experimental`` gives an application module: Wallaroo's
connector configs, mapped onto wallaroo_nb's connectors (both generations).

- ``SourceConnectorConfig(name, encoder, decoder, port, host=...)`` (0.6.0/0.6.1)
  listens on ``host:port`` for 0.6's stream messages (``<I`` length, 8 bytes of
  event time, payload): ``wallaroo-nb send --stream-frames 0.6`` feeds it.
- ``SourceConnectorConfig(name, encoder, decoder, port, cookie, max_credits,
  refill_credits, host=...)`` (the head) speaks the connector protocol
  (connectors/connector_protocol.py): ``wallaroo-nb send --at-least-once COOKIE``.
- ``SinkConnectorConfig(name, encoder, decoder, port, host=...)`` connects to
  ``host:port`` and writes the encoder's stream messages (0.6 framing; with a
  ``cookie``, the head's framing, without the head's two-phase-commit handshake):
  ``wallaroo-nb receive --stream-frames 0.6|head`` reads them.
- ``@stream_message_encoder`` / ``@stream_message_decoder`` wrap the payload
  functions; used with ``TCPSinkConfig`` / ``TCPSourceConfig`` they frame as the
  head does (``>I`` length; the encoder adds event time and key).

The connector programs' own classes (``SourceConnector``,
``AtLeastOnceSourceConnector``, ``MultiSourceConnector``, ...) run outside an
application and are not provided: their names raise an error saying what to use.
"""

from __future__ import annotations

import datetime
import re
import types
from typing import Any, Callable, Optional

from . import api
from .compat_api import (
    ConnectorDecoder,
    ConnectorEncoder,
    WallarooParameterError,
    _validate_arity_compatability,
    dt_to_timestamp,
    unsupported,
)
from .connectors.connector_protocol import (
    ConnectorSourceConfig,
    stream_frame_06,
    stream_frame_head,
)
from .connectors.tcp import TCPSinkConfig, TCPSource, TCPSourceConfig

DEFAULT_HOST = "127.0.0.1"


class ConnectorError(Exception):
    pass


class ProtocolError(Exception):
    pass


class UnexpectedSocketError(Exception):
    pass


def _bytes(x: Any) -> bytes:
    return x.encode() if isinstance(x, str) else bytes(x)


class StreamMessageDecoder(ConnectorDecoder):
    """``@stream_message_decoder``: the payload function, framed as the head frames
    (``>I`` length); a 0.6 SourceConnectorConfig strips 0.6's event time first."""

    header_length = 4
    length_fmt = ">I"

    def __init__(self, func: Callable[[bytes], Any]) -> None:
        self.func = func

    def fn(self, bs: bytes) -> Any:
        return self.func(bs)

    def decode(self, bs: bytes) -> Any:
        return self.func(bs)

    def decoder(self) -> Callable[[bytes], Any]:
        return self.func


class StreamMessageEncoder(ConnectorEncoder):
    """``@stream_message_encoder``: ``encode(data, event_time=0, key=None)`` makes the
    head's stream message (an event time in ns, or a datetime, as ms like Wallaroo)."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def encode(self, data: Any, event_time: Any = 0, key: Any = None) -> bytes:
        if isinstance(event_time, datetime.datetime):
            event_time = int(dt_to_timestamp(event_time) * 1000)
        return stream_frame_head(_bytes(self.func(data)), event_time,
                                 _bytes(key) if key else b"")

    def fn(self, data: Any) -> bytes:
        return self.encode(data)


class _Stream06Decoder:
    """0.6's stream messages: ``<I`` length, 8 bytes of event time (dropped, as 0.6
    did), payload for the user's decoder."""

    header_length = 4
    length_fmt = "<I"

    def __init__(self, func: Callable[[bytes], Any]) -> None:
        self.func = func

    def fn(self, bs: bytes) -> Any:
        return self.func(bs[8:])


class _StreamSinkEncoder:
    """A sink connector's frames: the user's payload in 0.6's or the head's framing."""

    def __init__(self, func: Callable[[Any], Any], generation: str) -> None:
        self.func, self.generation = func, generation

    def fn(self, data: Any) -> bytes:
        payload = _bytes(self.func(data))
        return stream_frame_06(payload) if self.generation == "0.6" else stream_frame_head(payload)


def _payload_fn(coder: Any) -> Callable:
    func = getattr(coder, "func", None)
    if func is None:
        func = getattr(coder, "fn", coder)
    if not callable(func):
        raise WallarooParameterError(f"expected an encoder or decoder, got {coder!r}")
    return func


def stream_message_decoder(func: Callable) -> StreamMessageDecoder:
    _validate_arity_compatability(getattr(func, "__name__", "decoder"), func, 1)
    return StreamMessageDecoder(func)


def stream_message_encoder(func: Callable) -> StreamMessageEncoder:
    _validate_arity_compatability(getattr(func, "__name__", "encoder"), func, 1)
    return StreamMessageEncoder(func)


def octet_message_decoder(func: Callable) -> api.Decoder:
    """The head's octet decoder: a ``>I``-framed payload function."""
    return api.decoder(4, ">I")(func)


def octet_message_encoder(func: Callable) -> api.Encoder:
    return api.encoder(func)


def _bind(where: str, names: tuple, args: tuple, kw: dict) -> dict:
    given = dict(zip(names, args))
    if len(args) > len(names):
        raise WallarooParameterError(f"{where}: too many arguments ({len(args)})")
    for k, v in kw.items():
        if k not in names or k in given:
            raise WallarooParameterError(f"{where}: unexpected or repeated argument {k!r}")
        given[k] = v
    return given


class SourceConnectorConfig(ConnectorSourceConfig):
    """Wallaroo's source connector config, either generation (see the module docstring)."""

    _OLD = ("name", "encoder", "decoder", "port", "host")
    _NEW = ("name", "encoder", "decoder", "port", "cookie", "max_credits", "refill_credits",
            "host")

    def __init__(self, *args: Any, **kw: Any) -> None:
        head = "cookie" in kw or "max_credits" in kw or len(args) >= 6
        g = _bind("SourceConnectorConfig", self._NEW if head else self._OLD, args, kw)
        missing = [k for k in (self._NEW[:7] if head else self._OLD[:4]) if k not in g]
        if missing:
            raise WallarooParameterError(f"SourceConnectorConfig needs {', '.join(missing)}")
        self.encoder = g["encoder"]
        func = _payload_fn(g["decoder"])
        host = g.get("host") or DEFAULT_HOST
        if head:
            super().__init__(g["name"], host, g["port"], StreamMessageDecoder(func),
                             cookie=g["cookie"], max_credits=g["max_credits"],
                             refill_credits=g["refill_credits"])
        else:
            super().__init__(g["name"], host, g["port"], _Stream06Decoder(func), cookie=None)

    def check(self) -> None:
        if self.cookie is None:
            TCPSourceConfig.check(self)
        else:
            super().check()

    def make_source(self) -> Any:
        if self.cookie is None:  # 0.6: plain TCP with 0.6's stream framing
            self.check()
            return TCPSource(self)
        return super().make_source()


_HOSTLIKE = re.compile(r"^(localhost|[0-9.]+|[0-9a-fA-F:]+|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")


class SinkConnectorConfig(TCPSinkConfig):
    """Wallaroo's sink connector config, either generation: a TCP sink writing the
    encoder's stream messages to ``host:port`` (see the module docstring)."""

    _OLD = ("name", "encoder", "decoder", "port", "host")
    _NEW = ("name", "encoder", "decoder", "port", "cookie", "host")

    def __init__(self, *args: Any, **kw: Any) -> None:
        # the 5th positional is 0.6's host or the head's cookie: a host looks like one
        head = "cookie" in kw or len(args) >= 6 or (
            len(args) == 5 and not _HOSTLIKE.match(str(args[4])))
        g = _bind("SinkConnectorConfig", self._NEW if head else self._OLD, args, kw)
        missing = [k for k in ("name", "encoder", "decoder", "port") if k not in g]
        if missing:
            raise WallarooParameterError(f"SinkConnectorConfig needs {', '.join(missing)}")
        self.decoder = g["decoder"]
        self.cookie: Optional[str] = g.get("cookie")
        encoder = _StreamSinkEncoder(_payload_fn(g["encoder"]), "head" if head else "0.6")
        super().__init__(g.get("host") or DEFAULT_HOST, g["port"], encoder, name=g["name"])


_CLIENT_SIDE = ("it is for connector programs, which run outside the application; use "
                "`wallaroo-nb send --stream-frames 0.6` (0.6) or `wallaroo-nb send "
                "--at-least-once COOKIE` (the head) to feed a SourceConnectorConfig, and "
                "`wallaroo-nb receive --stream-frames 0.6|head` to read a SinkConnectorConfig")
CLIENT_NAMES = ("SourceConnector", "SinkConnector", "BaseConnector",
                "AtLeastOnceSourceConnector", "MultiSourceConnector", "FramedFileReader",
                "BaseIter", "BaseSource", "parse_connector_args", "Stream")


def __getattr__(name: str) -> Any:
    if name in CLIENT_NAMES:
        raise unsupported(name, _CLIENT_SIDE, "wallaroo.experimental")
    raise AttributeError(f"module 'wallaroo.experimental' has no attribute {name!r}")


def client_module(name: str) -> types.ModuleType:
    """``wallaroo.experimental.<name>`` (connectors, connector_wire_messages, ...):
    connector-program modules, whose every name says it is not supported."""
    mod = types.ModuleType(f"wallaroo.experimental.{name}",
                           "Not supported by wallaroo_nb (connector-program code).")

    def missing(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise unsupported(attr, _CLIENT_SIDE, mod.__name__)

    mod.__getattr__ = missing  # type: ignore[method-assign]
    return mod


SUBMODULES = ("connectors", "connector_wire_messages", "base_meta2", "base_meta3")
