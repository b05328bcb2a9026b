"""Fixtures for real-browser tests: one JupyterLab and one headless Chromium per session.

`page` is a fresh tab on that Lab; it fails the test at teardown on any JS error,
saves failure.png into the test's tmp dir when the test failed, and shuts the
kernels down. Lab, Chromium and every process they started are stopped at the
end, also after failures. Helpers to drive the page are in labdriver.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from labdriver import (
    CHROMIUM,
    LabServer,
    launch_chromium,
    reap,
    screenshot,
    shutdown_kernels,
    start_lab,
    stop_lab,
    watch_js_errors,
)
from playwright.sync_api import BrowserContext, Page, sync_playwright

HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: runs a real JupyterLab in headless Chromium")


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's Chromium; skip without it, except in CI (CI=true), where that is a failure."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"{CHROMIUM} not found: run .ci/install-browser.sh (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_server(chromium_executable, tmp_path_factory) -> LabServer:
    """A JupyterLab on 127.0.0.1 with no auth and all its state in a tmp dir."""
    server = start_lab(tmp_path_factory.mktemp("lab"))
    yield server
    stop_lab(server)


@pytest.fixture(scope="session")
def lab_browser(chromium_executable, lab_server, tmp_path_factory) -> BrowserContext:
    """Headless Chromium with a fresh profile, its base URL set to the Lab."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    pw = sync_playwright().start()
    try:
        context = launch_chromium(pw, tmp_path_factory.mktemp("chromium-profile"),
                                  lab_server.url, chromium_executable)
    except BaseException:
        pw.stop()
        raise
    # Playwright's driver and Chromium: whatever of them outlives a clean close gets reaped.
    ours = [p for p in me.children(recursive=True) if p.pid not in before]
    yield context
    try:
        context.close()
    finally:
        pw.stop()
        reap(ours)


@pytest.fixture
def js_errors() -> list[str]:
    """JS errors seen by `page` so far (the same list `page` checks at teardown)."""
    return []


@pytest.fixture
def page(lab_browser, js_errors, request, tmp_path) -> Page:
    """A new tab on the Lab; fails the test on JS errors, screenshots failures."""
    page = lab_browser.new_page()
    watch_js_errors(page, js_errors)
    yield page
    report = getattr(request.node, "report_call", None)
    failed = report is not None and report.failed
    # Judge before shutting kernels down: requests that shutdown cancels log errors of their own.
    errors = list(js_errors)
    try:
        if failed:
            print(f"screenshot of the failure: {screenshot(page, tmp_path / 'failure.png')}")
        shutdown_kernels(page)
    finally:
        page.close()
    if errors and not failed:
        pytest.fail("JavaScript errors in the page:\n" + "\n".join(errors))
