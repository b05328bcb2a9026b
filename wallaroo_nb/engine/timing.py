"""Per-call timing of user functions, for the "computation" latency metric.

`Timer(fn)` is called exactly like ``fn``; it notes how long every call took (ns,
monotonic clock, calls that raise included) in a latency histogram until `take()`
hands it over in `histogram.to_wire`'s form. The worker sends that about once a
second. ``fn`` can be replaced (hot reload) without losing what was noted.

The compiled Timer (``_timer.c``) costs under 100 ns a call; the Python one
below, used only where the extension could not be built, about 300 ns.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..metrics import histogram as hg


class PyTimer:
    """The same Timer in Python: the fallback, and the reference the tests compare to."""

    __slots__ = ("_fn", "_hist")

    def __init__(self, fn: Callable) -> None:
        if not callable(fn):
            raise TypeError(f"Timer needs a callable, got {type(fn).__name__}")
        self._fn = fn
        self._hist = hg.Histogram()

    @property
    def fn(self) -> Callable:
        """The function timed (replaceable)."""
        return self._fn

    @fn.setter
    def fn(self, fn: Callable) -> None:
        if not callable(fn):
            raise TypeError("Timer.fn must be a callable")
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic_ns()
        try:
            return self._fn(*args, **kwargs)
        finally:  # calls that raise are timed too
            hg.record(self._hist, time.monotonic_ns() - t0)

    @property
    def pending(self) -> int:
        """How many calls take() would report."""
        return self._hist.count

    def take(self) -> dict:
        """The calls timed since the last take, in histogram.to_wire's form; then none."""
        out = hg.to_wire(self._hist)
        self._hist = hg.Histogram()
        return out


try:
    from ._timer import N_BINS, SUB_BITS, Timer
    if (N_BINS, SUB_BITS) != (hg.N_BINS, hg.SUB_BITS):  # a stale build of _timer.c
        raise ImportError(f"_timer bins ({N_BINS}, {SUB_BITS}) differ from histogram.py's")
    COMPILED = True
except ImportError:  # no C compiler where this was installed: slower, same results
    Timer = PyTimer  # type: ignore[misc,assignment]
    COMPILED = False
