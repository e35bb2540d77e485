"""``use_time_source`` / ``mock_time``: one time source for every pipeline while a block runs.

The override is read where pipelines are built, and entering or leaving the block rebuilds
every live decorator, so code decorated (or instrumented by the import hook) long before the
test gets the clock too.  Nothing global is patched: ``time.monotonic``, ``time.perf_counter``
and ``asyncio.sleep`` keep working as usual (patching them freezes event loops).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from .._decorator import _OVERRIDE, _check_time_source
from ..time_sources import MockTimeSource

__all__ = ["mock_time", "use_time_source"]


@contextlib.contextmanager
def use_time_source(source: Any) -> Iterator[Any]:
    """Every pipeline times calls, stamps them and sleeps between retries with ``source``
    until the block exits (breakers and alert rules without a clock of their own read it
    too); the previous time sources are back afterwards.  Blocks may nest."""
    checked = _check_time_source(source)
    previous = _OVERRIDE.set_time_source(checked)
    try:
        yield checked
    finally:
        _OVERRIDE.set_time_source(previous)


@contextlib.contextmanager
def mock_time(initial: float = 0.0) -> Iterator[MockTimeSource]:
    """:func:`use_time_source` with a fresh :class:`~callpyback.MockTimeSource`, yielded:
    retry back-off is recorded in ``clock.sleeps`` and advances the clock instead of waiting."""
    clock = MockTimeSource(initial)
    with use_time_source(clock):
        yield clock
