"""``ConfigError``: every problem of a configuration, each one located in its file."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import ConfigurationError

__all__ = [
    "ConfigError",
    "KeyPath",
    "Problem",
    "format_path",
    "option_problems",
    "pydantic_problem",
    "suggest",
]

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


#: ``scheme://user:PASSWORD@host``: the password part of a URL's userinfo.
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*:)([^\s@/'\"]+)(@)")
#: Keys whose given value is never shown.
_SECRET_KEYS = ("password", "passwd", "secret", "token", "api_key", "apikey", "credential")


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
    #: The component whose option this is (``"observer type 'timing'"``), when that is not
    #: already in the message.
    component: Optional[str] = None

    @property
    def key(self) -> str:
        """The key path of the problem (``pipelines[0].observers[1]``)."""
        return format_path(self.path)

    @property
    def has_given(self) -> bool:
        """Whether the problem carries the value that was given."""
        return self.given is not _UNSET

    def location(self) -> str:
        """``file:line`` of the problem."""
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return where

    def shown_given(self) -> str:
        """The given value as the message shows it: a URL's password and the value of a key
        named like a secret are masked (error messages end up in CI logs and tickets)."""
        last = str(self.path[-1]).lower() if self.path else ""
        if any(word in last for word in _SECRET_KEYS):
            return "'***'"
        return _URL_PASSWORD.sub(r"\1***\3", repr(self.given))

    def __str__(self) -> str:
        text = f"{self.location()}: {self.key}: {self.message}"
        if self.has_given:
            given = self.shown_given()
            if len(given) > 80:
                given = given[:77] + "..."
            text += f" (given: {given})"
        if self.component:
            text += f", in the options of {self.component}"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        if self.suggestions:
            text += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        return text

    def as_dict(self) -> dict[str, Any]:
        """The problem as JSON-ready data (what ``callpyback check --json`` prints)."""
        return {
            "file": self.file,
            "line": self.line,
            "key": self.key,
            "message": self.message,
            "given": self.shown_given() if self.has_given else None,
            "allowed": self.allowed,
            "suggestions": list(self.suggestions),
            "component": self.component,
        }


# --- pydantic's errors as problems -----------------------------------------------------------

_ALLOWED = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "list_type": 'an array, e.g. ["a", "b"]',
    "tuple_type": 'an array, e.g. ["a", "b"]',
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "decimal_parsing": 'a number (a string such as "12.50" keeps every digit)',
    "decimal_type": "a number",
}
#: pydantic prefixes the messages of errors raised by validators; the user wrote no validator.
_PREFIXES = ("Value error, ", "Assertion failed, ")


def _allowed(kind: str, ctx: Mapping[str, Any]) -> Optional[str]:
    for key, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in ctx:
            return f"a number {sign} {ctx[key]}"
    if kind == "too_short" and "min_length" in ctx:
        return f"at least {ctx['min_length']} item(s)"
    if kind == "too_long" and "max_length" in ctx:
        return f"at most {ctx['max_length']} item(s)"
    if kind in ("literal_error", "enum") and "expected" in ctx:
        return str(ctx["expected"])
    return _ALLOWED.get(kind)


def clean_message(message: str) -> str:
    """A pydantic message without the ``Value error, `` prefix of validator errors."""
    for prefix in _PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def pydantic_problem(
    error: Mapping[str, Any],
    *,
    base: KeyPath = (),
    what: str = "the table",
    fields: Sequence[str] = (),
    component: Optional[str] = None,
) -> Problem:
    """One pydantic error dict (``ValidationError.errors()``) as a located :class:`Problem`."""
    loc: KeyPath = tuple(error.get("loc", ()))
    kind = error.get("type", "")
    key = loc[-1] if loc else ""
    path = (*base, *loc)
    if kind == "extra_forbidden":
        return Problem(
            f"unknown key {key!r} in {what}",
            path,
            allowed=", ".join(fields) or None,
            suggestions=suggest(str(key), fields),
        )
    if kind == "missing":
        return Problem(
            f"required key {key!r} is missing from {what}",
            path,
            allowed=", ".join(fields) or None,
        )
    return Problem(
        clean_message(str(error.get("msg", "invalid value"))),
        path,
        given=error.get("input", _UNSET),
        allowed=_allowed(kind, error.get("ctx") or {}),
        component=component,
    )


def option_problems(
    errors: Iterable[Mapping[str, Any]],
    spec: Any,
    base: KeyPath = (),
    file: Optional[str] = None,
) -> List[Problem]:
    """The errors of a component's options model, each naming the component type."""
    label = f"{spec.kind} type {spec.name!r}"
    fields = sorted(getattr(spec.options, "model_fields", {}) or {})
    out = []
    for error in errors:
        problem = pydantic_problem(
            error, base=base, what=f"the options of {label}", fields=fields, component=label
        )
        problem.file = file
        out.append(problem)
    return out


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
