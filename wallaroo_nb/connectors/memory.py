"""In-memory sources and driver-side sinks: the notebook's connectors.

Sources here are replayable: their position is the count of messages read. A
list, tuple, range or DataFrame seeks at once, by index, wherever the position
is; a factory's iterator is made fresh and that many messages are skipped (a
recovery then replays the stream up to its checkpoint: time that grows with it).
"""

from __future__ import annotations

import itertools
import time
import types
from typing import Any, Callable, Iterable, Optional, Sequence

from ..errors import BuildError
from .base import SinkConfig, Source, SourceConfig

DEFAULT_KEEP = 100_000  # results a collector keeps in the driver (cluster/stores.py)


def _check_rate(name: str, rate: Optional[float]) -> None:
    if rate is not None and not (isinstance(rate, (int, float)) and rate > 0):
        raise ValueError(f"source {name!r}: rate must be a positive number of events/s, got {rate!r}")


class PacedSource(Source):
    """Reads from an iterator made by ``make_iter()`` (or by index from ``seq``, a
    sequence), optionally paced at ``rate`` events/s."""

    def __init__(self, make_iter: Callable[[], Iterable], rate: Optional[float],
                 seq: Optional[Sequence] = None):
        self.make_iter = make_iter
        self.seq = seq
        self.rate = rate
        self.it = None
        self.read_count = 0
        self.t0 = 0.0
        self.paced_from = 0
        self.first_read: Optional[int] = None  # index of the last read's first message

    def open(self, worker: int) -> None:
        if self.seq is None:
            self.it = iter(self.make_iter())
        self.t0 = time.monotonic()

    def _due(self, max_n: int) -> int:
        if self.rate is None:
            return max_n
        due = int((time.monotonic() - self.t0) * self.rate) - (self.read_count - self.paced_from)
        return max(0, min(max_n, due))

    def origin_ns(self) -> Optional[int]:
        """When the oldest message of the last read was due (unpaced: None, the read)."""
        if self.rate is None or self.first_read is None:
            return None
        due = self.t0 + (self.first_read - self.paced_from + 1) / self.rate
        return time.time_ns() - int((time.monotonic() - due) * 1e9)

    def read(self, max_n: int) -> Optional[list]:
        n = self._due(max_n)
        self.first_read = self.read_count
        if n == 0:
            return []
        if self.seq is not None:
            out = list(self.seq[self.read_count:self.read_count + n])
        else:
            out = list(itertools.islice(self.it, n))
        self.read_count += len(out)
        if len(out) < n:
            return out or None
        return out

    def wait_hint(self) -> Optional[float]:
        if self.rate is None:
            return 0.0
        next_at = self.t0 + (self.read_count - self.paced_from + 1) / self.rate
        return max(0.0, next_at - time.monotonic())

    def position(self) -> Any:
        return self.read_count

    def seek(self, position: Any) -> None:
        if self.seq is None:  # replay up to the position
            self.it = iter(self.make_iter())
            for _ in itertools.islice(self.it, position):
                pass
        self.read_count = position
        self.paced_from = position
        self.t0 = time.monotonic()


class IterableSourceConfig(SourceConfig):
    """Messages from ``data``: an iterable, or a zero-argument factory returning one.

    The factory form is replayable from any position; a list, tuple or range is
    too. A generator object cannot travel to a worker: pass a function making it.
    """

    replayable = True

    def __init__(self, name: str, data: Any, rate: Optional[float] = None,
                 event_time: Optional[Callable[[Any], int]] = None):
        self.name = name
        self.rate = rate
        self.event_time = event_time
        if isinstance(data, (types.GeneratorType, types.AsyncGeneratorType)) or (
            hasattr(data, "__next__") and not callable(data)
        ):
            raise ValueError(
                f"IterableSourceConfig({name!r}): a generator/iterator cannot be shipped to a "
                f"worker or replayed; pass a function that makes it, e.g. "
                f"IterableSourceConfig({name!r}, lambda: my_generator())"
            )
        if callable(data):
            self.factory = data
        elif isinstance(data, Iterable):
            self.factory = None
            self.data = data if isinstance(data, (list, tuple, range)) else list(data)
        else:
            raise ValueError(f"IterableSourceConfig({name!r}): data must be an iterable or a "
                             f"zero-argument function returning one, got {type(data).__name__}")
        _check_rate(name, rate)

    def _iter(self) -> Iterable:
        return self.factory() if self.factory is not None else self.data

    def make_source(self) -> Source:
        return PacedSource(self._iter, self.rate, None if self.factory else self.data)


