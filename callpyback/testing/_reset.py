"""``reset()``: CallPyBack's process-wide state back to what a fresh process has.

Only what was loaded is touched (``reset()`` never imports pydantic, pluggy or the plugins to
clean something that was never used).  Active ``capture()`` and ``use_time_source()`` blocks
are left alone: they end with their ``with`` block.
"""

from __future__ import annotations

import sys
from typing import List

__all__ = ["reset", "reset_breakers"]


def _loaded(name: str) -> object:
    return sys.modules.get(f"callpyback.{name}")


def reset(*, flush_timeout: float = 5.0) -> None:
    """Uninstall the import hook (plugins' integrations with it), run what background observers
    have queued, close and zero every circuit breaker, return shared state to the in-process
    backend, and forget plugin discovery and the current configuration.

    Raises ``TimeoutError`` if the background queue did not drain within ``flush_timeout``
    seconds (everything else is reset first).
    """
    problems: List[str] = []
    auto = _loaded("autoinstrument")
    if auto is not None:
        auto.uninstall()  # type: ignore[attr-defined]
    background = _loaded("_background")
    if background is not None and not background.flush(flush_timeout):  # type: ignore[attr-defined]
        problems.append(
            f"background observers did not finish their queue within {flush_timeout:g}s "
            "(a background observer is blocked or very slow)"
        )
    reset_breakers()
    state = _loaded("state")
    if state is not None and state.current() is not state.MEMORY:  # type: ignore[attr-defined]
        state.use(state.MEMORY)  # type: ignore[attr-defined]
    plugins = _loaded("plugins")
    if plugins is not None:
        plugins.reset()  # type: ignore[attr-defined]
    config = _loaded("config")
    if config is not None:
        config._reset()  # type: ignore[attr-defined]
    if problems:
        raise TimeoutError("callpyback.testing.reset(): " + "; ".join(problems))


def reset_breakers() -> None:
    """Close and zero every live circuit breaker (if the breaker module was ever loaded)."""
    breaker = _loaded("handlers._breaker")
    if breaker is not None:
        breaker.reset_breakers()  # type: ignore[attr-defined]
