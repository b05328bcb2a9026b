"""Run tutorials top to bottom in a fresh kernel and store their outputs.

    .venv/bin/python notebooks/tools/store_outputs.py              # every NN_*.ipynb
    .venv/bin/python notebooks/tools/store_outputs.py notebooks/03_watching_latency.ipynb

nbval compares a tutorial's fresh outputs with the stored ones, so after editing a
tutorial, store its outputs again with this and review the diff. Heavy outputs are
not stored: a cell marked `# NBVAL_IGNORE_OUTPUT` whose output loads BokehJS or
shows a widget is cleared (the inline BokehJS alone is ~1 MB, and a widget has no
state to show once saved), and the notebook's saved widget state is dropped.
The kernel runs in the notebook's directory, as under nbval and in JupyterLab, and
is the plain "Python 3 (ipykernel)" run by this interpreter, as under nbval: a
tutorial loads what it needs itself. Its temporary files (TMPDIR) are deleted after
the run; the notebook's metadata keeps naming the wallaroo_nb kernel, which
`make lab` installs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from wallaroo_nb.notebook.kernelspec import KERNEL_NAME, write_kernel_spec

NOTEBOOKS = Path(__file__).resolve().parents[1]
HEAVY = ("application/javascript", "application/vnd.bokehjs_load.v0+json",
         "application/vnd.bokehjs_exec.v0+json", "application/vnd.jupyter.widget-view+json")
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python 3 (wallaroo_nb)", "language": "python"}
RUN_KERNEL = "python3"


def heavy(cell: nbformat.NotebookNode) -> bool:
    """True for an ignored cell whose outputs are BokehJS or widgets."""
    return "NBVAL_IGNORE_OUTPUT" in cell.source and any(
        mime in out.get("data", {}) for out in cell.outputs for mime in HEAVY)


def lighten(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Clear heavy outputs and drop saved widget state."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code" and heavy(cell):
            cell.outputs = []
    return nb


def execute(path: Path, timeout: int = 120) -> float:
    """Execute `path` in place in a fresh kernel; return the seconds it took."""
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    with tempfile.TemporaryDirectory(prefix="wallaroo-store-") as tmp:
        kernels = Path(tmp) / "kernels"
        write_kernel_spec(kernels / RUN_KERNEL, with_extension=False)
        for sub in ("ipython", "tmp"):
            (Path(tmp) / sub).mkdir()
        ksm = KernelSpecManager()
        ksm.kernel_dirs = [str(kernels)]
        km = KernelManager(kernel_name=RUN_KERNEL, kernel_spec_manager=ksm)
        client = NotebookClient(nb, km=km, timeout=timeout, kernel_name=RUN_KERNEL,
                                resources={"metadata": {"path": str(path.parent)}})
        t0 = time.monotonic()
        try:
            client.execute(env={**os.environ, "IPYTHONDIR": str(Path(tmp) / "ipython"),
                                "TMPDIR": str(Path(tmp) / "tmp")})
        finally:  # nbclient leaves running a kernel it was handed
            if km.has_kernel:
                km.shutdown_kernel(now=True)
        took = time.monotonic() - t0
    nb.metadata["kernelspec"] = dict(KERNELSPEC)  # nbclient wrote the running kernel's
    nbformat.write(lighten(nb), str(path))
    return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path,
                   help="notebooks to run (default: every NN_*.ipynb in notebooks/)")
    args = p.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        took = execute(path)
        size = path.stat().st_size
        print(f"{path.name}: {took:.1f}s, {size / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
