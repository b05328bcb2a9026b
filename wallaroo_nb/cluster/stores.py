"""What the driver keeps of an app's results, errors and events: bounded.

A notebook kernel runs the driver, and a stream may never end: the driver keeps
the newest ``keep`` results (``CollectorSinkConfig(keep=N)``; ``keep=None`` keeps
all), the newest error records with their tracebacks, and the newest events,
and counts everything, dropped or not. Results keep their global index (the
n-th result ever collected is index n), so ``app.results(start=n)`` means the
same thing before and after older results are dropped.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Callable, Optional

from ..connectors.memory import DEFAULT_KEEP
from ..errors import ErrorRecord

ERRORS_KEPT = 1_000  # newest error records kept with their tracebacks
EVENTS_KEPT = 1_000


class ResultStore:
    """The newest ``keep`` collected results and the count of all of them."""

    def __init__(self, keep: Optional[int], cond: threading.Condition,
                 on_first_drop: Callable[[int], None] = lambda keep: None):
        self.keep = keep
        self.cond = cond
        self.values: deque = deque(maxlen=keep)
        self.total = 0  # results ever collected; the global index of the next one
        self.on_first_drop = on_first_drop

    @property
    def dropped(self) -> int:
        return self.total - len(self.values)

    def extend(self, values: list) -> None:
        with self.cond:
            had_dropped = self.dropped
            self.values.extend(values)
            self.total += len(values)
            self.cond.notify_all()
        if not had_dropped and self.dropped:
            self.on_first_drop(self.keep)

    def skip(self, n: int) -> None:
        """``n`` results came before any kept here (a resume from a compacted log)."""
        with self.cond:
            self.total += n

    def since(self, start: int = 0) -> list:
        """Results from global index ``start`` on (those still kept)."""
        with self.cond:
            first = self.total - len(self.values)
            skip = max(0, start - first)
            if skip == 0:
                return list(self.values)
            if skip >= len(self.values):
                return []
            return list(itertools.islice(self.values, skip, None))


class ErrorStore:
    """The newest ERRORS_KEPT error records, and the count of all."""

    def __init__(self, cond: threading.Condition):
        self.cond = cond
        self.records: deque = deque(maxlen=ERRORS_KEPT)
        self.total = 0

    def extend(self, records: list[ErrorRecord]) -> None:
        with self.cond:
            self.records.extend(records)
            self.total += len(records)
            self.cond.notify_all()

    @property
    def dropped(self) -> int:
        return self.total - len(self.records)

    def all(self) -> list[ErrorRecord]:
        with self.cond:
            return list(self.records)


class EventLog:
    """What happened to an app, (unix time, text), the newest EVENTS_KEPT."""

    def __init__(self) -> None:
        self.entries: deque = deque(maxlen=EVENTS_KEPT)
        self.recoveries = 0

    def add(self, text: str) -> None:
        if text.startswith("recovered"):
            self.recoveries += 1
        self.entries.append((time.time(), text))

    def all(self) -> list:
        return list(self.entries)


def collector_keep(plan_steps: tuple) -> Optional[int]:
    """How many results the app keeps: the largest ``keep`` of its collectors (None if
    any keeps everything)."""
    keeps = [getattr(s.sink, "keep", DEFAULT_KEEP) for s in plan_steps
             if s.is_sink and s.sink.collects]
    if not keeps:
        return DEFAULT_KEEP
    if any(k is None for k in keeps):
        return None
    return max(keeps)
