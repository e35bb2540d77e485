"""``${VAR}`` and ``${VAR:-default}`` substitution in the string values of a document.

Shell semantics, as users expect them from ``sh``:

* ``${NAME}`` is the variable's value; unset is an error (there is nothing to fall back to),
  set to the empty string gives the empty string;
* ``${NAME:-default}`` is the default when ``NAME`` is unset *or empty*; the default may itself
  hold references (``${A:-${B:-x}}``), expanded only when it is used;
* ``$${`` is a literal ``${``; a ``$`` not followed by ``{`` is just a ``$``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ._errors import KeyPath, Problem

__all__ = ["substitute"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ALLOWED = (
    "${NAME} or ${NAME:-default}, NAME made of letters, digits and _ (write $${ for a literal ${)"
)


class _Expansion:
    """The state of expanding one string: the problems found and the variables read."""

    def __init__(self, text: str, env: Mapping[str, str]) -> None:
        self.text = text
        self.env = env
        self.problems: List[Problem] = []
        self.names: List[str] = []

    def run(self) -> str:
        value, _ = self.expand(0, nested=False)
        return value

    def expand(self, i: int, nested: bool) -> Tuple[str, int]:
        """Expand from ``i`` to the end, or (``nested``) to the ``}`` closing a default."""
        text, out = self.text, []
        n = len(text)
        while i < n:
            if text.startswith("$${", i):
                out.append("${")
                i += 3
            elif text.startswith("${", i):
                value, i = self.reference(i)
                out.append(value)
            elif nested and text[i] == "}":
                return "".join(out), i
            else:
                out.append(text[i])
                i += 1
        return "".join(out), i

    def reference(self, start: int) -> Tuple[str, int]:
        """Expand the reference at ``start`` (its ``${``); returns (value, index after it)."""
        text = self.text
        i = start + 2
        end = len(text)
        j = i
        while j < end and text[j] != "}" and not text.startswith(":-", j):
            j += 1
        name = text[i:j]
        default: Optional[str] = None
        default_problems: List[Problem] = []
        default_names: List[str] = []
        if j < end and text.startswith(":-", j):
            # Expand the default in a scope of its own: it counts only if it is used.
            outer_problems, outer_names = self.problems, self.names
            self.problems, self.names = default_problems, default_names
            try:
                default, j = self.expand(j + 2, nested=True)
            finally:
                self.problems, self.names = outer_problems, outer_names
        if j >= end:
            self.problems.append(
                Problem(
                    f"environment reference {text[start:]!r} is not closed by '}}'",
                    given=text,
                    allowed=_ALLOWED,
                )
            )
            return text[start:], end
        raw = text[start : j + 1]
        if not _NAME.match(name):
            self.problems.append(
                Problem(
                    f"{raw!r} is not a valid environment reference", given=text, allowed=_ALLOWED
                )
            )
            return raw, j + 1
        self.names.append(name)
        found = self.env.get(name)
        if found is not None and (found != "" or default is None):
            return found, j + 1
        if default is not None:
            self.problems.extend(default_problems)
            self.names.extend(default_names)
            return default, j + 1
        self.problems.append(
            Problem(
                f"environment variable {name!r} is not set and has no default",
                given=text,
                allowed=f"set {name}, or give a default: ${{{name}:-value}}",
            )
        )
        return raw, j + 1


def substitute(
    document: Any, env: Mapping[str, str]
) -> Tuple[Any, List[Tuple[KeyPath, Problem]], Dict[KeyPath, List[str]]]:
    """Return (new document, problems by key path, key path -> environment variables it read).

    Only string values are substituted (keys are not); a value that is exactly one reference
    stays a string, and pydantic converts it where a number or bool is expected.  The
    document's depth is bounded by the loader before this runs.
    """
    problems: List[Tuple[KeyPath, Problem]] = []
    from_env: Dict[KeyPath, List[str]] = {}

    def walk(value: Any, path: KeyPath) -> Any:
        if isinstance(value, str):
            if "$" not in value:
                return value
            expansion = _Expansion(value, env)
            result = expansion.run()
            problems.extend((path, p) for p in expansion.problems)
            if expansion.names:
                from_env[path] = expansion.names
            return result
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    return walk(document, ()), problems, from_env
