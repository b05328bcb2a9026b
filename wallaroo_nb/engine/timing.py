"""Per-call timing of user functions, for the "computation" latency metric.

`Timer(fn)` is called exactly like ``fn``; it notes how long every call took (ns,
monotonic clock, calls that raise included) until `take()` hands the durations
over as native int64 bytes. The worker bins them about once a second. ``fn`` can
be replaced (hot reload) without losing what was noted.

The compiled Timer (``_timer.c``) costs about 45-85 ns a call; the Python one
below, used only where the extension could not be built, about 200 ns.
"""

from __future__ import annotations

import time
from array import array
from typing import Any, Callable


class PyTimer:
    """The same Timer in Python: the fallback, and the reference the tests compare to."""

    __slots__ = ("_fn", "_durations")

    def __init__(self, fn: Callable) -> None:
        if not callable(fn):
            raise TypeError(f"Timer needs a callable, got {type(fn).__name__}")
        self._fn = fn
        self._durations = array("q")

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
            self._durations.append(time.monotonic_ns() - t0)

    @property
    def pending(self) -> int:
        """How many durations take() would return."""
        return len(self._durations)

    def take(self) -> bytes:
        """The durations (ns) noted since the last take, as native int64 bytes."""
        out = self._durations.tobytes()
        del self._durations[:]
        return out


try:
    from ._timer import Timer
    COMPILED = True
except ImportError:  # no C compiler where this was installed: slower, same results
    Timer = PyTimer  # type: ignore[misc,assignment]
    COMPILED = False


def durations(timer: Any) -> array:
    """What `timer` noted since the last call, as an int64 array (emptied in the timer)."""
    out = array("q")
    out.frombytes(timer.take())
    return out
