"""Run ``wallaroo-nb`` subcommands as real processes, and clean up after them.

Every test gets ``procs`` (a fixture): ``procs.start("run", ...)`` starts the
command with its stdout and stderr in files; at the end of the test everything
still running is stopped (SIGTERM, then SIGKILL), workers included, whatever
happened.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
WORKER_MODULE = "wallaroo_nb.engine.worker"


def cli_command() -> list:
    """The installed ``wallaroo-nb`` script next to this interpreter, else ``-m``."""
    script = Path(sys.executable).parent / "wallaroo-nb"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "wallaroo_nb.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[-1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_children(parent: int) -> list:
    """Live worker processes whose parent is ``parent``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(") ", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and WORKER_MODULE in cmdline(int(entry)):
            out.append(int(entry))
    return out


def wait_until(cond: Callable[[], object], timeout: float, what: str,
               interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """One CLI process with its output in files."""

    def __init__(self, args: list, workdir: Path, name: str, cwd: Optional[Path]) -> None:
        self.args = args
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.popen = subprocess.Popen(cli_command() + args, stdin=subprocess.DEVNULL,
                                      stdout=self._out, stderr=self._err, cwd=cwd)
        self.pid = self.popen.pid
        self.workers: set = set()  # worker pids seen, for the final cleanup

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """The first match of ``pattern`` in stderr; fails if the process exits first."""
        def found() -> Optional[re.Match]:
            m = re.search(pattern, self.stderr())
            if m is None and self.popen.poll() is not None:
                m = re.search(pattern, self.stderr())
                if m is None:
                    raise AssertionError(f"{self.args[0]} exited ({self.popen.returncode}) "
                                         f"before printing {pattern!r}:\n{self.stderr()}")
            return m
        return wait_until(found, timeout, f"{pattern!r} from {self.args[0]}")

    def worker_pids(self) -> list:
        """Worker pids the runner printed plus live workers it spawned."""
        m = re.search(r"pids ([\d ]+)", self.stderr())
        pids = [int(p) for p in m.group(1).split()] if m else []
        self.workers.update(pids)
        self.workers.update(worker_children(self.pid))
        return sorted(self.workers)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; then any worker left behind."""
        if self.popen.poll() is None:
            self.workers.update(worker_children(self.pid))
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        for pid in self.workers:
            if pid_alive(pid) and WORKER_MODULE in cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        self._out.close()
        self._err.close()


class Procs:
    """Starts CLI processes for one test and stops them all at its end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list = []

    def start(self, *args: object, cwd: Optional[Path] = None) -> Proc:
        name = f"{len(self.started)}-{args[0]}"
        proc = Proc([str(a) for a in args], self.workdir, name, cwd)
        self.started.append(proc)
        return proc

    def receive(self, out: Path, *extra: object) -> tuple:
        """A framed ``receive`` on a free port: (Proc, port)."""
        proc = self.start("receive", "127.0.0.1:0", "--framed", "--out", out, *extra)
        port = int(proc.wait_for(r"receiving on [\d.]+:(\d+)").group(1))
        return proc, port

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def procs(tmp_path: Path):
    """Start CLI processes; all are stopped when the test ends, pass or fail."""
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()
