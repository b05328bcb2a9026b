"""``wallaroo-nb run``: run a Wallaroo application module, unchanged, from the shell.

    wallaroo-nb run --application-module word_count.py --in words@127.0.0.1:7010 \\
        --out 127.0.0.1:7002 --workers 2

The module imports ``wallaroo`` and defines ``application_setup(args)``, as it
would for Wallaroo (0.6.0/0.6.1 or the development head). ``import wallaroo``
resolves to wallaroo_nb's API (an alias made at run time, see
``compat.install_alias``); ``args`` is every argument
after ``run``, so ``tcp_parse_input_addrs`` and the Kafka CLI parsers read them
as in Wallaroo. The app runs until Ctrl-C / SIGTERM, or until every source is
bounded and drained; a status line goes to stderr every few seconds, and every
recorded error as it appears.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from . import compat

# The cli passes the arguments it does not know to main() (they are the app's).
ACCEPTS_APP_ARGS = True

# Wallaroo's own flags that mean nothing here: (flags, takes a value).
IGNORED_FLAGS = (
    (("-c", "--control"), True), (("-d", "--data"), True),
    (("-n", "--name"), True), (("-m", "--metrics"), True), (("-j", "--join"), True),
    (("-t", "--cluster-initializer"), False), (("--my-control",), True),
    (("--my-data",), True), (("--stop-pause",), True), (("--event-log-file-length",), True),
    (("--log-rotation",), False), (("--ponythreads",), True), (("--ponyminthreads",), True),
    (("--ponynoblock",), False), (("--ponypinasio",), False), (("--ponynoscale",), False),
    (("--ponypin",), False), (("--ponynoyield",), False), (("--ponyspinnerthreshold",), True),
)

STATUS_INTERVAL_S = 5.0
MAX_ERRORS_SHOWN = 100  # individually; after that they are only counted
TRACEBACKS_SHOWN = 5

Log = Callable[[str], None]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- arguments -------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``wallaroo-nb run``; anything else is handed to the application."""
    p.epilog = ("Every argument after 'run' (these included) is passed to "
                "application_setup(args). Wallaroo's cluster options (--control, --data, "
                "--external, --name, --cluster-initializer, --ponythreads, ...) are accepted "
                "and ignored.")
    p.add_argument("--application-module", required=True, metavar="MODULE",
                   help="a module importable from the current directory, or a .py file")
    p.add_argument("-i", "--in", dest="in_addrs", metavar="[NAME@]HOST:PORT[,...]",
                   help="TCP inputs, read by the app with tcp_parse_input_addrs(args): "
                        "host:port gives (host, port) pairs (Wallaroo 0.6), name@host:port "
                        "gives (name, host, port) (Wallaroo's development head)")
    p.add_argument("-o", "--out", dest="out_addrs", metavar="HOST:PORT[,...]",
                   help="TCP outputs, read by the app with tcp_parse_output_addrs(args)")
    p.add_argument("-w", "--workers", "--worker-count", type=int, default=1, metavar="N",
                   help="worker processes (default 1)")
    p.add_argument("--wallaroo-api", choices=compat.GENERATIONS, default="head",
                   help="the Wallaroo API generation whose kafka_parse_* result shapes the "
                        "module expects (default head; 0.6 for 0.6.0/0.6.1); every other "
                        "difference is decided by the call itself")
    p.add_argument("--on-error", choices=("record", "stop"), default="record",
                   help="a computation that raises: record the error and go on (default), "
                        "or stop the app")
    p.add_argument("-e", "--external", metavar="HOST:PORT",
                   help="serve Wallaroo's external channel here: `wallaroo-nb scale --external "
                        "HOST:PORT N` grows or shrinks the running app")
    p.add_argument("--low-latency", action="store_true",
                   help="keep this machine's idle CPUs polling while the app runs, so a "
                        "message wakes the next process in a few us (needs root; "
                        "docs/metrics.md)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve the app's metrics for Prometheus at http://127.0.0.1:PORT/metrics")
    p.add_argument("--report", metavar="FILE",
                   help="write a standalone HTML latency report here at the end")
    p.add_argument("--status-interval", type=float, default=STATUS_INTERVAL_S, metavar="S",
                   help=f"seconds between status lines on stderr (0: none; default "
                        f"{STATUS_INTERVAL_S:g})")
    p.add_argument("--run-with-resilience", action="store_true",
                   help="checkpoint state and recover from dead workers")
    p.add_argument("--resilience-dir", metavar="DIR",
                   help="where checkpoints go (default: a temporary directory)")
    p.add_argument("--time-between-checkpoints", type=int, default=1_000_000_000, metavar="NS",
                   help="checkpoint interval in nanoseconds (default 1s)")
    p.add_argument("--resume", action="store_true",
                   help="resume from the last checkpoint in --resilience-dir")
    p.add_argument("--cluster", metavar="SCHEDULER_ADDRESS",
                   help="run the engines on this Dask cluster (tcp:// with CurveZMQ; "
                        "needs wallaroo_nb[dask]; docs/cluster.md)")
    p.add_argument("--driver-address", metavar="HOST[:PORT]",
                   help="with --cluster: where engines reach this process (default: this "
                        "machine's address towards the scheduler)")
    ignored = p.add_argument_group("Wallaroo options accepted and ignored")
    for flags, takes_value in IGNORED_FLAGS:
        kw: dict = {"metavar": "X"} if takes_value else {"action": "store_true"}
        ignored.add_argument(*flags, dest="ignored_" + flags[-1].lstrip("-").replace("-", "_"),
                             help=argparse.SUPPRESS, **kw)


