"""Windowing API: ``Aggregation``, the window builders and the window spec they make.

``range_windows(r).with_slide(s).with_delay(d).with_late_data_policy(p).over(Agg)``,
``count_windows(n).over(Agg)``, ``session_windows(gap).over(Agg)`` and
``event_windows().fire_when(pred).over(Agg)``
return a :class:`WindowSpec`: plain data that ``Pipeline.to()`` accepts and that
``wallaroo_nb.engine.windowing.make_window_runner`` runs on the workers. Builders
are immutable (every ``with_*`` returns a new one) and ``.over()`` validates, so
mistakes surface when the pipeline is built, naming the step and the fix.

All times are integer nanoseconds (see units.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Optional

from .errors import BuildError
from .signatures import accepts, takes_at_least
from .units import hours, microseconds, milliseconds, minutes, nanoseconds, seconds  # noqa: F401

# Late-data policies as Wallaroo spells them; the underscore forms are aliases.
LATE_DATA_POLICIES = ("drop", "fire-per-message", "place-in-oldest-window")
LATE_DATA_ALIASES = {"fire_per_message": "fire-per-message",
                     "place_in_oldest_window": "place-in-oldest-window"}
# Wallaroo's count windows time out every 5 s (TumblingCountWindows.timeout_interval):
# then every key's partial window fires.
COUNT_TIMEOUT_NS = 5_000_000_000
_REQUIRED = ("initial_accumulator", "update", "combine", "output")
# positional arguments each method takes (besides self)
_ARITY = {"initial_accumulator": (0,), "update": (2,), "combine": (2,), "output": (2, 3)}


class Aggregation:
    """What a window step computes: fold messages into an accumulator, emit it.

    Laws: ``initial_accumulator()`` is the identity of ``combine``; ``combine`` is
    associative and must not mutate its inputs (sliding windows share panes);
    ``update`` may mutate and return ``acc``; ``output`` must not mutate ``acc`` and
    may return None (no output). ``output(key, acc, window)`` with a third
    parameter receives the window (``.start``, ``.end``).

    Set ``atomic_update = True`` on a class whose ``update`` either raises before
    changing ``acc`` or completes (``acc.append(x)`` is like that): wallaroo_nb then
    updates mutable accumulators in place instead of folding each message into a
    fresh accumulator and combining (see engine/windowing.py, "update errors").
    """

    atomic_update = False

    def initial_accumulator(self) -> Any:
        raise NotImplementedError

    def update(self, input: Any, acc: Any) -> Any:
        raise NotImplementedError

    def combine(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def output(self, key: Any, acc: Any) -> Any:
        raise NotImplementedError

    def name(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, eq=False)
class WindowSpec:
    """A validated window step, ready for ``Pipeline.to()``: plain data, picklable.

    ``kind`` is "range", "count" or "event". ``agg`` is always an instance (a class
    given to ``.over()`` is instantiated once, at build time). Fields that do not
    apply to a kind are None.
    """

    is_window_spec: ClassVar[bool] = True  # what Pipeline.to() looks for

    kind: str
    name: str
    agg: Any
    range_ns: Optional[int] = None
    slide_ns: Optional[int] = None
    delay_ns: int = 0
    late_data_policy: str = "drop"
    align: str = "epoch"  # range windows: "epoch", or "key" (each key's first message)
    count: Optional[int] = None
    gap_ns: Optional[int] = None  # session windows
    timeout_ns: Optional[int] = None  # count windows: partial windows fire this often
    fire_when: Optional[Callable[[Any], bool]] = None
    trigger_in_closing_window: bool = True
    output_takes_window: bool = False
    atomic_update: bool = False

    @property
    def pane_ns(self) -> Optional[int]:
        """Pane size of a range window: gcd(range, slide); None for other kinds."""
        return math.gcd(self.range_ns, self.slide_ns) if self.kind == "range" else None

    @property
    def needs_watermarks(self) -> bool:
        """True when the engine must feed event times and watermarks to this step."""
        return self.kind in ("range", "session")

    def validate(self) -> None:
        """Raise BuildError (naming the step and the fix) if this spec cannot run."""
        _check_aggregation(self.agg, self.name)
        if self.kind == "range":
            _check_range(self)
        elif self.kind == "count":
            _check_positive_int(self.count, "count", self.name, "count_windows(n) counts messages")
            if self.timeout_ns is not None:
                _check_positive_int(self.timeout_ns, "the timeout (ns)", self.name,
                                    "use the time units, e.g. wallaroo_nb.seconds(5), or None")
        elif self.kind == "session":
            _check_positive_int(self.gap_ns, "the gap (ns)", self.name,
                                "use the time units, e.g. wallaroo_nb.minutes(30)")
            _check_policy(self)
        elif self.kind == "event":
            if self.fire_when is not None and not callable(self.fire_when):
                raise BuildError(
                    f"window step {self.name!r}: fire_when() takes a function message -> bool, "
                    f"got {type(self.fire_when).__name__}")
        else:
            raise BuildError(f"window step {self.name!r}: unknown window kind {self.kind!r}")


def late_data_policy_name(policy: Any) -> Any:
    """Wallaroo's spelling of a late-data policy (aliases mapped; anything else as is,
    for validation to reject with a message)."""
    return LATE_DATA_ALIASES.get(policy, policy) if isinstance(policy, str) else policy


def _check_positive_int(v: Any, what: str, name: str, hint: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise BuildError(
            f"window step {name!r}: {what} must be an int, got {v!r} ({type(v).__name__}); {hint}")
    if v <= 0:
        raise BuildError(f"window step {name!r}: {what} must be positive, got {v}; {hint}")


def _check_range(s: WindowSpec) -> None:
    units = "use the time units, e.g. wallaroo_nb.seconds(5)"
    _check_positive_int(s.range_ns, "the range (ns)", s.name, units)
    _check_positive_int(s.slide_ns, "the slide (ns)", s.name, units)
    if isinstance(s.delay_ns, bool) or not isinstance(s.delay_ns, int) or s.delay_ns < 0:
        raise BuildError(
            f"window step {s.name!r}: the delay must be an int >= 0 of ns, got {s.delay_ns!r}; "
            f"{units}")
    if s.align not in ("epoch", "key"):
        raise BuildError(f"window step {s.name!r}: align must be 'epoch' or 'key', "
                         f"got {s.align!r}")
    if s.slide_ns > s.range_ns:
        raise BuildError(
            f"window step {s.name!r}: the slide ({s.slide_ns} ns) is larger than the range "
            f"({s.range_ns} ns), which would skip data between windows; use a slide <= range "
            f"(leave the slide out for tumbling windows)")
    _check_policy(s)


def _check_policy(s: WindowSpec) -> None:
    if s.late_data_policy not in LATE_DATA_POLICIES:
        raise BuildError(
            f"window step {s.name!r}: unknown late data policy {s.late_data_policy!r}; "
            f"use one of {', '.join(repr(p) for p in LATE_DATA_POLICIES)}")


def _check_aggregation(agg: Any, name: str) -> None:
    for m in _REQUIRED:
        fn = getattr(agg, m, None)
        inherited = isinstance(agg, Aggregation) and getattr(type(agg), m, None) is getattr(
            Aggregation, m)
        if not callable(fn) or inherited:
            raise BuildError(
                f"window step {name!r}: the aggregation {type(agg).__name__} has no {m}() "
                f"method; an Aggregation defines initial_accumulator(), update(input, acc), "
                f"combine(a, b) and output(key, acc)")
        if not any(accepts(fn, n) for n in _ARITY[m]):
            want = " or ".join(str(n) for n in _ARITY[m])
            raise BuildError(
                f"window step {name!r}: {type(agg).__name__}.{m}() must take {want} "
                f"argument(s) besides self")


def _resolve(agg: Any, where: str) -> Any:
    """Turn what the user passed to ``.over()`` (class or instance) into an instance."""
    if isinstance(agg, type):
        try:
            return agg()
        except TypeError as e:
            raise BuildError(
                f"{where}.over({agg.__name__}): could not make {agg.__name__}() with no "
                f"arguments ({e}); pass an instance instead, e.g. .over({agg.__name__}(...))"
            ) from e
    if callable(agg) and not any(hasattr(agg, m) for m in _REQUIRED):
        raise BuildError(
            f"{where}.over(...): got the function {getattr(agg, '__name__', agg)!r}; pass an "
            f"Aggregation class or instance (initial_accumulator, update, combine, output)")
    return agg


def _step_name(agg: Any) -> str:
    name_fn = getattr(agg, "name", None)
    if isinstance(name_fn, str) and name_fn:
        return name_fn
    if callable(name_fn):
        name = name_fn()
        if not isinstance(name, str) or not name:
            raise BuildError(
                f"the aggregation {type(agg).__name__}: name() must return a non-empty str, "
                f"got {name!r}")
        return name
    return type(agg).__name__


def _make_spec(where: str, kind: str, agg: Any, **fields: Any) -> WindowSpec:
    agg = _resolve(agg, where)
    name = _step_name(agg)
    _check_aggregation(agg, name)
    takes_window = takes_at_least(agg.output, 3)
    spec = WindowSpec(kind=kind, name=name, agg=agg, output_takes_window=takes_window,
                      atomic_update=bool(getattr(agg, "atomic_update", False)), **fields)
    spec.validate()
    return spec


@dataclass(frozen=True)
class RangeWindows:
    """Builder for tumbling/sliding event-time windows [start, end) aligned to the slide."""

    range_ns: Any
    slide_ns: Any = None
    delay_ns: Any = 0
    late_data_policy: Any = "drop"

    def with_slide(self, slide_ns: int) -> RangeWindows:
        """Windows start every ``slide_ns`` (<= range); default: the range (tumbling)."""
        return replace(self, slide_ns=slide_ns)

    def with_delay(self, delay_ns: int) -> RangeWindows:
        """A window [s, e) fires once the watermark reaches e + delay."""
        return replace(self, delay_ns=delay_ns)

    def with_late_data_policy(self, policy: str) -> RangeWindows:
        """"drop" (default), "fire-per-message" or "place-in-oldest-window" (Wallaroo's
        names; "fire_per_message" and "place_in_oldest_window" mean the same)."""
        return replace(self, late_data_policy=late_data_policy_name(policy))

    def over(self, agg: Any) -> WindowSpec:
        """The window step computing ``agg`` (an Aggregation class or instance)."""
        slide = self.range_ns if self.slide_ns is None else self.slide_ns
        return _make_spec("range_windows(...)", "range", agg, range_ns=self.range_ns,
                          slide_ns=slide, delay_ns=self.delay_ns,
                          late_data_policy=self.late_data_policy)


@dataclass(frozen=True)
class CountWindows:
    """Builder for windows of ``count`` messages per key. As in Wallaroo, partial
    windows fire too: every key's, each time the step's watermark has advanced by
    the timeout (5 s by default, Wallaroo's), and at the end of the stream
    (window.end - window.start says how full a window is)."""

    count: Any
    timeout_ns: Any = COUNT_TIMEOUT_NS

    def with_timeout(self, timeout_ns: Optional[int]) -> CountWindows:
        """Fire partial windows every ``timeout_ns`` of watermark time (ingest-time
        sources: the clock); None: only at the end of the stream."""
        return replace(self, timeout_ns=timeout_ns)

    def over(self, agg: Any) -> WindowSpec:
        """The window step computing ``agg`` (an Aggregation class or instance)."""
        return _make_spec("count_windows(...)", "count", agg, count=self.count,
                          timeout_ns=self.timeout_ns)


@dataclass(frozen=True)
class EventWindows:
    """Builder for event-driven windows: a key's window fires on ``app.trigger(step,
    key)`` (key None: every key), on ``fire_when`` and at the end of the stream, then
    starts over. An empty window never fires."""

    fire_when_fn: Optional[Callable[[Any], bool]] = None
    in_closing_window: bool = True

    def fire_when(self, pred: Callable[[Any], bool], include: bool = True) -> EventWindows:
        """Also fire a key's window when ``pred(message)`` is true for one of its messages.

        ``include=True`` (default): that message is the last one of the window that
        fires (an end-of-group marker). ``include=False``: the window fires with what
        came before, and the message starts the next window (a start marker).
        """
        return replace(self, fire_when_fn=pred, in_closing_window=bool(include))

    def over(self, agg: Any) -> WindowSpec:
        """The window step computing ``agg`` (an Aggregation class or instance)."""
        return _make_spec("event_windows()", "event", agg, fire_when=self.fire_when_fn,
                          trigger_in_closing_window=self.in_closing_window)


@dataclass(frozen=True)
class SessionWindows:
    """Builder for session windows: a key's window closes once ``gap_ns`` of event
    time pass without a message of that key (see engine/sessions.py)."""

    gap_ns: Any
    late_data_policy: Any = "drop"

    def with_late_data_policy(self, policy: str) -> SessionWindows:
        """"drop" (default), "fire-per-message" (the message alone, as the session
        [t, t + gap)) or "place-in-oldest-window" (the key's oldest open session)."""
        return replace(self, late_data_policy=late_data_policy_name(policy))

    def over(self, agg: Any) -> WindowSpec:
        """The window step computing ``agg`` (an Aggregation class or instance)."""
        return _make_spec("session_windows(...)", "session", agg, gap_ns=self.gap_ns,
                          late_data_policy=self.late_data_policy)


def range_windows(range_ns: int) -> RangeWindows:
    """Event-time windows ``range_ns`` long; tumbling unless ``.with_slide()``."""
    return RangeWindows(range_ns)


def count_windows(count: int) -> CountWindows:
    """Windows that fire every ``count`` messages of a key."""
    return CountWindows(count)


def event_windows() -> EventWindows:
    """Windows that fire on ``app.trigger(step, key)`` or on ``.fire_when(pred)``."""
    return EventWindows()


def session_windows(gap_ns: int) -> SessionWindows:
    """Per-key windows that close after ``gap_ns`` of event time with no message;
    ``output(key, acc, window)`` gets the session's start and end."""
    return SessionWindows(gap_ns)
