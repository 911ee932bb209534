"""Lazy exports: a package names what it offers without importing the modules that define it.

Used by the package ``__init__`` files so that ``import motionflow`` (and its subpackages) stays light:
torch-heavy, OpenCV, open3d or Ray code is imported on first use of a name, never at import time.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` for ``package`` that resolves ``table``.

    Args:
        package: the importing package's ``__name__``.
        table: exported name -> module that defines it, either absolute (``"motionflow.eval.runner"``)
            or a submodule of ``package`` (``"warp"`` for ``package + ".warp"``).

    Example:
        >>> __getattr__ = lazy_exports(__name__, {"knn": "knn"})  # doctest: +SKIP
    """

    def __getattr__(name: str):
        if name in table:
            module = table[name]
            if not module.startswith("motionflow"):
                module = f"{package}.{module}"
            return getattr(importlib.import_module(module), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
