"""The handler base class and the option checks every built-in handler shares."""

from __future__ import annotations

import math
from typing import Any, Tuple, Type

from .._handling import Decision, check_exception_classes
from ..errors import ConfigurationError

__all__ = ["ErrorHandler"]

#: Kinds of wrapped function that may be run again; generators never are (a restart would
#: repeat the items already yielded).
RETRYABLE_KINDS = frozenset({"function", "coroutine"})


class ErrorHandler:
    """Base class for error handlers (chain of responsibility).

    ``handle(exception, context)`` returns :class:`~callpyback.Recover`,
    :class:`~callpyback.Raise`, :class:`~callpyback.Retry`, or None to pass the failure to the
    next handler.  Subclasses may also define the optional hooks ``before_attempt``,
    ``after_success``, ``record_failure``, ``call_sync`` and ``call_async``; the chain looks
    them up once, so a hook that is not defined costs nothing.
    """

    #: Shown in logs and in ``context.recovered_by``; defaults to the class name.
    name: str = ""

    def __init__(self, *, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigurationError(
                f"{type(self).__name__}(name=...) must be a non-empty string, got {name!r}"
            )
        self.name = name or type(self).__name__

    def handle(self, exception: BaseException, context: Any) -> Decision | None:
        """Decide what the failure becomes: a :class:`Decision`, or None to pass it on."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def exception_types(value: Any, owner: str, key: str) -> Tuple[Type[BaseException], ...]:
    """An exception class or a sequence of them, checked at construction time."""
    if value is None:
        return ()
    classes = check_exception_classes(value, f"{owner}({key}=...)")
    if not classes and key == "exceptions":
        raise ConfigurationError(
            f"{owner}(exceptions=...) is empty, so the handler could never act; "
            "list at least one exception class, e.g. exceptions=(ConnectionError,)"
        )
    return classes


def number(
    value: Any,
    owner: str,
    key: str,
    *,
    minimum: float = 0.0,
    inclusive: bool = True,
    integer: bool = False,
    maximum: float | None = None,
) -> Any:
    """A finite number within bounds, or a ConfigurationError naming the option and the rule."""
    kind = "an int" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok_type or isinstance(value, bool) or (not integer and not math.isfinite(value)):
        raise ConfigurationError(f"{owner}({key}=...) must be {kind}, got {value!r}")
    low_ok = value >= minimum if inclusive else value > minimum
    if not low_ok:
        rule = ">=" if inclusive else ">"
        raise ConfigurationError(f"{owner}({key}=...) must be {rule} {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{owner}({key}=...) must be <= {maximum:g}, got {value!r}")
    return value


def type_names(classes: Tuple[Type[BaseException], ...]) -> list[str]:
    return [c.__name__ for c in classes]
