"""What runs inside Dask workers for wallaroo_nb: the task that keeps one engine
process, and the plugin that gives every Dask worker its engine slots.

Each engine is a child process (``Popen``: Dask worker processes are daemonic, so
``multiprocessing`` fails there) of one long-running task that secedes, giving its
thread back to the Dask worker. The engine's parent is the Dask worker process, so it
exits when that dies (engine/watchdog.py); the task kills it when the task is
cancelled. The app's CurveZMQ keys reach the engine on its stdin, never on its
command line.
"""

from __future__ import annotations

import subprocess
from typing import Any

from .engine_command import engine_command, engine_env

RESOURCE = "wallaroo_nb_engine"  # a Dask worker resource: engine slots
CANCEL_CHECK_S = 0.2  # how often an engine's task looks whether it was cancelled

try:  # the plugin class needs distributed; importing this module does not
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - wallaroo_nb[dask] not installed
    WorkerPlugin = object


class EngineSlots(WorkerPlugin):
    """Gives every Dask worker, present and future, one engine slot, unless it was
    started with a number of its own (``--resources wallaroo_nb_engine=N``)."""

    name = "wallaroo_nb-engine-slots"

    async def setup(self, worker: Any) -> None:
        if RESOURCE not in worker.state.total_resources:
            await worker.set_resources(**{RESOURCE: 1})


def run_engine(args: list, keys_line: bytes) -> int:
    """The Dask task of one engine: start it, give the thread back, wait for it to
    exit (its exit code is the task's result); kill it if the task is cancelled."""
    from distributed import get_worker, secede
    from distributed.comm import get_address_host

    worker = get_worker()
    key = worker.get_current_task()
    extra = ["--host", get_address_host(worker.address), "--dask-worker", worker.address,
             "--keys-stdin"]
    secede()
    # own session: signals meant for the Dask worker's process group are not for the engine
    proc = subprocess.Popen(engine_command(args + extra), env=engine_env(),
                            stdin=subprocess.PIPE, start_new_session=True)
    proc.stdin.write(keys_line)
    proc.stdin.close()
    while True:
        try:
            return proc.wait(CANCEL_CHECK_S)
        except subprocess.TimeoutExpired:
            pass
        if cancelled(worker, key):
            proc.kill()
            return proc.wait()


def cancelled(worker: Any, key: Any) -> bool:
    """The Dask worker's own view of a task: gone or cancelled means nobody wants it."""
    ts = worker.state.tasks.get(key)
    return ts is None or ts.state not in ("executing", "long-running")
