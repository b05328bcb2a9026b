"""Window controls: close event windows from the notebook and watch what they emit.

`window_controls(app, step)` returns an ipywidgets VBox: a "close window" button,
a key chooser ("all keys" plus the keys holding window state, from
`app.state(step)`), a status line and a live table. The table shows the newest
outputs of the app's collector sinks (`app.results()`), newest first: the App
has no per-step tap, so in an app with several pipelines it shows every
collector's outputs, not only this step's.

A click runs `app.trigger(step, key)` on its own thread (it waits for every
worker's answer). A daemon thread refreshes the table and the keys about twice a
second; it holds the app by weak reference and stops when the app stops, is
garbage collected, or the box is closed.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any, Optional

import ipywidgets as widgets
import pandas as pd

from .live import LiveBox

INTERVAL = 0.5  # seconds between table refreshes
KEYS_EVERY = 2  # ticks between key refreshes (each asks every worker)
ROWS = 20  # newest outputs shown
ALL_KEYS = "all keys"


class WindowControls(LiveBox):
    """The controls; `close()` stops the refresh thread. Build with `window_controls`."""

    _thread_name = "wallaroo_nb-window-controls"

    def __init__(self, app: Any, step: str, interval: float = INTERVAL, rows: int = ROWS) -> None:
        kind = window_kind(app, step)
        self.step = step
        self._rows = rows
        self._closed = False
        self._keys_now = threading.Event()  # refresh the keys on the next tick
        self._trigger_lock = threading.Lock()
        self._by_label: dict = {ALL_KEYS: None}
        self._shown = -1  # number of results the table was drawn from
        self._tail: list = []  # the newest of them, at most ``rows``
        self.frame = pd.DataFrame()  # what the table shows
        self.last_trigger: tuple | None = None  # (key, windows closed) of the last click
        self._action = ""  # what the last click did, for the status line
        self._n_open: int | None = None  # keys holding window state at the last look

        self.button = widgets.Button(description="close window", button_style="warning",
                                     tooltip="emit the open window now and start a new one")
        self.key = widgets.Dropdown(description="key", options=[ALL_KEYS], value=ALL_KEYS)
        self.status = widgets.HTML("starting…")
        self.table = widgets.HTML()
        if kind != "event":
            self.button.disabled = True
            self.button.tooltip = (f"{kind} windows close by themselves; triggers close "
                                   "event_windows() only")
        self.button.on_click(self._on_click)
        super().__init__([widgets.HBox([self.button, self.key]), self.status, self.table])
        self._start_live(app, interval)

    def _parts(self) -> list:
        return [self.button, self.key, self.status, self.table]

    # -- the button ----------------------------------------------------------------------

    def _on_click(self, _button: Any = None) -> None:
        key = self._by_label.get(self.key.value)
        threading.Thread(target=self._trigger, args=(key,), name="wallaroo_nb-trigger",
                         daemon=True).start()

    def _trigger(self, key: Any) -> None:
        """Runs off the kernel's main thread: trigger() waits for every worker."""
        app = self._app_ref()
        if app is None:
            return
        with self._trigger_lock:
            self.button.disabled = True
            try:
                n = app.trigger(self.step, key)
                self.last_trigger = (key, n)
                text = f"closed {n} window{'s' if n != 1 else ''} ({_label(key)})"
            except Exception as e:  # show it; the next click may work
                text = f"close failed: {type(e).__name__}: {e}"
            finally:
                self.button.disabled = not app.running
                del app
        self._action = text
        self._keys_now.set()
        self._set_status()
        self._wake.set()

    # -- the refresh thread ----------------------------------------------------------------

    def _on_stopped(self, why: str) -> None:
        self.button.disabled = True
        self._n_open = None
        self._set_status(f"{why}; not updating")

    def _tick(self, app: Any, running: bool, tick: int) -> None:
        new = app.results(start=max(self._shown, 0))
        if new or self._shown < 0:
            self._show(new)
        if running and (tick % KEYS_EVERY == 0 or self._keys_now.is_set()):
            self._keys_now.clear()
            keys = open_keys(app.state(self.step))
            self._n_open = len(keys)
            self._set_keys(keys)
            self._set_status()

    def _show(self, new: list) -> None:
        self._shown = n = max(self._shown, 0) + len(new)
        self._tail = (self._tail + new[-self._rows:])[-self._rows:]
        self.frame = newest_first(self._tail, self._rows, total=n)
        caption = (f"newest {len(self.frame)} of {n} collector output{'s' if n != 1 else ''}, "
                   "newest first")
        body = self.frame.to_html(index=False, border=0) if n else "<i>no output yet</i>"
        self.table.value = f"<div><small>{caption}</small>{body}</div>"

    def _set_keys(self, keys: list) -> None:
        by_label = {ALL_KEYS: None}
        by_label.update((_label(k), k) for k in keys)
        current = self.key.value
        if current not in by_label:  # the chosen key's window closed: keep the choice
            by_label[current] = self._by_label.get(current)
        self._by_label = by_label
        options = list(by_label)
        if options != list(self.key.options):
            self.key.options = options
            self.key.value = current

    def _set_status(self, note: str = "") -> None:
        """Keys with open windows, the last click's outcome, ``note``, the time."""
        if self._closed:
            return
        parts = [] if self._n_open is None else [f"{self._n_open} key(s) with an open window"]
        parts += [t for t in (self._action, note) if t]
        parts.append(time.strftime("%H:%M:%S"))
        self.status.value = f"<small>{html.escape(' · '.join(parts))}</small>"


def window_kind(app: Any, step: str) -> str:
    """The window kind of ``step`` ("event", "range", "count"); raise if not a window."""
    s = app.plan.step_named(step)  # KeyError naming the steps
    if s.kind != "window":
        raise ValueError(f"step {step!r} is a {s.kind} step; window_controls() shows window "
                         "steps (range_windows, count_windows, event_windows)")
    return s.spec.kind


def open_keys(state: pd.DataFrame) -> list:
    """Keys holding window state, in a stable order (keys of mixed types sort by repr)."""
    if not len(state) or "key" not in state:
        return []
    keys = list(dict.fromkeys(state["key"]))
    return sorted(keys, key=lambda k: (type(k).__name__, repr(k)))


def newest_first(results: list, rows: int = ROWS, total: Optional[int] = None) -> pd.DataFrame:
    """The last ``rows`` results as a DataFrame, newest first, with their position "#"
    (``results`` may be the tail of ``total`` results)."""
    n = len(results) if total is None else total
    tail = results[max(0, len(results) - rows):][::-1]
    index = list(range(n - 1, n - 1 - len(tail), -1))
    if tail and all(isinstance(r, dict) for r in tail):
        df = pd.DataFrame(tail)
    elif tail and all(isinstance(r, tuple) for r in tail) and len({len(r) for r in tail}) == 1:
        fields = getattr(type(tail[0]), "_fields", None)
        df = pd.DataFrame([tuple(r) for r in tail], columns=fields)
    else:
        df = pd.DataFrame({"output": tail})
    df.insert(0, "#", index)
    return df


def _label(key: Any) -> str:
    return ALL_KEYS if key is None else repr(key)


def window_controls(app: Any, step: str, interval: float = INTERVAL,
                    rows: int = ROWS) -> WindowControls:
    """Controls for the window step ``step`` of ``app``; display it (last expression of a
    cell). The button closes event windows (the chosen key's, or all)."""
    return WindowControls(app, step, interval=interval, rows=rows)
