"""The log-linear histogram: bin layout, error bound against exact percentiles, laws."""

import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallaroo_nb.metrics import histogram as hg

# Latencies from 0 ns to an hour, weighted so that every order of magnitude shows up.
latency = st.one_of(
    st.integers(0, 100),
    st.integers(0, 10**6),
    st.integers(0, 3_600 * 10**9),
    st.sampled_from([0, 1, 15, 16, 17, 2**20 - 1, 2**20, 2**41, 2**42 - 1]),
)
samples = st.lists(latency, min_size=1, max_size=300)
fraction = st.one_of(
    st.sampled_from([0.0, 0.5, 0.95, 0.99, 0.999, 0.9999, 1.0]), st.floats(0.0, 1.0)
)


def exact_percentile(values, q):
    """Nearest-rank percentile of the raw values, the definition histogram.py documents."""
    ordered = sorted(values)
    return ordered[hg.rank_of(q, len(ordered)) - 1]


def hist_of(values):
    h = hg.Histogram()
    for v in values:
        hg.record(h, v)
    return h


def test_bins_are_contiguous_and_cover_up_to_2_pow_42():
    hi_prev = 0
    for b in range(hg.N_BINS):
        lo, hi = hg.bin_bounds(b)
        assert lo == hi_prev and hi > lo
        assert hg.bin_of(lo) == b and hg.bin_of(hi - 1) == b
        assert (hi - lo) / max(lo, 1) <= 0.125 or hi - lo == 1  # width ≤ 12.5% of lo
        hi_prev = hi
    assert hi_prev == 2**42
    assert hg.bin_of(2**42) == hg.bin_of(10**15) == hg.N_BINS - 1
    assert hg.bin_of(-5) == 0


@given(st.integers(0, 2**42 - 1))
def test_bin_of_agrees_with_bounds(v):
    lo, hi = hg.bin_bounds(hg.bin_of(v))
    assert lo <= v < hi


@settings(max_examples=300, deadline=None)
@given(samples, fraction)
def test_percentile_within_relative_error_of_exact(values, q):
    h = hist_of(values)
    got = hg.percentile(h, q)
    want = exact_percentile(values, q)
    assert abs(got - want) <= hg.MAX_RELATIVE_ERROR * want
    assert min(values) <= got <= max(values)


@settings(deadline=None)
@given(samples)
def test_percentiles_in_one_pass_match_single_calls(values):
    h = hist_of(values)
    qs = [0.99, 0.5, 0.0, 0.9999, 1.0, 0.95]
    assert hg.percentiles(h, qs) == [hg.percentile(h, q) for q in qs]


@given(samples)
def test_min_max_sum_exact_and_extreme_percentiles_exact(values):
    h = hist_of(values)
    assert (h.count, h.min, h.max, h.sum) == (len(values), min(values), max(values), sum(values))
    assert hg.percentile(h, 0.0) == min(values)
    assert hg.percentile(h, 1.0) == max(values)


@given(st.lists(st.tuples(latency, st.integers(1, 1000)), min_size=1, max_size=50))
def test_recording_a_run_equals_recording_each_message(runs):
    by_run, one_by_one = hg.Histogram(), hg.Histogram()
    for v, n in runs:
        hg.record(by_run, v, n)
        for _ in range(n):
            hg.record(one_by_one, v)
    assert by_run == one_by_one


def test_small_values_are_exact_and_empty_is_nan():
    assert math.isnan(hg.percentile(hg.Histogram(), 0.5))
    assert all(math.isnan(p) for p in hg.percentiles(hg.Histogram(), [0.5, 0.99]))
    h = hist_of([3, 3, 3, 7])
    assert hg.percentile(h, 0.5) == 3
    with pytest.raises(ValueError):
        hg.percentile(h, 99)  # a fraction, not a percent


@given(samples, samples)
def test_merge_is_the_histogram_of_the_concatenation(a, b):
    assert hg.merge(hist_of(a), hist_of(b)) == hist_of(a + b)
    assert hg.merge(hist_of(a), hist_of(b)) == hg.merge(hist_of(b), hist_of(a))
    assert hg.merge(hist_of(a), hg.Histogram()) == hist_of(a)


@given(samples, samples, samples)
def test_merge_is_associative(a, b, c):
    ha, hb, hc = hist_of(a), hist_of(b), hist_of(c)
    assert hg.merge(hg.merge(ha, hb), hc) == hg.merge(ha, hg.merge(hb, hc))


@given(st.lists(latency, max_size=100), st.lists(latency, max_size=100))
def test_delta_undoes_merge(before_values, new_values):
    before = hist_of(before_values)
    after = hist_of(before_values + new_values)
    d = hg.delta(after, before)
    assert hg.merge(before, d) == after
    assert d.count == len(new_values) and d.sum == sum(new_values)
    assert d.counts == hist_of(new_values).counts
    if new_values:
        # min/max of the delta lie in the same bin as the true ones
        assert hg.bin_of(d.min) == hg.bin_of(min(new_values))
        assert hg.bin_of(d.max) == hg.bin_of(max(new_values))


def test_delta_rejects_an_earlier_snapshot():
    with pytest.raises(ValueError):
        hg.delta(hist_of([1]), hist_of([1, 2]))


@given(st.lists(latency, max_size=100))
def test_wire_form_round_trips_through_msgpack(values):
    h = hist_of(values)
    wire = msgpack.unpackb(msgpack.packb(hg.to_wire(h)))
    assert hg.from_wire(wire) == h
    assert len(wire["bins"]) == 2 * sum(1 for c in h.counts if c)  # sparse


def test_copy_is_independent():
    h = hist_of([5, 500])
    c = hg.copy(h)
    hg.record(c, 10**6)
    assert h == hist_of([5, 500]) and c != h
