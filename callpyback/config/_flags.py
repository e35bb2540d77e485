"""The one parser of boolean environment variables, and the two switches read before any config.

Every ``CALLPYBACK_*`` boolean goes through :func:`parse_flag`: the loader for settings such as
``CALLPYBACK_ENABLED``, and the import hook, the bootstrap and the loader alike for the kill
switch.  The words are those pydantic accepts for a ``bool``, so a value means the same thing
whether it is read here or validated as a setting.  Imports nothing heavy: the ``.pth``
bootstrap reads the switches at every interpreter start.
"""

from __future__ import annotations

import os
from typing import Mapping, NamedTuple, Optional

__all__ = [
    "AUTOINSTALL_ENV",
    "DISABLED_ENV",
    "FALSE_WORDS",
    "TRUE_WORDS",
    "Switch",
    "autoinstall",
    "kill_switch",
    "parse_flag",
]

#: The kill switch: when set, nothing is instrumented whatever else says.
DISABLED_ENV = "CALLPYBACK_DISABLED"
#: Set: the ``.pth`` bootstrap installs the import hook at interpreter start-up.
AUTOINSTALL_ENV = "CALLPYBACK_AUTOINSTALL"

TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "off"})
WORDS = "1/0, true/false, yes/no, on/off (or y/n, t/f; any case)"


def parse_flag(value: Optional[str]) -> Optional[bool]:
    """True or False for a boolean word (any case, spaces ignored); None when unset or empty.

    Raises ``ValueError`` for anything else (``"2"``, ``"maybe"``).
    """
    if value is None:
        return None
    word = value.strip().lower()
    if not word:
        return None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{value!r} is not a boolean; use {WORDS}")


class Switch(NamedTuple):
    """The state of a switch, and a note for messages when its value was not a boolean."""

    on: bool
    #: None when the value was a boolean word (or unset); else why it was read as it was.
    warning: Optional[str] = None


def kill_switch(env: Optional[Mapping[str, str]] = None) -> Switch:
    """``CALLPYBACK_DISABLED``.  A value that is not a boolean counts as *set*: a kill switch
    must not fail open because of a typo, so callpyback does less, and says why."""
    raw = (os.environ if env is None else env).get(DISABLED_ENV)
    try:
        return Switch(bool(parse_flag(raw)))
    except ValueError as exc:
        return Switch(True, f"{DISABLED_ENV}: {exc}; taken as set, so callpyback is disabled")


def autoinstall(env: Optional[Mapping[str, str]] = None) -> Switch:
    """``CALLPYBACK_AUTOINSTALL``.  A value that is not a boolean counts as *unset*: the hook is
    not installed (doing less, as for the kill switch), and the warning says why."""
    raw = (os.environ if env is None else env).get(AUTOINSTALL_ENV)
    try:
        return Switch(bool(parse_flag(raw)))
    except ValueError as exc:
        return Switch(
            False, f"{AUTOINSTALL_ENV}: {exc}; taken as unset, so the import hook is not installed"
        )
