"""The tutorials in notebooks/: each runs under nbval in a fresh plain Python kernel,
leaves the repository as it was, and nbval's checks there can fail.

Each tutorial is run by nbval in its own pytest process, exactly as a developer would:

    .venv/bin/python -m pytest -p no:cacheprovider --nbval notebooks/01_first_pipeline.ipynb \\
        --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-kernel-name python3

The kernel is the plain "Python 3 (ipykernel)" (no wallaroo_nb extension preloaded):
a tutorial loads what it needs itself. notebooks/conftest.py provides the kernel specs
and fails a notebook that leaves a process running. The static checks keep the stored
notebooks small and honest: the right kernel, no inline BokehJS, and outputs that nbval
actually compares.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SANITIZE = NOTEBOOKS / "nbval_sanitize.cfg"
TUTORIALS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = 50 * 1024
# Outputs that must never be stored: BokehJS (inline it is ~1 MB) and widget views
# (a saved notebook has no widget state to show them with).
HEAVY_MIMES = ("application/javascript", "application/vnd.bokehjs_load.v0+json",
               "application/vnd.bokehjs_exec.v0+json", "application/vnd.jupyter.widget-view+json")
KERNELSPEC = {"name": "wallaroo_nb", "display_name": "Python 3 (wallaroo_nb)",
              "language": "python"}
STOPS = re.compile(r"\.stop\(\)|with w\.run\(|\.terminate\(\)")


def nbval(*paths: Path, cwd: Path = ROOT, tmp: Path | None = None,
          timeout: float = 240) -> subprocess.CompletedProcess:
    """Run nbval on `paths` in a pytest subprocess (kernels' TMPDIR: `tmp`); output in .stdout."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval",
           *map(str, paths), "--nbval-sanitize-with", str(SANITIZE),
           "--nbval-kernel-name", "python3", "-o", "addopts=", "-o", "timeout=200"]
    env = dict(os.environ, TMPDIR=str(tmp)) if tmp is not None else None
    return subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, env=env)


