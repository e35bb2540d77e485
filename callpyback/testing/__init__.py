"""Testing with CallPyBack: capture observed calls, a mock clock for every pipeline, a reset.

Plain Python, no pytest needed (the pytest plugin builds its fixtures on these)::

    from callpyback.testing import called, capture, mock_time

    with mock_time() as clock, capture() as calls:
        charge(5)                      # decorated, or instrumented by callpyback.toml
    calls.assert_called("shop.payments:charge", outcome="success", attempts=1)

See ``docs/testing.md``.
"""

from __future__ import annotations

from ..time_sources import MockTimeSource
from ._capture import CallRecord, Capture, capture
from ._config import use_config
from ._expect import Expectation, called
from ._reset import reset, reset_breakers
from ._time import mock_time, use_time_source

__all__ = [
    "CallRecord",
    "Capture",
    "Expectation",
    "MockTimeSource",
    "called",
    "capture",
    "mock_time",
    "reset",
    "reset_breakers",
    "use_config",
    "use_time_source",
]
