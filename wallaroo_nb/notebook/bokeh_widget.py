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

_bokehjs_loaded = False


class EchoSafeBokehModel(BokehModel):
    """BokehModel that ignores changes echoed back by the browser.

    jupyter_bokeh 4.1's view re-sends every document event it applied from the
    kernel, and `BokehModel._sync_model` would apply streamed columns a second
    time (doubling the Python-side data). Only the kernel streams here, so any
    incoming ColumnsStreamed/ColumnsPatched is an echo; so is a ModelChanged of
    an attribute listed in `kernel_owned` ({model: attrs}), which a late echo
    would otherwise roll back to an old value.
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

    def close(self) -> None:
        """Close once; BokehModel.close raises KeyError when called again (e.g. by __del__)."""
        if getattr(self, "_wnb_closed", False):
            return
        self._wnb_closed = True
        super().close()

    def full_sync(self) -> None:
        """Send the whole document as one widget state (not a patch).

        jupyter_bokeh sends each change as several comm messages; a browser view
        that subscribes in the middle of one reads every later change out of step
        and never draws data. Views therefore change nothing until their output
        has surely been displayed, and send their first data this way.
        """
        with self._doc_lock:
            self.update_from_model(self._model)

    def _sync_model(self, model: Any, content: dict, buffers: list) -> None:
        if content.get("event") == "jsevent" and self._is_echo(content):
            return
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
