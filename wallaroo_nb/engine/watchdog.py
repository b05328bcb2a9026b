"""A worker's watchdog thread: liveness that does not depend on the user's code.

The worker's loop runs user code; one call may take minutes. The watchdog runs
beside it and (1) exits the process at once when the driver (its parent) is
gone, whatever the loop is doing; (2) sends the driver a heartbeat every
second on a socket of its own, saying whether the loop is busy and, if one loop
turn has lasted a while, in which step and on which key: read from the loop
thread's stack, so the hot path pays nothing for it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, Optional

import zmq

from .. import security
from ..errors import short_repr
from ..plan import Plan
from ..protocol import Busy, Kind, encode
from .fused import FUSED_FILE, NO_KEY

HEARTBEAT_S = 1.0
PARENT_CHECK_S = 0.25
BUSY_AFTER_S = 1.0  # a loop turn this long is shown as a busy step
STEPS_FILE = os.path.join(os.path.dirname(__file__), "steps.py")


def user_code(plan: Plan) -> dict:
    """Code object -> step name, for every user function of the plan."""
    found: dict = {}

    def add(fn: Any, name: str) -> None:
        code = getattr(fn, "__code__", None)
        if code is not None:
            found.setdefault(code, name)

    for st in plan.steps:
        add(st.fn, st.name)
        add(st.key_fn, st.name)
        for holder in (st.state_cls, getattr(st.spec, "agg", None), st.spec):
            cls = holder if isinstance(holder, type) else type(holder)
            if holder is None or cls.__module__ == "builtins":
                continue
            for attr in vars(cls).values():
                add(attr, st.name)
        if st.spec is not None:
            add(getattr(st.spec, "fire_when", None), st.name)
    return found


def busy_in(frame: Any, code_names: dict) -> tuple:
    """(step name, key repr) of the innermost user function on a stack, and the key of
    the keyed step it runs in; ("", "") when the loop is in engine code."""
    step, key = "", ""
    while frame is not None:
        code = frame.f_code
        if not step and code in code_names:
            step = code_names[code]
        if _runs_keyed(code) and "k" in frame.f_locals:
            k = frame.f_locals["k"]
            key = "" if k is NO_KEY else short_repr(k, 200)
            break
        frame = frame.f_back
    return step, key


def _runs_keyed(code: Any) -> bool:
    """Code that holds the key of the keyed step it runs as the local ``k``: steps.py's
    ``run``, and the generated chains of fused.py."""
    return (code.co_filename == STEPS_FILE and code.co_name == "run") or (
        code.co_filename.startswith(FUSED_FILE))


class Watchdog:
    """The thread; the loop calls ``turn()`` once per loop turn (an int increment)."""

    def __init__(self, zctx: zmq.Context, driver: str, ident: str, ppid: int,
                 on_orphan: Callable[[], None] = lambda: os._exit(3),
                 keys: Optional[security.Keys] = None):
        self.zctx = zctx
        self.keys = keys
        self.driver = driver
        self.ident = ident
        self.ppid = ppid
        self.on_orphan = on_orphan
        self.turns = 0
        self.code_names: dict = {}
        self.loop_thread = threading.get_ident()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="wallaroo_nb-watchdog", daemon=True)

    def start(self, plan: Optional[Plan] = None) -> None:
        if plan is not None:
            self.code_names = user_code(plan)
        self.thread.start()

    def watch(self, plan: Plan) -> None:
        """Name steps from this plan from now on (after start-up, after a hot reload)."""
        self.code_names = user_code(plan)

    def _run(self) -> None:
        sock = self.zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.ident.encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 4)
        security.client(sock, self.keys)
        sock.connect(self.driver)
        seen, since = self.turns, time.monotonic()
        next_beat = 0.0
        try:
            while not self.stop.wait(PARENT_CHECK_S):
                if os.getppid() != self.ppid:
                    self.on_orphan()  # the driver died: never outlive it
                    return
                now = time.monotonic()
                if self.turns != seen:
                    seen, since = self.turns, now
                if now >= next_beat:
                    next_beat = now + HEARTBEAT_S
                    self._beat(sock, now - since)
        finally:
            sock.close(0)

    def _beat(self, sock: zmq.Socket, turn_s: float) -> None:
        busy = Busy("", "", 0.0)
        if turn_s >= BUSY_AFTER_S:
            frame = sys._current_frames().get(self.loop_thread)
            step, key = busy_in(frame, self.code_names)
            busy = Busy(step, key, round(turn_s, 1))
        try:
            sock.send_multipart(encode(Kind.HEARTBEAT, busy), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the driver is not reading: the next beat says the same
