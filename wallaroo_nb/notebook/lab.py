"""`wallaroo-nb lab` (and `make lab`): JupyterLab on the tutorials, ready to run.

1. Installs the "Python 3 (wallaroo_nb)" kernel spec into this environment
   (`sys.prefix`) unless Jupyter already finds one that runs this Python.
2. Starts JupyterLab on `notebooks/` of the checkout (or `--notebook-dir`) as a
   child process, with `--no-browser` where there is no display, and prints the
   URL (with its token) once the server listens.
3. Ctrl-C or SIGTERM stops JupyterLab, which shuts its kernels down (and with
   them any app a notebook left running); if this command is killed outright
   (SIGKILL), Linux sends JupyterLab SIGTERM (a parent-death signal).

Options it does not know go to JupyterLab unchanged.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .kernelspec import KERNEL_NAME, kernel_spec, write_kernel_spec

ACCEPTS_APP_ARGS = True  # unknown options are JupyterLab's
CHECKOUT_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `wallaroo-nb lab`."""
    parser.add_argument("--notebook-dir", type=Path, default=None,
                        help="where JupyterLab opens (default: the checkout's notebooks/)")
    parser.add_argument("--port", type=int, default=8888,
                        help="port to listen on; 0 picks a free one (default 8888)")
    parser.add_argument("--ip", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--no-browser", action="store_true",
                        help="do not open a browser (implied without a display)")


def ensure_kernel_spec(ksm: Any = None, prefix: str = sys.prefix) -> tuple[str, bool]:
    """(directory of the wallaroo_nb spec Jupyter uses, whether it was installed now).

    Installs into `prefix` (this environment) unless Jupyter already finds a spec
    that runs this Python with the extension. Raises RuntimeError when another
    spec of that name still wins after installing (e.g. one in the user's dir).
    """
    from jupyter_client.kernelspec import KernelSpecManager

    ksm = ksm or KernelSpecManager()
    found = _spec_dir(ksm)
    if found is not None and _is_ours(found):
        return found, False
    with tempfile.TemporaryDirectory() as tmp:
        source = write_kernel_spec(Path(tmp) / KERNEL_NAME)
        installed = ksm.install_kernel_spec(str(source), KERNEL_NAME, prefix=prefix)
    used = _spec_dir(ksm)
    if used is None or not _is_ours(used):
        raise RuntimeError(
            f"installed the {KERNEL_NAME!r} kernel spec in {installed}, but Jupyter uses the "
            f"one in {used}, which runs another Python; remove that one "
            f"(jupyter kernelspec remove {KERNEL_NAME}) or run `wallaroo-nb install-kernel "
            "--user` to replace it")
    return used, True


def _spec_dir(ksm: Any) -> Optional[str]:
    return ksm.find_kernel_specs().get(KERNEL_NAME)


def _is_ours(directory: str) -> bool:
    """The spec runs this Python (python or python3 of the same environment) with the
    same arguments (the extension loaded)."""
    try:
        argv = json.loads((Path(directory) / "kernel.json").read_text(encoding="utf-8"))["argv"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    ours = kernel_spec()["argv"]
    return argv[1:] == ours[1:] and _same_python(argv[0], ours[0])


def _same_python(a: str, b: str) -> bool:
    try:
        return (Path(a).parent.resolve() == Path(b).parent.resolve()
                and os.path.samefile(a, b))
    except OSError:
        return False


def has_display() -> bool:
    """Whether a browser could open here: always off Linux; on Linux, an X or Wayland display."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def lab_command(root: Path, port: int, ip: str, no_browser: bool, extra: list) -> list:
    """argv of the JupyterLab server."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}",
           f"--ServerApp.ip={ip}", f"--ServerApp.port={port}"]
    if no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")  # JupyterLab refuses root without it (containers)
    return cmd + list(extra)


def main(args: argparse.Namespace) -> int:
    """Run `wallaroo-nb lab`; returns JupyterLab's exit code."""
    root = (args.notebook_dir or _default_root()).resolve()
    if not root.is_dir():
        print(f"wallaroo-nb lab: {root} is not a directory", file=sys.stderr)
        return 2
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        print("wallaroo-nb lab: JupyterLab is not installed here; pip install jupyterlab "
              "(or pip install 'wallaroo_nb[lab]')", file=sys.stderr)
        return 2
    try:
        spec_dir, installed = ensure_kernel_spec()
    except RuntimeError as e:
        print(f"wallaroo-nb lab: {e}", file=sys.stderr)
        return 2
    print(f"{'installed' if installed else 'found'} kernel spec {KERNEL_NAME!r} in {spec_dir}",
          flush=True)
    no_browser = args.no_browser or not has_display()
    cmd = lab_command(root, args.port, args.ip, no_browser, _extra(args))
    return serve(cmd, root, no_browser)


def _default_root() -> Path:
    return CHECKOUT_NOTEBOOKS if CHECKOUT_NOTEBOOKS.is_dir() else Path.cwd()


def _extra(args: argparse.Namespace) -> list:
    """The options after `lab` that are not ours: JupyterLab's."""
    ours = argparse.ArgumentParser(add_help=False)
    add_arguments(ours)
    return ours.parse_known_args(args.argv)[1]


def serve(cmd: list, root: Path, no_browser: bool) -> int:
    """Run the server until it exits, Ctrl-C or SIGTERM; print its URL once it listens."""
    # Ctrl-C and SIGTERM stop the server, also where SIGINT came in ignored (a
    # background job of a script)
    previous = {sig: signal.signal(sig, _raise_interrupt)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    # Its own session: a terminal's Ctrl-C reaches this command only (JupyterLab would
    # stop to ask "Shutdown this Jupyter server?"), which then stops the server.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_parent_death_signal())
    try:
        url = wait_for_url(proc)
        if url is None:
            return proc.wait()
        print(f"\nJupyterLab is running on {root}\n    {url}\n"
              + ("Open that URL in a browser. " if no_browser else "")
              + "Ctrl-C stops JupyterLab and its kernels.\n", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        print("stopping JupyterLab…", flush=True)
        return stop(proc)
    finally:
        if proc.poll() is None:
            stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_for_url(proc: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> Optional[str]:
    """The Lab URL with its token, from the server's jpserver-<pid>.json; None if it exited."""
    from jupyter_core.paths import jupyter_runtime_dir

    info_file = Path(jupyter_runtime_dir()) / f"jpserver-{proc.pid}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
            url = info["url"] if info["url"].endswith("/") else info["url"] + "/"
            token = info.get("token")
            return f"{url}lab" + (f"?token={token}" if token else "")
        except (OSError, ValueError, KeyError):
            time.sleep(0.2)
    raise TimeoutError(f"JupyterLab wrote no {info_file} within {timeout:.0f}s")


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> int:
    """SIGTERM (JupyterLab then shuts its kernels down), SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return 0 if proc.returncode in (0, -signal.SIGTERM) else proc.returncode


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _parent_death_signal() -> Any:
    """A function for the child to run before exec: SIGTERM when this command dies,
    however it dies (Linux; None elsewhere). prctl is looked up here, not in the child."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
