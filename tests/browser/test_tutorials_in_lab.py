"""Tutorials 3 and 4 in a real JupyterLab in headless Chromium, as a person would use them.

Tutorial 3: Run > Run All Cells; while the app runs (about twelve seconds of paced
readings) the dashboard's plot is drawn and its data grows; when the last cell stops
the app, the dashboard says so. Tutorial 4: run the cells down to the live window
controls, click "close window" with the mouse, and the table of emitted windows gains
rows; choose one key in the menu and close only its window; then run the rest, which
stops the app. Any JavaScript error fails the test (see conftest.py's `page`).
Screenshots go to the test's tmp dir.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from labdriver import (
    CELL_STATE_JS,
    CELLS_SETTLED_JS,
    bokeh_canvas,
    bokeh_data_lengths,
    click_button,
    click_menu,
    copy_notebook,
    open_notebook,
    screenshot,
)
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

# Rows of the dashboard's history data source (the one with a p99 column) in BokehJS.
HISTORY_ROWS_JS = """
() => {
  let rows = -1;
  for (const doc of (window.Bokeh && window.Bokeh.documents) || []) {
    for (const m of doc._all_models.values()) {
      if (typeof m.get_length !== 'function' || !m.data) continue;
      const data = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
      if ('p99_us' in data && 'time' in data) rows = Math.max(rows, m.get_length() || 0);
    }
  }
  return rows;
}
"""


def history_rows(page: Page) -> int:
    """Rows in the dashboard's history plot data in the browser; -1 if there is no plot."""
    return page.evaluate(HISTORY_ROWS_JS)


def wait_for_history_rows(page: Page, at_least: int, timeout: float = 60_000) -> int:
    page.wait_for_function(f"n => ({HISTORY_ROWS_JS})() >= n", arg=at_least,
                           timeout=timeout, polling=200)
    return history_rows(page)


def wait_until_cells_settled(page: Page, timeout: float = 120_000) -> list[dict]:
    """Wait until no cell is queued or running; return the cells' states, checked clean."""
    page.wait_for_function(CELLS_SETTLED_JS, timeout=timeout, polling=250)
    cells = page.evaluate(CELL_STATE_JS)
    errors = [(i, c["errors"]) for i, c in enumerate(cells) if c["errors"]]
    assert not errors, f"cells raised: {errors}"
    return cells


def code_cell(page: Page, text: str):
    """The notebook's code cell whose source contains `text` (exactly one)."""
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea-editor", has_text=text))
    expect(cell).to_have_count(1)
    return cell


def select_cell(page: Page, text: str) -> None:
    """Click (with the mouse) the prompt of the code cell containing `text`."""
    cell = code_cell(page, text)
    cell.locator(".jp-InputPrompt").click()
    index = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex")
    source = page.evaluate(
        "i => window.jupyterapp.shell.currentWidget.content.widgets[i].model.sharedModel.source",
        index)
    assert text in source, f"selected cell {index} is not the one with {text!r}: {source!r}"


