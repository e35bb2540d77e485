"""A streaming latency histogram with bounded memory and a fixed relative error.

Buckets grow geometrically (bucket ``i`` holds values in ``[g**i, g**(i+1))`` with
``g = (1 + a) / (1 - a)``), so any quantile is reported within a relative error ``a`` of a value
that was really observed, whatever the distribution.  Values are clamped to ``[MIN_VALUE,
MAX_VALUE]``, which caps the number of buckets (about 1,900 at 1 %) however many calls are made.

Not thread-safe on its own: the observers that own one guard it with their own lock.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["MAX_VALUE", "MIN_VALUE", "Histogram"]

#: Durations below this (1 ns) count as zero: clocks do not resolve them anyway.
MIN_VALUE = 1e-9
#: Durations above this (about 115 days) are clamped, so the bucket count stays bounded.
MAX_VALUE = 1e7

_log = math.log
_floor = math.floor


class Histogram:
    """Counts, sum, min, max and geometric buckets of non-negative values (seconds)."""

    __slots__ = (
        "_buckets",
        "_inv_log_gamma",
        "_zero",
        "count",
        "gamma",
        "max",
        "min",
        "relative_accuracy",
        "sum",
    )

    def __init__(self, relative_accuracy: float = 0.01) -> None:
        if not isinstance(relative_accuracy, (int, float)) or not 0 < relative_accuracy < 0.5:
            from .errors import ConfigurationError

            raise ConfigurationError(
                f"relative_accuracy must be a number in (0, 0.5), got {relative_accuracy!r}; "
                "0.01 keeps quantiles within 1 % of an observed value"
            )
        self.relative_accuracy = float(relative_accuracy)
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._inv_log_gamma = 1.0 / _log(self.gamma)
        self._buckets: Dict[int, int] = {}
        self._zero = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Record one value (negative values, e.g. from a clock set back, count as zero)."""
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value < MIN_VALUE:
            self._zero += 1
            return
        if value > MAX_VALUE:
            value = MAX_VALUE
        key = _floor(_log(value) * self._inv_log_gamma)
        buckets = self._buckets
        buckets[key] = buckets.get(key, 0) + 1

    def add_many(self, values: Sequence[float]) -> None:
        """Record a batch of values: the same result as ``add`` for each, at C speed.

        The batch is sorted (in C) and each bucket it touches is counted with one bisection,
        so the cost per value is the sort's, not a logarithm per value.  Failure-atomic:
        everything is computed before anything changes, so an exception (out of memory, the
        recursion limit) leaves the histogram as it was.
        """
        if not values:
            return
        ordered = sorted(values)
        n = len(ordered)
        total = sum(ordered)
        lo, hi = ordered[0], ordered[-1]
        i = bisect_left(ordered, MIN_VALUE)  # below it: the zero bucket
        zero = i
        counts: List[Tuple[int, int]] = []
        inv, gamma = self._inv_log_gamma, self.gamma
        while i < n:
            value = ordered[i]
            if value >= MAX_VALUE:  # clamped into the last bucket
                counts.append((_floor(_log(MAX_VALUE) * inv), n - i))
                break
            key = _floor(_log(value) * inv)
            # the first value at or above the bucket's upper bound (rounding in either
            # direction only ever moves a boundary value by one bucket, as ``add`` might)
            j = bisect_left(ordered, gamma ** (key + 1), i + 1)
            counts.append((key, j - i))
            i = j
        # From here on only C-level updates: they cannot fail part-way.
        self.count += n
        self.sum += total
        if lo < self.min:
            self.min = lo
        if hi > self.max:
            self.max = hi
        self._zero += zero
        buckets = self._buckets
        for key, count in counts:
            buckets[key] = buckets.get(key, 0) + count

    @property
    def mean(self) -> Optional[float]:
        return self.sum / self.count if self.count else None

    @property
    def bucket_count(self) -> int:
        """How many buckets are in use (bounded; see the module docstring)."""
        return len(self._buckets) + (1 if self._zero else 0)

    def quantile(self, q: float) -> Optional[float]:
        """The ``q``-quantile (0 <= q <= 1) by nearest rank, within the relative accuracy."""
        if not 0 <= q <= 1:
            from .errors import ConfigurationError

            raise ConfigurationError(f"quantile must be between 0 and 1, got {q!r}")
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> List[Optional[float]]:
        """Several quantiles with one pass over the sorted buckets."""
        wanted = list(qs)
        if not self.count:
            return [None] * len(wanted)
        # Nearest rank: the smallest value with at least ceil(q * n) values at or below it.
        ranks = sorted((max(1, math.ceil(q * self.count)), i) for i, q in enumerate(wanted))
        out: List[Optional[float]] = [None] * len(wanted)
        pending = 0
        # The extremes are known exactly; only ranks in between need the buckets.
        while pending < len(ranks) and ranks[pending][0] <= 1:
            out[ranks[pending][1]] = self.min
            pending += 1
        tail = len(ranks)
        while tail > pending and ranks[tail - 1][0] >= self.count:
            out[ranks[tail - 1][1]] = self.max
            tail -= 1
        ranks = ranks[:tail]
        seen = self._zero
        while pending < len(ranks) and ranks[pending][0] <= seen:
            out[ranks[pending][1]] = self._clamp(0.0)
            pending += 1
        if pending < len(ranks):
            for key in sorted(self._buckets):
                seen += self._buckets[key]
                while pending < len(ranks) and ranks[pending][0] <= seen:
                    out[ranks[pending][1]] = self._clamp(self._representative(key))
                    pending += 1
                if pending == len(ranks):
                    break
        return out

    def _representative(self, key: int) -> float:
        # Within relative_accuracy of every value in [g**key, g**(key+1)).
        return 2 * self.gamma ** (key + 1) / (self.gamma + 1)

    def _clamp(self, value: float) -> float:
        # The true quantile is always within [min, max]; never report outside them.
        return min(max(value, self.min), self.max)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s values into this one (both must use the same accuracy)."""
        if other.gamma != self.gamma:
            from .errors import ConfigurationError

            raise ConfigurationError(
                f"cannot merge histograms of different accuracy ({self.relative_accuracy!r} and "
                f"{other.relative_accuracy!r})"
            )
        for key, n in other._buckets.items():
            self._buckets[key] = self._buckets.get(key, 0) + n
        self._zero += other._zero
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def copy(self) -> Histogram:
        new = Histogram(self.relative_accuracy)
        new.merge(self)
        return new

    def buckets(self) -> List[Tuple[float, int]]:
        """``(upper bound, count)`` per used bucket, ascending; the zero bucket has bound 0."""
        out = [(0.0, self._zero)] if self._zero else []
        out.extend((self.gamma ** (k + 1), self._buckets[k]) for k in sorted(self._buckets))
        return out

    def summary(
        self, quantiles: Tuple[float, ...] = (0.5, 0.9, 0.99)
    ) -> Dict[str, Optional[float]]:
        """count, sum, mean, min, max and ``p50``-style keys for ``quantiles``."""
        values = self.quantiles(quantiles)
        out: Dict[str, Optional[float]] = {
            "count": self.count,
            "sum": self.sum,
            "mean": self.mean,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
        }
        for q, v in zip(quantiles, values):
            out[quantile_key(q)] = v
        return out

    def __repr__(self) -> str:
        return (
            f"<Histogram count={self.count} buckets={self.bucket_count} "
            f"accuracy={self.relative_accuracy}>"
        )


def quantile_key(q: float) -> str:
    """0.5 -> 'p50', 0.999 -> 'p99.9'."""
    text = f"{q * 100:.6f}".rstrip("0").rstrip(".")
    return f"p{text}"
