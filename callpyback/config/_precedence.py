"""Where settings come from: explicit argument > environment > file > default, decided here only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

__all__ = ["UNSET", "Choice", "choose", "discover", "env_name"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

CONFIG_ENV = "CALLPYBACK_CONFIG"
#: The kill switch: when truthy it disables instrumentation whatever else says otherwise.
DISABLED_ENV = "CALLPYBACK_DISABLED"
FILE_NAME = "callpyback.toml"


def env_name(setting: str) -> str:
    """``max_observer_failures`` -> ``CALLPYBACK_MAX_OBSERVER_FAILURES``."""
    return "CALLPYBACK_" + setting.upper()


@dataclass(frozen=True)
class Choice:
    """A value and where it came from (``argument``, ``environment CALLPYBACK_X``, ``file``...)."""

    value: Any
    origin: str


def choose(
    explicit: Any = UNSET,
    *,
    env: Mapping[str, str],
    variable: Optional[str],
    file: Any = UNSET,
    default: Any = UNSET,
) -> Choice:
    """The single precedence rule: explicit argument, then environment, then file, then default.

    An environment variable set to the empty string counts as unset, as in most shells' idiom
    ``VAR= command``.
    """
    if explicit is not UNSET:
        return Choice(explicit, "argument")
    if variable is not None:
        found = env.get(variable)
        if found is not None and found != "":
            return Choice(found, f"environment {variable}")
    if file is not UNSET:
        return Choice(file, "file")
    return Choice(default, "default")


def discover(cwd: Union[os.PathLike[str], str, None] = None) -> Optional[Tuple[Path, bool]]:
    """Find ``callpyback.toml`` (or a ``pyproject.toml`` with ``[tool.callpyback]``).

    Looks in ``cwd`` and its parents, stopping at the project root: the first directory that
    holds ``.git`` or ``pyproject.toml``.  In one directory ``callpyback.toml`` wins over
    ``pyproject.toml``.  Returns (path, is_pyproject) or None.
    """
    here = Path(cwd if cwd is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / FILE_NAME
        if candidate.is_file():
            return candidate, False
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            if _has_tool_table(pyproject):
                return pyproject, True
            return None
        if (folder / ".git").exists():
            return None
    return None


def _has_tool_table(pyproject: Path) -> bool:
    # A cheap text test first: most pyproject files never mention callpyback.
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "callpyback" not in text:
        return False
    from ._toml import _tomllib

    toml = _tomllib()
    try:
        tool = toml.loads(text).get("tool")
    except toml.TOMLDecodeError:
        # It mentions callpyback but does not parse: let the loader report where it breaks.
        return "tool.callpyback" in text
    return isinstance(tool, dict) and isinstance(tool.get("callpyback"), dict)
