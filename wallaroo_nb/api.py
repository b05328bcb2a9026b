"""Wallaroo 0.6's Python API: decorators, Pipeline, build_application.

Everything here is plain, picklable data describing an application; nothing
runs until ``wallaroo_nb.run`` ships it to the workers. Mistakes are caught
here, at build time, with messages that name the step and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from .connectors.base import SinkConfig, SourceConfig
from .errors import BuildError
from .plan import KINDS, Plan, StepKind, compile_plan
from .signatures import accepts
from .units import hours, microseconds, milliseconds, minutes, nanoseconds, seconds

Application = Plan  # what build_application returns
__all__ = [
    "Application", "BuildError", "Pipeline", "build_application", "computation",
    "computation_multi", "decoder", "encoder", "hours", "key_extractor", "microseconds",
    "milliseconds", "minutes", "nanoseconds", "seconds", "source", "state_computation",
    "state_computation_multi",
]

# -- decorators ----------------------------------------------------------------


@dataclass(frozen=True)
class Computation:
    """A user function plus what the engine needs to know to run it."""

    name: str
    fn: Callable
    kind: StepKind
    state: Optional[type] = None

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


@dataclass(frozen=True)
class KeyExtractor:
    fn: Callable
    name: str

    def __call__(self, data: Any) -> Any:
        return self.fn(data)


@dataclass(frozen=True)
class Decoder:
    fn: Callable
    header_length: int = 4
    length_fmt: str = ">I"

    def __call__(self, payload: bytes) -> Any:
        return self.fn(payload)


@dataclass(frozen=True)
class Encoder:
    fn: Callable

    def __call__(self, data: Any) -> Any:
        return self.fn(data)


def _check_arity(fn: Callable, n: int, what: str, name: str, shape: str) -> None:
    if not callable(fn):
        raise BuildError(f"@{what}({name!r}) must decorate a function, got {type(fn).__name__}")
    if not accepts(fn, n):
        raise BuildError(
            f"@{what}({name!r}): {getattr(fn, '__name__', fn)!s} must take {n} "
            f"argument{'s' if n != 1 else ''}: {shape}"
        )


def _check_state_class(state: Any, name: str, what: str) -> None:
    if not isinstance(state, type) and not callable(state):
        raise BuildError(f"@{what}({name!r}): state={state!r} must be a class (made once per key)")
    try:
        state()
    except Exception as e:
        raise BuildError(
            f"@{what}({name!r}): the state class {getattr(state, '__name__', state)} cannot be "
            f"built with no arguments ({type(e).__name__}: {e}); give every __init__ "
            "parameter a default"
        ) from e


def _decorator_name(name: Any, what: str) -> str:
    if callable(name) and not isinstance(name, str):
        raise BuildError(f"@{what} needs a name: write @{what}(\"my step\")")
    if not isinstance(name, str) or not name:
        raise BuildError(f"@{what}: the name must be a non-empty string, got {name!r}")
    return name


def _step_decorator(kind: StepKind, name: Any, state: Any = None) -> Callable[[Callable], Computation]:
    """The decorator of a computation of ``kind``: checks the name, the state class
    and the function's arity once, when applied."""
    info = KINDS[kind]
    name = _decorator_name(name, info.decorator)
    if info.holds_state:
        _check_state_class(state, name, info.decorator)

    def wrap(fn: Callable) -> Computation:
        _check_arity(fn, info.arity, info.decorator, name, info.shape)
        return Computation(name, fn, kind, state if info.holds_state else None)

    return wrap


def computation(name: str) -> Callable[[Callable], Computation]:
    """``f(data) -> output | None``: a stateless step; None filters the message out."""
    return _step_decorator(StepKind.MAP, name)


def computation_multi(name: str) -> Callable[[Callable], Computation]:
    """``f(data) -> list | None``: each item of the list becomes a message."""
    return _step_decorator(StepKind.MULTI, name)


def state_computation(name: str, state: type) -> Callable[[Callable], Computation]:
    """``f(data, state) -> output | None``; ``state()`` is made once per key, lazily."""
    return _step_decorator(StepKind.STATE, name, state)


def state_computation_multi(name: str, state: type) -> Callable[[Callable], Computation]:
    """``f(data, state) -> list | None``; like state_computation, many outputs."""
    return _step_decorator(StepKind.STATE_MULTI, name, state)


def key_extractor(fn: Callable) -> KeyExtractor:
    """``f(data) -> key``: the key must be hashable and msgpack-able (str, int, bytes, tuples)."""
    name = getattr(fn, "__name__", "key")
    _check_arity(fn, 1, "key_extractor", name, "f(data)")
    return KeyExtractor(fn, name)


