"""Shared test helpers: every app a test starts is stopped, whatever happens."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def start():
    """start(app_or_pipeline, **kw) -> App; stops them all at the end of the test."""
    import wallaroo_nb as w

    apps = []

    def _start(target, **kw):
        app = w.run(target, **kw)
        apps.append(app)
        return app

    yield _start
    for app in apps:
        app.stop()
        for pid in app.pids:
            assert not pid_alive(pid), f"worker pid {pid} outlived app.stop()"


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")
