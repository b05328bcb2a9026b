"""How an engine process is started, wherever it runs: its command line and environment."""

from __future__ import annotations

import os
import sys


def engine_env() -> dict:
    """The environment of an engine: this process's, with its sys.path, so that engines
    import what this process can (functions from importable modules travel by
    reference, those from __main__ or a notebook by value)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    return env


def engine_command(args: list) -> list:
    """``python -m wallaroo_nb.engine.worker ARGS`` with this interpreter."""
    return [sys.executable, "-m", "wallaroo_nb.engine.worker", *args]
