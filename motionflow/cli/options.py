"""``KEY=VALUE`` command-line options (``motionflow eval --method-option``, ``motionflow sceneflow --method-option``)."""

from __future__ import annotations

import ast
from typing import Iterable


def parse_key_values(items: Iterable[str], flag: str) -> dict:
    """``["k=1", "name=fast"]`` -> ``{"k": 1, "name": "fast"}``.

    Values are Python literals when they parse as one (``8192``, ``0.2``, ``True``, ``(1, 2)``), else
    plain strings.

    Raises:
        ValueError: an item without ``=`` or with an empty key (the message names ``flag``).
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag}: expected KEY=VALUE, found {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a plain string
    return out
