"""Session windows: a key's window stays open until ``gap`` ns of event time pass
without a message of that key (Bytewax, Beam and Flink have them; Wallaroo does not).

Each message stands for the interval ``[t, t + gap)``; a key's overlapping
intervals merge into one session ``[first t, last t + gap)``, so a message that
bridges two sessions joins them (their accumulators are combined, older first).
A session fires once the step's watermark reaches its end. A message is *late*
when its own interval ends at or before the watermark and it touches no session
still open; the late-data policy then decides (see ``SessionRunner._on_late``).

The runner follows the contract of ``windowing.make_window_runner``'s runners
(on_message / on_watermark / flush_all / snapshot / restore / drop_keys / keys /
state_rows); outputs with ``with_keys`` carry event time ``end - 1``.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Iterable, Optional, Sequence

from .window_base import _MISSING, _NOTHING, INFINITY, _Runner

# a session: [first event time, last event time, accumulator, newest origin]
_START, _LAST, _ACC, _ORIGIN = 0, 1, 2, 3


class _SessionKey:
    """One key's open sessions, oldest first, and its place in the firing heap."""

    __slots__ = ("sessions", "due", "floor")

    def __init__(self, floor: float = -math.inf) -> None:
        self.sessions: list = []
        self.due = math.inf  # end of the session its heap entry is for (inf: none)
        self.floor = floor  # a watermark this key has seen (restored keys): late below it


