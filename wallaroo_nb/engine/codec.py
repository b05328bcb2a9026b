"""How values and state travel between processes.

Batches of values are pickled (protocol 5): as fast as msgpack for the small
tuples streams are made of, and exact for tuples, which msgpack turns into
lists. Classes defined in a notebook cell cannot be pickled by reference, so
such batches fall back to cloudpickle. State is checkpointed as plain attribute
dicts: pickled in C, and free of the class, which the plan already carries.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from typing import Any

import cloudpickle


def dumps(values: Any) -> bytes:
    """Pickle a batch; classes defined in a notebook cell need cloudpickle's by-value form."""
    try:
        return pickle.dumps(values, 5)
    except Exception:
        return dumps_by_value(values)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, plus a fix for instances of notebook classes with ``__slots__``.

    A class that travelled by value comes back with a ``__dict__`` as well as its
    slots, so its instances pickle their attributes as a dict, which the driver's
    real (slotted) class cannot take. Such instances are pickled as slot state.
    """

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        d = cls.__dict__
        if "__slots__" in d and "__dict__" in d and not isinstance(obj, type):
            return (copyreg.__newobj__, (cls,), (None, plain_state(obj)))
        return super().reducer_override(obj)


def plain_state(obj: Any) -> dict:
    """A state object's attributes as a dict (slots included): fast to pickle, and
    free of the (possibly notebook-defined) class, which the plan already carries."""
    d = getattr(obj, "__dict__", None)
    slots = _slot_names(type(obj))
    if not slots:
        if d is None:
            raise TypeError(f"state {type(obj).__name__} has neither __dict__ nor __slots__")
        return d
    out = dict(d) if d else {}
    for name in slots:
        if hasattr(obj, name):
            out[name] = getattr(obj, name)
    return out


def state_fields(st: Any) -> dict:
    """A state object as a row of ``app.state()``: its attributes, or itself."""
    try:
        return dict(plain_state(st))
    except TypeError:
        return {"state": st}


def from_plain_state(cls: type, fields: dict) -> Any:
    """Inverse of plain_state for a state class (its __init__ is not called)."""
    obj = cls.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


_SLOTS: dict = {}


def _slot_names(cls: type) -> tuple:
    names = _SLOTS.get(cls)
    if names is None:
        found = []
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for name in [slots] if isinstance(slots, str) else slots:
                if name not in ("__dict__", "__weakref__"):
                    found.append(name)
        names = _SLOTS[cls] = tuple(found)
    return names


def dumps_by_value(obj: Any) -> bytes:
    """cloudpickle.dumps with the slots fix above."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=5).dump(obj)
    return buf.getvalue()


SAMPLE = 200  # keys pickled to estimate the size of a step's state


def estimate_bytes(items: dict, as_plain: bool = True) -> int:
    """About how many bytes ``items`` (key -> state) take pickled, from a sample."""
    n = len(items)
    if not n:
        return 0
    sample = []
    for i, (k, v) in enumerate(items.items()):
        if i >= SAMPLE:
            break
        sample.append((k, plain_state(v) if as_plain else v))
    try:
        size = len(dumps(sample))
    except Exception:
        return 0
    return size * n // len(sample)
