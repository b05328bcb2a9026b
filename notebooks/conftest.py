"""nbval runs of the tutorials: kernel specs in a private dir, and no app left running.

    .venv/bin/python -m pytest -p no:cacheprovider --nbval notebooks \\
        --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-kernel-name python3

Before any kernel starts, two kernel specs run by this interpreter are written into
a temporary directory put first on JUPYTER_PATH: the plain "python3" (the tests use
it: a tutorial loads what it needs itself) and "wallaroo_nb" (which loads the
%wallaroo magic at start). So a clean checkout needs no installed spec and the
user's own specs are never touched. Kernels get a private IPYTHONDIR too.

After the last cell of each notebook, while its kernel still runs, no wallaroo_nb
process (a worker, or a `wallaroo-nb` command a tutorial started) may be left under
the kernel: every tutorial must stop what it starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from wallaroo_nb.notebook.kernelspec import KERNEL_NAME, write_kernel_spec

OURS = ("wallaroo_nb", "wallaroo-nb")  # in the command line of workers and of the CLI
STOP_GRACE_S = 5.0  # app.stop() waits for its workers; this only absorbs slow exits


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("nbval", default=False) and not config.getoption(
            "nbval_lax", default=False):
        return
    tmp = Path(tempfile.mkdtemp(prefix="wallaroo-nbval-"))
    write_kernel_spec(tmp / "jupyter" / "kernels" / KERNEL_NAME)
    write_kernel_spec(tmp / "jupyter" / "kernels" / "python3", with_extension=False)
    (tmp / "ipython").mkdir()
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "IPYTHONDIR")}
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (str(tmp / "jupyter"), saved["JUPYTER_PATH"]) if p)
    os.environ["IPYTHONDIR"] = str(tmp / "ipython")

    def restore() -> None:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)

    config.add_cleanup(restore)


def _kernel_pid(notebook: pytest.Collector) -> int | None:
    kernel = getattr(notebook, "kernel", None)
    km = getattr(kernel, "km", None)
    provisioner = getattr(km, "provisioner", None)
    return getattr(provisioner, "pid", None) or getattr(
        getattr(provisioner, "process", None), "pid", None)


def _ours_under(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for p in children:
        try:
            cmdline = " ".join(p.cmdline())
            if any(s in cmdline for s in OURS) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After a notebook's last cell (before nbval shuts its kernel): nothing of ours left."""
    notebook = item.parent
    if not item.path.suffix == ".ipynb" or (nextitem is not None and nextitem.parent is notebook):
        return
    pid = _kernel_pid(notebook)
    if pid is None:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    left = _ours_under(pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _ours_under(pid)
    if left:
        pids = [p.pid for p in left]
        for p in left:  # do not leave them to the kernel's shutdown either
            p.kill()
        raise AssertionError(
            f"{item.path.name}: wallaroo_nb processes {pids} still ran after the last cell; "
            "the tutorial must stop every app and command it starts (app.stop(), "
            "`with w.run(...)`, process.terminate())")
