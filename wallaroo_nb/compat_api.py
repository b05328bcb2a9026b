"""What ``import wallaroo`` gives an application module: Wallaroo's Python API, both
generations (the 0.6.0/0.6.1 releases and the development head), on wallaroo_nb.

Where the generations differ, the call's form decides: ``TCPSourceConfig(host, port,
decoder)`` or ``TCPSourceConfig(name, host, port, decoder, ...)``,
``GenSourceConfig(gen)`` or ``GenSourceConfig(name, gen)``. Behaviours follow
Wallaroo: a ``@key_extractor``'s key becomes a string (an int n is ``chr(n)``), range
windows round the delay up to whole slides and align to each key's first message,
window builders are set once per call, and nothing may follow ``to_sink``. API
misuse raises ``WallarooParameterError`` (wallaroo_nb's ``BuildError``).
"""

from __future__ import annotations

import datetime
import math
import pickle
import sys
from dataclasses import fields
from typing import Any, Callable

from . import api
from . import windows as _windows
from .api import BuildError
from .connectors.memory import GenSourceConfig  # noqa: F401 (both forms; re-exported)
from .connectors.tcp import TCPSourceConfig as _TCPSourceConfig
from .plan import StepKind
from .signatures import accepts

WallarooParameterError = BuildError  # what Wallaroo raises for API misuse


def serialize(o: Any) -> bytes:
    """Wallaroo's default serializer (pickle). wallaroo_nb moves values between workers
    with its own codec and does not call a module's own serialize/deserialize."""
    return pickle.dumps(o)


def deserialize(bs: bytes) -> Any:
    """The inverse of ``serialize``."""
    return pickle.loads(bs)


def dt_to_timestamp(dt: datetime.datetime) -> float:
    """Seconds since the epoch of ``dt`` (the head's helper for connector event times)."""
    return dt.timestamp()


class Unbuffered:
    """Wallaroo's stream wrapper that flushes after every write."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: Any) -> None:
        self.stream.write(data)
        self.stream.flush()

    def writelines(self, datas: Any) -> None:
        self.stream.writelines(datas)
        self.stream.flush()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.stream, attr)


def _validate_arity_compatability(name: str, obj: Any, arity: int) -> None:
    """Wallaroo's own arity check (its spelling), raising WallarooParameterError."""
    if not callable(obj):
        raise WallarooParameterError(f"Expected a callable object but got a {obj} for {name}")
    if not accepts(obj, arity):
        raise WallarooParameterError(
            f"Incompatible function arity, your function {name} must have {arity} "
            f"parameter{'s' if arity != 1 else ''}.")


# -- decorators, base classes ----------------------------------------------------------

computation = api.computation
computation_multi = api.computation_multi
state_computation = api.state_computation
state_computation_multi = api.state_computation_multi
decoder = api.decoder
encoder = api.encoder


class BaseWrapped:
    """Wallaroo's base of decorated objects; subclasses define ``name()`` and
    ``compute(data)`` / ``compute_multi(data)`` (state ones: ``(data, state)`` and
    ``initial_state()``), and ``Pipeline.to`` accepts their instances."""

    def __call__(self, *args: Any) -> Any:
        return self


class Computation(BaseWrapped):
    _is_multi = False


class ComputationMulti(Computation):
    _is_multi = True


class StateComputation(Computation):
    pass


class StateComputationMulti(StateComputation, ComputationMulti):
    pass


class KeyExtractor(BaseWrapped):
    pass


class Encoder(BaseWrapped):
    pass


class Decoder(BaseWrapped):
    pass


class OctetDecoder(Decoder):
    pass


class OctetEncoder(Encoder):
    pass


class ConnectorDecoder(Decoder):
    pass


class ConnectorEncoder(Encoder):
    pass


def wallaroo_key(key: Any) -> str:
    """Wallaroo's key conversion: an int n is the key ``chr(n)``; bytes and str are the
    same key (bytes as UTF-8, undecodable bytes kept by surrogate escapes); nothing else
    is a key."""
    if isinstance(key, int):
        try:
            return chr(key)
        except (ValueError, OverflowError):
            raise ValueError(
                f"the key extractor returned the int {key}; Wallaroo makes an int key n "
                f"into chr(n), so it must be in 0..{sys.maxunicode}") from None
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "surrogateescape")
    raise TypeError(
        f"a Wallaroo key extractor must return str, bytes or int (an int n is the key "
        f"chr(n)), got {type(key).__name__} {key!r}; for other keys use wallaroo_nb's "
        f"key_by() directly")