def ignored_flags(args: argparse.Namespace) -> list:
    """The Wallaroo-only flags that were given."""
    out = []
    for flags, _ in IGNORED_FLAGS:
        if getattr(args, "ignored_" + flags[-1].lstrip("-").replace("-", "_"), None):
            out.append(flags[-1])
    return out


def check_args(args: argparse.Namespace) -> Optional[str]:
    """A message naming what is wrong with the runner's own options, or None."""
    if args.workers < 1:
        return f"--workers must be >= 1, got {args.workers}"
    if args.time_between_checkpoints <= 0:
        return "--time-between-checkpoints must be a positive number of nanoseconds"
    if args.resume and not args.resilience_dir:
        return "--resume needs the --resilience-dir of the run to resume"
    if args.driver_address and not args.cluster:
        return "--driver-address is where engines on a Dask cluster reach the driver: it needs --cluster"
    if args.cluster and (args.run_with_resilience or args.resume) and not args.resilience_dir:
        return ("--cluster with --run-with-resilience needs --resilience-dir: a directory "
                "the driver and every Dask worker share")
    if args.status_interval < 0:
        return "--status-interval must be >= 0"
    return None


# -- the application module -------------------------------------------------------------


def load_application(spec: str) -> Any:
    """Import an application module (dotted name or .py path) with ``import wallaroo``
    resolving to wallaroo_nb, and mark it to travel to the workers by value."""
    import cloudpickle

    compat.install_alias()
    path = Path(spec)
    if spec.endswith(".py") or os.sep in spec:
        module = _import_path(path)
    else:
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        module = importlib.import_module(spec)
    if not callable(getattr(module, "application_setup", None)):
        raise AttributeError(f"{spec}: the module has no application_setup(args) function")
    cloudpickle.register_pickle_by_value(module)
    return module


def _import_path(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"no such application module file: {path}")
    path = path.resolve()
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "") != path:
        raise ImportError(f"{path}: a module named {name!r} is already imported "
                          f"({existing!r}); rename the file")
    # its directory goes on the path, so it can import its sibling modules
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def setup_application(module: Any, app_args: list) -> Any:
    """``application_setup(args)`` with the arguments as Wallaroo would pass them."""
    compat.set_app_args(app_args)
    return module.application_setup(list(app_args))


