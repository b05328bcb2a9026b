"""Arity checks for user functions, done once when a decorator or window is built."""

from __future__ import annotations

import inspect
from typing import Callable, Optional


def positional_counts(fn: Callable) -> Optional[tuple]:
    """(required, maximum) positional parameters of ``fn``; maximum is None with
    ``*args``; None when the signature cannot be read (builtins: trust the user)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(1 for p in positional if p.default is p.empty)
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return required, None
    return required, len(positional)


def accepts(fn: Callable, n: int) -> bool:
    """Can ``fn`` be called with ``n`` positional arguments (and nothing else)?"""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(*range(n))
    except TypeError:
        return False
    return True


def takes_at_least(fn: Callable, n: int) -> bool:
    """Does ``fn`` accept an ``n``-th positional argument (``*args`` included)?"""
    counts = positional_counts(fn)
    return counts is not None and (counts[1] is None or counts[1] >= n)
