"""The installed "Python 3 (wallaroo_nb)" kernel spec is found and loads the extension."""

from __future__ import annotations

import sys

from jupyter_client.kernelspec import KernelSpecManager
from nbkernel import code_notebook, text_output


def test_installed_spec_is_found_by_jupyter(kernel_prefix, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_prefix / "share" / "jupyter"))
    spec = KernelSpecManager().get_kernel_spec("wallaroo_nb")
    assert spec.display_name == "Python 3 (wallaroo_nb)"
    assert spec.language == "python"
    assert spec.argv[0] == sys.executable


def test_kernel_from_spec_has_extension_and_magic(run_notebook):
    nb = run_notebook(code_notebook(
        "ip = get_ipython()\n"
        "print(sorted(m for m in ip.extension_manager.loaded if 'wallaroo' in m))\n"
        "print('wallaroo' in ip.magics_manager.magics['line'])",
        "%wallaroo help",
        "%wallaroo status",
        kernel_name="wallaroo_nb",
    ))
    loaded, usage, status = (text_output(c) for c in nb.cells)
    assert loaded.split("\n")[:2] == ["['wallaroo_nb.notebook.extension']", "True"]
    assert "%wallaroo stop [NAME ...]" in usage
    # With the engine: a table (possibly empty); before it exists: a clear message.
    assert "No running wallaroo_nb apps." in status or "engine is not available" in status


def test_magic_sees_and_stops_a_real_app(run_notebook):
    nb = run_notebook(code_notebook(
        "import wallaroo_nb as w\n"
        "class Ticks:\n"
        "    def initial_value(self): return 0\n"
        "    def apply(self, prev): return prev + 1\n"
        "pipeline = (w.source('ticks', w.GenSourceConfig(Ticks(), rate=50))\n"
        "            .to_sink(w.CollectorSinkConfig()))\n"
        "app = w.run(w.build_application('ticker', pipeline), workers=1)",
        "%wallaroo status",
        "%wallaroo stop",
        "print(app.running, w.running_apps())",
        "%wallaroo status",
        kernel_name="wallaroo_nb",
    ), timeout=90)
    status, stopped, after, empty = (text_output(c) for c in nb.cells[1:])
    assert status.split("\n")[1].split()[:2] == ["ticker", "True"], status
    assert "stopped: ticker" in stopped
    assert after.strip() == "False []"
    assert "No running wallaroo_nb apps." in empty