# -- running --------------------------------------------------------------------------


class Stopper:
    """Ctrl-C, SIGTERM and SIGHUP set an event instead of killing the driver mid-way."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: Optional[str] = None
        self._old: dict = {}

    def __enter__(self) -> "Stopper":
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Notices:
    """Prints what the app records, once each, as it appears: its events (recoveries,
    warnings) and its errors (the first few with tracebacks)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.errors_seen = 0
        self.events_seen = 0

    def poll(self, app: Any) -> None:
        self._events(app)
        self._errors(app)

    def _events(self, app: Any) -> None:
        events = app.events()
        for _t, text in events[self.events_seen:]:
            if text != "stopped":
                self.log(f"event: {text}")
        self.events_seen = len(events)

    def _errors(self, app: Any) -> None:
        if self.errors_seen > MAX_ERRORS_SHOWN:  # said all it will say: skip the frame
            return
        try:
            frame = app.errors()
        except Exception:
            return
        for row in frame.iloc[self.errors_seen:].to_dict("records"):
            self.errors_seen += 1
            if self.errors_seen <= MAX_ERRORS_SHOWN:
                self.log(format_error(row, with_traceback=self.errors_seen <= TRACEBACKS_SHOWN))
            elif self.errors_seen == MAX_ERRORS_SHOWN + 1:
                self.log(f"error: more than {MAX_ERRORS_SHOWN} errors; "
                         "the rest are only counted in the status line")


def format_error(row: dict, with_traceback: bool = False) -> str:
    """One recorded error as a line (plus its traceback, indented)."""
    where = f" ({row['where']})" if row.get("where") else ""
    key = f" key={row['key']!r}" if row.get("key") not in (None, "") else ""
    text = (f"error: step {row.get('step')!r}{where}{key} on worker {row.get('worker')}: "
            f"{row.get('error')}; input {row.get('input')}")
    tb = str(row.get("traceback") or "").rstrip()
    if with_traceback and tb:
        text += "\n" + "\n".join("    " + line for line in tb.splitlines())
    return text


class StatusLine:
    """``[12s] in 1,234 (410/s) out 2,345 (820/s) errors 0`` every ``interval`` seconds."""

    def __init__(self, interval: float, log: Log) -> None:
        self.interval = interval
        self.log = log
        self.t0 = self.last_t = time.monotonic()
        self.last = (0, 0)
        self.next_at = self.t0 + interval

    def due(self) -> bool:
        return self.interval > 0 and time.monotonic() >= self.next_at

    def show(self, app: Any, final: bool = False) -> dict:
        st = app.status()
        now = time.monotonic()
        ev_in, ev_out = st.get("events_in"), st.get("events_out")
        if ev_in is None:
            self.log(f"[{now - self.t0:.1f}s] {'final: ' if final else ''}errors {st['errors']}"
                     f"{'' if st['running'] else ' (stopped)'}")
        else:
            dt = max(now - self.last_t, 1e-9)
            rate_in = (ev_in - self.last[0]) / dt
            rate_out = (ev_out - self.last[1]) / dt
            self.log(f"[{now - self.t0:.1f}s] {'final: ' if final else ''}in {ev_in:,} "
                     f"({rate_in:,.0f}/s) out {ev_out:,} ({rate_out:,.0f}/s) "
                     f"errors {st['errors']}")
            self.last = (ev_in, ev_out)
        self.last_t = now
        self.next_at = now + self.interval
        return st


def _wait_in_thread(app: Any) -> tuple:
    """Run ``app.wait()`` in a thread; returns (done event, outcome dict)."""
    done = threading.Event()
    outcome: dict = {}

    def target() -> None:
        try:
            app.wait()
        except BaseException as e:  # noqa: B036 - handed to the main thread
            outcome["error"] = e
        finally:
            done.set()

    threading.Thread(target=target, name="wallaroo_nb-run-wait", daemon=True).start()
    return done, outcome


