"""Every tutorial in a real JupyterLab in headless Chromium, as a person would use it,
with no wallaroo_nb kernel spec installed: Lab falls back to the plain Python 3 kernel
and each tutorial loads what it needs itself.

Each test opens its tutorial (a copy without outputs) in the one Lab of the session and
runs every cell: no cell may end in an error or write to stderr, every cell must run,
and any JavaScript error fails the test (see conftest.py's `page`). Beyond that:

- Tutorial 1: the dataflow picture of the running word count is drawn (four boxes) and
  its labels change while the app runs (rates on the arrows, counts on the boxes);
  once the app stops they show how many messages went along each arrow. Under it,
  one bar of keys per worker.
- Tutorial 3: the dashboard's plot is drawn and its data grows while the app runs, with
  the input and output rate above and the keys per worker below; when the last cell
  stops the app, the dashboard says so and stops.
- Tutorial 4: clicking "close window" with the mouse adds rows to the table of emitted
  windows, for all keys and for one; the window timeline's watermark grows while its
  app runs, and all three windows end up drawn as fired.

Screenshots go to each test's tmp dir.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from labdriver import (
    BOKEH_COLUMN_JS,
    CELL_STATE_JS,
    CELLS_SETTLED_JS,
    bokeh_canvas,
    bokeh_column,
    bokeh_data_lengths,
    click_button,
    click_menu,
    copy_notebook,
    open_notebook,
    screenshot,
)
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from wallaroo_nb.notebook.graph_plot import EDGES_NAME, NODES_NAME
from wallaroo_nb.notebook.timeline import WATERMARK_NAME, WINDOWS_NAME
from wallaroo_nb.notebook.workers_plot import SOURCE_NAME as WORKERS_NAME

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PLAIN_KERNEL = "Python 3 (ipykernel)"
RATE = re.compile(r"\d[\d,.]*k?/s")

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


@pytest.fixture(scope="module", autouse=True)
def no_wallaroo_kernel_spec(lab_server):
    """The precondition of every test here: the Lab knows the plain python3 kernel only."""
    with urllib.request.urlopen(lab_server.url + "api/kernelspecs", timeout=30) as response:
        specs = json.loads(response.read())["kernelspecs"]
    assert sorted(specs) == ["python3"], sorted(specs)


def history_rows(page: Page) -> int:
    """Rows in the dashboard's history plot data in the browser; -1 if there is no plot."""
    return page.evaluate(HISTORY_ROWS_JS)


def wait_for_history_rows(page: Page, at_least: int, timeout: float = 60_000) -> int:
    page.wait_for_function(f"n => ({HISTORY_ROWS_JS})() >= n", arg=at_least,
                           timeout=timeout, polling=200)
    return history_rows(page)


def wait_until_cells_settled(page: Page, timeout: float = 120_000) -> list[dict]:
    """Wait until no cell is queued or running; return the cells' states, checked clean:
    no error, nothing on stderr."""
    page.wait_for_function(CELLS_SETTLED_JS, timeout=timeout, polling=250)
    cells = page.evaluate(CELL_STATE_JS)
    errors = [(i, c["errors"]) for i, c in enumerate(cells) if c["errors"]]
    assert not errors, f"cells raised: {errors}"
    stderr = [(i, c["stderr"]) for i, c in enumerate(cells) if c["stderr"]]
    assert not stderr, f"cells wrote to stderr: {stderr}"
    return cells


def all_ran(cells: list[dict]) -> bool:
    return all(re.search(r"\[\d+\]", c["prompt"]) for c in cells)


def open_tutorial(page: Page, lab_server, name: str) -> None:
    """Open a clean copy of notebooks/`name`; its kernel must be the plain Python 3 one."""
    open_notebook(page, copy_notebook(NOTEBOOKS / name, lab_server.root_dir))
    expect(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar "
                        ".jp-KernelName")).to_have_text(PLAIN_KERNEL)


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


def wait_for_labels(page: Page, test: str, timeout: float = 60_000, not_equal=None) -> list:
    """The graph's edge labels once JS predicate `test(labels)` holds (and they differ from
    `not_equal`, when given)."""
    page.wait_for_function(
        f"""([src, old]) => {{
          const labels = (({BOKEH_COLUMN_JS})([src, 'text'])) || [];
          return ({test})(labels) && JSON.stringify(labels) !== JSON.stringify(old);
        }}""", arg=[EDGES_NAME, not_equal], timeout=timeout, polling=100)
    return bokeh_column(page, EDGES_NAME, "text")


