"""Route patterns (``[[web.routes]] match``) and the normalisation of route templates.

A pattern is ``"METHOD PATH"`` or ``"PATH"`` (any method), matched against the request's method
and its route *template* (``/orders/{order_id}``), never against the raw path:

* ``METHOD`` is ``*``, one method (``GET``) or several joined by ``|`` (``GET|HEAD``);
* in ``PATH``, ``*`` matches within one ``/`` segment, ``**`` across segments, ``?`` one
  character; anything else, ``{order_id}`` included, is literal;
* ``re:REGEX`` is matched (``re.fullmatch``) against ``"METHOD TEMPLATE"``.
"""

from __future__ import annotations

import re
from typing import FrozenSet, Optional, Pattern, Tuple

__all__ = [
    "METHODS",
    "OTHER_METHOD",
    "RoutePattern",
    "RoutePatternError",
    "django_template",
    "normalise_method",
    "werkzeug_template",
]

#: The methods a target may name; any other becomes ``_OTHER`` (a client choosing the method
#: must not choose the cardinality of every metric either).
METHODS: FrozenSet[str] = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
)
OTHER_METHOD = "_OTHER"


def normalise_method(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


class RoutePatternError(ValueError):
    """A route pattern that cannot be compiled; the message says why and what is allowed."""

    def __init__(self, message: str, suggestion: Optional[str] = None) -> None:
        super().__init__(message)
        self.suggestion = suggestion


def _glob(path: str) -> str:
    out = []
    i = 0
    while i < len(path):
        c = path[i]
        if path.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
        i += 1
    return "".join(out)


class RoutePattern:
    """One compiled ``[[web.routes]]`` pattern."""

    __slots__ = ("methods", "path", "raw", "regex")

    def __init__(self, raw: str) -> None:
        if not isinstance(raw, str) or not raw.strip():
            raise RoutePatternError("a route pattern must be a non-empty string")
        self.raw = raw
        self.methods: Optional[FrozenSet[str]] = None  # None: any method
        if raw.startswith("re:"):
            try:
                self.regex: Pattern[str] = re.compile(raw[3:])
            except re.error as exc:
                raise RoutePatternError(f"invalid regular expression in {raw!r}: {exc}") from None
            self.path = None
            return
        method, sep, path = raw.strip().partition(" ")
        if not sep:
            method, path = "*", method
        path = path.strip()
        if method != "*":
            names = method.split("|")
            for name in names:
                if name not in METHODS:
                    import difflib

                    close = difflib.get_close_matches(name.upper(), sorted(METHODS), n=1)
                    raise RoutePatternError(
                        f"unknown HTTP method {name!r} in {raw!r}; allowed: *, "
                        + ", ".join(sorted(METHODS))
                        + " (several joined by '|')",
                        close[0] if close else None,
                    )
            self.methods = frozenset(names)
        if not path.startswith("/"):
            raise RoutePatternError(
                f"the path of {raw!r} must start with '/' (a route template such as "
                "'/orders/{order_id}', with * and ** globs)"
            )
        self.path = path
        self.regex = re.compile(_glob(path))

    def matches(self, method: str, route: str) -> bool:
        if self.path is None:
            return self.regex.fullmatch(f"{method} {route}") is not None
        if self.methods is not None and method not in self.methods:
            return False
        return self.regex.fullmatch(route) is not None

    def __repr__(self) -> str:
        return f"RoutePattern({self.raw!r})"


# --- route templates, one spelling for every framework ------------------------------------------
_WERKZEUG_VAR = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_DJANGO_VAR = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")


def werkzeug_template(rule: str) -> str:
    """``/orders/<int:order_id>`` -> ``/orders/{order_id}``."""
    return _WERKZEUG_VAR.sub(r"{\1}", rule)


def django_template(route: str, is_regex: bool = False) -> str:
    """``orders/<int:order_id>/`` -> ``/orders/{order_id}/``; a ``re_path`` regex keeps its text
    with each named group as ``{name}`` (``^articles/(?P<year>[0-9]{4})/$`` ->
    ``/articles/{year}/``)."""
    if is_regex:
        route = _REGEX_GROUP.sub(r"{\1}", route)
        route = route.replace("^", "").replace("$", "").replace("\\Z", "")
    else:
        route = _DJANGO_VAR.sub(r"{\1}", route)
    return route if route.startswith("/") else "/" + route


def split_target(target: str) -> Tuple[str, str]:
    """``http:GET /orders/{id}`` -> ``("GET", "/orders/{id}")``."""
    _, _, rest = target.partition(":")
    method, _, route = rest.partition(" ")
    return method, route