class SessionRunner(_Runner):
    """Event-time session windows with the range windows' late-data policies."""

    kind = "session"

    def __init__(self, spec: Any, with_keys: bool = False, with_origin: bool = False) -> None:
        super().__init__(spec, with_keys, with_origin)
        self._gap = spec.gap_ns
        self._policy = spec.late_data_policy
        self._keys: dict = {}
        self._heap: list = []  # (end, seq, key); entries whose end is not the key's due are stale
        self._seq = 0

    def on_message(self, key: Any, value: Any, event_time_ns: int,
                   origin: Optional[int] = None) -> Sequence:
        """Add one message; returns outputs only for late messages under fire-per-message."""
        t, gap = event_time_ns, self._gap
        try:
            end = t + gap
        except TypeError:
            raise TypeError(
                f"window step {self.name!r}: session windows need each message's event time "
                f"as int ns, got {t!r}; give the source an event_time") from None
        st = self._keys.get(key)
        touching = [] if st is None else [
            i for i, s in enumerate(st.sessions) if t < s[_LAST] + gap and s[_START] < end]
        if touching:
            self._merge(key, st, touching, value, t, origin)
            return _NOTHING
        if end <= max(self.watermark, st.floor if st is not None else -math.inf):
            return self._on_late(key, st, value, t, origin)
        acc = self._fold(value, _MISSING)
        if st is None:
            st = self._keys[key] = _SessionKey()
        sessions = st.sessions
        i = 0
        while i < len(sessions) and sessions[i][_START] < t:
            i += 1
        sessions.insert(i, [t, t, acc, origin])
        self._schedule(key, st)
        return _NOTHING

    def _merge(self, key: Any, st: _SessionKey, touching: list, value: Any, t: int,
               origin: Optional[int]) -> None:
        """Fold the message into the sessions it touches, merged into one."""
        sessions = st.sessions
        first = sessions[touching[0]]
        acc = first[_ACC]
        for i in touching[1:]:
            acc = self._combine(acc, sessions[i][_ACC])
        acc = self._fold(value, acc)  # may raise: nothing is changed before this
        origins = [o for o in [origin, *(sessions[i][_ORIGIN] for i in touching)] if o is not None]
        merged = [min(first[_START], t), max(max(sessions[i][_LAST] for i in touching), t), acc,
                  max(origins) if origins else None]
        for i in reversed(touching):
            del sessions[i]
        sessions.insert(touching[0], merged)
        self._schedule(key, st)

    def _on_late(self, key: Any, st: Optional[_SessionKey], value: Any, t: int,
                 origin: Optional[int] = None) -> Sequence:
        """drop: discard. fire-per-message: emit it alone as the session [t, t + gap).
        place-in-oldest-window: add it to the key's oldest open session (whose bounds
        stay as they are); a key with no open session drops it."""
        self.late += 1
        if self._policy == "fire-per-message":
            out: list = []
            acc = self._fold(value, _MISSING)
            self._emit(out, key, acc, t, t + self._gap, t + self._gap - 1, origin)
            return out
        if self._policy == "drop" or st is None or not st.sessions:
            self.dropped += 1
            return _NOTHING
        oldest = st.sessions[0]
        oldest[_ACC] = self._fold(value, oldest[_ACC])
        if origin is not None and (oldest[_ORIGIN] is None or origin > oldest[_ORIGIN]):
            oldest[_ORIGIN] = origin
        return _NOTHING

    def _schedule(self, key: Any, st: _SessionKey) -> None:
        """Make sure the heap holds an entry no later than the key's earliest end."""
        end = st.sessions[0][_LAST] + self._gap if st.sessions else math.inf
        if end < st.due:
            self._seq += 1
            st.due = end
            heapq.heappush(self._heap, (end, self._seq, key))

    def on_watermark(self, wm_ns: float) -> Sequence:
        """Advance the watermark (smaller values are ignored); fire the sessions it closes."""
        if wm_ns > self.watermark:
            self.watermark = wm_ns
        heap, wm = self._heap, self.watermark
        if not heap or heap[0][0] > wm:
            return _NOTHING
        out: list = []
        while heap and heap[0][0] <= wm:
            end, _, key = heapq.heappop(heap)
            st = self._keys.get(key)
            if st is None or st.due != end:
                continue  # stale: the key's sessions changed since
            st.due = math.inf
            self._fire_due(key, st, wm, out)
        return out

    def _fire_due(self, key: Any, st: _SessionKey, wm: float, out: list) -> None:
        sessions, gap = st.sessions, self._gap
        while sessions and sessions[0][_LAST] + gap <= wm:
            start, last, acc, origin = sessions.pop(0)
            self._emit(out, key, acc, start, last + gap, last + gap - 1, origin)
        if sessions:
            self._schedule(key, st)
        else:
            del self._keys[key]

    def flush_all(self) -> Sequence:
        """End of stream: the watermark goes to infinity and every session fires."""
        return self.on_watermark(INFINITY)

    def keys(self) -> list:
        """Keys with open sessions."""
        return list(self._keys)

    def snapshot(self, keys: Optional[Iterable] = None) -> dict:
        """key -> {"sessions": [(start, last, acc)], "floor": watermark} (accumulators
        shared, not copied: pickle the result before the next call)."""
        out = {}
        for key in self._keys if keys is None else keys:
            st = self._keys.get(key)
            if st is not None:
                out[key] = {"sessions": [tuple(s[:3]) for s in st.sessions],
                            "floor": max(self.watermark, st.floor)}
        return out

    def restore(self, states: dict) -> None:
        """Install keys' sessions from ``snapshot`` (replacing theirs); the saved
        watermark stays their floor, so a lagging watermark reopens nothing."""
        for key, s in states.items():
            self._keys.pop(key, None)
            st = _SessionKey(s["floor"])
            st.sessions = [[*x[:3], None] for x in s["sessions"]]
            if st.sessions:
                self._keys[key] = st
                self._schedule(key, st)

    def drop_keys(self, keys: Iterable) -> None:
        """Forget keys (they moved to another worker)."""
        for key in keys:
            self._keys.pop(key, None)

    def state_rows(self) -> list:
        """One row per open session: its bounds so far and its accumulator."""
        return [{"key": key, "window_start": s[_START], "window_end": s[_LAST] + self._gap,
                 "accumulator": s[_ACC]}
                for key, st in self._keys.items() for s in st.sessions]
