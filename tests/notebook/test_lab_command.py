"""`wallaroo-nb lab` (what `make lab` runs): it starts a real JupyterLab on the notebook
directory, prints the URL, serves the kernel spec, and Ctrl-C stops the server and the
kernels it started, leaving no process behind.

The command runs with all Jupyter state in a tmp dir and a wallaroo_nb kernel spec
already on JUPYTER_PATH, so it never installs into the developer's environment;
installing when the spec is missing is tested on a tmp prefix.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from wallaroo_nb.notebook.kernelspec import KERNEL_NAME, write_kernel_spec
from wallaroo_nb.notebook.lab import ensure_kernel_spec

WALLAROO_NB = str(Path(sys.executable).parent / "wallaroo-nb")
URL_LINE = re.compile(r"^\s+(http://127\.0\.0\.1:\d+/)lab\?token=(\w+)\s*$")


def isolated_env(tmp_path: Path) -> dict:
    """No display, Jupyter's dirs under tmp_path, our kernel spec first on JUPYTER_PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JUPYTER") and k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    for name in ("config", "data", "runtime", "path", "ipython"):
        (tmp_path / name).mkdir()
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_PATH=str(tmp_path / "path"), IPYTHONDIR=str(tmp_path / "ipython"),
               JUPYTER_PLATFORM_DIRS="0")
    write_kernel_spec(tmp_path / "path" / "kernels" / KERNEL_NAME)
    return env


def lines_of(stream) -> queue.Queue:
    """The stream's lines, read by a thread (a blocked read never hangs the test)."""
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [q.put(line) for line in stream], daemon=True).start()
    return q


def read_until_url(proc: subprocess.Popen, q: queue.Queue, timeout: float = 120) -> tuple:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and (proc.poll() is None or not q.empty()):
        try:
            line = q.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        m = URL_LINE.match(line)
        if m:
            return seen, m.group(1), m.group(2)
    raise AssertionError(f"no URL printed (exit code {proc.poll()}); output: {seen}")


def cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone meanwhile
        return ""


def api(base: str, token: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        base + path, method="POST" if body is not None else "GET",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_lab_serves_the_notebooks_prints_its_url_and_a_signal_stops_everything(
        tmp_path, stop_signal):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nbformat.write(nbformat.v4.new_notebook(), str(notebooks / "hello.ipynb"))
    env = isolated_env(tmp_path)
    with open(tmp_path / "lab.log", "wb") as log:
        proc = subprocess.Popen(
            [WALLAROO_NB, "lab", "--port", "0", "--notebook-dir", str(notebooks),
             "--ServerApp.shutdown_no_activity_timeout=3600"], env=env,
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True)
    everything: list = []
    try:
        out = lines_of(proc.stdout)
        seen, base, token = read_until_url(proc, out)
        assert seen[0].strip() == (f"found kernel spec {KERNEL_NAME!r} in "
                                   f"{tmp_path / 'path' / 'kernels' / KERNEL_NAME}"), seen
        assert any(f"JupyterLab is running on {notebooks}" in line for line in seen), seen

        # One server, in the notebook dir, told not to open a browser (no display here).
        (server,) = psutil.Process(proc.pid).children()
        assert "-m jupyterlab" in cmdline(server) and "--no-browser" in cmdline(server)
        # an option `lab` does not know goes to JupyterLab
        assert "--ServerApp.shutdown_no_activity_timeout=3600" in cmdline(server)
        names = [c["name"] for c in api(base, token, "api/contents")["content"]]
        assert names == ["hello.ipynb"], (names, (tmp_path / "lab.log").read_text()[-3000:])
        assert KERNEL_NAME in api(base, token, "api/kernelspecs")["kernelspecs"]

        # A kernel from the spec: Ctrl-C must stop it too.
        api(base, token, "api/kernels", {"name": KERNEL_NAME})
        deadline = time.monotonic() + 60
        while not any("ipykernel_launcher" in cmdline(p) for p in everything):
            assert time.monotonic() < deadline, "no kernel process started"
            time.sleep(0.2)
            everything = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(1)  # let the kernel finish starting: shutting it down is then the real path

        proc.send_signal(stop_signal)  # SIGINT: what Ctrl-C in the terminal sends
        assert proc.wait(60) == 0, (tmp_path / "lab.log").read_text()[-3000:]
        _, alive = psutil.wait_procs(everything, timeout=30)
        assert not alive, f"left running: {[p.cmdline() for p in alive]}"
    finally:  # after a failure: nothing may outlive the test
        if proc.poll() is None:
            everything = psutil.Process(proc.pid).children(recursive=True) + everything
            proc.kill()
        for p in everything:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(10)


@pytest.mark.timeout(120)
def test_killing_the_command_outright_stops_jupyterlab_too(tmp_path):
    env = isolated_env(tmp_path)
    proc = subprocess.Popen([WALLAROO_NB, "lab", "--port", "0", "--notebook-dir", str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, text=True)
    server = []
    try:
        read_until_url(proc, lines_of(proc.stdout))
        server = psutil.Process(proc.pid).children()
        assert len(server) == 1 and "-m jupyterlab" in cmdline(server[0])
        proc.kill()  # SIGKILL: no chance to stop the server itself
        proc.wait(10)
        _, alive = psutil.wait_procs(server, timeout=30)
        assert not alive, "JupyterLab outlived the killed command"
    finally:
        for p in server:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_kernel_spec_is_installed_into_the_prefix_once(tmp_path):
    prefix = tmp_path / "env"
    ksm = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    where, installed = ensure_kernel_spec(ksm, prefix=str(prefix))
    assert installed and Path(where) == prefix / "share" / "jupyter" / "kernels" / KERNEL_NAME
    argv = json.loads((Path(where) / "kernel.json").read_text())["argv"]
    assert argv[0] == sys.executable and any("wallaroo_nb" in a for a in argv[1:]), argv
    assert ensure_kernel_spec(ksm, prefix=str(prefix)) == (where, False)


def test_a_spec_of_another_python_that_wins_is_named(tmp_path):
    user = tmp_path / "user" / "kernels"
    other = write_kernel_spec(user / KERNEL_NAME, python="/elsewhere/bin/python")
    prefix = tmp_path / "env"
    ksm = KernelSpecManager(kernel_dirs=[str(user), str(prefix / "share/jupyter/kernels")])
    with pytest.raises(RuntimeError, match=f"uses the one in {other}, which runs another Python"):
        ensure_kernel_spec(ksm, prefix=str(prefix))



def test_a_shadowing_spec_stops_the_command_with_a_clear_message(monkeypatch, capsys):
    from wallaroo_nb.cli import main

    def shadowed():
        raise RuntimeError("Jupyter uses the one in /elsewhere, which runs another Python")

    monkeypatch.setattr("wallaroo_nb.notebook.lab.ensure_kernel_spec", shadowed)
    assert main(["lab", "--port", "0"]) == 2
    assert "wallaroo-nb lab: Jupyter uses the one in /elsewhere" in capsys.readouterr().err
