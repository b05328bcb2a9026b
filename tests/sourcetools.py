"""Reading a live Source in a test the way the worker loop does: non-blocking reads
until n messages came or the deadline passed (then the caller's assertion says what
is missing)."""

from __future__ import annotations

import time


def read_n(src, n: int, timeout: float = 10.0, max_n: int = 100) -> list:
    """Up to n messages from ``src.read(max_n)``; between empty reads, a pause of 1-10 ms
    (a source's wait_hint() may be long: the worker would poll its fds meanwhile)."""
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        got = src.read(max_n)
        out += got
        if not got:
            time.sleep(min(max(src.wait_hint() or 0.0, 0.001), 0.01))
    return out
