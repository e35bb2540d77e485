"""Reading TOML, and finding the line of any key path in the source for error messages."""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

from ._errors import KeyPath, Problem

__all__ = ["MAX_DEPTH", "Locator", "parse_toml", "too_deep"]

#: How deeply tables and arrays may nest.  A real configuration needs about six levels; the
#: limit keeps every recursive walk (the TOML parser's, substitution, pydantic's, redaction)
#: far from Python's recursion limit, so a hostile file gets a clear error, not a crash.
MAX_DEPTH = 32

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_LINE_COL = re.compile(r"line (\d+)")


def _tomllib() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.9/3.10 only
        import tomli as tomllib
    return tomllib


def parse_toml(text: str, file: str) -> Tuple[Optional[Dict[str, Any]], List[Problem]]:
    """The document, or None and the syntax error as a located problem."""
    toml = _tomllib()
    try:
        return toml.loads(text), []
    except RecursionError:
        return None, [_too_deep_problem(file, None)]
    except toml.TOMLDecodeError as exc:
        message = str(exc)
        found = _LINE_COL.search(message)
        line = int(found.group(1)) if found else None
        return None, [
            Problem(
                f"TOML syntax error: {message}",
                file=file,
                line=line,
                allowed="valid TOML (https://toml.io); check quotes, brackets and commas",
            )
        ]


def _too_deep_problem(file: Optional[str], line: Optional[int]) -> Problem:
    return Problem(
        f"tables and arrays are nested more than {MAX_DEPTH} levels deep",
        file=file,
        line=line,
        allowed=f"at most {MAX_DEPTH} levels of nested tables and arrays",
    )