@pytest.mark.timeout(300)
def test_tutorial_3_dashboard_draws_and_grows_while_the_app_runs(page, lab_server, js_errors,
                                                                tmp_path):
    rel = copy_notebook(NOTEBOOKS / "03_watching_latency.ipynb", lab_server.root_dir)
    open_notebook(page, rel)
    click_menu(page, "Run", "Run All Cells")

    # Watch the dashboard, as a person would: scroll its output into view (Lab skips
    # rendering what is off screen). Its data grows, second by second, while `app.wait()` runs.
    dashboard = code_cell(page, "app.dashboard()").locator(".jp-OutputArea-output").first
    dashboard.wait_for(state="attached", timeout=90_000)
    dashboard.scroll_into_view_if_needed(timeout=30_000)
    try:
        first = wait_for_history_rows(page, 1, timeout=90_000)
    except PlaywrightTimeout:
        line = dashboard.locator(".widget-html").all_inner_texts()  # the kernel side's view
        raise AssertionError(
            f"no dashboard data in the page; its status line: {line}; BokehJS data sources: "
            f"{bokeh_data_lengths(page)}; cells: {page.evaluate(CELL_STATE_JS)}; "
            f"JS errors: {js_errors}") from None
    canvas = bokeh_canvas(page).first
    canvas.scroll_into_view_if_needed(timeout=30_000)
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100, box
    later = wait_for_history_rows(page, first + 3, timeout=30_000)
    assert later >= first + 3
    screenshot(page, tmp_path / "03-dashboard-streaming.png")

    cells = wait_until_cells_settled(page)
    assert all(re.search(r"\[\d+\]", c["prompt"]) for c in cells), cells
    # The last cell stopped the app: the dashboard says so and the data stops growing.
    status = page.locator(".jp-OutputArea-output .widget-html", has_text="not updating")
    expect(status).to_contain_text("app stopped", timeout=30_000)
    final = history_rows(page)
    assert final >= later
    page.wait_for_timeout(2_500)
    assert history_rows(page) == final, "the dashboard kept streaming after app.stop()"
    expect(page.locator(".jp-OutputArea-output", has_text="slowest computation: look up location")
           ).to_have_count(1)
    status.scroll_into_view_if_needed()
    screenshot(page, tmp_path / "03-dashboard-stopped.png")
    print(f"history rows {first} -> {later} -> {final}; screenshots in {tmp_path}")


@pytest.mark.timeout(300)
def test_tutorial_4_close_window_button_adds_rows(page, lab_server, tmp_path):
    rel = copy_notebook(NOTEBOOKS / "04_windows.ipynb", lab_server.root_dir)
    open_notebook(page, rel)

    # Run everything above the `app.trigger` cell: the live app runs, its controls show.
    select_cell(page, "live.trigger(")
    click_menu(page, "Run", "Run All Above Selected Cell")
    wait_until_cells_settled(page)

    controls = page.locator(".jp-OutputArea-output .widget-vbox").filter(
        has=page.locator("button.widget-button", has_text="close window"))
    expect(controls).to_have_count(1, timeout=30_000)
    rows = controls.locator(".widget-html table tbody tr")
    status = controls.locator(".widget-html").first
    expect(controls).to_contain_text("no output yet", timeout=30_000)
    expect(rows).to_have_count(0)
    expect(status).to_contain_text("key(s) with an open window", timeout=30_000)

    click_button(page, "close window")
    expect(status).to_contain_text(re.compile(r"closed [1-9]\d* windows? \(all keys\)"),
                                   timeout=30_000)
    n = int(re.search(r"closed (\d+) window", status.inner_text()).group(1))
    expect(rows).to_have_count(n, timeout=30_000)
    sensors = sorted(rows.locator("td:nth-child(2)").all_inner_texts())
    assert len(set(sensors)) == n and all(re.fullmatch(r"s[012]", s) for s in sensors), sensors
    controls.scroll_into_view_if_needed()
    screenshot(page, tmp_path / "04-after-close-window.png")

    # One key: wait until s1 is offered again (its window reopened), choose it, close it.
    key_menu = controls.locator(".widget-dropdown select")
    expect(key_menu.locator("option", has_text="'s1'")).to_have_count(1, timeout=30_000)
    key_menu.select_option(label="'s1'")
    click_button(page, "close window")
    expect(status).to_contain_text("closed 1 window ('s1')", timeout=30_000)
    expect(rows).to_have_count(n + 1, timeout=30_000)
    expect(rows.first.locator("td").nth(1)).to_have_text("s1")  # newest first
    screenshot(page, tmp_path / "04-after-closing-s1.png")

    # The rest of the notebook: the trigger cell, live.stop(), the other windows.
    select_cell(page, "live.trigger(")
    click_menu(page, "Run", "Run Selected Cell and All Below")
    cells = wait_until_cells_settled(page)
    assert all(re.search(r"\[\d+\]", c["prompt"]) for c in cells), cells
    expect(status).to_contain_text("app stopped; not updating", timeout=30_000)
    expect(controls.locator("button.widget-button")).to_be_disabled()
    expect(page.locator(".jp-OutputArea-output", has_text="windows closed: 3")).to_have_count(1)
    print(f"screenshots in {tmp_path}")
