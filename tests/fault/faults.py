"""Crash schedules for fault tests, in the style of Wallaroo's resilience suite:
wait - crash a worker - recover - wait - crash again, including crashes in the
middle of a checkpoint and in the middle of a recovery."""

from __future__ import annotations

import os
import random
import signal
import time


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_until(cond, timeout: float, step: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


def crash_during_checkpoint(app, rnd: random.Random) -> str:
    d = app._driver
    if not wait_until(lambda: d.epochs.in_flight is not None, 10):
        return "no checkpoint came"
    kill(rnd.choice(d.pids))
    return f"killed during checkpoint {d.epochs.in_flight}"


def crash_during_recovery(app, rnd: random.Random) -> str:
    d = app._driver
    gen = d.generation
    kill(rnd.choice(d.pids))
    if not wait_until(lambda: d.generation > gen, 10):
        return "no recovery started"
    kill(rnd.choice(d.pids))  # a freshly spawned worker, before the cluster is ready
    return "killed during recovery"


def crash_any(app, rnd: random.Random) -> str:
    kill(rnd.choice(app._driver.pids))
    return "killed"


SCHEDULE = [crash_any, crash_during_checkpoint, crash_during_recovery, crash_any]


def run_crashes(app, seed: int, crashes: int = 4, gap=(0.3, 0.8)) -> list:
    """Crash ``crashes`` times, waiting for the app to be running between crashes."""
    rnd = random.Random(seed)
    log = []
    d = app._driver
    for i in range(crashes):
        assert wait_until(d.ready.is_set, 30), "the app did not come back up"
        time.sleep(rnd.uniform(*gap))
        log.append(SCHEDULE[i % len(SCHEDULE)](app, rnd))
    return log
