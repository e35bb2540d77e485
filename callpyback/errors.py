"""Exceptions and warnings raised by CallPyBack itself.

Every exception derives from :class:`CallPyBackError`; configuration problems are also
:class:`ValueError` so that code validating input generically still catches them.
"""

from __future__ import annotations

__all__ = [
    "CallPyBackError",
    "CallPyBackWarning",
    "ConfigurationError",
    "ObserverDisabledWarning",
    "ObserverFailureWarning",
]


class CallPyBackError(Exception):
    """Base class of every exception CallPyBack raises on its own behalf."""


class ConfigurationError(CallPyBackError, ValueError):
    """Bad input given to CallPyBack: the message says what was wrong and how to fix it."""


class CallPyBackWarning(UserWarning):
    """Base class of CallPyBack's warnings."""


class ObserverFailureWarning(CallPyBackWarning):
    """An observer raised; the observed call was not affected."""


class ObserverDisabledWarning(CallPyBackWarning):
    """An observer failed too many times in a row and was disabled."""
