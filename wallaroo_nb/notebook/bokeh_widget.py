"""Bokeh plots as live ipywidgets: the echo-guarded BokehModel and BokehJS loaded inline.

Every live view (dashboard, dataflow graph, window timeline) shows its bokeh
layout through `EchoSafeBokehModel` and changes it from a driver thread; BokehJS
is published inline into the notebook once per kernel (no CDN offline).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from jupyter_bokeh import BokehModel

_ECHOED = frozenset({"ColumnsStreamed", "ColumnsPatched"})
FIRST_CHANGE_AFTER_S = 1.0  # a view's output is surely displayed by then (see below)

_bokehjs_loaded = False


class EchoSafeBokehModel(BokehModel):
    """BokehModel that ignores changes echoed back by the browser and notes when a
    browser view has drawn the document.

    Echoes: jupyter_bokeh 4.1's view re-sends every document event it applied from
    the kernel, and `BokehModel._sync_model` would apply streamed columns a second
    time (doubling the Python-side data). Only the kernel streams here, so any
    incoming ColumnsStreamed/ColumnsPatched is an echo; so is a ModelChanged of an
    attribute listed in `kernel_owned` ({model: attrs}), which a late echo would
    otherwise roll back to an old value.

    First changes: jupyter_bokeh sends each change as several comm messages, and a
    browser view that subscribes in the middle of one reads every later change out
    of step and never draws data; replacing the whole document instead (a new
    render bundle) while the view still draws the first one fails in BokehJS
    ("configuration is missing"). So views change nothing until their output has
    surely been displayed (`FIRST_CHANGE_AFTER_S`), then send changes as patches.

    Drawn: a browser view reports when it has drawn the document (BokehJS's
    document_ready event); `take_redraw()` is then True once, and the view sends
    all its data again, so a view drawn late (an output shown again) catches up.
    The kernel handles that report only between cells, not while one runs.
    """

    def __init__(
        self, model: Any, lock: Any = None, kernel_owned: dict[Any, Iterable[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        self._doc_lock = lock if lock is not None else threading.RLock()
        self._kernel_owned = {
            (m.id, attr) for m, attrs in (kernel_owned or {}).items() for attr in attrs
        }
        self._redraw = threading.Event()  # a browser view has drawn the document

    def close(self) -> None:
        """Close once; BokehModel.close raises KeyError when called again (e.g. by __del__)."""
        if getattr(self, "_wnb_closed", False):
            return
        self._wnb_closed = True
        super().close()

    def take_redraw(self) -> bool:
        """True once after each browser view has drawn: send the whole data again."""
        if not self._redraw.is_set():
            return False
        self._redraw.clear()
        return True

    def _sync_model(self, model: Any, content: dict, buffers: list) -> None:
        if content.get("event") == "jsevent":
            if self._is_echo(content):
                return
            if _is_document_ready(content):
                self._redraw.set()
        with self._doc_lock:  # the updater thread changes the same document
            super()._sync_model(model, content, buffers)

    def _is_echo(self, content: dict) -> bool:
        kind = content.get("kind")
        if kind in _ECHOED:
            return True
        if kind == "ModelChanged":
            ref = content.get("model")
            model_id = ref.get("id") if isinstance(ref, dict) else None
            return (model_id, content.get("attr")) in self._kernel_owned
        return False


def _is_document_ready(content: dict) -> bool:
    data = content.get("msg_data")
    return (content.get("kind") == "MessageSent" and isinstance(data, dict)
            and data.get("name") == "document_ready")


def load_bokehjs() -> None:
    """Publish BokehJS inline into the notebook, once per kernel; nothing outside one."""
    global _bokehjs_loaded
    if _bokehjs_loaded:
        return
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets brings IPython
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return  # not in a kernel: nothing to load into
    from bokeh.io.notebook import load_notebook
    from bokeh.resources import INLINE

    load_notebook(resources=INLINE, hide_banner=True)
    _bokehjs_loaded = True


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where widgets can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")