def too_deep(document: Any, limit: int = MAX_DEPTH) -> Optional[Tuple[KeyPath, Problem]]:
    """The first key path nested deeper than ``limit``, as a problem; found without recursion."""
    stack: List[Tuple[Any, KeyPath]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > limit:
            return path[:limit], _too_deep_problem(None, None)
        if isinstance(value, dict):
            stack.extend((v, (*path, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value))
    return None


class Locator:
    """Maps key paths (``("pipelines", 2, "observers", 0)``) to 1-based line numbers.

    A small scanner over *valid* TOML (tomllib has already parsed it): it follows table
    headers, arrays of tables, dotted keys, arrays and inline tables.  It never raises; a
    construct it does not follow just leaves its keys unmapped, and :meth:`line` falls back
    to the nearest enclosing key.
    """

    def __init__(self, text: str, prefix: KeyPath = ()) -> None:
        self._prefix = prefix
        self._text = text
        self._scanned: Optional[Dict[KeyPath, int]] = None

    @property
    def lines(self) -> Dict[KeyPath, int]:
        """Key path -> line, scanned on first use: a valid config never needs it at load."""
        if self._scanned is None:
            self._scanned = {}
            self._i = 0
            self._line = 1
            self._aot: Dict[KeyPath, int] = {}
            # A locator bug must never hide the real error message: keep what was mapped.
            with contextlib.suppress(Exception):
                self._document()
        return self._scanned

    def line(self, path: KeyPath) -> Optional[int]:
        """The line of ``path``, or of its nearest ancestor that appears in the file."""
        lines = self.lines
        full = self._prefix + tuple(path)
        while len(full) >= len(self._prefix):
            found = lines.get(full)
            if found is not None:
                return found
            if not full:
                break
            full = full[:-1]
        return None

    # --- scanner ----------------------------------------------------------------------------
    def _peek(self, n: int = 1) -> str:
        return self._text[self._i : self._i + n]

    def _advance(self, n: int = 1) -> None:
        chunk = self._text[self._i : self._i + n]
        self._line += chunk.count("\n")
        self._i += n

    def _skip_ws(self, newlines: bool = False) -> None:
        text = self._text
        while self._i < len(text):
            c = text[self._i]
            if c in " \t\r" or (newlines and c == "\n"):
                self._advance()
            elif c == "#":
                end = text.find("\n", self._i)
                self._i = len(text) if end < 0 else end
            else:
                return

    def _record(self, path: KeyPath) -> None:
        assert self._scanned is not None
        self._scanned.setdefault(path, self._line)

    def _document(self) -> None:
        path: KeyPath = ()
        while True:
            self._skip_ws(newlines=True)
            if self._i >= len(self._text):
                return
            if self._peek(2) == "[[":
                self._advance(2)
                keys = self._keys("]")
                self._advance(2)
                base = (*self._resolve(keys[:-1]), keys[-1])
                self._aot[base] = self._aot.get(base, -1) + 1
                path = (*base, self._aot[base])
                self._record(base)
                self._record(path)
            elif self._peek() == "[":
                self._advance()
                keys = self._keys("]")
                self._advance()
                path = self._resolve(keys)
                for n in range(1, len(path) + 1):
                    self._record(path[:n])
            else:
                keys = self._keys("=")
                self._advance()
                full = path + keys
                for n in range(len(path) + 1, len(full) + 1):
                    self._record(full[:n])
                self._value(full)

    def _resolve(self, keys: KeyPath) -> KeyPath:
        out: KeyPath = ()
        for key in keys:
            out = (*out, key)
            if out in self._aot:
                out = (*out, self._aot[out])
        return out

    def _keys(self, end: str) -> KeyPath:
        keys: List[str] = []
        while True:
            self._skip_ws()
            c = self._peek()
            if c in ('"', "'"):
                keys.append(self._string())
            else:
                m = _BARE.match(self._text, self._i)
                if not m:
                    raise ValueError("unexpected key")
                keys.append(m.group())
                self._advance(m.end() - self._i)
            self._skip_ws()
            if self._peek() == ".":
                self._advance()
                continue
            if self._peek() != end:
                raise ValueError("unexpected character after key")
            return tuple(keys)

    def _string(self) -> str:
        text = self._text
        quote = text[self._i]
        if text.startswith(quote * 3, self._i):
            end = text.find(quote * 3, self._i + 3)
            while text.startswith(quote, end + 3):  # up to two quotes may close the string
                end += 1
            value = text[self._i + 3 : end]
            self._advance(end + 3 - self._i)
            return value
        j = self._i + 1
        out = []
        while text[j] != quote:
            if quote == '"' and text[j] == "\\":
                out.append(text[j : j + 2])
                j += 2
                continue
            out.append(text[j])
            j += 1
        self._advance(j + 1 - self._i)
        raw = "".join(out)
        if quote == '"' and "\\" in raw:
            try:
                return str(_tomllib().loads(f'k = "{raw}"')["k"])
            except Exception:
                return raw
        return raw

    def _value(self, path: KeyPath) -> None:
        self._skip_ws()
        c = self._peek()
        if c == "[":
            self._advance()
            index = 0
            while True:
                self._skip_ws(newlines=True)
                if self._peek() == "]":
                    self._advance()
                    return
                self._record((*path, index))
                self._value((*path, index))
                self._skip_ws(newlines=True)
                if self._peek() == ",":
                    self._advance()
                    index += 1
        elif c == "{":
            self._advance()
            while True:
                self._skip_ws(newlines=True)
                if self._peek() == "}":
                    self._advance()
                    return
                keys = self._keys("=")
                self._advance()
                full = path + keys
                for n in range(len(path) + 1, len(full) + 1):
                    self._record(full[:n])
                self._value(full)
                self._skip_ws(newlines=True)
                if self._peek() == ",":
                    self._advance()
        elif c in ('"', "'"):
            self._string()
        else:
            m = re.compile(r"[^,\]}\n#]*").match(self._text, self._i)
            assert m is not None
            if m.end() == self._i:
                raise ValueError("empty value")
            self._advance(m.end() - self._i)