def repo_changes() -> tuple[str, list]:
    """`git status --porcelain` (untracked files one by one) and every file under
    notebooks/ (ignored ones too, bytecode caches aside): what a tutorial could litter."""
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = sorted(str(p.relative_to(ROOT)) for p in NOTEBOOKS.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    return status, files


def code_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def compared(cell: nbformat.NotebookNode) -> bool:
    """True if nbval compares this cell's stored outputs (and there are some)."""
    skip = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP")
    return bool(cell.outputs) and not any(m in cell.source for m in skip) and not any(
        t in cell.metadata.get("tags", []) for t in ("nbval-ignore-output", "nbval-skip"))


def test_the_tutorials_are_there_in_order():
    names = [p.name for p in TUTORIALS]
    assert names[:8] == ["01_first_pipeline.ipynb", "02_keyed_state.ipynb",
                         "03_watching_latency.ipynb", "04_windows.ipynb", "05_errors.ipynb",
                         "06_command_line.ipynb", "07_testing.ipynb",
                         "08_scaling.ipynb"], names


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_stored_notebook_is_small_and_honest(path):
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert {k: nb.metadata.kernelspec[k] for k in KERNELSPEC} == KERNELSPEC
    assert "widgets" not in nb.metadata, "saved widget state: store outputs with notebooks/tools"
    cells = code_cells(nb)
    assert all(c.execution_count for c in cells), "every code cell ran when outputs were stored"
    for c in cells:
        mimes = {m for o in c.outputs for m in o.get("data", {})}
        assert not mimes & set(HEAVY_MIMES), f"heavy output stored for:\n{c.source}"
        assert not any(o.output_type == "error" for o in c.outputs), c.source
    checked = [c for c in cells if compared(c)]
    # A tutorial whose checks cannot fail is not tested: several outputs are compared.
    assert len(checked) >= 3, f"{path.name}: only {len(checked)} cells with compared outputs"
    # Every tutorial stops what it starts (nbval checks it for real, see notebooks/conftest.py).
    source = "\n".join(c.source for c in cells)
    if "w.run(" in source:
        assert STOPS.search(source)


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_passes_nbval_and_leaves_the_repository_as_it_was(path, tmp_path):
    before = repo_changes()
    result = nbval(path, tmp=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    assert re.search(r"\d+ passed", result.stdout), result.stdout[-2000:]
    # Tutorials write into a temporary directory only: in a clean checkout `git status
    # --porcelain` stays empty, and nothing appears under notebooks/, ignored or not.
    after = repo_changes()
    assert after[0] == before[0], f"git status changed:\n{before[0]}---\n{after[0]}"
    assert after[1] == before[1], f"new files: {sorted(set(after[1]) - set(before[1]))}"


def copy_test_setup(tmp_path: Path) -> None:
    """notebooks/conftest.py and the sanitizer beside notebooks in `tmp_path`."""
    shutil.copy(NOTEBOOKS / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(SANITIZE, tmp_path / SANITIZE.name)


def test_nbval_fails_when_a_result_changes(tmp_path):
    """A stored word count that no longer matches what the app computes is caught."""
    copy_test_setup(tmp_path)
    nb = nbformat.read(str(NOTEBOOKS / "01_first_pipeline.ipynb"), as_version=4)
    changed = 0
    for cell in code_cells(nb):
        for out in cell.outputs:
            if out.output_type == "stream" and "33 results" in out.text:
                out.text = out.text.replace("33 results", "34 results")
                changed += 1
    assert changed == 1
    nbformat.write(nb, str(tmp_path / "01_changed.ipynb"))
    result = nbval(tmp_path / "01_changed.ipynb", cwd=tmp_path, tmp=tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "1 failed" in result.stdout and "34 results" in result.stdout, result.stdout[-3000:]


def test_nbval_fails_a_notebook_that_leaves_an_app_running(tmp_path):
    copy_test_setup(tmp_path)
    nb = new_notebook(cells=[new_code_cell(
        "import wallaroo_nb as w\n"
        "app = w.run(w.source('s', w.IterableSourceConfig('s', [1, 2, 3]))"
        ".to_sink(w.CollectorSinkConfig()), workers=2)\n"
        "app.wait(timeout=60)\n"
        "print(sorted(app.results()))")], metadata={"kernelspec": KERNELSPEC})
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="[1, 2, 3]\n")]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, str(tmp_path / "leaves_app.ipynb"))
    before = {p.pid for p in psutil.process_iter()}
    result = nbval(tmp_path / "leaves_app.ipynb", cwd=tmp_path, tmp=tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "still ran after the last cell" in result.stdout, result.stdout[-3000:]
    assert "1 passed, 1 error" in result.stdout, result.stdout[-3000:]
    workers = []  # this run's: new, and started in its directory (other runs may be going)
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if (p.pid not in before and p.info["cwd"] == str(tmp_path)
                and "wallaroo_nb.engine.worker" in " ".join(p.info["cmdline"] or [])):
            workers.append(p.pid)
    assert not workers, f"workers {workers} outlived the nbval run"


def test_sanitizer_patterns_are_valid_and_targeted():
    """Every replacement in the sanitizer compiles and none of them swallows plain numbers
    (word counts, totals), which must stay compared."""
    text = SANITIZE.read_text()
    pairs = re.findall(r"^regex: (.*)\nreplace: (.*)$", text, flags=re.M)
    assert len(pairs) == text.count("regex:") and pairs
    sample = json.dumps({"counts": [33, 4, 986, 0.75], "text": "33 results, total 45"})
    for regex, replace in pairs:
        assert re.sub(regex, replace, sample) == sample, regex


def test_the_repository_check_sees_a_stray_file():
    """What the nbval tests compare changes when a file appears next to the tutorials."""
    before = repo_changes()
    stray = NOTEBOOKS / "stray-output.txt"
    stray.write_text("left behind")
    try:
        after = repo_changes()
    finally:
        stray.unlink()
    assert "?? notebooks/stray-output.txt" in after[0] and after[0] != before[0]
    assert "notebooks/stray-output.txt" in after[1] and repo_changes() == before
