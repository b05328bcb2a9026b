"""What every window runner shares (windowing.py's range, count and event runners,
sessions.py's session runner): the aggregation's methods, folding a message into an
accumulator without harming it, emitting outputs, and keeping output errors."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

INFINITY = math.inf  # the watermark that closes every range window
_MISSING = object()
_NOTHING: tuple = ()


class Window(NamedTuple):
    """What a three-parameter ``output(key, acc, window)`` receives.

    Range and session windows: event time in ns, [start, end). Count and event
    windows: the key's message ordinals, [start, end) (the first message of a key is 0).
    """

    start: int
    end: int


def _keeping_acc(update: Any) -> Any:
    """Wallaroo's own examples mutate the accumulator in ``update`` and return None:
    then the (mutated) accumulator is the result."""

    def upd(value: Any, acc: Any) -> Any:
        r = update(value, acc)
        return acc if r is None else r

    return upd


def _is_immutable(x: Any) -> bool:
    """True if ``update`` cannot have mutated ``x`` (None is excluded: it is
    usually a placeholder for a mutable accumulator made on first use)."""
    t = type(x)
    if t in (int, float, complex, bool, str, bytes):
        return True
    if t is tuple or t is frozenset or (isinstance(x, tuple) and hasattr(t, "_fields")):
        return all(_is_immutable(i) for i in x)
    return False


class _Runner:
    """What every kind shares: the aggregation's methods, output and errors."""

    kind = ""

    def __init__(self, spec: Any, with_keys: bool, with_origin: bool = False) -> None:
        agg = spec.agg
        # with_origin: outputs are (key, output, event time, origin), the origin being
        # the newest origin (see engine/runtime.py) of the messages in the window
        self._origins = with_origin
        self.name: str = spec.name
        self._initial = agg.initial_accumulator
        self._update = _keeping_acc(agg.update)
        self._combine = agg.combine
        self._output = agg.output
        self._with_window = bool(spec.output_takes_window)
        self._with_keys = with_keys
        try:
            self._atomic = bool(spec.atomic_update) or _is_immutable(agg.initial_accumulator())
        except Exception:
            self._atomic = False
        self.late = 0
        self.dropped = 0
        self.errors: list = []
        self.watermark: float = -math.inf

    def _fold(self, value: Any, acc: Any) -> Any:
        """``update(value, acc)`` that leaves ``acc`` untouched if it raises."""
        if acc is _MISSING:
            return self._update(value, self._initial())
        if self._atomic:
            return self._update(value, acc)
        return self._combine(acc, self._update(value, self._initial()))

    def _emit(self, out: list, key: Any, acc: Any, start: Any, end: Any, ts: Any,
              origin: Any = None) -> None:
        try:
            if self._with_window:
                r = self._output(key, acc, Window(start, end))
            else:
                r = self._output(key, acc)
        except Exception as e:
            self.errors.append((key, e))
            return
        if r is not None:
            if self._origins:
                out.append((key, r, ts, origin))
            else:
                out.append((key, r, ts) if self._with_keys else r)

    def take_errors(self) -> list:
        """Errors raised by ``output`` since the last call, as (key, exception)."""
        errors, self.errors = self.errors, []
        return errors

    def on_trigger(self, key: Any = None) -> Sequence:
        raise ValueError(
            f"window step {self.name!r} has {self.kind} windows; triggers apply to "
            f"event_windows() steps only")
