"""Fixtures for running notebooks in real kernels, including the wallaroo_nb kernel spec.

`run_notebook(nb_or_path, kernel_name="wallaroo_nb")` executes a notebook with
nbclient and returns it with outputs; see nbkernel.py for the plain helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from nbformat import NotebookNode
from nbkernel import execute_notebook

from wallaroo_nb.notebook.kernelspec import install_kernel


@pytest.fixture(scope="session")
def kernel_prefix(tmp_path_factory) -> Path:
    """A prefix holding the wallaroo_nb kernel spec, installed with install_kernel."""
    prefix = tmp_path_factory.mktemp("kernel-prefix")
    install_kernel(prefix=str(prefix))
    return prefix


@pytest.fixture(scope="session")
def kernel_dirs(kernel_prefix) -> list[Path]:
    """Where the kernel specs used by these tests live."""
    return [kernel_prefix / "share" / "jupyter" / "kernels"]


@pytest.fixture
def run_notebook(kernel_dirs, tmp_path) -> Callable[..., NotebookNode]:
    """Execute a notebook (node or path) in a fresh kernel, cwd = the test's tmp dir."""
    ipython_dir = tmp_path / "ipython"
    ipython_dir.mkdir()

    def run(nb: NotebookNode | str | Path, kernel_name: str = "wallaroo_nb",
            timeout: int = 120) -> NotebookNode:
        return execute_notebook(nb, kernel_name, kernel_dirs, ipython_dir, cwd=tmp_path,
                                timeout=timeout)

    return run
