"""Window state machines: one runner per (window step, worker), driven by the engine.

``make_window_runner(spec)`` takes a ``wallaroo_nb.windows.WindowSpec`` (read by
attribute only: this module imports nothing but the standard library) and
returns a runner. The engine serializes calls; a key's messages arrive in order.

    on_message(key, value, event_time_ns) -> outputs   every message of the step
    on_watermark(wm_ns) -> outputs     the step's watermark (min over its inputs)
    on_trigger(key | None) -> outputs  event windows only; None = every key
    flush_all() -> outputs             the stream is over for good: fire everything
    snapshot(keys=None) / restore(states) / drop_keys(keys) / keys()
    state_rows() -> list[dict]         for app.state(step)
    late, dropped                      counters; take_errors() -> [(key, exc)]

Watermark contract: call ``on_watermark`` whenever the step's watermark (int ns,
the minimum over its inputs) advances; smaller values are ignored, ``INFINITY``
fires everything. Keys without open windows hold no range state, so a runner's
watermark must not go back: checkpoint ``runner.watermark`` with the step and,
after ``restore``, call ``on_watermark(saved)`` before the next message (that also
fires restored windows already due). Keys that do hold state carry a floor in
their snapshot, so they stay exact even under a lagging watermark.

Outputs are what ``Aggregation.output`` returned (None filtered out), as a list,
or an empty tuple when nothing fired (no allocation); with ``with_keys=True``
each is ``(key, output, event_time_ns)``, the event time being window end - 1
for range windows and the newest message's event time for count and event
windows; with ``with_origin=True`` each is ``(key, output, event_time_ns, origin)``,
origin being the newest origin among the window's messages (engine/runtime.py).

Range windows: [k*slide, k*slide + range) for every integer k (with per-key
alignment, Wallaroo's way: shifted by the key's offset, see RangeRunner). Each key keeps
panes of gcd(range, slide) ns; a window is the ``combine`` of its panes. Only
windows holding at least one message fire. Window k fires once the watermark is
>= its end + delay (a heap holds one live entry per key: its earliest pending
window). A message is *late* when every window containing it has fired; one
whose older windows fired but whose newest is open goes into the open ones only.

Update errors: when ``update`` raises, the exception propagates out of
``on_message`` and the key's state is as if the message never came. A window's
first message is folded into a fresh ``initial_accumulator()``; later ones are
folded in place only when that is safe (the accumulator is immutable, e.g. a
number or a tuple, or the Aggregation says ``atomic_update = True``); otherwise
``acc = combine(acc, update(msg, initial_accumulator()))``, which by the
Aggregation laws is the same value and never touches ``acc`` before succeeding.
Errors raised by ``output`` do not propagate (the window is consumed and other
windows fire on): they are kept for the engine in ``take_errors()``.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Iterable, Optional, Sequence

from .sessions import SessionRunner
from .window_base import _MISSING, _NOTHING, INFINITY, Window, _Runner  # noqa: F401 (re-exported)


class _RangeKey:
    """One key's range-window state. Pane and window indices count from ``off``:
    window k is [k*slide + off, k*slide + off + range)."""

    __slots__ = ("panes", "next", "due", "token", "off", "origins")

    def __init__(self, next_k: float, off: int = 0) -> None:
        self.panes: dict = {}  # pane index -> accumulator
        self.next = next_k  # no window below this index will fire for this key
        self.due = 0  # index of the key's earliest pending window
        self.token = -1  # seq of the key's live heap entry (-1: none)
        self.off = off  # the key's alignment (0: windows aligned to the epoch)
        self.origins: dict = {}  # pane index -> newest origin of its messages (with_origin)


class RangeRunner(_Runner):
    """Tumbling and sliding event-time windows with delay and late-data policies.

    Windows are aligned to the epoch, or, with ``spec.align == "key"`` (Wallaroo's
    way), to each key's first message: a key that holds no window state anchors its
    windows at max(watermark, the message's event time), modulo the slide.
    """

    kind = "range"

    def __init__(self, spec: Any, with_keys: bool = False, with_origin: bool = False) -> None:
        super().__init__(spec, with_keys, with_origin)
        self._range = spec.range_ns
        self._slide = spec.slide_ns
        self._delay = spec.delay_ns
        self._pane = spec.pane_ns
        self._tumbling = self._range == self._slide
        self._policy = spec.late_data_policy
        self._by_key = getattr(spec, "align", "epoch") == "key"
        self._keys: dict = {}
        self._heap: list = []  # (fire_at_ns, seq, key); stale entries skipped on pop
        self._seq = 0
        self._k_open: float = -math.inf  # lowest window index (offset 0) not closed

    def _open(self, off: int) -> float:
        """The lowest window index the watermark has not closed, for offset ``off``."""
        wm = self.watermark
        if off == 0 or not math.isfinite(wm):
            return self._k_open
        return (wm - off - self._range - self._delay) // self._slide + 1

    def _anchor(self, event_time_ns: int) -> int:
        """A new key's offset: Wallaroo starts its windows at the watermark it sees."""
        wm = self.watermark
        t = event_time_ns if not math.isfinite(wm) or event_time_ns > wm else wm
        return t % self._slide

    def on_message(self, key: Any, value: Any, event_time_ns: int,
                   origin: Optional[int] = None) -> Sequence:
        """Add one message; returns outputs only for late messages under fire-per-message."""
        st = self._keys.get(key)
        try:
            off = st.off if st is not None else (
                self._anchor(event_time_ns) if self._by_key else 0)
            t = event_time_ns - off
            k = t // self._slide  # newest window holding the message
        except TypeError:
            raise TypeError(
                f"window step {self.name!r}: range windows need each message's event time "
                f"as int ns, got {event_time_ns!r}; give the source an event_time") from None
        k_open = self._k_open if off == 0 else self._open(off)
        if st is None:
            if k < k_open:
                return self._on_late(key, value, k, st, off, origin)
        elif k < k_open or k < st.next:
            return self._on_late(key, value, k, st, off, origin)
        else:
            p = k if self._tumbling else t // self._pane
            panes = st.panes
            acc = panes.get(p, _MISSING)
            if acc is not _MISSING:
                if self._atomic:
                    panes[p] = self._update(value, acc)
                else:
                    panes[p] = self._combine(acc, self._update(value, self._initial()))
                if origin is not None:
                    self._note(st, p, origin)
                return _NOTHING
        p = k if self._tumbling else t // self._pane
        st = self._new_pane(key, st, p, self._update(value, self._initial()), off)
        if origin is not None:
            self._note(st, p, origin)
        return _NOTHING

    @staticmethod
    def _note(st: _RangeKey, p: int, origin: int) -> None:
        """Keep the newest origin of pane ``p``'s messages."""
        o = st.origins.get(p)
        if o is None or origin > o:
            st.origins[p] = origin

    def _new_pane(self, key: Any, st: Optional[_RangeKey], p: int, acc: Any,
                  off: int) -> _RangeKey:
        if st is None:
            st = self._keys[key] = _RangeKey(-math.inf, off)
        st.panes[p] = acc
        cand = max(self._first_window(p), st.next, self._open(off))
        if st.token < 0 or cand < st.due:
            self._schedule(key, st, cand)
        return st

    def _first_window(self, p: int) -> int:
        """Index of the first window holding pane ``p``."""
        return (p * self._pane - self._range) // self._slide + 1

    def _schedule(self, key: Any, st: _RangeKey, k: Any) -> None:
        self._seq += 1
        st.due, st.token = k, self._seq
        fire_at = k * self._slide + st.off + self._range + self._delay
        heapq.heappush(self._heap, (fire_at, self._seq, key))

    def _on_late(self, key: Any, value: Any, k: int, st: Optional[_RangeKey],
                 off: int, origin: Optional[int] = None) -> Sequence:
        self.late += 1
        if self._policy == "fire-per-message":
            acc = self._update(value, self._initial())
            out: list = []
            start = k * self._slide + off
            self._emit(out, key, acc, start, start + self._range, start + self._range - 1,
                       origin)
            return out
        oldest = max(self._open(off), st.next if st is not None else -math.inf)
        if self._policy == "drop" or oldest == math.inf:
            self.dropped += 1
            return _NOTHING
        # place-in-oldest-window: as if its event time were the oldest open window's
        # start; that pane belongs to no other window still open.
        p = oldest * self._slide // self._pane
        acc = st.panes.get(p, _MISSING) if st is not None else _MISSING
        if acc is _MISSING:
            st = self._new_pane(key, st, p, self._fold(value, acc), off)
        else:
            st.panes[p] = self._fold(value, acc)
        if origin is not None:
            self._note(st, p, origin)
        return _NOTHING

    def on_watermark(self, wm_ns: float) -> Sequence:
        """Advance the watermark (smaller values are ignored) and fire due windows."""
        if wm_ns > self.watermark:
            self.watermark = wm_ns
            if wm_ns == math.inf:
                self._k_open = math.inf
            else:
                self._k_open = (wm_ns - self._range - self._delay) // self._slide + 1
        heap, wm = self._heap, self.watermark
        if not heap or heap[0][0] > wm:
            return _NOTHING
        out: list = []
        while heap and heap[0][0] <= wm:
            _, seq, key = heapq.heappop(heap)
            st = self._keys.get(key)
            if st is not None and st.token == seq:
                self._fire(key, st, out)
        return out

    def _fire(self, key: Any, st: _RangeKey, out: list) -> None:
        """Fire the key's window ``st.due``, drop panes no later window needs, reschedule."""
        k, panes, origins = st.due, st.panes, st.origins
        start = k * self._slide
        end = start + self._range
        origin = None
        if self._tumbling:
            acc = panes.pop(k)
            origin = origins.pop(k, None)
        else:
            acc = self._initial()
            keep = (start + self._slide) // self._pane  # no later window needs panes below
            for p in sorted(panes):
                if p * self._pane >= end:
                    break
                if p * self._pane >= start:
                    acc = self._combine(acc, panes[p])
                    o = origins.get(p)
                    if o is not None and (origin is None or o > origin):
                        origin = o
                if p < keep:
                    del panes[p]
                    origins.pop(p, None)
        st.next, st.token = k + 1, -1
        if panes:
            # windows the watermark has passed meanwhile still fire: they were open
            # when their data came, so no floor at the watermark here
            self._schedule(key, st, max(self._first_window(min(panes)), st.next))
        else:
            del self._keys[key]
        self._emit(out, key, acc, start + st.off, end + st.off, end + st.off - 1, origin)

    def flush_all(self) -> Sequence:
        """End of stream: the watermark goes to infinity and every window fires."""
        return self.on_watermark(INFINITY)

    def keys(self) -> list:
        """Keys holding window state."""
        return list(self._keys)

    def snapshot(self, keys: Optional[Iterable] = None) -> dict:
        """key -> plain state (accumulators are shared, not copied: pickle the result
        before the next call). Holds the lowest window each key may still fire, so a
        key restored under a lagging watermark does not reopen fired windows."""
        out = {}
        for key in self._keys if keys is None else keys:
            st = self._keys.get(key)
            if st is None:
                continue
            nxt = max(st.next, self._open(st.off))
            if st.token >= 0:
                nxt = min(nxt, st.due)
            panes = [(p * self._pane + st.off, acc) for p, acc in sorted(st.panes.items())]
            out[key] = {"next": nxt, "panes": panes, "off": st.off}
        return out

    def restore(self, states: dict) -> None:
        """Install keys' state from ``snapshot`` (replacing theirs). Windows already
        due fire at the next ``on_watermark`` call, even with an unchanged value."""
        for key, s in states.items():
            self._keys.pop(key, None)
            st = _RangeKey(s["next"], s.get("off", 0))
            for start, acc in s["panes"]:
                st.panes[(start - st.off) // self._pane] = acc
            if st.panes:
                self._keys[key] = st
                self._schedule(key, st, max(self._first_window(min(st.panes)), st.next))

    def drop_keys(self, keys: Iterable) -> None:
        """Forget keys (they moved to another worker)."""
        for key in keys:
            self._keys.pop(key, None)

    def state_rows(self) -> list:
        """One row per key and window still to fire: its current accumulated value."""
        rows = []
        for key, st in self._keys.items():
            for start, end, acc in self._pending(st):
                rows.append({"key": key, "window_start": start, "window_end": end,
                             "accumulator": acc})
        return rows

    def _pending(self, st: _RangeKey) -> list:
        ps, off = sorted(st.panes), st.off
        if self._tumbling:
            return [(p * self._slide + off, p * self._slide + off + self._range, st.panes[p])
                    for p in ps]
        wins = []
        last = ps[-1] * self._pane // self._slide
        for k in range(st.due, last + 1):
            start, end = k * self._slide, k * self._slide + self._range
            inside = [st.panes[p] for p in ps if start <= p * self._pane < end]
            if inside:
                acc = self._initial()
                for a in inside:
                    acc = self._combine(acc, a)
                wins.append((start + off, end + off, acc))
        return wins


class SequenceRunner(_Runner):
    """Count windows (fire every ``count`` messages of a key) and event windows
    (fire on a trigger). Per key: [accumulator, messages in window, first ordinal,
    newest event time, newest origin] (the last two of the open window's messages:
    its output carries them).

    Count windows with a timeout (Wallaroo's step timer) also fire every key's
    partial window whenever the watermark reaches the next tick: the first tick is
    one timeout after the first finite watermark, the next one timeout after the
    watermark that fired the last."""

    def __init__(self, spec: Any, with_keys: bool = False, with_origin: bool = False) -> None:
        super().__init__(spec, with_keys, with_origin)
        self.kind = spec.kind
        self._count = spec.count if spec.kind == "count" else -1
        self._timeout = getattr(spec, "timeout_ns", None) if spec.kind == "count" else None
        self._tick: float = math.inf  # the watermark at which partial windows fire next
        self._pred = spec.fire_when if spec.kind == "event" else None
        self._include = bool(getattr(spec, "trigger_in_closing_window", True))
        self._keys: dict = {}

    def on_message(self, key: Any, value: Any, event_time_ns: Any = None,
                   origin: Optional[int] = None) -> Sequence:
        """Add one message; returns the outputs of the window it closed, if any.
        An exception from the fire_when predicate or ``update`` propagates, unharmed."""
        fire = self._pred is not None and self._pred(value)
        st = self._keys.get(key)
        if fire and not self._include:
            acc = self._update(value, self._initial())
            out: list = []
            if st is None:
                st = self._keys[key] = [None, 0, 0, None, None]
            elif st[1]:
                self._close(key, st, out)
            st[0], st[1], st[3], st[4] = acc, 1, event_time_ns, origin
            return out
        if st is None:
            acc = self._update(value, self._initial())
            st = self._keys[key] = [acc, 1, 0, event_time_ns, origin]
        elif st[1] == 0:
            st[0] = self._update(value, self._initial())
            st[1], st[3], st[4] = 1, event_time_ns, origin
        else:
            if self._atomic:
                st[0] = self._update(value, st[0])
            else:
                st[0] = self._combine(st[0], self._update(value, self._initial()))
            st[1] += 1
            if event_time_ns is not None and (st[3] is None or event_time_ns > st[3]):
                st[3] = event_time_ns
            if origin is not None and (st[4] is None or origin > st[4]):
                st[4] = origin
        if fire or st[1] == self._count:
            out = []
            self._close(key, st, out)
            return out
        return _NOTHING

    def _close(self, key: Any, st: list, out: list) -> None:
        acc, n, start, et, origin = st
        st[0], st[1], st[2], st[3], st[4] = None, 0, start + n, None, None
        self._emit(out, key, acc, start, start + n, et, origin)

    def on_trigger(self, key: Any = None) -> Sequence:
        """Fire ``key``'s open window (every key's if None); empty windows do not fire."""
        if self.kind != "event":
            return super().on_trigger(key)
        return self._close_all() if key is None else self._close_keys([key])

    def _close_keys(self, keys: Iterable) -> list:
        out: list = []
        for key in keys:
            st = self._keys.get(key)
            if st is not None and st[1]:
                self._close(key, st, out)
        return out

    def _close_all(self) -> list:
        return self._close_keys(list(self._keys))

    def on_watermark(self, wm_ns: float) -> Sequence:
        """Event windows ignore time; count windows with a timeout fire every key's
        partial window when the watermark reaches the next tick."""
        if wm_ns <= self.watermark:
            return _NOTHING
        first = self.watermark == -math.inf
        self.watermark = wm_ns
        if self._timeout is None or wm_ns == math.inf:
            return _NOTHING
        if first:
            self._tick = wm_ns + self._timeout
            return _NOTHING
        if wm_ns < self._tick:
            return _NOTHING
        self._tick = wm_ns + self._timeout
        return self._close_all()

    def flush_all(self) -> Sequence:
        """End of stream: every open window fires, partial count windows included."""
        return self._close_all()

    def keys(self) -> list:
        """Keys holding window state."""
        return list(self._keys)

    def snapshot(self, keys: Optional[Iterable] = None) -> dict:
        """key -> {"acc", "n", "start", "et"} (accumulators shared, not copied)."""
        out = {}
        for key in self._keys if keys is None else keys:
            st = self._keys.get(key)
            if st is not None:
                out[key] = {"acc": st[0], "n": st[1], "start": st[2], "et": st[3]}
        return out

    def restore(self, states: dict) -> None:
        """Install keys' state from ``snapshot`` (replacing theirs)."""
        for key, s in states.items():
            self._keys[key] = [s["acc"], s["n"], s["start"], s.get("et"), None]

    def drop_keys(self, keys: Iterable) -> None:
        """Forget keys (they moved to another worker)."""
        for key in keys:
            self._keys.pop(key, None)

    def state_rows(self) -> list:
        """One row per key with an open window (message ordinals as start/end)."""
        return [{"key": key, "window_start": st[2], "window_end": st[2] + st[1],
                 "accumulator": st[0]} for key, st in self._keys.items() if st[1]]


def make_window_runner(spec: Any, with_keys: bool = False, with_origin: bool = False) -> Any:
    """The runner for one window step on one worker (see the module docstring)."""
    if spec.kind == "range":
        return RangeRunner(spec, with_keys, with_origin)
    if spec.kind in ("count", "event"):
        return SequenceRunner(spec, with_keys, with_origin)
    if spec.kind == "session":
        return SessionRunner(spec, with_keys, with_origin)
    raise ValueError(f"window step {spec.name!r}: unknown window kind {spec.kind!r}")