def supervise(app: Any, stopper: Stopper, status: StatusLine, notices: Notices,
              log: Log) -> int:
    """Watch ``app`` until a signal, the end of bounded sources or a failure; stop it.

    Returns the exit status: 0 for a requested stop or a finished app, 1 for a failure.
    """
    bounded = all(sp.config.bounded for sp in app.plan.sources)
    done, outcome = _wait_in_thread(app) if bounded else (threading.Event(), {})
    code = 0
    while True:
        stopper.event.wait(0.2)
        notices.poll(app)
        if stopper.event.is_set():
            log(f"{stopper.signal or 'stop'}: stopping")
            break
        if done.is_set():
            if "error" in outcome:
                log(f"the app failed: {outcome['error']}")
                code = 1
            else:
                log("every source is done and the app is drained")
            break
        if not app.running:
            log(f"the app stopped: {_failure_text(app)}")
            code = 1
            break
        if status.due():
            status.show(app)
    if app.running:
        status.show(app, final=True)
    app.stop()
    notices.poll(app)
    return code


def _failure_text(app: Any) -> str:
    try:
        app.wait(timeout=0.1)
    except Exception as e:
        return str(e)
    return "no reason given"


def run_application(application: Any, args: argparse.Namespace, log: Log = _log) -> int:
    """Start ``application`` on workers and supervise it until it ends; returns the exit code."""
    from .cluster.app import run

    resilience = bool(args.run_with_resilience or args.resume)
    with Stopper() as stopper:
        try:
            app = run(application, workers=args.workers, on_error=args.on_error,
                      resilience=resilience, checkpoint_dir=args.resilience_dir,
                      checkpoint_interval=args.time_between_checkpoints / 1e9,
                      resume=args.resume, metrics_port=args.metrics_port,
                      low_latency=args.low_latency,
                      cluster=args.cluster, driver_address=args.driver_address)
        except Exception as e:
            log(f"wallaroo-nb run: cannot start the application: {type(e).__name__}: {e}")
            return 2
        stops = [app.stop]
        try:
            if args.cluster:
                info = app.status()
                log(f"running {app.name!r} on {app.worker_count} engine(s) on the Dask "
                    f"cluster at {info['dask_scheduler']} (dashboard {info['dask_dashboard']}), "
                    f"driver at {info['driver_address']}")
            else:
                log(f"running {app.name!r} on {app.worker_count} worker(s): "
                    f"pids {' '.join(str(p) for p in app.pids)}")
            if app.metrics_url:
                log(f"Prometheus metrics at {app.metrics_url}")
            if args.external:
                from .tools.external import serve

                stops.insert(0, serve(app, args.external, log))
                log(f"external channel on {args.external}: wallaroo-nb scale --external "
                    f"{args.external} N")
            code = supervise(app, stopper, StatusLine(args.status_interval, log),
                             Notices(log), log)
        finally:
            for stop in stops:
                stop()
    log(f"stopped {app.name!r}")
    if args.report:
        app.report(args.report)
        log(f"report written to {args.report}")
    return code


def main(args: argparse.Namespace) -> int:
    """Run ``wallaroo-nb run``; returns the exit status."""
    problem = check_args(args)
    if problem:
        _log(f"wallaroo-nb run: {problem}")
        return 2
    skipped = ignored_flags(args)
    if skipped:
        _log(f"note: Wallaroo option(s) {', '.join(skipped)} mean nothing to wallaroo_nb "
             "and are ignored")
    app_args = list(getattr(args, "argv", None) or [])
    compat.set_generation(getattr(args, "wallaroo_api", "head"))
    try:
        module = load_application(args.application_module)
        application = setup_application(module, app_args)
    except Exception:
        _log(f"wallaroo-nb run: cannot set up {args.application_module}:\n"
             f"{traceback.format_exc().rstrip()}")
        return 2
    return run_application(application, args)
