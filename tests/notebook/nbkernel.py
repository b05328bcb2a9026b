"""Helpers to run notebooks in a real kernel (nbclient), with a private kernel spec dir.

Kernels get their own IPYTHONDIR so a developer's profile or startup files never
change what a test sees.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode


def code_notebook(*sources: str, kernel_name: str = "python3") -> NotebookNode:
    """A notebook of code cells with these sources, asking for `kernel_name`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name,
                                 "language": "python"}
    return nb


def kernel_manager(kernel_name: str, kernel_dirs: list[Path]) -> KernelManager:
    """A KernelManager that finds specs in `kernel_dirs` first, then the usual places."""
    ksm = KernelSpecManager()
    ksm.kernel_dirs = [str(d) for d in kernel_dirs] + list(ksm.kernel_dirs)
    return KernelManager(kernel_name=kernel_name, kernel_spec_manager=ksm)


def execute_notebook(
    nb: NotebookNode | str | Path,
    kernel_name: str,
    kernel_dirs: list[Path],
    ipython_dir: Path,
    cwd: Path | None = None,
    timeout: int = 120,
) -> NotebookNode:
    """Run every cell of `nb` (a notebook or a path) in a fresh kernel; return it executed.

    Raises nbclient's CellExecutionError on the first failing cell.
    """
    if not isinstance(nb, NotebookNode):
        nb = nbformat.read(str(nb), as_version=4)
    km = kernel_manager(kernel_name, kernel_dirs)
    client = NotebookClient(nb, km=km, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(cwd or ipython_dir)}})
    try:
        client.execute(env={**os.environ, "IPYTHONDIR": str(ipython_dir)})
    finally:
        # nbclient leaves a kernel it did not start running: stop it (and the apps in
        # it) here, also when a cell failed
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


def text_output(cell: NotebookNode) -> str:
    """Everything a code cell printed or returned as text/plain, joined."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)
