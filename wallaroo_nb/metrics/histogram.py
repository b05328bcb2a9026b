"""Log-linear latency histogram over integer nanoseconds, as plain data.

Bins: values 0..15 each get their own bin (exact). Above that, every power-of-two
range [2**e, 2**(e+1)) is split into 8 equal sub-bins, so a bin [lo, hi) has
width lo/m with m in 8..15: a bin is at most 12.5% of its lower edge wide.
`percentile` reports the bin midpoint clamped to the exact [min, max], so a
reported percentile is within 1/16 = 6.25% of the true sample percentile
(nearest-rank definition), and p0 / p100 are exactly min / max.

There are N_BINS = 320 bins, covering 0 ns .. 2**42 ns (about 73 minutes);
larger values land in the last bin (max stays exact, but the error bound
only holds below 2**42 ns). Negative values (clock
skew) count as 0. Standard library only: workers import this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

SUB_BITS = 3
SUB_BINS = 1 << SUB_BITS  # sub-bins per power of two
_EXACT = SUB_BINS << 1  # values below this have a bin each
MAX_EXPONENT = 42  # values up to 2**42 ns get their own bin
N_BINS = (MAX_EXPONENT - SUB_BITS - 1) * SUB_BINS + _EXACT  # 320
MAX_RELATIVE_ERROR = 1 / (2 * SUB_BINS)  # of a reported percentile, 6.25%


class Histogram:
    """Counts per bin plus exact count/min/max/sum; mutable, cheap to record into."""

    __slots__ = ("counts", "count", "min", "max", "sum")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * N_BINS
        self.count = 0
        self.min = 0  # meaningless while count == 0
        self.max = 0
        self.sum = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        if self.count == 0 or other.count == 0:
            return self.count == other.count == 0 and self.counts == other.counts
        return (
            self.count == other.count
            and self.min == other.min
            and self.max == other.max
            and self.sum == other.sum
            and self.counts == other.counts
        )

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min={self.min}, max={self.max}, sum={self.sum})"


def bin_of(v: int) -> int:
    """Bin index of a latency in ns; the hot path, so no allocation and few branches."""
    if v < _EXACT:
        return v if v > 0 else 0
    shift = v.bit_length() - (SUB_BITS + 1)
    b = (shift << SUB_BITS) + (v >> shift)  # v >> shift is in [8, 16): the mantissa
    return b if b < N_BINS else N_BINS - 1


def bin_bounds(b: int) -> tuple[int, int]:
    """The half-open range [lo, hi) of values in bin b (the last bin is open-ended)."""
    if b < _EXACT:
        return b, b + 1
    shift = (b >> SUB_BITS) - 1
    mantissa = b - (shift << SUB_BITS)
    return mantissa << shift, (mantissa + 1) << shift


def record(h: Histogram, value_ns: int, count: int = 1) -> None:
    """Add `count` messages that all had latency `value_ns` (a run sharing one latency)."""
    if count <= 0:
        return
    if value_ns < 0:
        value_ns = 0
    h.counts[bin_of(value_ns)] += count
    if h.count == 0:
        h.min = h.max = value_ns
    elif value_ns < h.min:
        h.min = value_ns
    elif value_ns > h.max:
        h.max = value_ns
    h.count += count
    h.sum += value_ns * count


def copy(h: Histogram) -> Histogram:
    """An independent copy of h."""
    out = Histogram()
    out.counts = list(h.counts)
    out.count, out.min, out.max, out.sum = h.count, h.min, h.max, h.sum
    return out


def merge_into(dst: Histogram, src: Histogram) -> None:
    """Add src into dst in place."""
    if src.count == 0:
        return
    dst.counts = [a + b for a, b in zip(dst.counts, src.counts, strict=True)]
    _merge_summary(dst, src.count, src.min, src.max, src.sum)


def merge(a: Histogram, b: Histogram) -> Histogram:
    """A new histogram holding the messages of both a and b."""
    out = copy(a)
    merge_into(out, b)
    return out


def delta(after: Histogram, before: Histogram) -> Histogram:
    """What was recorded between two cumulative snapshots: merge(before, d) == after.

    Counts and sum are exact; min/max are exact when the interval changed them,
    otherwise the edge of the lowest/highest non-empty bin clamped to after's.
    """
    out = Histogram()
    out.counts = [a - b for a, b in zip(after.counts, before.counts, strict=True)]
    if any(c < 0 for c in out.counts) or after.count < before.count:
        raise ValueError("`after` is not a later snapshot of `before`")
    out.count = after.count - before.count
    out.sum = after.sum - before.sum
    if out.count == 0:
        out.counts = [0] * N_BINS
        out.sum = 0
        return out
    lo_bin = next(i for i, c in enumerate(out.counts) if c)
    hi_bin = N_BINS - 1 - next(i for i, c in enumerate(reversed(out.counts)) if c)
    if before.count == 0 or after.min < before.min:
        out.min = after.min
    else:
        out.min = max(bin_bounds(lo_bin)[0], after.min)
    if before.count == 0 or after.max > before.max:
        out.max = after.max
    else:
        out.max = min(bin_bounds(hi_bin)[1] - 1, after.max)
    return out


def percentile(h: Histogram, q: float) -> float:
    """Latency (ns) at fraction q in [0, 1] by nearest rank; NaN when h is empty."""
    return percentiles(h, [q])[0]


def percentiles(h: Histogram, qs: Sequence[float]) -> list[float]:
    """Several percentiles (same as `percentile` each) in one pass over the bins."""
    if h.count == 0:
        for q in qs:
            _check_q(q)
        return [math.nan] * len(qs)
    order = sorted(range(len(qs)), key=lambda i: qs[i])
    out = [0.0] * len(qs)
    for i, v in zip(order, _percentiles_sorted(h, [qs[i] for i in order]), strict=True):
        out[i] = v
    return out


def rank_of(q: float, n: int) -> int:
    """1-based nearest rank of fraction q among n values: the smallest k with k >= q*n."""
    # round first so that e.g. 0.29 * 100 == 28.999999999999996 still means rank 29
    return max(1, math.ceil(round(q * n, 9)))


def to_wire(h: Histogram) -> dict:
    """Compact msgpack-able form: summary plus sparse bins as a flat [bin, count, ...] list."""
    bins: list[int] = []
    for b, c in enumerate(h.counts):
        if c:
            bins.append(b)
            bins.append(c)
    return {"n": h.count, "min": h.min, "max": h.max, "sum": h.sum, "bins": bins}


def from_wire(w: dict) -> Histogram:
    """Inverse of to_wire."""
    h = Histogram()
    add_wire(h, w)
    return h


def add_wire(h: Histogram, w: dict) -> None:
    """Merge a wire-form histogram into h in place, without building a dense copy."""
    if not w["n"]:
        return
    counts = h.counts
    bins = w["bins"]
    for i in range(0, len(bins), 2):
        counts[bins[i]] += bins[i + 1]
    _merge_summary(h, w["n"], w["min"], w["max"], w["sum"])


def from_values(values: Iterable[int]) -> Histogram:
    """A histogram of the given latencies (convenience for tests and tools)."""
    h = Histogram()
    for v in values:
        record(h, v)
    return h


def _merge_summary(dst: Histogram, count: int, mn: int, mx: int, total: int) -> None:
    if dst.count == 0:
        dst.min, dst.max = mn, mx
    else:
        dst.min = min(dst.min, mn)
        dst.max = max(dst.max, mx)
    dst.count += count
    dst.sum += total


def _check_q(q: float) -> None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a fraction in [0, 1], got {q!r}")


def _midpoint(b: int) -> int:
    lo, hi = bin_bounds(b)
    return lo + ((hi - lo) >> 1)  # exact bins (width 1) report lo itself


def _percentiles_sorted(h: Histogram, qs: Sequence[float]) -> list[float]:
    out = []
    seen = 0
    b = -1
    for q in qs:
        _check_q(q)
        rank = rank_of(q, h.count)
        if rank <= 1:
            out.append(float(h.min))
            continue
        if rank >= h.count:
            out.append(float(h.max))
            continue
        while seen < rank:
            b += 1
            seen += h.counts[b]
        out.append(float(min(max(_midpoint(b), h.min), h.max)))
    return out
