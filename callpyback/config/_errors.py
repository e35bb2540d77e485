"""``ConfigError``: every problem of a configuration, each one located in its file."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import ConfigurationError

__all__ = ["ConfigError", "KeyPath", "Problem", "format_path", "suggest"]

#: A key path inside the document: ``("pipelines", 2, "observers", 0)``.
KeyPath = Tuple[Union[str, int], ...]


class _Unset:
    """``Problem.given`` when no value was given; pickled by reference, so it stays unique."""

    def __reduce__(self) -> str:
        return "_UNSET"

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


def format_path(path: Sequence[Union[str, int]]) -> str:
    """``("pipelines", 2, "observers", 0)`` -> ``pipelines[2].observers[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if part.replace("_", "a").replace("-", "a").isalnum() else repr(part)
            out += f".{text}" if out else text
    return out or "(top level)"


def suggest(name: str, candidates: Iterable[str]) -> List[str]:
    """Close matches for a misspelt name, best first."""
    return difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)


@dataclass
class Problem:
    """One thing wrong with a configuration, and where it is."""

    message: str
    path: KeyPath = ()
    file: Optional[str] = None
    line: Optional[int] = None
    given: Any = _UNSET
    allowed: Optional[str] = None
    suggestions: List[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return format_path(self.path)

    @property
    def has_given(self) -> bool:
        return self.given is not _UNSET

    def location(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return where

    def __str__(self) -> str:
        text = f"{self.location()}: {self.key}: {self.message}"
        if self.has_given:
            given = repr(self.given)
            if len(given) > 80:
                given = given[:77] + "..."
            text += f" (given: {given})"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        if self.suggestions:
            text += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "key": self.key,
            "message": self.message,
            "given": repr(self.given) if self.has_given else None,
            "allowed": self.allowed,
            "suggestions": list(self.suggestions),
        }


class ConfigError(ConfigurationError):
    """A configuration failed to load: :attr:`problems` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem], source: Optional[str] = None) -> None:
        self.problems: List[Problem] = sorted(
            problems, key=lambda p: (p.file or "", p.line if p.line is not None else 1 << 30)
        )
        self.source = source
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in {source or 'the configuration'}"
        body = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}; nothing was applied:\n{body}")

    def __reduce__(self) -> Any:
        return (type(self), (self.problems, self.source), self.__dict__)
