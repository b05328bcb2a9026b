"""Shared test helpers: every app a test starts is stopped, whatever happens."""

from __future__ import annotations

import pytest
from proctools import pid_alive


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
