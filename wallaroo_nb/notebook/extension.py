"""IPython extension: the `%wallaroo` line magic to see, scale and stop running apps.

Load it with `%load_ext wallaroo_nb.notebook.extension`, or use the
"Python 3 (wallaroo_nb)" kernel, which loads it at start. It talks to the
engine only through `wallaroo_nb.running_apps()`, imported when a magic runs,
so loading the extension stays cheap.
"""

from __future__ import annotations

import html
import shlex
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError

USAGE = """\
%wallaroo [status]          list running wallaroo_nb apps (a table)
%wallaroo stop [NAME ...]   stop all running apps, or only those named
%wallaroo show NAME         display one app (its live view)
%wallaroo scale [NAME] N    grow or shrink an app to N workers (NAME may be left out
                            when exactly one app runs)
%wallaroo help              this text"""

NO_ENGINE = (
    "wallaroo: this wallaroo_nb has no running_apps() (the engine is not available: {why}); "
    "there are no apps to {what}."
)


class EngineUnavailable(RuntimeError):
    """wallaroo_nb.running_apps() cannot be reached in this kernel."""


@dataclass
class StatusTable:
    """Rows of app status, shown as an HTML table in Jupyter and as text elsewhere."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def columns(self) -> list[str]:
        """Every key seen in any row, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def _repr_html_(self) -> str:
        if not self.rows:
            return "<p>No running wallaroo_nb apps.</p>"
        cols = self.columns()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
            for r in self.rows
        )
        return (
            '<table class="wallaroo-status"><thead><tr>'
            f"{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def __repr__(self) -> str:
        if not self.rows:
            return "No running wallaroo_nb apps."
        cols = self.columns()
        table = [cols] + [[_cell(r.get(c)) for c in cols] for r in self.rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
        return "\n".join(
            "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in table
        )


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def running_apps() -> list[Any]:
    """The engine's running apps; EngineUnavailable when this wallaroo_nb has no engine."""
    try:
        import wallaroo_nb

        # A lazy attribute: the engine's own modules load here, on first use.
        fn = getattr(wallaroo_nb, "running_apps", None)
    except ImportError as exc:
        raise EngineUnavailable(f"importing the engine failed: {exc}") from exc
    if fn is None:
        raise EngineUnavailable("wallaroo_nb.running_apps is missing")
    return list(fn())


def app_row(app: Any) -> dict[str, Any]:
    """One status row: name and running first, then whatever app.status() reports."""
    row: dict[str, Any] = {"name": app.name, "running": app.running}
    try:
        status = app.status()
    except Exception as exc:  # one broken app must not hide the others
        row["error"] = f"status() failed: {exc!r}"
        return row
    row.update((k, v) for k, v in status.items() if k not in row)
    return row


def status() -> StatusTable:
    """A StatusTable of the running apps."""
    return StatusTable([app_row(app) for app in running_apps()])


def stop(names: list[str]) -> list[str]:
    """Stop the named apps (all if `names` is empty); return the names stopped.

    Tries every app even if one fails to stop, then raises naming the failures.
    """
    apps = running_apps()
    if names:
        known = {app.name for app in apps}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"no running app named {', '.join(unknown)}; running: {sorted(known)}")
        apps = [app for app in apps if app.name in names]
    stopped, failed = [], []
    for app in apps:
        try:
            app.stop()
            stopped.append(app.name)
        except Exception as exc:
            failed.append(f"{app.name}: {exc!r}")
    if failed:
        raise RuntimeError("could not stop " + "; ".join(failed))
    return stopped


def find_app(name: str) -> Any:
    """The running app called `name`."""
    for app in running_apps():
        if app.name == name:
            return app
    known = sorted(app.name for app in running_apps())
    raise UsageError(f"no running app named {name!r}; running: {known}")


def scale(args: list[str]) -> str:
    """`%wallaroo scale [NAME] N`: scale the named app (or the only running one) to N
    workers with app.scale(N); return a line saying what it did."""
    if len(args) not in (1, 2):
        raise UsageError(f"%wallaroo scale takes [NAME] N, got {' '.join(args) or 'nothing'}"
                         "\nfor example: %wallaroo scale wordcount 3")
    *name, count = args
    try:
        n = int(count)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"%wallaroo scale: N must be a whole number of workers, 1 or more; "
                         f"got {count!r}")
    app = find_app(name[0]) if name else only_app()
    did = app.scale(n)
    workers = f"{did['workers']} worker" + ("s" if did["workers"] != 1 else "")
    return f"scaled {app.name} to {workers}: {did['slots_moved']} slots moved in {did['seconds']} s"


def only_app() -> Any:
    """The one running app, for commands that may leave its name out."""
    apps = running_apps()
    if len(apps) != 1:
        names = sorted(app.name for app in apps)
        raise UsageError(f"{len(apps)} apps are running ({', '.join(names) or 'none'}): "
                         "name the one to scale, e.g. %wallaroo scale NAME N")
    return apps[0]


def wallaroo_magic(line: str) -> Any:
    """%wallaroo [status | stop [NAME ...] | show NAME | scale [NAME] N | help]"""
    words = shlex.split(line)
    command, rest = (words[0], words[1:]) if words else ("status", [])
    try:
        if command == "status" and not rest:
            return status()
        if command == "stop":
            stopped = stop(rest)
            print(f"stopped: {', '.join(stopped)}" if stopped else "no running apps to stop")
            return None
        if command == "show" and len(rest) == 1:
            return find_app(rest[0])
        if command == "scale":
            print(scale(rest))
            return None
    except EngineUnavailable as exc:
        what = command if command in ("stop", "scale") else "show"
        print(NO_ENGINE.format(why=exc, what=what))
        return None
    if command == "help":
        print(USAGE)
        return None
    raise UsageError(f"%wallaroo {line.strip()}: not understood\n{USAGE}")


def load_ipython_extension(ipython: Any) -> None:
    """Register `%wallaroo` (IPython calls this on %load_ext and at kernel start)."""
    ipython.register_magic_function(wallaroo_magic, magic_kind="line", magic_name="wallaroo")


def unload_ipython_extension(ipython: Any) -> None:
    """Remove `%wallaroo` again."""
    ipython.magics_manager.magics["line"].pop("wallaroo", None)
