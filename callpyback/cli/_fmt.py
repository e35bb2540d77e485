"""Terminal output for the CLI: aligned tables, colour only on a TTY (honouring ``NO_COLOR``)."""

from __future__ import annotations

import json
import math
import os
from typing import IO, Any, List, Mapping, Optional, Sequence

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def use_color(stream: IO[str], env: Optional[Mapping[str, str]] = None) -> bool:
    """Colour only for a terminal, and never when ``NO_COLOR`` is set to anything non-empty."""
    env = os.environ if env is None else env
    if env.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Painter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], paint: Optional[Painter] = None
) -> str:
    """Left-aligned columns separated by two spaces; the header underlined with dashes."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    head = line(headers)
    if paint is not None:
        head = paint(head, "bold")
    out = [head, line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


# --- a small TOML writer for ``config show`` -------------------------------------------------
def _key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key):
        return key
    return json.dumps(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {_scalar(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # dates and the like: shown, not round-tripped


def dump_toml(doc: Mapping[str, Any], comments: Optional[Mapping[str, str]] = None) -> str:
    """TOML text for ``doc``: top-level scalars, tables, tables of tables and arrays of tables.

    ``comments`` maps ``"table.key"`` to a trailing comment (where a setting came from).
    """
    comments = comments or {}
    out: List[str] = []

    def body(table: Mapping[str, Any], prefix: str) -> None:
        for k, v in table.items():
            note = comments.get(f"{prefix}{k}")
            suffix = f"  # {note}" if note else ""
            out.append(f"{_key(str(k))} = {_scalar(v)}{suffix}")

    body(
        {
            k: v
            for k, v in doc.items()
            if not isinstance(v, (dict, list))
            or (isinstance(v, list) and not all(isinstance(i, dict) for i in v))
        },
        "",
    )
    for k, v in doc.items():
        if isinstance(v, dict):
            if v and _is_table_of_tables(v):
                for name, sub in v.items():
                    out.extend(["", f"[{_key(k)}.{_key(str(name))}]"])
                    body(sub, f"{k}.{name}.")
            else:
                out.extend(["", f"[{_key(k)}]"])
                body(v, f"{k}.")
        elif isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
            for item in v:
                out.extend(["", f"[[{_key(k)}]]"])
                body(item, f"{k}[].")
    return "\n".join(out).lstrip("\n") + "\n"


def _is_table_of_tables(value: Mapping[str, Any]) -> bool:
    return all(isinstance(v, dict) for v in value.values())
