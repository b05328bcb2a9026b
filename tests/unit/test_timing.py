"""Per-call timing of user functions: the compiled Timer and its Python twin agree."""

import sys
import time
from array import array

import pytest

from wallaroo_nb.engine import timing

TIMERS = [timing.Timer, timing.PyTimer]


def test_the_compiled_timer_is_built():
    # pip builds wallaroo_nb/engine/_timer.c on install; without it metrics cost ~2x more.
    assert timing.COMPILED, (
        "wallaroo_nb.engine._timer is missing: install gcc and the Python headers, then "
        "pip install -e . again")
    assert timing.Timer is not timing.PyTimer


@pytest.mark.parametrize("Timer", TIMERS)
def test_calls_through_with_positional_and_keyword_arguments(Timer):
    t = Timer(lambda a, b=0, *, c=0: (a, b, c))
    assert t(1) == (1, 0, 0)
    assert t(1, 2) == (1, 2, 0)
    assert t(1, b=3, c=4) == (1, 3, 4)
    assert t.pending == 3
    assert len(timing.durations(t)) == 3
    assert t.pending == 0
    assert timing.durations(t) == array("q")


@pytest.mark.parametrize("Timer", TIMERS)
def test_durations_measure_the_call(Timer):
    t = Timer(time.sleep)
    for _ in range(3):
        t(0.002)
    t(0)
    d = timing.durations(t)
    assert all(2_000_000 <= x < 200_000_000 for x in d[:3]), list(d)
    assert 0 <= d[3] < 2_000_000, d[3]


@pytest.mark.parametrize("Timer", TIMERS)
def test_calls_that_raise_are_timed_and_the_exception_passes_through(Timer):
    def boom(v):
        raise ValueError(f"bad {v}")

    t = Timer(boom)
    with pytest.raises(ValueError, match="bad 7") as info:
        t(7)
    assert info.traceback[-1].name == "boom"
    assert t.pending == 1


@pytest.mark.parametrize("Timer", TIMERS)
def test_replacing_fn_keeps_what_was_noted(Timer):
    t = Timer(lambda v: v + 1)
    assert t(1) == 2
    t.fn = lambda v: v * 10
    assert t(2) == 20
    assert t.pending == 2
    with pytest.raises(TypeError, match="callable"):
        t.fn = 3
    assert t(3) == 30


@pytest.mark.parametrize("Timer", TIMERS)
def test_not_a_callable_is_refused(Timer):
    with pytest.raises(TypeError, match="Timer needs a callable, got int"):
        Timer(5)


@pytest.mark.parametrize("Timer", TIMERS)
def test_many_calls_grow_the_buffer_and_take_starts_over(Timer):
    t = Timer(abs)
    for i in range(100_000):
        t(-i)
    assert len(timing.durations(t)) == 100_000
    t(1)
    assert len(timing.durations(t)) == 1


def test_the_compiled_timer_holds_no_reference_it_should_not():
    def fn(v):
        return v

    before = sys.getrefcount(fn)
    t = timing.Timer(fn)
    for i in range(1000):
        t(i)
    assert sys.getrefcount(fn) == before + 1
    del t
    assert sys.getrefcount(fn) == before
