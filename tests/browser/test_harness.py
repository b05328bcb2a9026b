"""The browser harness, proven on a self-contained notebook (bokeh + ipywidgets, no engine).

A person opening the notebook in JupyterLab and choosing Run > Run All Cells
should see a plot that keeps growing, and a button that adds a table row per click.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from labdriver import (
    bokeh_canvas,
    bokeh_data_lengths,
    click_button,
    copy_notebook,
    run_notebook_in_lab,
    screenshot,
    shutdown_kernels,
    start_lab,
    stop_lab,
    wait_for_bokeh_rows,
    watch_js_errors,
)
from nbformat.v4 import new_code_cell, new_notebook
from playwright.sync_api import expect

FIXTURE = Path(__file__).parent / "fixtures" / "live_plot_and_button.ipynb"


@pytest.mark.timeout(240)
def test_live_plot_grows_and_button_adds_rows(page, lab_server, js_errors, tmp_path):
    run_notebook_in_lab(page, copy_notebook(FIXTURE, lab_server.root_dir))

    canvas = bokeh_canvas(page).first
    canvas.scroll_into_view_if_needed(timeout=60_000)
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100, box
    first = wait_for_bokeh_rows(page, "ticks", at_least=1)
    later = wait_for_bokeh_rows(page, "ticks", at_least=first + 10)
    assert later >= first + 10
    screenshot(page, tmp_path / "1-plot-streaming.png")

    rows = page.locator(".jp-OutputArea-output table.clicks tbody tr")
    expect(rows).to_have_count(0)
    click_button(page, "Add row")
    expect(rows).to_have_count(1, timeout=30_000)
    click_button(page, "Add row")
    expect(rows).to_have_count(2, timeout=30_000)
    expect(rows.nth(1).locator("td").first).to_have_text("2")
    screenshot(page, tmp_path / "2-after-two-clicks.png")

    # The plot keeps streaming after the clicks.
    wait_for_bokeh_rows(page, "ticks", at_least=bokeh_data_lengths(page)["ticks"] + 1)
    assert js_errors == []
    print(f"screenshots in {tmp_path}")


def test_failing_cell_is_reported(page, lab_server):
    nb = new_notebook(cells=[new_code_cell("1 / 0"), new_code_cell("print('never')")],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nbformat.write(nb, str(lab_server.root_dir / "fails.ipynb"))
    with pytest.raises(AssertionError, match=r"not run: \[1\]; errors: \[\(0, \['ZeroDivisionError"):
        run_notebook_in_lab(page, "fails.ipynb")


def test_js_errors_are_caught(lab_browser):
    page = lab_browser.new_page()
    try:
        errors = watch_js_errors(page)
        page.goto("lab/api/settings")  # any page of the Lab; no kernel needed
        page.evaluate("() => { console.error('logged'); setTimeout(() => { throw new Error('thrown'); }); }")
        for _ in range(200):  # Playwright delivers page events while we wait on it
            if len(errors) >= 2:
                break
            page.wait_for_timeout(50)
        assert [e.split(" (")[0] for e in errors] == ["console.error: logged", "uncaught: thrown"]
    finally:
        page.close()


def test_wallaroo_kernel_loads_the_magic_in_lab(page, tmp_path):
    """In a Lab of its own: the session's Lab offers the plain Python 3 kernel only."""
    lab = start_lab(tmp_path, kernels=("python3", "wallaroo_nb"))
    try:
        run_magic_notebook(page, lab)
    finally:
        shutdown_kernels(page)
        page.goto("about:blank")  # away before its server goes
        stop_lab(lab)


def run_magic_notebook(page, lab_server):
    nb = new_notebook(cells=[new_code_cell("%wallaroo status")],
                      metadata={"kernelspec": {"name": "wallaroo_nb",
                                               "display_name": "Python 3 (wallaroo_nb)",
                                               "language": "python"}})
    nbformat.write(nb, str(lab_server.root_dir / "magic.ipynb"))
    run_notebook_in_lab(page, "magic.ipynb", base_url=lab_server.url)
    expect(page.locator(".jp-OutputArea-output").first).to_have_text(
        "No running wallaroo_nb apps.", timeout=30_000)
    expect(page.locator(".jp-NotebookPanel-toolbar .jp-KernelName")).to_have_text(
        "Python 3 (wallaroo_nb)")
