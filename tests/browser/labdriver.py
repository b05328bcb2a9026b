"""Drive a real JupyterLab in headless Chromium: server, browser and page helpers.

Plain functions so any browser test (the fixture notebook here, the tutorials
later) can reuse them; tests/browser/conftest.py wraps them in fixtures.
Every wait is on a condition with a generous deadline: the CI machine is slow.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
from playwright.sync_api import BrowserContext, Page, Playwright

from wallaroo_nb.notebook.kernelspec import write_kernel_spec

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 1000}

# User settings for a quiet, deterministic Lab: no news or update toasts.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


@dataclass
class LabServer:
    """A running JupyterLab: its process, URL (ending in /), root dir and log file."""

    process: subprocess.Popen
    url: str
    root_dir: Path
    log_path: Path

    def log_tail(self, n: int = 40) -> str:
        """The last `n` lines of the server's log, for failure messages."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


# ---------------------------------------------------------------- server


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies (no orphaned servers)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def lab_environment(workdir: Path) -> dict[str, str]:
    """Env for a Lab whose config, data, runtime and IPython dirs all live under `workdir`."""
    dirs = {name: workdir / name for name in ("config", "data", "runtime", "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        IPYTHONDIR=str(dirs["ipython"]),
        JUPYTER_PLATFORM_DIRS="0",
        PYTHONUNBUFFERED="1",
        TMPDIR=str(workdir / "tmp"),  # what the kernels' notebooks write goes here too
    )
    (workdir / "tmp").mkdir(exist_ok=True)
    return env


def write_kernel_specs(data_dir: Path, kernels: tuple[str, ...]) -> None:
    """Kernel specs among `python3` (plain) and `wallaroo_nb`, run by this (the venv's) Python."""
    for name in kernels:
        write_kernel_spec(data_dir / "kernels" / name, with_extension=name == "wallaroo_nb")


def write_lab_settings(settings_dir: Path) -> None:
    """Write LAB_SETTINGS as JupyterLab user settings files."""
    for rel, values in LAB_SETTINGS.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def lab_command(workdir: Path, kernels: tuple[str, ...]) -> list[str]:
    """argv for a JupyterLab on 127.0.0.1, OS-chosen port, no auth, all state under `workdir`,
    offering the kernel specs `kernels` and no other (not even the venv's own)."""
    return [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={workdir / 'root'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.user_settings_dir={workdir / 'settings'}",
        f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
        "--LabApp.extension_manager=readonly",  # no package-index lookups
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to read cell outputs
    ] + [f"--KernelSpecManager.allowed_kernelspecs={name}" for name in kernels] + (
        ["--allow-root"] if os.geteuid() == 0 else [])


def start_lab(workdir: Path, kernels: tuple[str, ...] = ("python3",),
              timeout: float = 120.0) -> LabServer:
    """Start JupyterLab with its state under `workdir`; return once it answers HTTP.

    It offers the kernel specs `kernels` only: by default the plain Python 3 one, so
    the tutorials run as they would where the wallaroo_nb spec is not installed (the
    venv may have one: `make lab` installs it there).
    """
    env = lab_environment(workdir)
    (workdir / "root").mkdir(exist_ok=True)
    write_kernel_specs(Path(env["JUPYTER_DATA_DIR"]), kernels)
    write_lab_settings(workdir / "settings")
    log_path = workdir / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            lab_command(workdir, kernels), env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
    server = LabServer(proc, "", workdir / "root", log_path)
    try:
        server.url = _wait_for_url(proc, Path(env["JUPYTER_RUNTIME_DIR"]), log_path, timeout)
        _wait_for_http(server, server.url + "api/status", timeout)
    except BaseException:
        stop_lab(server)
        raise
    return server


def _wait_for_url(proc: subprocess.Popen, runtime_dir: Path, log_path: Path, timeout: float) -> str:
    """The server's URL, read from the jpserver-<pid>.json it writes once bound."""
    info_file = runtime_dir / f"jpserver-{proc.pid}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode} before binding:\n"
                               + log_path.read_text(errors="replace")[-4000:])
        try:
            info = json.loads(info_file.read_text())
            return f"http://127.0.0.1:{info['port']}{info['base_url']}"
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.2)
    raise TimeoutError(f"JupyterLab wrote no {info_file.name} within {timeout:.0f}s")


