"""Repository-wide pytest hooks (the core's and every plugin's tests).

``CALLPYBACK_HYPOTHESIS_SCALE=0.25`` runs every Hypothesis test with a quarter of its examples
(at least 10), explicit ``@settings(max_examples=...)`` included: ``.ci/matrix.sh`` uses it for
the oldest and newest Pythons, which the main run has already searched in full.
"""

from __future__ import annotations

import os
from typing import Any, List


def _scaled(current: Any, scale: float) -> Any:
    from hypothesis import settings

    return settings(current, max_examples=max(10, int(current.max_examples * scale)))


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    raw = os.environ.get("CALLPYBACK_HYPOTHESIS_SCALE", "").strip()
    if not raw or float(raw) >= 1:
        return
    scale = float(raw)
    done: set[int] = set()
    for item in items:
        # @given tests keep their settings on the wrapped function; stateful machines' TestCase
        # classes on the class.
        fn = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        current = getattr(fn, "_hypothesis_internal_use_settings", None)
        if current is not None and id(fn) not in done:
            fn._hypothesis_internal_use_settings = _scaled(current, scale)
            done.add(id(fn))
        cls = getattr(item, "cls", None)
        current = getattr(cls, "settings", None) if cls is not None else None
        if current is not None and hasattr(current, "max_examples") and id(cls) not in done:
            cls.settings = _scaled(current, scale)
            done.add(id(cls))
