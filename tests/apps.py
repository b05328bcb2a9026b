"""Pipelines many tests share: a keyed running sum over (key, value) events."""

from __future__ import annotations

import collections

import wallaroo_nb as w


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


def sum_reference(events) -> tuple:
    """(key -> running totals in order, key -> final total) for (key, value, ...) events."""
    per_key, totals = collections.defaultdict(list), collections.Counter()
    for e in events:
        totals[e[0]] += e[1]
        per_key[e[0]].append(totals[e[0]])
    return dict(per_key), dict(totals)