def _wait_for_http(server: LabServer, url: str, timeout: float) -> None:
    """Poll `url` until it answers 200; fail early, with the log, if the server dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer {url} in {timeout:.0f}s:\n{server.log_tail()}")


def stop_lab(server: LabServer, grace: float = 20.0) -> None:
    """Stop the server and everything it started (kernels), politely, then by force."""
    try:
        children = psutil.Process(server.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    # SIGTERM makes jupyter_server shut its kernels down before it exits.
    server.process.terminate()
    try:
        server.process.wait(grace)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)
    reap(children)


def reap(procs: list[psutil.Process], grace: float = 5.0) -> None:
    """Terminate whichever of `procs` still run; kill those that outlive `grace`."""
    alive = [p for p in procs if p.is_running()]
    for p in alive:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, still = psutil.wait_procs(alive, timeout=grace)
    for p in still:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(still, timeout=grace)


# ---------------------------------------------------------------- browser


def launch_chromium(pw: Playwright, user_data_dir: Path, base_url: str,
                    executable: str = CHROMIUM) -> BrowserContext:
    """Headless Debian Chromium with a fresh profile; page.goto paths are relative to Lab."""
    return pw.chromium.launch_persistent_context(
        user_data_dir=str(user_data_dir),
        executable_path=executable,
        headless=True,
        args=CHROMIUM_ARGS,
        base_url=base_url,
        viewport=VIEWPORT,
    )


def watch_js_errors(page: Page, errors: list[str] | None = None) -> list[str]:
    """A list (`errors`, or a new one) that fills with the page's uncaught exceptions
    and console errors."""
    errors = [] if errors is None else errors

    def on_console(msg) -> None:
        if msg.type == "error":
            loc = msg.location
            errors.append(f"console.error: {msg.text} ({loc.get('url')}:{loc.get('lineNumber')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    return errors


SHUTDOWN_KERNELS_JS = """
async () => {
  const services = window.jupyterapp?.serviceManager;
  if (!services) return;
  await services.sessions.shutdownAll();
  await services.kernels.shutdownAll();
}
"""


def shutdown_kernels(page: Page) -> None:
    """Shut down every kernel of this Lab (so a finished test stops using the CPU)."""
    page.evaluate(SHUTDOWN_KERNELS_JS)


def screenshot(page: Page, path: Path) -> Path:
    """Save what the viewport shows now as a PNG at `path`."""
    page.screenshot(path=str(path))
    return path


# ---------------------------------------------------------------- notebooks


def copy_notebook(src: Path, root_dir: Path, name: str | None = None) -> str:
    """Copy `src` into the server root without outputs or counts; return its relative path.

    A clean copy means "every prompt shows a number" can only come from this run.
    """
    nb = nbformat.read(str(src), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    rel = name or src.name
    nbformat.write(nb, str(root_dir / rel))
    return rel


_WORKSPACES = itertools.count(1)


def open_notebook(page: Page, rel_path: str, timeout: float = 90_000, base_url: str = "") -> None:
    """Open `rel_path` (relative to the server root) in Lab; wait for its kernel to be idle.

    Each call uses a new workspace, so Lab does not restore tabs from earlier tests.
    `base_url` is another Lab's (default: the browser context's).
    """
    page.goto(f"{base_url}lab/workspaces/t{next(_WORKSPACES)}/tree/{rel_path}")
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").wait_for(timeout=timeout)
    wait_for_kernel_idle(page, timeout)


KERNEL_IDLE_JS = """
() => {
  const ctx = window.jupyterapp?.shell?.currentWidget?.sessionContext;
  const kernel = ctx?.session?.kernel;
  return !!ctx && ctx.isReady && !ctx.hasNoKernel && kernel?.status === 'idle'
    && kernel?.connectionStatus === 'connected';
}
"""


def wait_for_kernel_idle(page: Page, timeout: float = 90_000) -> None:
    """Wait until the current notebook has a started, connected kernel that is idle.

    Reads Lab's session state (window.jupyterapp): the toolbar's indicator also
    says "idle" while no kernel has started yet, and running cells then would
    pop up the "Select Kernel" dialog instead.
    """
    page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout, polling=200)


def click_menu(page: Page, *path: str) -> None:
    """Click through the Lab menu bar, e.g. click_menu(page, "Run", "Run All Cells")."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{re.escape(path[0])}$")).click()
    for label in path[1:]:
        item = page.locator(".lm-Menu:visible .lm-Menu-item").filter(
            has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$"))
        )
        item.click()


