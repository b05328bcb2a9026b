"""Per-call timing of user functions: the compiled Timer and its Python twin agree."""

import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wallaroo_nb.engine import timing
from wallaroo_nb.metrics import histogram as hg

TIMERS = [timing.Timer, timing.PyTimer]


def taken(t):
    return hg.from_wire(t.take())


def test_the_compiled_timer_is_built():
    # pip builds wallaroo_nb/engine/_timer.c on install; without it metrics cost 3x more.
    assert timing.COMPILED, (
        "wallaroo_nb.engine._timer is missing: install gcc and the Python headers, then "
        "pip install -e . again")
    assert timing.Timer is not timing.PyTimer


@given(st.one_of(st.integers(-10, 100), st.integers(0, 2**50),
                 st.sampled_from([15, 16, 17, 2**42 - 1, 2**42, 2**63 - 1])))
def test_the_compiled_bins_are_histogram_bins(v):
    from wallaroo_nb.engine import _timer

    assert _timer.bin_of(v) == hg.bin_of(max(v, 0))


@pytest.mark.parametrize("Timer", TIMERS)
def test_calls_through_with_positional_and_keyword_arguments(Timer):
    t = Timer(lambda a, b=0, *, c=0: (a, b, c))
    assert t(1) == (1, 0, 0)
    assert t(1, 2) == (1, 2, 0)
    assert t(1, b=3, c=4) == (1, 3, 4)
    assert t.pending == 3
    assert taken(t).count == 3
    assert t.pending == 0
    assert taken(t).count == 0


@pytest.mark.parametrize("Timer", TIMERS)
def test_the_histogram_holds_each_call_s_duration(Timer):
    t = Timer(lambda s: time.sleep(s) if s else None)  # sleep(0) may yield for ms
    for _ in range(3):
        t(0.002)
    t(0)
    h = taken(t)
    assert h.count == 4
    assert 0 <= h.min < 2_000_000, h
    assert 2_000_000 <= h.max < 200_000_000, h
    assert 6_000_000 <= h.sum < 3 * 200_000_000, h
    assert hg.percentile(h, 0.25) == h.min
    assert 2_000_000 * (1 - hg.MAX_RELATIVE_ERROR) <= hg.percentile(h, 0.5) <= h.max
    assert sum(h.counts) == 4


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
    assert t.fn(4) == 40


@pytest.mark.parametrize("Timer", TIMERS)
def test_not_a_callable_is_refused(Timer):
    with pytest.raises(TypeError, match="Timer needs a callable, got int"):
        Timer(5)


@pytest.mark.parametrize("Timer", TIMERS)
def test_take_starts_over(Timer):
    t = Timer(abs)
    for i in range(10_000):
        t(-i)
    first = taken(t)
    assert first.count == 10_000 and sum(first.counts) == 10_000
    t(1)
    assert taken(t).count == 1


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