@pytest.mark.timeout(300)
def test_tutorial_1_dataflow_picture_moves_while_the_app_runs(page, lab_server, tmp_path):
    open_tutorial(page, lab_server, "01_first_pipeline.ipynb")
    click_menu(page, "Run", "Run All Cells")

    view = code_cell(page, "slow_poem = ").locator(".jp-OutputArea-output").last
    view.wait_for(state="attached", timeout=90_000)
    view.scroll_into_view_if_needed(timeout=30_000)
    has_rate = "labels => labels.some(t => /\\d[\\d,.]*k?\\/s/.test(t))"
    try:
        first = wait_for_labels(page, has_rate, timeout=90_000)
    except PlaywrightTimeout:
        raise AssertionError(
            f"no rates on the picture; edges {bokeh_column(page, EDGES_NAME, 'text')}, "
            f"nodes {bokeh_column(page, NODES_NAME, 'stats')}, view: {view.inner_text()}; "
            f"cells: {page.evaluate(CELL_STATE_JS)}") from None
    assert bokeh_column(page, NODES_NAME, "name") == ["lines", "split", "count word",
                                                      "collector"]
    assert "key_by" in first[1], first
    canvas = view.locator("canvas").first
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 500 and box["height"] > 100, box
    expect(view).to_contain_text("wallaroo_nb app app")  # the summary above the picture
    expect(view).to_contain_text("input rate")
    # below it, the keys per worker: one bar for each of the two workers
    page.wait_for_function(f"() => JSON.stringify(({BOKEH_COLUMN_JS})(['{WORKERS_NAME}', "
                           "'worker'])) === JSON.stringify(['worker 0', 'worker 1'])",
                           timeout=30_000, polling=200)
    assert view.locator("canvas").count() >= 2, "the graph and the bars each draw a canvas"
    stats = bokeh_column(page, NODES_NAME, "stats")
    screenshot(page, tmp_path / "01-picture-running.png")

    # While the app runs (rates on the arrows), the labels move on.
    later = wait_for_labels(page, has_rate, timeout=30_000, not_equal=first)
    assert all(RATE.search(t) for t in later), later
    assert bokeh_column(page, NODES_NAME, "stats") != stats

    cells = wait_until_cells_settled(page)
    assert all_ran(cells), cells
    # Stopped: the picture keeps how many messages went along each arrow.
    final = wait_for_labels(page, "labels => labels.every(t => / msgs$/.test(t))",
                            timeout=30_000)
    assert final[1].startswith("key_by\n") and final[2] == "1,320 msgs", final
    view.scroll_into_view_if_needed()
    screenshot(page, tmp_path / "01-picture-stopped.png")
    print(f"labels {first} -> {later} -> {final}; screenshots in {tmp_path}")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["02_keyed_state.ipynb", "05_errors.ipynb",
                                  "06_command_line.ipynb", "07_testing.ipynb"])
def test_tutorial_runs_clean(page, lab_server, name):
    open_tutorial(page, lab_server, name)
    click_menu(page, "Run", "Run All Cells")
    cells = wait_until_cells_settled(page)
    assert all_ran(cells), cells


@pytest.mark.timeout(300)
def test_tutorial_3_dashboard_draws_and_grows_while_the_app_runs(page, lab_server, js_errors,
                                                                tmp_path):
    open_tutorial(page, lab_server, "03_watching_latency.ipynb")
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
    outputs = code_cell(page, "app.dashboard()")  # BokehJS's output, then the dashboard's
    # the app's input and output rate line
    expect(outputs.locator(".widget-html", has_text="output rate")).to_have_count(1)
    page.wait_for_function(f"() => JSON.stringify(({BOKEH_COLUMN_JS})(['{WORKERS_NAME}', "
                           "'worker'])) === JSON.stringify(['worker 0', 'worker 1'])",
                           timeout=30_000, polling=200)  # keys per worker, under the plots
    canvas = bokeh_canvas(page).first
    canvas.scroll_into_view_if_needed(timeout=30_000)
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100, box
    later = wait_for_history_rows(page, first + 3, timeout=30_000)
    assert later >= first + 3
    screenshot(page, tmp_path / "03-dashboard-streaming.png")

    cells = wait_until_cells_settled(page)
    assert all_ran(cells), cells
    # The last cell stopped the app: the dashboard says so and the data stops growing.
    # (two lines: the latency plots' and the keys-per-worker bars')
    status = outputs.locator(".widget-html", has_text="app stopped; not updating")
    expect(status).to_have_count(2, timeout=30_000)
    final = history_rows(page)
    assert final >= later
    page.wait_for_timeout(2_500)
    assert history_rows(page) == final, "the dashboard kept streaming after app.stop()"
    expect(page.locator(".jp-OutputArea-output", has_text="slowest computation: look up location")
           ).to_have_count(1)
    status.first.scroll_into_view_if_needed()
    screenshot(page, tmp_path / "03-dashboard-stopped.png")
    print(f"history rows {first} -> {later} -> {final}; screenshots in {tmp_path}")


