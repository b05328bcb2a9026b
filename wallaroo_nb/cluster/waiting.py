"""Is an app drained? Termination detection over the workers' Status records.

Two equal fingerprints from consecutive rounds of status replies mean nothing
is in flight and nothing will be (Mattern's four-counter method): every frame
sent was received, every results message reached the driver, every source is
exhausted and no worker holds unsent output.
"""

from __future__ import annotations

from typing import Optional

from ..plan import Plan
from ..protocol import Status


def quiescent(snap: list[Status], received: list) -> Optional[tuple]:
    """A fingerprint of the counters if nothing is in flight, else None."""
    if not snap:
        return None
    for st in snap:
        if st.halted or not st.idle:
            return None
        if not all(src.done for src in st.sources.values()):
            return None
    for a, sa in enumerate(snap):
        if sa.results_sent != received[a]:
            return None
        for b, sb in enumerate(snap):
            if sa.sent[b] != sb.recv[a]:
                return None
    return tuple((tuple(st.sent), tuple(st.recv), st.results_sent) for st in snap)


def in_flight(plan: Plan, snap: list[Status]) -> str:
    """What is still going on, in words (for a wait() that timed out)."""
    parts = []
    for st in snap:
        for sid, src in st.sources.items():
            if not src.done:
                parts.append(f"source {plan.sources[sid].name!r} on worker {st.worker} has "
                             f"read {src.count} messages and is not exhausted")
    for a, sa in enumerate(snap):
        for b, sb in enumerate(snap):
            gap = sa.sent[b] - sb.recv[a]
            if gap:
                parts.append(f"{gap} frames in flight from worker {a} to worker {b}")
    for st in snap:
        if not st.idle:
            parts.append(f"worker {st.worker} has unsent output")
    return "; ".join(parts) or "nothing in flight (the last check raced with new data)"
