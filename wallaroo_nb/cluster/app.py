"""The App handle: what ``wallaroo_nb.run`` returns, and all the notebook sees.

``run`` returns at once; workers start in the background. Every query
(results, state, errors, status) is answered from the driver's own copies or
by asking the workers, never by blocking the notebook on the data stream.
"""

from __future__ import annotations

import atexit
import gc
import threading
import time
import weakref
from typing import Any, Optional

from ..api import Pipeline, build_application
from ..errors import BuildError, ErrorRecord, Recovering, StepError
from ..metrics.store import MetricsStore
from ..plan import Plan
from ..protocol import Status
from .driver import Callbacks, Driver, Options
from .elastic import Elastic
from .launchers import launcher_for
from .live_views import LiveViews
from .metrics_views import MetricsViews
from .state import committed_parts, state_frame
from .stores import ErrorStore, EventLog, ResultStore, collector_keep
from .tracebacks import code_files, restore_sources
from .waiting import in_flight, quiescent

_APPS: "weakref.WeakSet[App]" = weakref.WeakSet()
ON_ERROR_MODES = ("record", "stop")
FINAL_COMMIT_S = 30.0  # stop() waits this long for the last checkpoint to commit


class App(MetricsViews, Elastic, LiveViews):
    """A running (or stopped) application on worker processes: results, state, errors,
    windows, hot reload and lifecycle here; latency and throughput in MetricsViews."""

    def __init__(self, plan: Plan, workers: int, opts: Options):
        self.name = plan.name
        self.plan = plan
        self._code_files = code_files(self.plan)
        self.worker_count = workers
        self.on_error = opts.on_error
        self.resilience = opts.resilience
        self._cond = threading.Condition()
        self._events = EventLog()
        self._results = ResultStore(collector_keep(plan.steps), self._cond, self._first_drop)
        self._errors = ErrorStore(self._cond)
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._t0 = time.time()
        self._last_counts: dict = {}
        self._metrics = MetricsStore()
        self.metrics_url: Optional[str] = None  # where Prometheus scrapes (metrics_port=)
        self._stop_exporter = lambda: None
        if opts.metrics_port is not None:
            from ..metrics.prometheus import serve

            port, self._stop_exporter = serve(self._metrics, opts.metrics_port)
            self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        _warn_unreplayable(self.plan, opts, self._event)
        self._driver = Driver(self.plan, workers, opts, Callbacks(
            self._deliver, self._add_errors, self._event, self._add_metrics,
            self._results.skip))
        _APPS.add(self)

    # -- callbacks from the driver's I/O thread ---------------------------------------

    def _deliver(self, step: Any, values: list) -> None:
        if not step.sink.collects:
            step.sink.fn(values)
            return
        self._results.extend(values)

    def _first_drop(self, keep: int) -> None:
        self._event(f"the collector keeps the newest {keep:,} results: older ones are "
                    "dropped from app.results() from now on (counted in status(); "
                    "CollectorSinkConfig(keep=None) keeps all)")

    def _add_errors(self, records: list) -> None:
        records = [r._replace(traceback=restore_sources(r.traceback, self._code_files))
                   for r in records]
        self._errors.extend(records)
        if self.on_error == "stop" and records and self._driver.failure is None:
            r = records[0]
            self._driver.fail(StepError(
                f"step {r.step!r} raised {r.error} on key {r.key} "
                f"(input {r.input}); the app was stopped (on_error='stop')\n{r.traceback}"))

    def _add_metrics(self, worker: Any, delta: Any) -> None:
        self._metrics.add(str(worker), delta._asdict())

    def _event(self, text: str) -> None:
        self._events.add(text)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return not self._stopped and not self._driver.stopped.is_set()

    @property
    def failure(self) -> Optional[BaseException]:
        """Why the app stopped by itself (a worker died without resilience, or a step
        raised with on_error='stop'), else None."""
        return self._driver.failure

    @property
    def pids(self) -> list:
        """Process ids of the workers (for tests and for the curious)."""
        return self._driver.pids

    def stop(self) -> None:
        """Stop the workers and release everything; safe to call twice. With resilience
        the sources stop at a last checkpoint, which commits first: what was read
        before it is processed and released, not discarded."""
        with self._stop_lock:
            if self._stopped:
                return
            if self._driver.failure is None and not self._driver.stopped.is_set():
                self._commit_last_epoch()
                try:
                    self.status()  # keep the last counts for a stopped app's display
                except Exception:
                    pass
            self._stopped = True
        self._driver.stop()
        self._stop_exporter()
        self._event("stopped")
        with self._cond:
            self._cond.notify_all()

    def _commit_last_epoch(self) -> None:
        epochs = self._driver.epochs
        if not self._driver.resilient or not self._driver.ready.is_set():
            return
        target = epochs.request_final()
        self._driver.wake()
        if not epochs.wait_committed(target, FINAL_COMMIT_S):
            self._event(f"the last checkpoint did not commit within {FINAL_COMMIT_S:.0f}s; "
                        "stopping without it (a resume starts from the one before)")

    def __enter__(self) -> "App":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _call(self, op: str, args: Optional[dict] = None, timeout: float = 30.0) -> list:
        """Ask every worker; a failed app is stopped before its error is raised."""
        try:
            return self._driver.call(op, args, timeout=timeout)
        except Exception:
            self._raise_failure()
            raise

    def _raise_failure(self) -> None:
        if self._driver.failure is not None:
            self.stop()  # a failed app is halted before the error reaches the user
            raise self._driver.failure

    # -- waiting --------------------------------------------------------------------------

    def wait(self, timeout: Optional[float] = None, count: Optional[int] = None) -> "App":
        """Block until all bounded sources are done and drained (or ``count`` results)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if count is not None:
            return self._wait_count(count, deadline, timeout)
        unbounded = [sp.name for sp in self.plan.sources if not sp.config.bounded]
        if unbounded and timeout is None:
            raise ValueError(
                f"source(s) {unbounded} never end, so wait() would never return; "
                "use wait(count=n) or wait(timeout=seconds)")
        last = None
        delay = 0.005
        while True:
            self._raise_failure()
            if not self.running:
                raise RuntimeError(f"app {self.name!r} is stopped")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(self._in_flight(timeout))
            try:  # no shorter timeout: a worker busy in a slow step answers late, not never
                snap = self._call("status", timeout=remaining)
            except Recovering:
                last = None
                continue
            self._raise_failure()
            key = quiescent(snap, self._driver.results_received)
            if key is not None and key == last:
                if not self.resilience:
                    return self
                # results are released by commits: one more epoch covers everything
                generation = self._driver.generation
                target = self._driver.checkpoint_now()
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if (self._driver.wait_committed(target, left)
                        and self._driver.generation == generation):
                    return self  # drained, and committed after it with no recovery between
                last = None
                continue
            last = key
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _wait_count(self, count: int, deadline: Optional[float], timeout: Optional[float]) -> "App":
        with self._cond:
            while self._results.total < count:
                self._raise_failure()
                got = self._results.total
                if not self.running:
                    raise RuntimeError(f"app {self.name!r} stopped with {got} of {count} results")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"app {self.name!r}: {got} of {count} results after "
                        f"{timeout}s; {self._in_flight(timeout, header=False)}")
                self._cond.wait(0.1 if left is None else min(left, 0.1))
        return self

    def _in_flight(self, timeout: Optional[float], header: bool = True) -> str:
        try:
            snap = self._call("status", timeout=2)
        except Exception as e:
            return f"app {self.name!r}: no status from the workers ({e})"
        what = in_flight(self.plan, snap)
        return (f"app {self.name!r}: wait() timed out after {timeout}s: " if header else "") + what

    # -- answers -------------------------------------------------------------------------

    def results(self, start: int = 0) -> list:
        """Outputs that reached collector sinks so far, in arrival order, from global
        index ``start`` on (a live view asks only for what is new). The driver keeps the
        newest ``CollectorSinkConfig(keep=...)`` of them; ``status()`` counts the rest."""
        return self._results.since(start)

    def results_frame(self, columns: Optional[list] = None) -> Any:
        """The collected outputs as a DataFrame: dicts and tuples become columns."""
        import pandas as pd

        rows = self.results()
        if rows and all(isinstance(r, dict) for r in rows):
            return pd.DataFrame(rows, columns=columns)
        if rows and all(isinstance(r, tuple) for r in rows):
            fields = getattr(type(rows[0]), "_fields", None)
            return pd.DataFrame([tuple(r) for r in rows], columns=columns or fields)
        return pd.DataFrame({(columns or ["value"])[0]: rows})

    def errors(self) -> Any:
        """Recorded errors (the newest 1,000; ``status()`` counts all): step, where, key,
        input, error, traceback, worker, time."""
        import pandas as pd

        return pd.DataFrame(self._errors.all(), columns=list(ErrorRecord._fields))

    def events(self) -> list:
        """What happened to the app: (unix time, text), oldest first (the newest 1,000)."""
        return self._events.all()

    def state(self, step: str, committed: bool = False) -> Any:
        """Per-key state of a state or window step, gathered from all workers, as a
        DataFrame. Under resilience a recovery rolls live state back to the last
        checkpoint; ``committed=True`` shows that checkpoint's state instead, which
        never goes back (``df.attrs["committed_epoch"]`` names it)."""
        s = self.plan.step_named(step)  # a clear KeyError for a wrong name, before asking
        if not (s.is_window or s.holds_state):
            raise ValueError(f"step {step!r} is a {s.kind} step and has no state")
        self._raise_failure()
        epochs = self._driver.epochs
        if not committed:
            return state_frame(self.plan, self._call("state", {"step": step}))
        if not self._driver.resilient:
            raise ValueError("state(committed=True) needs resilience=True (there are no "
                             "checkpoints); app.state(step) shows the live state")
        manifest = epochs.committed
        if manifest is None:
            return state_frame(self.plan, [], 0)
        return state_frame(self.plan, committed_parts(self.plan, s, manifest, epochs.ckpt.path),
                           manifest["epoch"])

    # -- prototyping ----------------------------------------------------------------------

    def update(self, computation: Any) -> None:
        """Hot reload: replace the running step named like ``computation`` with it.

        Redefine a computation in a cell, then ``app.update(new_fn)``: every worker
        swaps the function between two chunks; keyed state is kept."""
        import cloudpickle

        from ..api import Computation

        if not isinstance(computation, Computation):
            raise TypeError("update() takes a function decorated with @computation, "
                            f"@state_computation, ...; got {computation!r}")
        step = self.plan.step_named(computation.name)
        if step.kind is not computation.kind:
            raise ValueError(f"step {step.name!r} is a {step.kind} step; the new "
                             f"{computation.name!r} is a {computation.kind} computation")
        if step.state_cls is not None and computation.state is not step.state_cls:
            try:
                same = cloudpickle.dumps(computation.state) == cloudpickle.dumps(step.state_cls)
            except Exception:
                same = False
            if not same:
                raise ValueError(f"step {step.name!r}: update() keeps the state, so the state "
                                 "class must stay the same; stop and run again to change it")
        self._call("update", {"step": step.name, "fn": cloudpickle.dumps(computation.fn)})
        # recoveries restart workers with the new function
        self.plan = self._driver.plan = self.plan.with_fn(step.name, computation.fn)
        self._code_files.update(code_files(self.plan))
        self._event(f"step {step.name!r} updated")

    # -- windows ------------------------------------------------------------------------

    def trigger(self, step: str, key: Any = None) -> int:
        """Close the event windows of ``step`` now: every key (None) or one key.

        Each worker applies the trigger between two chunks of its input: every
        message it processed before is in the closed window, every later one in
        the next. Returns how many windows were emitted.

        With resilience the trigger is applied at the next checkpoint barrier (one
        starts at once), the same cut on every worker, and recorded with that epoch:
        a recovery applies it again. It returns once that epoch has committed, when
        its outputs are in app.results()."""
        s = self.plan.step_named(step)
        if not s.is_window or s.spec.kind != "event":
            raise ValueError(f"step {step!r} is not an event_windows() step; triggers close "
                             "event-driven windows only")
        epochs = self._driver.epochs
        if not self._driver.resilient:
            return sum(self._call("trigger", {"step": step, "key": key}))
        self._raise_failure()
        tid = epochs.request_trigger(step, key)
        self._driver.wake()
        fired = epochs.wait_fired(tid, timeout=None)
        if fired is None:
            self._raise_failure()
            raise RuntimeError(f"app {self.name!r} stopped before the trigger committed")
        return fired

    def window_controls(self, step: str) -> Any:
        """A "close window" button, a key chooser and a live table of emitted windows."""
        from ..notebook.window_controls import window_controls

        return window_controls(self, step)

    def status(self) -> dict:
        """A summary: workers alive, events in and out, errors, filtered counts."""
        info = {"name": self.name, "running": self.running, "workers": self.worker_count,
                "workers_alive": self._driver.procs.alive(),
                "results": self._results.total, "results_dropped": self._results.dropped,
                "errors": self._errors.total, "errors_dropped": self._errors.dropped,
                "recoveries": self._events.recoveries,
                "busy": [{"worker": w, "step": b.step, "key": b.key, "seconds": b.seconds}
                         for w, b in self._driver.busy()],
                "uptime_s": round(time.time() - self._t0, 1), **self._driver.launcher.info()}
        info.update(self._last_counts)
        if not self.running:
            return info
        try:
            snap: list[Status] = self._driver.call("status", timeout=2)
        except Exception:
            return info
        self._last_counts = {
            "events_in": sum(src.count for st in snap for src in st.sources.values()),
            "events_out": sum(sum(st.sink_counts.values()) for st in snap)}
        info.update(self._last_counts)
        return info

    def _repr_html_(self) -> str:
        from ..notebook.summary import summary_html

        try:
            metrics = self.metrics("1min")
        except Exception:
            metrics = None
        return summary_html(self.status(), metrics)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<App {self.name!r} workers={self.worker_count} {state}>"


_FROZE = False


def _freeze_once() -> None:
    """Results reach the driver on a thread that a full garbage collection stops for
    tens of milliseconds in a big process (a notebook kernel with pandas and bokeh
    loaded). Objects alive when the first app starts (mostly modules) are moved out
    of the collector's reach once; reference counting still frees them."""
    global _FROZE
    if not _FROZE:
        _FROZE = True
        gc.freeze()


