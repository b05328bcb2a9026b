"""Wallaroo 0.6's own Aggregation examples mutate the accumulator and return None."""

from __future__ import annotations

from wallaroo_nb.engine.windowing import make_window_runner
from wallaroo_nb.windows import Aggregation, count_windows, range_windows


class Total:
    def __init__(self, total=0):
        self.total = total


class TotalAggregation(Aggregation):
    def initial_accumulator(self):
        return Total(0)

    def update(self, data, acc):
        acc.total += data  # no return, as in Wallaroo's examples

    def combine(self, a, b):
        return Total(a.total + b.total)

    def output(self, key, acc):
        return (key, acc.total)


def test_count_window_with_in_place_update():
    r = make_window_runner(count_windows(3).over(TotalAggregation))
    outs = [o for v in (1, 2, 3, 4) for o in r.on_message("k", v, None)]
    assert outs == [("k", 6)]
    assert list(r.flush_all()) == [("k", 4)]


def test_range_window_with_in_place_update():
    r = make_window_runner(range_windows(10).over(TotalAggregation))
    for v, t in ((1, 1), (2, 5), (4, 12)):
        r.on_message("k", v, t)
    assert list(r.on_watermark(10)) == [("k", 3)]
    assert list(r.flush_all()) == [("k", 4)]
