"""A deliberately plain reference model of wallaroo_nb's windows, for tests.

No panes, no heap: every window is a list of the messages in it, and lateness is
checked by asking which windows the watermark has closed. Outputs are windows
``(start, end, values)`` per key, in firing order; values are in arrival order.

Event lists: ``("m", key, value, t)`` a message, ``("w", wm)`` a watermark,
``("t", key_or_None)`` a trigger (event windows). ``rejects(value)`` marks the
messages whose ``update`` raises: they count as late if late, and otherwise
never happened.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable


def _never(value: Any) -> bool:
    return False


def range_model(events: list, range_: int, slide: int, delay: int = 0, policy: str = "drop",
                rejects: Callable[[Any], bool] = _never,
                align: str = "epoch") -> tuple[dict, int, int]:
    """Return (key -> [(start, end, values)], late count, dropped count).

    ``align="key"`` (Wallaroo's alignment): a key with no open window anchors its
    windows at max(watermark, the message's event time); window k of the key is then
    [k*slide + off, ...) with off = that anchor modulo the slide."""
    policy = policy.replace("_", "-")  # the underscore spellings are aliases
    wm = -math.inf
    open_windows: dict = {}  # (key, k) -> values
    offsets: dict = {}  # key -> its offset while it has open windows
    fired: dict = defaultdict(list)
    late = dropped = 0

    def closed(k: int, off: int) -> bool:
        return k * slide + off + range_ + delay <= wm

    def fire(key: Any, k: int) -> None:
        off = offsets[key]
        fired[key].append((k * slide + off, k * slide + off + range_, open_windows.pop((key, k))))
        if not any(kk[0] == key for kk in open_windows):
            del offsets[key]

    def offset(key: Any, t: int) -> int:
        if key in offsets:
            return offsets[key]
        if align != "key":
            return 0
        return (max(wm, t) if math.isfinite(wm) else t) % slide

    def add(key: Any, k: int, off: int, value: Any) -> None:
        offsets[key] = off
        open_windows.setdefault((key, k), []).append(value)

    for ev in events:
        if ev[0] == "w":
            wm = max(wm, ev[1])
            due = [kk for kk in open_windows if closed(kk[1], offsets[kk[0]])]
            for key, k in sorted(due, key=lambda kk: kk[1] * slide + offsets[kk[0]]):
                fire(key, k)
            continue
        _, key, value, t = ev
        off = offset(key, t)
        mine = [k for k in range((t - off) // slide - range_ // slide - 1, (t - off) // slide + 1)
                if k * slide + off <= t < k * slide + off + range_]
        live = [k for k in mine if not closed(k, off)]
        if live:
            if not rejects(value):
                for k in live:
                    add(key, k, off, value)
            continue
        late += 1
        if policy == "drop" or (policy == "place-in-oldest-window" and wm == math.inf):
            dropped += 1  # nothing is open after the end of the stream
        elif rejects(value):
            pass
        elif policy == "fire-per-message":
            k = max(mine)
            fired[key].append((k * slide + off, k * slide + off + range_, [value]))
        else:  # place-in-oldest-window: the lowest window the watermark has not closed
            k = max(mine) + 1
            while closed(k, off):
                k += 1
            add(key, k, off, value)
    for key, k in sorted(open_windows, key=lambda kk: kk[1] * slide + offsets[kk[0]]):
        fire(key, k)
    return dict(fired), late, dropped


def count_model(events: list, count: int, rejects: Callable[[Any], bool] = _never,
                timeout: int | None = None) -> dict:
    """Return key -> [(first ordinal, end ordinal, values)], partial windows fired at the
    end and, with a ``timeout``, whenever the watermark has gone ``timeout`` past the
    first watermark or the watermark that last fired them."""
    current: dict = defaultdict(list)
    done: dict = defaultdict(int)  # messages of the key in fired windows
    fired: dict = defaultdict(list)
    wm, last_fired = -math.inf, None

    def fire(key: Any) -> None:
        values = current.pop(key)
        fired[key].append((done[key], done[key] + len(values), values))
        done[key] += len(values)

    for ev in events:
        if ev[0] == "w" and ev[1] > wm and ev[1] != math.inf:
            wm = ev[1]
            if timeout is not None and last_fired is None:
                last_fired = wm
            elif timeout is not None and wm - last_fired >= timeout:
                last_fired = wm
                for key in list(current):
                    fire(key)
            continue
        if ev[0] != "m" or rejects(ev[2]):
            continue
        current[ev[1]].append(ev[2])
        if len(current[ev[1]]) == count:
            fire(ev[1])
    for key in list(current):
        fire(key)
    return dict(fired)


def event_model(events: list, pred: Callable[[Any], bool] | None = None, include: bool = True,
                rejects: Callable[[Any], bool] = _never, flush: bool = True) -> dict:
    """Return key -> [(first ordinal, end ordinal, values)] for event-driven windows."""
    current: dict = {}
    done: dict = defaultdict(int)
    fired: dict = defaultdict(list)

    def fire(key: Any) -> None:
        values = current.pop(key, [])
        if values:
            fired[key].append((done[key], done[key] + len(values), values))
            done[key] += len(values)

    for ev in events:
        if ev[0] == "t":
            for key in list(current) if ev[1] is None else [ev[1]]:
                fire(key)
            continue
        if ev[0] != "m" or rejects(ev[2]):
            continue
        key, value = ev[1], ev[2]
        trigger = pred is not None and pred(value)
        if trigger and not include:
            fire(key)
        current.setdefault(key, []).append(value)
        if trigger and include:
            fire(key)
    if flush:
        for key in list(current):
            fire(key)
    return dict(fired)


def session_model(events: list, gap: int, policy: str = "drop",
                  rejects: Callable[[Any], bool] = _never) -> tuple[dict, int, int]:
    """Session windows, plainly: each message is the interval [t, t + gap); a key's open
    sessions are lists [start, last, values]. A message joins (and merges) every open
    session whose interval it overlaps; otherwise it is late when t + gap <= watermark.
    Return (key -> [(start, end, values)] in firing order, late count, dropped count)."""
    policy = policy.replace("_", "-")
    wm = -math.inf
    sessions: dict = defaultdict(list)  # key -> open sessions
    fired: dict = defaultdict(list)
    late = dropped = 0

    def fire_due() -> None:
        due = sorted(((s[1] + gap, key, s) for key, ss in sessions.items() for s in ss
                      if s[1] + gap <= wm), key=lambda d: d[0])
        for _end, key, s in due:
            sessions[key].remove(s)
            fired[key].append((s[0], s[1] + gap, s[2]))

    for ev in events:
        if ev[0] == "w":
            wm = max(wm, ev[1])
            fire_due()
            continue
        _, key, value, t = ev
        touching = [s for s in sessions[key] if t < s[1] + gap and s[0] < t + gap]
        if touching:
            if not rejects(value):
                for s in touching:
                    sessions[key].remove(s)
                merged = [min([t] + [s[0] for s in touching]), max([t] + [s[1] for s in touching]),
                          [v for s in touching for v in s[2]] + [value]]
                sessions[key].append(merged)
            continue
        if t + gap > wm:
            if not rejects(value):
                sessions[key].append([t, t, [value]])
            continue
        late += 1
        if policy == "drop" or (policy == "place-in-oldest-window" and not sessions[key]):
            dropped += 1
        elif rejects(value):
            pass
        elif policy == "fire-per-message":
            fired[key].append((t, t + gap, [value]))
        else:  # place-in-oldest-window: the key's oldest open session, bounds unchanged
            min(sessions[key], key=lambda s: s[0])[2].append(value)
    wm = math.inf
    fire_due()
    return dict(fired), late, dropped