CELL_STATE_JS = """
() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter(cell => cell.model.type === 'code')
  .map(cell => {
    const outputs = [];
    for (let i = 0; i < cell.model.outputs.length; i++) outputs.push(cell.model.outputs.get(i).toJSON());
    return {
      prompt: (cell.node.querySelector('.jp-InputArea-prompt')?.textContent || '').trim(),
      errors: outputs.filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`),
      stderr: outputs.filter(o => o.output_type === 'stream' && o.name === 'stderr')
        .map(o => Array.isArray(o.text) ? o.text.join('') : o.text),
    };
  })
"""

CELLS_SETTLED_JS = f"""
() => {{
  const prompts = ({CELL_STATE_JS})().map(c => c.prompt);
  return !prompts.some(p => p.includes('*')) && prompts.some(p => /\\[\\d+\\]/.test(p));
}}
"""


def run_all_cells(page: Page, timeout: float = 120_000) -> list[dict]:
    """Run > Run All Cells, wait until no cell is queued or running; return cell states.

    A state is {"prompt": "[3]:", "errors": ["NameError: name 'x' is not defined"]};
    a cell still showing "[ ]:" was skipped because an earlier one failed.
    """
    click_menu(page, "Run", "Run All Cells")
    page.wait_for_function(CELLS_SETTLED_JS, timeout=timeout, polling=250)
    return page.evaluate(CELL_STATE_JS)


def run_notebook_in_lab(page: Page, rel_path: str, timeout: float = 120_000,
                        base_url: str = "") -> list[dict]:
    """Open `rel_path` in Lab, run all its cells, and fail if any cell did not run cleanly."""
    open_notebook(page, rel_path, timeout, base_url)
    cells = run_all_cells(page, timeout)
    not_run = [i for i, c in enumerate(cells) if not re.search(r"\[\d+\]", c["prompt"])]
    errors = [(i, c["errors"]) for i, c in enumerate(cells) if c["errors"]]
    assert not not_run and not errors, f"code cells not run: {not_run}; errors: {errors}"
    return cells


# ---------------------------------------------------------------- bokeh and widgets


BOKEH_LENGTHS_JS = """
() => {
  const out = {};
  for (const doc of (window.Bokeh && window.Bokeh.documents) || []) {
    for (const m of doc._all_models.values()) {
      if (typeof m.get_length !== 'function' || !('data' in m)) continue;
      const key = m.name || m.id;
      out[key] = Math.max(out[key] || 0, m.get_length() || 0);
    }
  }
  return out;
}
"""


def bokeh_data_lengths(page: Page) -> dict[str, int]:
    """Rows in every BokehJS ColumnDataSource on the page, by source name (or id)."""
    return page.evaluate(BOKEH_LENGTHS_JS)


def wait_for_bokeh_rows(page: Page, source: str, at_least: int, timeout: float = 60_000) -> int:
    """Wait until the data source named `source` has `at_least` rows; return its row count."""
    page.wait_for_function(
        f"([s, n]) => (({BOKEH_LENGTHS_JS})()[s] || 0) >= n",
        arg=[source, at_least], timeout=timeout, polling=200,
    )
    return bokeh_data_lengths(page)[source]


BOKEH_COLUMN_JS = """
([name, column]) => {
  let found = null;
  for (const doc of (window.Bokeh && window.Bokeh.documents) || []) {
    for (const m of doc._all_models.values()) {
      if (m.name !== name || !m.data) continue;
      const data = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
      if (column in data) found = Array.from(data[column]);
    }
  }
  return found;
}
"""


def bokeh_column(page: Page, source: str, column: str) -> list | None:
    """Column `column` of the BokehJS data source named `source` (the last one drawn), as
    the browser has it now; None if there is none."""
    return page.evaluate(BOKEH_COLUMN_JS, [source, column])


def bokeh_canvas(page: Page):
    """Locator for the canvases of bokeh plots in notebook outputs (inside their shadow DOM)."""
    return page.locator(".jp-OutputArea-output canvas")


def click_button(page: Page, description: str, timeout: float = 30_000) -> None:
    """Click the ipywidgets Button labelled `description` with the real mouse, at its centre."""
    button = page.locator(".jp-OutputArea-output button.widget-button").filter(
        has_text=re.compile(f"^\\s*{re.escape(description)}\\s*$")
    )
    # A trial click runs Playwright's checks (visible, stable, not covered) without clicking.
    button.click(trial=True, timeout=timeout)
    box = button.bounding_box()
    assert box is not None, f"button {description!r} has no box"
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