class DataFrameSourceConfig(SourceConfig):
    """Each row of a pandas DataFrame as a dict {column: value}, in order."""

    replayable = True

    def __init__(self, name: str, df: Any, rate: Optional[float] = None,
                 event_time: Optional[Callable[[Any], int]] = None):
        if not hasattr(df, "to_dict"):
            raise ValueError(f"DataFrameSourceConfig({name!r}) needs a pandas DataFrame, got {type(df).__name__}")
        _check_rate(name, rate)
        self.name = name
        self.rate = rate
        self.event_time = event_time
        self.rows = df.to_dict("records")  # plain Python values: workers need no pandas

    def make_source(self) -> Source:
        return PacedSource(lambda: self.rows, self.rate, self.rows)


class _GenIter:
    def __init__(self, gen: Any, limit: Optional[int]):
        self.gen, self.limit = gen, limit

    def __iter__(self):
        v = self.gen.initial_value()
        n = 0
        # as in Wallaroo's GenSource, None (from initial_value or apply) ends the stream
        while v is not None and (self.limit is None or n < self.limit):
            yield v
            n += 1
            v = self.gen.apply(v)


def _is_generator(x: Any) -> bool:
    return callable(getattr(x, "initial_value", None)) and callable(getattr(x, "apply", None))


class GenSourceConfig(SourceConfig):
    """Wallaroo's generator source: ``gen.initial_value()``, then ``gen.apply(previous)``;
    None from either ends the stream.

    Both of Wallaroo's forms work: ``GenSourceConfig(gen)`` (0.6.0/0.6.1) and
    ``GenSourceConfig(name, gen)`` (the development head). Unbounded unless ``limit``
    is given (a generator that returns None still ends, but the runner does not
    wait for it).
    """

    replayable = True

    def __init__(self, gen: Any, name: Any = "gen", rate: Optional[float] = None,
                 limit: Optional[int] = None, event_time: Optional[Callable[[Any], int]] = None):
        if isinstance(gen, str) and _is_generator(name):
            gen, name = name, gen  # the head's GenSourceConfig(name, gen)
        for m in ("initial_value", "apply"):
            if not callable(getattr(gen, m, None)):
                raise ValueError(f"GenSourceConfig({name!r}): the generator {gen!r} has no {m}() method")
        _check_rate(name, rate)
        self.gen, self.name, self.rate, self.limit = gen, name, rate, limit
        self.event_time = event_time
        self.bounded = limit is not None

    def make_source(self) -> Source:
        return PacedSource(lambda: _GenIter(self.gen, self.limit), self.rate)


class CollectorSinkConfig(SinkConfig):
    """Outputs come back to the driver: ``app.results()`` / ``app.results_frame()``.

    The driver keeps the newest ``keep`` results (100,000 by default, so an endless
    stream cannot grow the notebook's kernel without bound) and counts the ones it
    drops; ``keep=None`` keeps every result (for sources that end)."""

    to_driver = True
    collects = True

    def __init__(self, name: str = "collector", keep: Optional[int] = DEFAULT_KEEP):
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise BuildError(f"CollectorSinkConfig({name!r}): keep must be a positive number of "
                             f"results or None (keep all), got {keep!r}")
        self.name = name
        self.keep = keep


class CallbackSinkConfig(SinkConfig):
    """A driver-side function called with each batch (a list) of outputs, in arrival order."""

    to_driver = True

    def __init__(self, fn: Callable[[list], Any], name: str = "callback"):
        if not callable(fn):
            raise ValueError(f"CallbackSinkConfig needs a function taking a list, got {fn!r}")
        self.fn = fn
        self.name = name
