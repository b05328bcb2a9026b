"""Errors: the build-time exception, and the one record of a runtime error.

Every recorded error, whether a computation raised on a worker, a connector
rejected a frame or a driver-side callback failed, is an :class:`ErrorRecord`
made here, so ``app.errors()`` has the same columns whatever went wrong.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, NamedTuple, Union


class BuildError(ValueError):
    """An application that cannot run; the message names the step and the fix."""


class WorkerFailure(RuntimeError):
    """A worker process died or its engine raised (and resilience is off)."""


class Recovering(RuntimeError):
    """The workers were restarted while a request was in flight; ask again."""


class StepError(RuntimeError):
    """A computation raised and the app runs with ``on_error='stop'``."""


class StepTimeout(RuntimeError):
    """A step was busy with one message longer than ``run(..., step_timeout=)``."""


class ErrorRecord(NamedTuple):
    """One recorded error: where it happened, on what, and why."""

    step: str  # the step, source or sink
    where: str  # "computation", "key extractor", "decoder", "sink", ...
    key: str  # short repr of the key ("" outside keyed steps)
    input: str  # short repr of the message
    error: str  # "TypeError: ..."
    traceback: str
    worker: Union[int, str]  # worker id, or "driver"
    time: float  # unix time


INPUT_LIMIT = 300  # characters of an input's repr kept in a record
FIELDS = ErrorRecord._fields


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters; a broken ``__repr__`` never hides
    the real error."""
    try:
        r = repr(value[: limit + 1] if isinstance(value, (bytes, bytearray)) else value)
    except Exception as e:
        r = f"<unrepresentable {type(value).__name__}: {e}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."


def describe(exc: Any) -> str:
    """``"TypeError: message"`` for an exception; the text itself for anything else."""
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}"
    return str(exc)


def format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def error_record(step: str, where: str, exc: Any, *, value: Any = "", key: str = "",
                 worker: Union[int, str] = "", with_traceback: bool = True,
                 input_repr: bool = True) -> ErrorRecord:
    """The record of ``exc`` (an exception or a message) raised at ``step``/``where``
    on ``value``. ``input_repr=False`` takes ``value`` as already described."""
    tb = format_traceback(exc) if with_traceback and isinstance(exc, BaseException) else ""
    text = short_repr(value, INPUT_LIMIT) if input_repr else str(value)
    return ErrorRecord(step, where, key, text, describe(exc), tb, worker, time.time())


def from_connector(name: str, record: Any, worker: Union[int, str]) -> ErrorRecord:
    """A record a source or sink logged itself (an ErrorRecord, or a dict with some of
    its fields, as user connectors may return from ``drain_errors``)."""
    if isinstance(record, ErrorRecord):
        return record._replace(worker=worker, step=record.step or name)
    get = record.get
    return ErrorRecord(get("step") or name, get("where", ""), "", str(get("input", "")),
                       str(get("error", "")), str(get("traceback", "")), worker,
                       get("time", time.time()))
