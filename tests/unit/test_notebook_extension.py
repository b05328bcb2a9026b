"""The %wallaroo magic and the kernel spec, in-process.

STAND-IN: the engine's app registry is replaced by `FakeApp`s through
monkeypatch on `wallaroo_nb.running_apps`, so these tests pin the magic's own
behaviour without starting workers (tests/notebook covers the real kernel).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import wallaroo_nb
from wallaroo_nb.notebook import extension, kernelspec

REPO = Path(__file__).resolve().parents[2]


class FakeApp:
    """Stand-in for the engine's App handle: the attributes the extension uses."""

    def __init__(self, name: str, status: dict | None = None, stop_error: Exception | None = None):
        self.name = name
        self.running = True
        self._status = status if status is not None else {"workers": 2}
        self._stop_error = stop_error

    def stop(self) -> None:
        if self._stop_error is not None:
            raise self._stop_error
        self.running = False

    def status(self) -> dict:
        if isinstance(self._status, Exception):
            raise self._status
        return dict(self._status)

    def _repr_html_(self) -> str:
        return f"<b>{self.name}</b>"


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    extension.load_ipython_extension(shell)
    yield shell
    extension.unload_ipython_extension(shell)


@pytest.fixture
def apps(monkeypatch):
    """Install a stand-in registry of two running apps; return the list."""
    registry = [FakeApp("wordcount", {"workers": 2, "events": 10}), FakeApp("alerts")]
    monkeypatch.setattr(wallaroo_nb, "running_apps", lambda: [a for a in registry if a.running],
                        raising=False)
    return registry


def test_status_lists_running_apps_as_table(ip, apps):
    table = ip.run_line_magic("wallaroo", "status")
    assert [r["name"] for r in table.rows] == ["wordcount", "alerts"]
    assert table.columns() == ["name", "running", "workers", "events"]
    html = table._repr_html_()
    assert "<th>events</th>" in html and "<td>wordcount</td>" in html
    assert repr(table).splitlines()[0].split() == ["name", "running", "workers", "events"]


def test_no_argument_means_status(ip, apps):
    assert len(ip.run_line_magic("wallaroo", "").rows) == 2


def test_status_escapes_html_and_survives_a_broken_app(ip, apps):
    apps.append(FakeApp("<x>", RuntimeError("boom")))
    html = ip.run_line_magic("wallaroo", "status")._repr_html_()
    assert "&lt;x&gt;" in html and "<x>" not in html
    assert "status() failed: RuntimeError(&#x27;boom&#x27;)" in html


def test_stop_stops_all(ip, apps, capsys):
    ip.run_line_magic("wallaroo", "stop")
    assert not any(a.running for a in apps)
    assert "stopped: wordcount, alerts" in capsys.readouterr().out
    assert ip.run_line_magic("wallaroo", "status").rows == []
    ip.run_line_magic("wallaroo", "stop")
    assert "no running apps to stop" in capsys.readouterr().out


def test_stop_by_name(ip, apps):
    ip.run_line_magic("wallaroo", "stop alerts")
    assert [a.running for a in apps] == [True, False]
    with pytest.raises(UsageError, match="no running app named nope"):
        ip.run_line_magic("wallaroo", "stop nope")


def test_stop_tries_every_app_then_reports_failures(ip, apps):
    apps.insert(0, FakeApp("stuck", stop_error=TimeoutError("workers did not answer")))
    with pytest.raises(RuntimeError, match="could not stop stuck: TimeoutError"):
        ip.run_line_magic("wallaroo", "stop")
    assert [a.running for a in apps] == [True, False, False]


def test_show_returns_the_app(ip, apps):
    assert ip.run_line_magic("wallaroo", "show alerts") is apps[1]
    with pytest.raises(UsageError):
        ip.run_line_magic("wallaroo", "show nope")


def test_unknown_subcommand_is_a_usage_error(ip, apps):
    with pytest.raises(UsageError, match="not understood"):
        ip.run_line_magic("wallaroo", "explode")


@pytest.mark.parametrize("error, message", [
    (AttributeError, "running_apps is missing"),
    (ImportError, "importing the engine failed: no zmq"),
])
def test_without_engine_it_says_so(ip, monkeypatch, capsys, error, message):
    def no_engine(name):
        raise error("no zmq")

    # STAND-IN: wallaroo_nb loads its engine lazily through the module's __getattr__.
    if "running_apps" in vars(wallaroo_nb):
        monkeypatch.delattr(wallaroo_nb, "running_apps")
    monkeypatch.setattr(wallaroo_nb, "__getattr__", no_engine, raising=False)
    assert ip.run_line_magic("wallaroo", "status") is None
    assert message in capsys.readouterr().out


def test_unload_removes_magic(ip):
    extension.unload_ipython_extension(ip)
    assert "wallaroo" not in ip.magics_manager.magics["line"]
    extension.load_ipython_extension(ip)


def test_checked_in_kernel_json_matches_code():
    on_disk = json.loads((REPO / "kernels" / "wallaroo_nb" / "kernel.json").read_text())
    assert on_disk == kernelspec.kernel_spec("python")


def test_install_kernel_cli_options(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    kernelspec.add_arguments(parser)
    assert kernelspec.main(parser.parse_args(["--prefix", str(tmp_path)])) == 0
    spec = tmp_path / "share" / "jupyter" / "kernels" / "wallaroo_nb" / "kernel.json"
    assert json.loads(spec.read_text())["display_name"] == "Python 3 (wallaroo_nb)"
    assert str(spec.parent) in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--user", "--sys-prefix"])
    with pytest.raises(ValueError):
        kernelspec.install_kernel(user=True, prefix=str(tmp_path))