class _WallarooKeyFn:
    """A key extractor function with Wallaroo's key conversion (picklable)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, data: Any) -> str:
        return wallaroo_key(self.fn(data))


def key_extractor(fn: Callable) -> api.KeyExtractor:
    """``@wallaroo.key_extractor``: ``f(data) -> key``, converted as Wallaroo does."""
    ke = api.key_extractor(fn)  # checks the arity, names the function
    return api.KeyExtractor(_WallarooKeyFn(fn), ke.name)


# Wallaroo's examples change ``acc`` in place in ``update`` and return None: the window
# engine takes the accumulator then (engine/window_base.py), for every Aggregation.
Aggregation = _windows.Aggregation


# -- source configs --------------------------------------------------------------------

def _is_decoder(x: Any) -> bool:
    return callable(x) or hasattr(x, "decode") or hasattr(x, "fn")


class TCPSourceConfig(_TCPSourceConfig):
    """Both of Wallaroo's forms: ``(host, port, decoder, parallelism=10)`` (0.6.0/0.6.1;
    the source is named ``host:port``) and ``(name, host, port, decoder, valid=True,
    parallelism=10, max_size=16384, max_received_count=50)`` (the head; ``max_size``
    is the read size, the rest mean nothing here). wallaroo_nb's keyword options
    (``max_frame``, ``event_time``, ...) work with either."""

    _OLD = ("host", "port", "decoder", "parallelism")
    _NEW = ("name", "host", "port", "decoder", "valid", "parallelism", "max_size",
            "max_received_count")

    def __init__(self, *args: Any, **kw: Any) -> None:
        old = len(args) <= 4 and "name" not in kw and (
            (len(args) >= 3 and _is_decoder(args[2])) or (len(args) < 3 and "decoder" in kw
                                                           and len(args) + len(kw) <= 4))
        given = dict(zip(self._OLD if old else self._NEW, args))
        for k in list(kw):
            if k in self._NEW:
                if k in given:
                    raise WallarooParameterError(f"TCPSourceConfig: {k} given twice")
                given[k] = kw.pop(k)
        missing = [k for k in ("host", "port", "decoder") if k not in given]
        if missing:
            raise WallarooParameterError(
                f"TCPSourceConfig needs {', '.join(missing)}: write TCPSourceConfig(host, port, "
                f"decoder) or TCPSourceConfig(name, host, port, decoder)")
        name = given.get("name") or f"{given['host']}:{given['port']}"
        if "max_size" in given:
            kw.setdefault("recv_size", int(given["max_size"]))
        super().__init__(name, given["host"], given["port"], given["decoder"], **kw)


# -- pipelines -------------------------------------------------------------------------


class Pipeline:
    """Wallaroo's Pipeline: every method returns a new Pipeline; a pipeline ends at
    ``to_sink``/``to_sinks``. It wraps a wallaroo_nb Pipeline (``.inner``)."""

    def __init__(self, inner: api.Pipeline) -> None:
        self.inner = inner

    @classmethod
    def from_source(cls, name: str, source_config: Any) -> "Pipeline":
        return cls(_call(api.source, name, source_config))

    def _is_closed(self) -> bool:
        return self.inner.node.kind == "sink"

    def _open(self, what: str) -> api.Pipeline:
        if self._is_closed():
            raise WallarooParameterError(f"You can't add stages after to_sink/s (got {what}).")
        return self.inner

    def to(self, computation: Any) -> "Pipeline":
        """A computation, state computation or window step."""
        return Pipeline(_call(self._open("to()").to, _step(computation)))

    def key_by(self, key_extractor: Any) -> "Pipeline":
        """Partition by the extractor's key (a hand-made KeyExtractor with an
        ``extract_key`` method works too, with Wallaroo's key conversion)."""
        extract = getattr(key_extractor, "extract_key", None)
        if callable(extract) and not isinstance(key_extractor, api.KeyExtractor):
            key_extractor = api.KeyExtractor(_WallarooKeyFn(extract), "extract_key")
        return Pipeline(_call(self._open("key_by()").key_by, key_extractor))

    def collect(self) -> "Pipeline":
        return Pipeline(self._open("collect()").collect())

    def merge(self, pipeline: "Pipeline") -> "Pipeline":
        if not isinstance(pipeline, Pipeline):
            raise WallarooParameterError(f"merge() takes a Pipeline, got {pipeline!r}")
        pipeline._open("merge()")
        return Pipeline(_call(self._open("merge()").merge, pipeline.inner))

    def to_sink(self, sink_config: Any) -> "Pipeline":
        return Pipeline(_call(self._open("to_sink()").to_sink, sink_config))

    def to_sinks(self, sink_configs: list) -> "Pipeline":
        return Pipeline(_call(self._open("to_sinks()").to_sinks, list(sink_configs)))


def _call(fn: Callable, *args: Any, **kw: Any) -> Any:
    """Call a wallaroo_nb builder; its ValueErrors become WallarooParameterError."""
    try:
        return fn(*args, **kw)
    except BuildError:
        raise
    except ValueError as e:
        raise WallarooParameterError(str(e)) from e


