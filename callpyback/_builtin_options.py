"""Pydantic options models of the built-in components (one model per registered name).

Each model forbids unknown keys, so a misspelt option in ``callpyback.toml`` is an error naming
the key.  Field names are what the config file uses; the factories in :mod:`._builtin_plugin`
translate them to constructor arguments.  Imported only when plugins are discovered.
"""

from __future__ import annotations

import builtins
import importlib
from typing import Any, List, Optional, Tuple, Type

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DefaultHandlerOptions",
    "MockTimeOptions",
    "NoOptions",
    "Options",
    "resolve_exception",
    "resolve_exceptions",
]


class Options(BaseModel):
    """Base of every built-in options model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class NoOptions(Options):
    """For components that take no options."""


def resolve_exception(name: Any) -> Type[BaseException]:
    """``"ValueError"`` or ``"package.module.Error"`` / ``"package.module:Error"`` -> the class."""
    if isinstance(name, type) and issubclass(name, BaseException):
        return name
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"expected an exception class name such as 'ValueError', got {name!r}")
    text = name.strip()
    if ":" in text:
        module_name, _, attr = text.partition(":")
    elif "." in text:
        module_name, _, attr = text.rpartition(".")
    else:
        module_name, attr = "builtins", text
    if module_name == "builtins":
        found = getattr(builtins, attr, None)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(
                f"cannot import module {module_name!r} for exception {name!r}: {exc}"
            ) from None
        found = getattr(module, attr, None)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        if module_name == "builtins":
            import difflib

            known = [n for n, v in vars(builtins).items()
                     if isinstance(v, type) and issubclass(v, BaseException)]
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{name!r} is not a built-in exception{hint} (use 'package.module.Error' for "
                "others)"
            )
        raise ValueError(f"{name!r} does not name an exception class in {module_name!r}")
    return found


def resolve_exceptions(value: Any) -> Tuple[Type[BaseException], ...]:
    if isinstance(value, (str, type)):
        value = [value]
    return tuple(resolve_exception(v) for v in value)


class MockTimeOptions(Options):
    """``mock``: a manual clock starting at ``initial`` seconds since the epoch."""

    initial: float = 0.0


class DefaultHandlerOptions(Options):
    """``default`` / ``fallback``: recover the listed exceptions with ``value``."""

    value: Any = None
    exceptions: List[Any] = Field(default_factory=lambda: ["Exception"])
    name: Optional[str] = None

    @field_validator("exceptions", mode="before")
    @classmethod
    def _exceptions(cls, value: Any) -> List[Any]:
        return list(resolve_exceptions(value))
