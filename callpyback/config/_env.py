"""``${VAR}`` and ``${VAR:-default}`` substitution in the string values of a document."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Tuple

from ._errors import KeyPath, Problem

__all__ = ["substitute"]

# ``$${`` escapes a literal ``${``.  Names follow the shell's rules.
_REF = re.compile(r"\$\$\{|\$\{([^}:]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def substitute(
    document: Any, env: Mapping[str, str]
) -> Tuple[Any, List[Tuple[KeyPath, Problem]], Dict[KeyPath, List[str]]]:
    """Return (new document, problems by key path, key path -> environment variables it read).

    Only string values are substituted (keys are not); a value that is exactly one reference
    stays a string, and pydantic converts it where a number or bool is expected.
    """
    problems: List[Tuple[KeyPath, Problem]] = []
    from_env: Dict[KeyPath, List[str]] = {}

    def walk(value: Any, path: KeyPath) -> Any:
        if isinstance(value, str):
            if "$" not in value:
                return value
            return one(value, path)
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def one(text: str, path: KeyPath) -> str:
        def replace(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if not _NAME.match(name):
                problems.append((path, Problem(
                    f"{m.group(0)!r} is not a valid environment reference",
                    given=text,
                    allowed="${NAME} or ${NAME:-default}, NAME made of letters, digits and _ "
                    "(write $${ for a literal ${)",
                )))
                return m.group(0)
            from_env.setdefault(path, []).append(name)
            found = env.get(name)
            if found is not None:
                return found
            if default is not None:
                return default
            problems.append((path, Problem(
                f"environment variable {name!r} is not set and has no default",
                given=text,
                allowed=f"set {name}, or give a default: ${{{name}:-value}}",
            )))
            return m.group(0)

        return _REF.sub(replace, text)

    return walk(document, ()), problems, from_env