def _step(x: Any) -> Any:
    """A Wallaroo step object as a wallaroo_nb one."""
    if isinstance(x, (RangeWindowsBuilder, CountWindowsBuilder)):
        raise WallarooParameterError(
            "to() got a window builder; finish it with .over(YourAggregation)")
    if isinstance(x, api.Computation) or getattr(x, "is_window_spec", False):
        return x
    compute = getattr(x, "compute_multi", None) or getattr(x, "compute", None)
    if callable(getattr(x, "name", None)) and callable(compute):
        multi = hasattr(x, "compute_multi")
        initial = getattr(x, "initial_state", None)
        stateful = isinstance(x, StateComputation) or callable(initial)
        kind = ((StepKind.STATE_MULTI if multi else StepKind.STATE) if stateful
                else (StepKind.MULTI if multi else StepKind.MAP))
        return api.Computation(x.name(), compute, kind, initial if stateful else None)
    return x  # wallaroo_nb's to() names what is wrong with it


def source(name: str, source_config: Any) -> Pipeline:
    """Start a pipeline named ``name`` reading from ``source_config``."""
    return Pipeline.from_source(name, source_config)


def build_application(app_name: str, pipeline: Any) -> Any:
    """The application; an error unless the pipeline ends in a sink."""
    if isinstance(pipeline, Pipeline):
        if not pipeline._is_closed():
            raise WallarooParameterError("An application must end with to_sink/s.")
        pipeline = pipeline.inner
    return _call(api.build_application, app_name, pipeline)


# -- windows ---------------------------------------------------------------------------


def _spec_view(cls: type, spec: _windows.WindowSpec) -> Any:
    return cls(**{f.name: getattr(spec, f.name) for f in fields(spec)})


class RangeWindows(_windows.WindowSpec):
    """A range window step with Wallaroo's attribute names."""

    range = property(lambda self: self.range_ns)
    slide = property(lambda self: self.slide_ns)
    delay = property(lambda self: self.delay_ns)
    aggregation = property(lambda self: self.agg)


class CountWindows(_windows.WindowSpec):
    """A count window step with Wallaroo's attribute names."""

    aggregation = property(lambda self: self.agg)


class RangeWindowsBuilder:
    """``range_windows(r)``: each ``with_*`` may be called once and returns the builder
    itself, as in Wallaroo; ``over(AggregationClass)`` makes the step."""

    def __init__(self, wrange: int) -> None:
        self.range = wrange
        self.slide = None
        self.delay = None
        self.late_data_policy = ""

    def _once(self, attr: str, value: Any, method: str) -> "RangeWindowsBuilder":
        if getattr(self, attr) not in (None, ""):
            raise WallarooParameterError(
                f"Only call `{method}()` once per window specification.")
        setattr(self, attr, value)
        return self

    def with_slide(self, slide: int) -> "RangeWindowsBuilder":
        return self._once("slide", slide, "with_slide")

    def with_delay(self, delay: int) -> "RangeWindowsBuilder":
        return self._once("delay", delay, "with_delay")

    def with_late_data_policy(self, late_data_policy: str) -> "RangeWindowsBuilder":
        return self._once("late_data_policy", late_data_policy, "with_late_data_policy")

    def over(self, aggregation_cls: Any) -> RangeWindows:
        """Wallaroo's range windows: the delay rounded up to whole slides, windows
        aligned to each key's first message."""
        slide = self.range if self.slide is None else self.slide
        delay = _round_up(0 if self.delay is None else self.delay, slide)
        spec = _call(_windows._make_spec, "range_windows(...)", "range", aggregation_cls,
                     range_ns=self.range, slide_ns=slide, delay_ns=delay, align="key",
                     late_data_policy=_windows.late_data_policy_name(
                         self.late_data_policy or "drop"))
        return _spec_view(RangeWindows, spec)


def _round_up(delay: Any, slide: Any) -> Any:
    """Wallaroo normalizes a delay to whole slides, rounding up."""
    if not isinstance(delay, (int, float)) or not isinstance(slide, int) or slide <= 0:
        return delay  # the spec's validation names what is wrong
    return slide * math.ceil(delay / slide)


class CountWindowsBuilder:
    """``count_windows(n).over(AggregationClass)``."""

    def __init__(self, count: int) -> None:
        self.count = count

    def over(self, aggregation_cls: Any) -> CountWindows:
        spec = _call(_windows.count_windows(self.count).over, aggregation_cls)
        return _spec_view(CountWindows, spec)


def range_windows(wrange: int) -> RangeWindowsBuilder:
    return RangeWindowsBuilder(wrange)


def count_windows(count: int) -> CountWindowsBuilder:
    return CountWindowsBuilder(count)


# -- what is not supported ----------------------------------------------------------

UNSUPPORTED = {
    "_wallaroo_wrap": "it is machida's class factory for decorated functions; use the "
                      "decorators (@wallaroo.computation(...) and the rest)",
    "attach_to_module": "it registers machida's generated classes for pickling; use the "
                        "decorators alone (wallaroo_nb ships functions with cloudpickle)",
    "_PipelineTree": "it is machida's pipeline representation; use "
                     "wallaroo.source(...).to(...) to build pipelines",
    "_validate_aggregation": "use .over(YourAggregation), which checks the aggregation",
}


def unsupported(name: str, why: str, module: str = "wallaroo") -> NotImplementedError:
    return NotImplementedError(f"{module}.{name} is not supported by wallaroo_nb: {why}")

