"""Mergeable metric accumulators: exact sums and integer counts, never a mean of means by accident.

A dataset metric is a ratio of two totals (``sum of per-pixel EPE / number of valid pixels``, or
``sum of per-image mean EPE / number of images``). Each sample contributes float64 partial sums and
integer counts; the dataset totals are the sums of those contributions.

Floating-point addition is not associative, so a naive running sum depends on the order in which
samples finish (and on how a run was split across processes or machines). :class:`Accumulator`
instead stores every total exactly: a finite float64 is an integer multiple of ``2**-1074``, so it is
kept as a Python integer in those units and added with integer arithmetic (exact, associative,
commutative). The final ratio is rounded once. Results computed in pieces, in any order, in other
processes, therefore merge to bit-identical numbers.

Serialised form (JSON-safe): ``{"sums": {key: int}, "counts": {key: int}}`` where the sums are the
exact integers (see :meth:`Accumulator.to_dict`).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from ..errors import ShapeError

_SCALE_BITS = 1074  # 2**-1074 is the smallest positive float64 (subnormal): every finite float is k * 2**-1074
_SCALE = 1 << _SCALE_BITS


def float_to_exact(value: float) -> int:
    """The finite float ``value`` as an exact integer number of ``2**-1074`` units."""
    value = float(value)
    if not math.isfinite(value):
        raise ShapeError(f"accumulator: expected a finite value, found {value!r}")
    num, den = value.as_integer_ratio()  # den is a power of two <= 2**1074
    return num * (_SCALE // den)


def exact_to_float(total: int) -> float:
    """Round an exact ``2**-1074``-unit integer to the nearest float (int / int is correctly rounded)."""
    return total / _SCALE


class Accumulator:
    """Named exact sums and integer counts that merge by addition.

    ``add(key, value)`` adds a float to the sum ``key``; ``count(key, n)`` adds an integer to the
    count ``key``. ``ratio(sum_key, count_key)`` is the only way a mean comes out: the exact sum
    divided by the count (NaN when the count is zero).
    """

    __slots__ = ("sums", "counts")

    def __init__(self, sums: Mapping[str, int] | None = None, counts: Mapping[str, int] | None = None):
        self.sums: dict[str, int] = dict(sums or {})
        self.counts: dict[str, int] = dict(counts or {})

    # -- building -------------------------------------------------------------------------------
    def add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0) + float_to_exact(value)

    def count(self, key: str, n: int) -> None:
        n = int(n)
        self.counts[key] = self.counts.get(key, 0) + n

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Add ``other`` into ``self`` (in place) and return ``self``."""
        for key, value in other.sums.items():
            self.sums[key] = self.sums.get(key, 0) + value
        for key, value in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        return self

    @classmethod
    def merged(cls, parts: Iterable["Accumulator"]) -> "Accumulator":
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    # -- reading --------------------------------------------------------------------------------
    def total(self, key: str) -> float:
        """The sum ``key`` rounded to float (0.0 when never added)."""
        return exact_to_float(self.sums.get(key, 0))

    def n(self, key: str) -> int:
        return self.counts.get(key, 0)

    def ratio(self, sum_key: str, count_key: str, scale: float = 1.0) -> float:
        """``scale * sum / count`` rounded once; NaN when the count is zero."""
        n = self.counts.get(count_key, 0)
        if n == 0:
            return float("nan")
        total = self.sums.get(sum_key, 0)
        if scale != 1.0:
            # scale is a small constant (100 for percentages); apply it after the exact division
            return scale * (total / (_SCALE * n))
        return total / (_SCALE * n)

    # -- serialisation --------------------------------------------------------------------------
    @classmethod
    def from_partial(cls, partial: Mapping) -> "Accumulator":
        """Build from one sample's partial ``{"sums": {key: float}, "counts": {key: int}}``.

        Per-sample sums are single float64 values, stored in JSON with Python's shortest
        round-trip repr, so this conversion is exact.
        """
        acc = cls()
        try:
            for key, value in partial["sums"].items():
                acc.add(str(key), float(value))
            for key, value in partial["counts"].items():
                acc.count(str(key), int(value))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ShapeError(
                f"accumulator: expected a partial with 'sums' (floats) and 'counts' (ints), found {partial!r:.200} ({exc})"
            ) from exc
        return acc

    def to_dict(self) -> dict:
        return {"sums": dict(sorted(self.sums.items())), "counts": dict(sorted(self.counts.items()))}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Accumulator":
        try:
            sums = {str(k): int(v) for k, v in data["sums"].items()}
            counts = {str(k): int(v) for k, v in data["counts"].items()}
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ShapeError(
                f"accumulator: expected a mapping with integer 'sums' and 'counts', found {type(data).__name__} ({exc})"
            ) from exc
        return cls(sums, counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Accumulator):
            return NotImplemented
        nz = lambda d: {k: v for k, v in d.items() if v != 0}  # noqa: E731
        return nz(self.sums) == nz(other.sums) and nz(self.counts) == nz(other.counts)

    def __repr__(self) -> str:
        return f"Accumulator({len(self.sums)} sums, {len(self.counts)} counts)"
