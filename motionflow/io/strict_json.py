"""Strict JSON: what every motionflow JSON file holds (RFC 8259: no ``NaN`` / ``Infinity`` literals,
which Python's ``json`` writes by default and other readers refuse)."""

from __future__ import annotations

import json
import math


def json_safe(value):
    """JSON-safe copy: NaN / inf floats become None, numpy scalars plain numbers, keys strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def strict_dumps(value, **kwargs) -> str:
    """``json.dumps`` of :func:`json_safe` ``(value)`` that refuses any remaining non-finite number."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


__all__ = ["json_safe", "strict_dumps"]