def run(application: Plan | Pipeline, workers: int = 2, on_error: str = "record",
        metrics: bool = True, resilience: bool = False, checkpoint_dir: Optional[str] = None,
        checkpoint_interval: float = 1.0, resume: bool = False,
        step_timeout: Optional[float] = None, metrics_port: Optional[int] = None,
        cluster: Any = None, driver_address: Optional[str] = None,
        low_latency: bool = False) -> App:
    """Start ``application`` (or a Pipeline ending in a sink) on ``workers`` processes.

    With ``resilience`` the app checkpoints every ``checkpoint_interval`` seconds
    into ``checkpoint_dir`` and survives dead workers; ``resume`` picks up from the
    last committed checkpoint there (after a driver restart). A step may take as long
    as it takes; ``step_timeout`` (seconds) stops the app, naming the step and the
    key, when one message takes longer. ``metrics_port`` serves the metrics for
    Prometheus at http://127.0.0.1:PORT/metrics (0: any free port; see app.metrics_url).
    ``cluster`` (a dask.distributed Client, a Dask cluster or a scheduler address) runs
    the engines on that Dask cluster, linked by ZeroMQ over tcp:// with CurveZMQ;
    ``driver_address`` ("HOST[:PORT]") is where they reach this process (docs/cluster.md).
    ``low_latency`` keeps this machine's idle CPUs polling instead of sleeping while the
    app runs, so that a message wakes the next process in a few µs (Linux PM QoS through
    /dev/cpu_dma_latency; needs root; docs/metrics.md)."""
    if isinstance(application, Pipeline):
        application = build_application("app", application)
    if not isinstance(application, Plan):
        raise BuildError(f"run() takes build_application(...) or a Pipeline, got {application!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"on_error must be one of {ON_ERROR_MODES}, got {on_error!r}")
    if resume and not checkpoint_dir:
        raise ValueError("resume=True needs the checkpoint_dir of the run to resume")
    if not (isinstance(checkpoint_interval, (int, float)) and checkpoint_interval > 0):
        raise ValueError(f"checkpoint_interval must be a positive number of seconds, "
                         f"got {checkpoint_interval!r}")
    if step_timeout is not None and not (isinstance(step_timeout, (int, float))
                                         and step_timeout > 0):
        raise ValueError(f"step_timeout must be a positive number of seconds or None, "
                         f"got {step_timeout!r}")
    if low_latency and cluster is not None:
        raise ValueError("low_latency=True keeps this machine's idle CPUs quick to wake; "
                         "with cluster= the engines run on the Dask workers' machines")
    launcher = launcher_for(cluster, driver_address, workers, resilience or resume,
                            checkpoint_dir)
    opts = Options(on_error=on_error, metrics=metrics, resilience=resilience or resume,
                   checkpoint_dir=checkpoint_dir, checkpoint_interval=checkpoint_interval,
                   resume=resume, wallaroo_alias=_wallaroo_alias_active(),
                   step_timeout=step_timeout, metrics_port=metrics_port, launcher=launcher,
                   low_latency=bool(low_latency))
    _freeze_once()
    return App(application, workers, opts)


def _wallaroo_alias_active() -> bool:
    import sys

    mod = sys.modules.get("wallaroo")
    return mod is not None and getattr(mod, "__wallaroo_nb_alias__", False)


def _warn_unreplayable(plan: Any, opts: Options, event: Any) -> None:
    if not opts.resilience:
        return
    import warnings

    for sp in plan.sources:
        if not sp.config.replayable:  # SourceConfig says False unless the connector can seek
            msg = (f"source {sp.name!r} cannot replay: after a crash, messages it delivered "
                   "since the last checkpoint are lost (at most once for that source)")
            warnings.warn(msg, stacklevel=3)
            event(msg)


def running_apps() -> list:
    """Apps started in this process that have not been stopped."""
    return [a for a in list(_APPS) if a.running]


@atexit.register
def _stop_all() -> None:
    for a in list(_APPS):
        try:
            a.stop()
        except Exception:
            pass
