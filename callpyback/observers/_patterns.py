"""Matching a wrapped function against user patterns, resolved once per function."""

from __future__ import annotations

import fnmatch
from typing import Any


def matches(pattern: str, info: Any) -> bool:
    """``pattern`` is a glob over ``module:qualname``, ``qualname`` or the bare name.

    ``"shop.pay:charge"``, ``"charge"``, ``"Account.*"`` and ``"shop.*:*"`` all work; patterns
    without ``:`` compare against the qualname and the name, so they need no module.
    """
    if ":" in pattern:
        return fnmatch.fnmatchcase(info.target, pattern)
    return fnmatch.fnmatchcase(info.qualname, pattern) or fnmatch.fnmatchcase(info.name, pattern)
