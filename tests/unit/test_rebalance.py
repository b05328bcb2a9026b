"""The slot table after a change of workers moves the fewest slots."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wallaroo_nb.keys import default_owners, moved_slots, rebalance


def test_the_documented_moves():
    two = default_owners(256, 2)
    three = rebalance(two, 3)
    assert len(moved_slots(two, three)) == 85 and sorted(set(three)) == [0, 1, 2]
    eight = rebalance(default_owners(256, 1), 8)
    assert len(moved_slots(eight, rebalance(eight, 9))) == 28
    assert rebalance(three, 1) == [0] * 256


@settings(max_examples=200)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12))
def test_shares_are_fair_and_only_surplus_moves(a, b, c):
    table = rebalance(rebalance(default_owners(256, a), b), c)
    counts = [table.count(w) for w in range(c)]
    assert sum(counts) == 256 and max(counts) - min(counts) <= 1
    before = rebalance(default_owners(256, a), b)
    moved = moved_slots(before, table)
    # a slot moves only if its worker leaves or holds more than its share
    for w in range(min(b, c)):
        mine = before.count(w)
        share = 256 // c + (1 if w < 256 % c else 0)
        assert sum(1 for s in moved if before[s] == w) == max(0, mine - share)
