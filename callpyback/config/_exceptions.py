"""Exception classes named in a configuration: checked without importing, resolved at build.

Validation (``callpyback check --no-build``, ``explain``, ``config show``) must not run user
code, so :func:`check_exception_name` judges a name by its form, and a built-in name by the
``builtins`` module; only :func:`resolve_exception`, called when a component or pipeline is
built, imports the module a dotted name points into.
"""

from __future__ import annotations

import builtins
import difflib
import importlib
import re
from typing import Any, List, Type

__all__ = ["BUILTIN_EXCEPTIONS", "ExceptionNameError", "check_exception_name", "resolve_exception"]

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)*\Z")

BUILTIN_EXCEPTIONS: List[str] = sorted(
    n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)
)


class ExceptionNameError(ValueError):
    """A name that cannot name an exception class; ``short`` is the message without the
    suggestion, which ``suggestions`` holds for tools."""

    def __init__(self, message: str, short: str, suggestions: List[str], allowed: str) -> None:
        super().__init__(message)
        self.short = short
        self.suggestions = suggestions
        self.allowed = allowed

    def __reduce__(self) -> Any:
        return (
            type(self),
            (self.args[0], self.short, self.suggestions, self.allowed),
            self.__dict__ or None,
        )


_OTHERS = "a built-in exception such as 'ValueError', or 'package.module.ClassName'"


def _split(text: str) -> tuple[str, str]:
    if ":" in text:
        module, _, attr = text.partition(":")
    elif "." in text:
        module, _, attr = text.rpartition(".")
    else:
        module, attr = "builtins", text
    return module, attr


def check_exception_name(name: Any) -> str:
    """The stripped name if it can name an exception class; raises ``ValueError`` otherwise.

    Built-in names are checked (with a "did you mean"); ``package.module.Error`` and
    ``package.module:Error`` are checked for form only: nothing is imported.
    """
    if isinstance(name, type) and issubclass(name, BaseException):
        return f"{name.__module__}.{name.__qualname__}"
    if not isinstance(name, str) or not name.strip():
        message = f"expected an exception class name such as 'ValueError', got {name!r}"
        raise ExceptionNameError(message, message, [], _OTHERS)
    text = name.strip()
    if not _DOTTED.match(text):
        short = f"{name!r} is not an exception class name"
        raise ExceptionNameError(f"{short}: use {_OTHERS}", short, [], _OTHERS)
    module, attr = _split(text)
    if module == "builtins" and attr not in BUILTIN_EXCEPTIONS:
        close = difflib.get_close_matches(attr, BUILTIN_EXCEPTIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        short = f"{name!r} is not a built-in exception"
        raise ExceptionNameError(
            f"{short}{hint} (use 'package.module.Error' for others)",
            short,
            close,
            "a built-in exception, or 'package.module.ClassName' for others",
        )
    return text


def resolve_exception(name: Any) -> Type[BaseException]:
    """``"ValueError"`` or ``"package.module.Error"`` / ``"package.module:Error"`` -> the class.

    Imports the module.  Whatever importing it raises (``SystemExit`` included; only
    ``KeyboardInterrupt`` goes on) becomes a ``ValueError`` naming the module and the name.
    """
    if isinstance(name, type) and issubclass(name, BaseException):
        return name
    text = check_exception_name(name)
    module_name, attr = _split(text)
    if module_name == "builtins":
        found: Any = getattr(builtins, attr)
    else:
        try:
            module = importlib.import_module(module_name)
        except KeyboardInterrupt:
            raise
        except ImportError as exc:
            raise ValueError(
                f"cannot import module {module_name!r} for exception {name!r}: {exc}"
            ) from None
        except BaseException as exc:
            raise ValueError(
                f"importing module {module_name!r} for exception {name!r} raised "
                f"{type(exc).__name__}: {exc}"
            ) from None
        found = module
        for part in attr.split("."):
            found = getattr(found, part, None)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ValueError(f"{name!r} does not name an exception class in {module_name!r}")
    return found
