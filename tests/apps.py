"""Pipelines many tests share: a keyed running sum over (key, value) events, and its
windowed form."""

from __future__ import annotations

import collections
from operator import itemgetter

import wallaroo_nb as w
from wallaroo_nb.testing import Sum


class Total:
    def __init__(self):
        self.total = 0


@w.key_extractor
def first(e):
    return e[0]


@w.state_computation("running sum", state=Total)
def running_sum(e, st):
    st.total += e[1]
    return (e[0], st.total)


class WindowSum(Sum):
    """Per key and range window: ``(key, window start ns, sum of e[1])``."""

    def __init__(self):
        super().__init__(value=itemgetter(1))

    def output(self, key, acc, window):
        return (key, window.start, acc)


def sum_reference(events) -> tuple:
    """(key -> running totals in order, key -> final total) for (key, value, ...) events."""
    per_key, totals = collections.defaultdict(list), collections.Counter()
    for e in events:
        totals[e[0]] += e[1]
        per_key[e[0]].append(totals[e[0]])
    return dict(per_key), dict(totals)
