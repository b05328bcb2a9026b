"""``app.state(step)`` as a DataFrame: live from the workers, or as last committed.

Live state is what the workers hold now; under resilience a recovery rolls it
back to the last committed checkpoint, so it can go backwards. The committed
state is read from that checkpoint's snapshot files by the driver itself: it
never goes backwards, and it lags the live state by about a checkpoint interval.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Optional

from ..engine.epochs import read_checked
from ..engine.windowing import make_window_runner
from ..keys import slot_of_key
from ..plan import Plan, Step
from ..protocol import StateRows


def state_frame(plan: Plan, parts: list[StateRows], epoch: Optional[int] = None) -> Any:
    """One row per key (a state step) or per key and open window (a window step),
    sorted by key; ``df.attrs["committed_epoch"]`` says which checkpoint it shows
    (None: live state)."""
    import pandas as pd

    rows = []
    for part in parts:
        if part.kind == "window":
            rows.extend(dict(r, worker=part.worker) for r in part.rows)
            continue
        for key, fields in part.rows:
            row = {"key": key}
            row.update(fields)
            row["worker"] = part.worker
            row["slot"] = slot_of_key(key, plan.n_slots)
            rows.append(row)
    df = pd.DataFrame(rows)
    if len(df) and "key" in df:
        try:
            df = df.sort_values("key", kind="stable").reset_index(drop=True)
        except TypeError:
            pass  # keys of mixed types keep worker order
    df.attrs["committed_epoch"] = epoch
    return df


def committed_parts(plan: Plan, step: Step, manifest: dict, ckpt_dir: str) -> list[StateRows]:
    """``step``'s state in the committed epoch of ``manifest``, per snapshot file."""
    parts = []
    for name, sha in sorted(manifest["files"].items()):
        data = pickle.loads(read_checked(os.path.join(ckpt_dir, name), sha))
        slots = data["state"].get(step.name, {})
        entries = {k: v for by_key in slots.values() for k, v in by_key.items()}
        if step.is_window:
            runner = make_window_runner(step.spec, with_keys=True)
            runner.restore(entries)
            rows: list = runner.state_rows()
        else:
            rows = [(k, dict(fields)) for k, fields in entries.items()]  # attributes, as live
        parts.append(StateRows(str(step.kind), rows, data["worker"]))
    return parts

