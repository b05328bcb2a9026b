"""Tracebacks of user code run on workers, pointed back at the driver's source.

Workers run user code unpickled from the driver, so their tracebacks say
``<dynamic-code>``; the driver knows where each function came from (a module,
or a notebook cell that IPython keeps in linecache) and puts that back.
"""

from __future__ import annotations

import linecache
import re
from typing import Any

from ..plan import Plan

_DYNAMIC_FRAME = re.compile(r'^  File "<dynamic-code>", line (\d+), in (\S+)$')


def code_files(plan: Plan) -> dict:
    """Function name -> file name, for the user code in a plan."""
    found: dict = {}

    def add(fn: Any) -> None:
        code = getattr(fn, "__code__", None)
        if code is not None:
            found.setdefault(code.co_name, code.co_filename)

    for st in plan.steps:
        add(st.fn)
        add(st.key_fn)
        cls = st.state_cls or getattr(st.spec, "agg", None)
        if cls is not None and not isinstance(cls, type):
            cls = type(cls)
        for attr in vars(cls).values() if isinstance(cls, type) else ():
            add(attr)
        for name in ("fn", "event_time"):
            add(getattr(st.sink, name, None))
    for sp in plan.sources:
        add(getattr(sp.config, "event_time", None))
    return found


def restore_sources(tb: str, files: dict) -> str:
    """``tb`` with each ``<dynamic-code>`` frame of a known function given back its
    file name and source line."""
    out = []
    for line in tb.splitlines():
        m = _DYNAMIC_FRAME.match(line)
        if m and m.group(2) in files:
            filename = files[m.group(2)]
            out.append(f'  File "{filename}", line {m.group(1)}, in {m.group(2)}')
            src = linecache.getline(filename, int(m.group(1))).strip()
            if src:
                out.append(f"    {src}")
            continue
        out.append(line)
    return "\n".join(out) + "\n"
