"""A widget box kept up to date by a background thread while its app runs.

The thread holds the app only by weak reference (a view never keeps an app
alive), ticks every ``interval`` seconds or when woken, survives a failing tick
(shown in the status line; the next may work), and exits when the app stops,
is garbage-collected, or the box is closed. Subclasses write ``_tick`` and
``_set_status`` (or keep a ``status`` HTML widget for the default line) and list
their widgets in ``_parts``.
"""

from __future__ import annotations

import html
import threading
import time
import weakref
from typing import Any

import ipywidgets as widgets


class LiveBox(widgets.VBox):
    """Base of the dashboard and the window controls."""

    _thread_name = "wallaroo_nb-live"
    _first_wait = 0.0  # seconds before the first tick (the view may not exist yet)

    def _start_live(self, app: Any, interval: float) -> None:
        """Call at the end of the subclass's __init__, once its widgets exist."""
        self._app_ref = weakref.ref(app)  # never keep the app alive
        self._interval = interval
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    # -- for subclasses -------------------------------------------------------------

    def _tick(self, app: Any, running: bool, tick: int) -> None:
        raise NotImplementedError

    def _set_status(self, note: str = "") -> None:
        """A small line in the ``status`` HTML widget: ``note`` and the time."""
        if not self._closed:
            text = " · ".join(t for t in (note, time.strftime("%H:%M:%S")) if t)
            self.status.value = f"<small>{html.escape(text)}</small>"

    def _parts(self) -> list:
        """The widgets to close with the box."""
        return []

    def _on_stopped(self, why: str) -> None:
        """The thread is about to exit because the app stopped or went away."""
        self._set_status(f"{why}; not updating")

    # -- public ---------------------------------------------------------------------

    @property
    def updating(self) -> bool:
        """True while the refresh thread runs."""
        return self._thread.is_alive()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait for the refresh thread to exit; True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop refreshing and close all the widgets."""
        self._closed = True
        thread = getattr(self, "_thread", None)  # None: __init__ failed (Widget.__del__)
        if thread is not None:
            self._wake.set()
            if threading.current_thread() is not thread:
                thread.join(1.0)  # brief: a tick in flight finishes on its own
            for w in self._parts():
                w.close()
        super().close()

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        tick, why = 0, "closed"
        if self._first_wait:
            self._wake.wait(self._first_wait)
            self._wake.clear()
        while not self._closed:
            app = self._app_ref()
            if app is None:
                why = "app gone"
                break
            try:
                running = bool(app.running)
                self._tick(app, running, tick)
                error = None
            except Exception as e:  # show it and keep trying: the next tick may work
                running, error = True, f"{type(e).__name__}: {e}"
            finally:
                del app
            if not running:
                why = "app stopped"
                break
            if error:
                self._set_status(f"update failed: {html.escape(error)}")
            tick += 1
            self._wake.wait(self._interval)
            self._wake.clear()
        if not self._closed:
            self._on_stopped(why)
