"""Service B's business logic."""

from __future__ import annotations

LEVELS = {"apple": 3, "pear": 0}


def reserve(item: str) -> dict:
    available = check_level(item)
    return {"item": item, "reserved": available > 0}


def check_level(item: str) -> int:
    return LEVELS.get(item, 0)