@pytest.mark.timeout(300)
def test_tutorial_4_close_window_button_and_the_window_timeline(page, lab_server, tmp_path):
    open_tutorial(page, lab_server, "04_windows.ipynb")

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

    # The rest: the trigger cell, live.stop(), the other windows and the timeline.
    select_cell(page, "live.trigger(")
    click_menu(page, "Run", "Run Selected Cell and All Below")
    timeline = code_cell(page, "paced.window_timeline(").locator(".jp-OutputArea-output").last
    timeline.wait_for(state="attached", timeout=90_000)
    timeline.scroll_into_view_if_needed(timeout=30_000)
    grows = f"([src, n]) => ((({BOKEH_COLUMN_JS})([src, 't'])) || []).length >= n"
    page.wait_for_function(grows, arg=[WATERMARK_NAME, 1], timeout=90_000, polling=100)
    first = len(bokeh_column(page, WATERMARK_NAME, "t"))
    page.wait_for_function(grows, arg=[WATERMARK_NAME, first + 4], timeout=30_000, polling=100)
    screenshot(page, tmp_path / "04-timeline-running.png")

    cells = wait_until_cells_settled(page)
    assert all_ran(cells), cells
    expect(status).to_contain_text("app stopped; not updating", timeout=30_000)
    expect(controls.locator("button.widget-button")).to_be_disabled()
    expect(page.locator(".jp-OutputArea-output", has_text="windows closed: 3")).to_have_count(1)
    labels = bokeh_column(page, WINDOWS_NAME, "label")
    assert labels == ["[0, 10) fired", "[10, 20) fired", "[20, 30) fired"], labels
    timeline.scroll_into_view_if_needed()
    screenshot(page, tmp_path / "04-timeline-done.png")
    print(f"screenshots in {tmp_path}")


@pytest.mark.timeout(300)
def test_tutorial_8_dashboard_bars_follow_the_scale(page, lab_server, js_errors, tmp_path):
    """The dashboard's keys-per-worker bars show three workers, then one, as the tutorial
    scales (its first drawing may come after the first scale: a view's first change waits
    a second)."""
    open_tutorial(page, lab_server, "08_scaling.ipynb")
    page.evaluate(f"""() => {{
      window.__bars = []; const t0 = Date.now();
      setInterval(() => {{
        const v = JSON.stringify(({BOKEH_COLUMN_JS})(['{WORKERS_NAME}', 'worker']));
        const last = window.__bars[window.__bars.length - 1];
        if (!last || last[1] !== v) window.__bars.push([Date.now() - t0, v]);
      }}, 20);
    }}""")
    click_menu(page, "Run", "Run All Cells")
    dashboard = code_cell(page, "app.dashboard()").locator(".jp-OutputArea-output").first
    dashboard.wait_for(state="attached", timeout=90_000)
    dashboard.scroll_into_view_if_needed(timeout=30_000)
    # The page's history of the bars (recorded every 20 ms): three, then one again.
    three, one = '["worker 0","worker 1","worker 2"]', '["worker 0"]'
    try:
        page.wait_for_function(
            """([three, one]) => {
              const vs = window.__bars.map(h => h[1]);
              const i = vs.indexOf(three);
              return i >= 0 && vs.indexOf(one, i) > i;
            }""", arg=[three, one], timeout=90_000, polling=100)
    except PlaywrightTimeout:
        texts = code_cell(page, "app.dashboard()").locator(".widget-html").all_inner_texts()
        raise AssertionError(f"bars {page.evaluate('window.__bars')}; status lines {texts}; "
                             f"JS errors {js_errors}") from None
    seen = [h[1] for h in page.evaluate("window.__bars")]
    cells = wait_until_cells_settled(page)
    assert all_ran(cells), cells
    expect(page.locator(".jp-OutputArea-output",
                        has_text="every sensor counted 1..600 in order: True")).to_have_count(1)
    print(f"bars {seen}")