def decoder(header_length: int = 4, length_fmt: str = ">I") -> Callable[[Callable], Decoder]:
    """``f(payload: bytes) -> message | None`` for framed sources; None drops the message."""
    if callable(header_length):  # used bare: @decoder
        return Decoder(header_length)  # type: ignore[return-value]

    def wrap(fn: Callable) -> Decoder:
        _check_arity(fn, 1, "decoder", getattr(fn, "__name__", "decoder"), "f(payload)")
        return Decoder(fn, header_length, length_fmt)

    return wrap


def encoder(fn: Callable) -> Encoder:
    """``f(output) -> bytes`` (TCP) or ``(value, key, partition)`` (Kafka)."""
    _check_arity(fn, 1, "encoder", getattr(fn, "__name__", "encoder"), "f(data)")
    return Encoder(fn)


# -- pipelines -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Node:
    """One link of a pipeline; parents point upstream."""

    kind: str  # "source", "step", "key_by", "collect", "merge", "sink"
    parents: tuple = ()
    source_name: str = ""
    config: Any = None  # SourceConfig / SinkConfig
    step: Any = None  # Computation or a window spec
    key: Optional[KeyExtractor] = None


@dataclass(frozen=True, eq=False)
class Pipeline:
    """An immutable chain of steps; every method returns a new Pipeline."""

    node: Node

    def to(self, step: Any) -> "Pipeline":
        """Add a computation, state computation or window step."""
        if isinstance(step, Computation) or getattr(step, "is_window_spec", False):
            return Pipeline(Node("step", (self.node,), step=step))
        hint = ""
        if callable(step):
            hint = (
                f": decorate {getattr(step, '__name__', 'it')} with @computation(\"name\") "
                "or @state_computation(\"name\", state=Cls) first"
            )
        raise BuildError(f"to() takes a computation or a window, got {step!r}{hint}")

    def key_by(self, extractor: Any) -> "Pipeline":
        """Partition by ``extractor(data)`` until collect() or the next key_by."""
        if not isinstance(extractor, KeyExtractor):
            if not callable(extractor):
                raise BuildError(f"key_by() takes a key extractor function, got {extractor!r}")
            extractor = key_extractor(extractor)
        return Pipeline(Node("key_by", (self.node,), key=extractor))

    def collect(self) -> "Pipeline":
        """Send everything to one partition (a single state for following steps)."""
        return Pipeline(Node("collect", (self.node,)))

    def merge(self, other: "Pipeline") -> "Pipeline":
        """Interleave this stream with ``other`` (not a join)."""
        if not isinstance(other, Pipeline):
            raise BuildError(f"merge() takes a Pipeline, got {other!r}")
        return Pipeline(Node("merge", (self.node, other.node)))

    def to_sink(self, config: SinkConfig) -> "Pipeline":
        return self.to_sinks([config])

    def to_sinks(self, configs: list) -> "Pipeline":
        configs = list(configs)
        if not configs:
            raise BuildError("to_sinks() needs at least one sink config")
        for c in configs:
            if not isinstance(c, SinkConfig):
                raise BuildError(
                    f"to_sink() takes a sink config (CollectorSinkConfig(), TCPSinkConfig(...), "
                    f"...), got {c!r}"
                )
            if c.to_driver and not c.collects and not callable(getattr(c, "fn", None)):
                raise BuildError(
                    f"sink {c.name!r} runs in the driver (to_driver = True) but neither collects "
                    f"nor has a function fn(batch) to call: set collects = True or give it fn"
                )
            _check_config(c)
        return Pipeline(Node("sink", (self.node,), config=tuple(configs)))


def _check_config(config: Any) -> None:
    """A connector config's own check; its ValueError is a build mistake."""
    try:
        config.check()
    except BuildError:
        raise
    except ValueError as e:
        raise BuildError(str(e)) from e


def source(name: str, config: SourceConfig) -> Pipeline:
    """Start a pipeline named ``name`` reading from ``config``."""
    if not isinstance(name, str) or not name:
        raise BuildError(f"source() needs a pipeline name, got {name!r}")
    if not isinstance(config, SourceConfig):
        raise BuildError(
            f"source({name!r}, ...) takes a source config (IterableSourceConfig, TCPSourceConfig, "
            f"...), got {config!r}"
        )
    _check_config(config)
    return Pipeline(Node("source", (), source_name=name, config=config))


def build_application(name: str, *pipelines: Pipeline) -> Plan:
    """Check the pipelines end in sinks and compile them into the Plan ``run`` ships
    to the workers; every mistake raises BuildError naming the step and the fix."""
    if not pipelines:
        raise BuildError(f"build_application({name!r}) needs a pipeline")
    for p in pipelines:
        if not isinstance(p, Pipeline):
            raise BuildError(f"build_application({name!r}, ...) takes Pipelines, got {p!r}")
        if p.node.kind != "sink":
            raise BuildError(
                f"application {name!r}: the pipeline does not end in a sink; add "
                ".to_sink(CollectorSinkConfig()) (or another sink) at the end"
            )
    return compile_plan(name, tuple(p.node for p in pipelines))
