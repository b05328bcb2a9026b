"""Test your pipelines with pytest: the engine core in your own process, and helpers.

``run_local(app_or_pipeline)`` runs an application's bounded sources through the
same engine core the worker processes run, in the calling process, with no
sockets, no threads and no worker processes: what ``app.results()`` would hold
after ``wait()``, deterministically. A computation that raises fails the test
(``on_error="raise"``, the default here), with the step, the key and the
traceback in the message.

    from wallaroo_nb.testing import run_local
    assert sorted(run_local(pipeline)) == [("a", 2), ("b", 1)]

Also: ``LocalRun`` (results, errors and state of a local run), ``read_n`` (the
first n results of a running app), ``read_source`` (messages of a live source,
for testing your own connectors), ``ScriptedSourceConfig`` (a source that
injects an error or a worker crash at a given message) and stock aggregations
(``Count``, ``Sum``, ``Collect``) for examples.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections import deque
from typing import Any, Iterable, Optional

from .api import Pipeline, build_application
from .connectors.base import open_source
from .connectors.memory import IterableSourceConfig, PacedSource
from .engine.core import Core
from .errors import BuildError, ErrorRecord, StepError
from .keys import default_owners
from .plan import Plan
from .windows import Aggregation

CHUNK = 4096  # values read from a source per turn, as a worker reads them (endpoints.CHUNK)

__all__ = ["Collect", "Count", "LocalRun", "ScriptedSourceConfig", "Sum", "read_n",
           "read_source", "run_local"]


def run_local(app: Plan | Pipeline, workers: int = 1, on_error: str = "raise") -> list:
    """Run ``app`` to the end in this process; return the collected results in the order
    ``app.results()`` would hold them. ``workers`` > 1 routes between that many engine
    cores, as worker processes would (the results are the same, per key in order).
    ``on_error``: "raise" (StepError at the first error), "record" or "stop"."""
    return LocalRun(app, workers, on_error).run().results


def _plan(app: Plan | Pipeline) -> Plan:
    if isinstance(app, Pipeline):
        return build_application("app", app)
    if not isinstance(app, Plan):
        raise BuildError(f"run_local() takes build_application(...) or a Pipeline, got {app!r}"
                         " (a `wallaroo` module's pipeline: pass wallaroo.build_application("
                         "name, pipeline))")
    return app


class LocalRun:
    """One application run to the end in this process on ``workers`` engine cores.

    After ``run()``: ``results`` (what collector sinks got), ``errors`` (ErrorRecords)
    and ``state(step)`` (key -> state fields, over all cores)."""

    def __init__(self, app: Plan | Pipeline, workers: int = 1, on_error: str = "raise"):
        if on_error not in ("raise", "record", "stop"):
            raise ValueError(f"on_error must be 'raise', 'record' or 'stop', got {on_error!r}")
        self.plan = plan = _plan(app)
        unbounded = [sp.name for sp in plan.sources if not sp.config.bounded]
        if unbounded:
            raise BuildError(f"run_local() needs sources that end; {unbounded} never end: "
                             "give them a limit (GenSourceConfig(..., limit=n)) or data")
        self.n = workers
        self.raise_errors = on_error == "raise"
        assign = plan.source_workers(workers)
        owners = default_owners(plan.n_slots, workers)
        mode = "record" if on_error == "raise" else on_error
        self.cores = [Core(plan, w, workers, assign, owners, mode, metrics=False)
                      for w in range(workers)]
        self.assign = assign
        self.sources: list[dict] = [{} for _ in self.cores]
        self.sinks = [{s.id: s.sink.make_sink() for s in plan.steps
                       if s.is_sink and not s.sink.to_driver} for _ in self.cores]
        self.inbox: list[deque] = [deque() for _ in self.cores]
        self.results: list = []
        self.errors: list[ErrorRecord] = []

    def run(self) -> "LocalRun":
        for w, core in enumerate(self.cores):
            for sid in core.sources:
                self.sources[w][sid] = open_source(self.plan.sources[sid].config, w,
                                                   self.assign[sid])
            for sink in self.sinks[w].values():
                sink.open(w)
        try:
            while self._turn():
                pass
        finally:
            self._close()
        return self

    def _turn(self) -> bool:
        """One round: every core reads a chunk of each source, then takes its frames.
        False once everything is read, delivered and quiet."""
        busy = False
        for w, core in enumerate(self.cores):
            busy |= self._read(w, core)
            core.tick(time.monotonic())
            busy |= self._deliver(w, core)
        for w, core in enumerate(self.cores):
            while self.inbox[w]:
                sender, groups = self.inbox[w].popleft()
                core.receive(sender, groups)
                busy = True
            busy |= self._deliver(w, core)
        return busy

    def _read(self, w: int, core: Core) -> bool:
        busy = False
        for sid, src in self.sources[w].items():
            if core.sources[sid].done or core.rt.halted:
                continue
            busy = True
            vals = src.read(CHUNK)
            if vals is None:
                core.end_source(sid)
            elif vals:
                core.ingest(sid, vals, src.origin_ns(), src.created_ns())
            else:
                time.sleep(min(max(src.wait_hint() or 0.0, 0.0), 0.01))  # a paced source
            for e in src.drain_errors():
                core.rt.connector_error(core.sources[sid].name, e)
        return busy

    def _deliver(self, w: int, core: Core) -> bool:
        out = core.take()
        for peer, groups in enumerate(out.groups):
            if groups:
                self.inbox[peer].append((w, groups))
        for sid, payload, _n, _origin in out.results:
            sink = self.plan.steps[sid].sink
            values = pickle.loads(payload)
            if sink.collects:
                self.results.extend(values)
            else:
                sink.fn(values)
        for sid, batch in out.sinks:
            self.sinks[w][sid].write(batch)
        self.errors.extend(out.errors)
        if out.errors and self.raise_errors:
            r = out.errors[0]
            raise StepError(f"step {r.step!r} ({r.where}) raised {r.error} on key {r.key!r} "
                            f"(input {r.input})\n{r.traceback}")
        return any(out.groups) or bool(out.results or out.sinks or out.errors)

    def _close(self) -> None:
        for w in range(self.n):
            for src in self.sources[w].values():
                src.close()
            for sink in self.sinks[w].values():
                sink.flush()
                sink.close()

    def state(self, step: str) -> dict:
        """key -> state fields of ``step`` (a state computation or a window), all cores."""
        out: dict = {}
        for core in self.cores:
            for row in core.state_rows(step).rows:
                if isinstance(row, dict):
                    out.setdefault(row["key"], []).append(row)
                else:
                    out[row[0]] = row[1]
        return out


# -- helpers for running apps and connectors ---------------------------------------------


def read_n(app: Any, n: int, timeout: float = 10.0, start: int = 0) -> list:
    """The collected results ``start`` .. ``start + n`` of a running app, waiting for them;
    TimeoutError says how many came."""
    app.wait(count=start + n, timeout=timeout)
    return app.results(start)[:n]


def read_source(src: Any, n: int, timeout: float = 10.0, max_n: int = 100) -> list:
    """Up to n messages from a live Source (``src.read(max_n)``), reading the way the
    worker loop does: non-blocking reads, short pauses between empty ones."""
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        got = src.read(max_n)
        if got is None:
            break
        out += got
        if not got:
            time.sleep(min(max(src.wait_hint() or 0.0, 0.001), 0.01))
    return out


class InjectedError(RuntimeError):
    """The error a ScriptedSourceConfig records for a message it was told to fail."""


class ScriptedSourceConfig(IterableSourceConfig):
    """An iterable source that fails on purpose, for testing error handling and recovery.

    ``errors_at``: message indexes (0-based) recorded as source errors instead of being
    delivered (they show in ``app.errors()`` as where="injected"). ``crash_at``: the
    worker reading message ``crash_at`` exits at once (kill -9 style), once per app:
    a marker file in ``marker_dir`` (a fresh temporary directory by default) says it
    crashed, so after recovery the replay goes past it. Replayable like any list."""

    def __init__(self, name: str, data: Iterable, errors_at: Iterable[int] = (),
                 crash_at: Optional[int] = None, rate: Optional[float] = None,
                 marker_dir: Optional[str] = None):
        super().__init__(name, list(data), rate=rate)
        self.errors_at = frozenset(errors_at)
        self.crash_at = crash_at
        self.marker = os.path.join(marker_dir or tempfile.mkdtemp(prefix="wallaroo_nb-crash-"),
                                   f"{name}.crashed")

    def make_source(self) -> "ScriptedSource":
        return ScriptedSource(self)


class ScriptedSource(PacedSource):
    def __init__(self, config: ScriptedSourceConfig):
        super().__init__(config._iter, config.rate, config.data)
        self.config = config
        self.errors: list = []

    def read(self, max_n: int) -> Optional[list]:
        first = self.read_count
        vals = super().read(max_n)
        if not vals:
            return vals
        cfg = self.config
        crash = cfg.crash_at
        if crash is not None and first <= crash < first + len(vals) \
                and not os.path.exists(cfg.marker):
            open(cfg.marker, "w").close()
            os._exit(70)  # what a killed worker looks like to the driver
        if not cfg.errors_at:
            return vals
        out = []
        for i, v in enumerate(vals, first):
            if i in cfg.errors_at:
                self.errors.append({"step": cfg.name, "where": "injected", "input": repr(v),
                                    "error": f"InjectedError: message {i} fails on purpose"})
            else:
                out.append(v)
        return out

    def drain_errors(self) -> list:
        errors, self.errors = self.errors, []
        return errors


# -- stock aggregations ---------------------------------------------------------------------


class Count(Aggregation):
    """How many messages a window holds: ``(key, count)``."""

    def initial_accumulator(self) -> int:
        return 0

    def update(self, input: Any, acc: int) -> int:
        return acc + 1

    def combine(self, a: int, b: int) -> int:
        return a + b

    def output(self, key: Any, acc: int) -> tuple:
        return (key, acc)


class Sum(Aggregation):
    """The sum of the messages' ``value(message)`` (the message itself by default)."""

    def __init__(self, value: Any = None):
        self.value = value

    def initial_accumulator(self) -> Any:
        return 0

    def update(self, input: Any, acc: Any) -> Any:
        return acc + (input if self.value is None else self.value(input))

    def combine(self, a: Any, b: Any) -> Any:
        return a + b

    def output(self, key: Any, acc: Any) -> tuple:
        return (key, acc)


class Collect(Aggregation):
    """Every message of a window, in order: ``(key, [messages])``."""

    atomic_update = True  # list.append either raises before changing acc or completes

    def initial_accumulator(self) -> list:
        return []

    def update(self, input: Any, acc: list) -> list:
        acc.append(input)
        return acc

    def combine(self, a: list, b: list) -> list:
        return a + b

    def output(self, key: Any, acc: list) -> tuple:
        return (key, list(acc))

