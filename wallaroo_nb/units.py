"""Wallaroo's time units: each turns a number into integer nanoseconds (rounded)."""

from __future__ import annotations


def _to_ns(n: float, unit_ns: int, unit: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise TypeError(f"{unit}() takes a number, got {type(n).__name__}")
    return n * unit_ns if isinstance(n, int) else int(round(n * unit_ns))


def nanoseconds(n: float) -> int:
    """``n`` nanoseconds, as int ns."""
    return _to_ns(n, 1, "nanoseconds")


def microseconds(n: float) -> int:
    """``n`` microseconds, as int ns."""
    return _to_ns(n, 1_000, "microseconds")


def milliseconds(n: float) -> int:
    """``n`` milliseconds, as int ns."""
    return _to_ns(n, 1_000_000, "milliseconds")


def seconds(n: float) -> int:
    """``n`` seconds, as int ns."""
    return _to_ns(n, 1_000_000_000, "seconds")


def minutes(n: float) -> int:
    """``n`` minutes, as int ns."""
    return _to_ns(n, 60_000_000_000, "minutes")


def hours(n: float) -> int:
    """``n`` hours, as int ns."""
    return _to_ns(n, 3_600_000_000_000, "hours")
