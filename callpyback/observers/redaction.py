"""``Redactor``: mask sensitive values by key name and by value pattern, in nested data.

Used by the logging and audit observers (and by plugins building on them).  It always returns
new containers; the caller's objects are never modified.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from typing import Any, Iterable, List, Mapping, Optional, Pattern, Tuple, Union

from ..errors import ConfigurationError

__all__ = ["DEFAULT_KEYS", "DEFAULT_PATTERNS", "Redactor"]

#: Key names redacted by default.  Matching ignores case, ``-`` and ``_``, and also catches
#: longer names containing one of these (``db_password``, ``X-Api-Key``).
DEFAULT_KEYS: Tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "auth",
    "cookie",
    "sessionid",
    "privatekey",
    "credential",
    "cardnumber",
    "cvv",
    "cvc",
    "pin",
    "ssn",
    "iban",
)

#: Value patterns redacted by default, wherever they appear inside a string.
DEFAULT_PATTERNS: Tuple[str, ...] = (
    r"\b(?:\d[ -]?){12,18}\d\b",  # payment card numbers (checked with Luhn before masking)
    r"(?i)\bbearer\s+[a-z0-9._~+/=-]+",  # HTTP bearer credentials
    r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",  # JSON web tokens
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",  # AWS access key ids
)

_CARD = DEFAULT_PATTERNS[0]
_SHORT_KEYS = {"pin", "pwd", "auth", "cvv", "cvc", "ssn"}  # too short to match as substrings


def _norm(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "").replace(" ", "")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class Redactor:
    """Replace values of sensitive keys, and sensitive substrings of strings, with a mask.

    ``keys``: names whose values are masked wholesale (case, ``-`` and ``_`` ignored; a name
    *containing* a key of four letters or more matches too).  ``patterns``: regular expressions
    masked inside any string (digit runs that look like card numbers are masked only if they
    pass the Luhn check).  ``extend=True`` adds yours to the defaults instead of replacing them.
    Containers (dict, list, tuple, set, dataclass instances) are walked to ``max_depth``.
    """

    def __init__(
        self,
        keys: Optional[Iterable[str]] = None,
        patterns: Optional[Iterable[Union[str, Pattern[str]]]] = None,
        *,
        extend: bool = True,
        mask: str = "[REDACTED]",
        max_depth: int = 10,
    ) -> None:
        key_list = list(DEFAULT_KEYS if extend else ()) + list(_checked_strs(keys, "keys"))
        self.keys = tuple(dict.fromkeys(_norm(k) for k in key_list))
        self._exact = frozenset(self.keys)
        self._contained = tuple(k for k in self.keys if len(k) >= 4 and k not in _SHORT_KEYS)
        compiled: List[Pattern[str]] = []
        raw = list(DEFAULT_PATTERNS if extend else ()) + list(patterns or ())
        for p in raw:
            if isinstance(p, re.Pattern):
                compiled.append(p)
                continue
            if not isinstance(p, str):
                raise ConfigurationError(
                    f"Redactor patterns must be strings or compiled regexes, got {p!r}"
                )
            try:
                compiled.append(re.compile(p))
            except re.error as exc:
                raise ConfigurationError(
                    f"Redactor pattern {p!r} is not a valid regular expression: {exc}"
                ) from None
        self.patterns = tuple(compiled)
        if not isinstance(mask, str):
            raise ConfigurationError(f"Redactor mask must be a string, got {mask!r}")
        self.mask = mask
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ConfigurationError(
                f"Redactor max_depth must be a positive int, got {max_depth!r}"
            )
        self.max_depth = max_depth

    def is_sensitive_key(self, key: Any) -> bool:
        if not isinstance(key, str):
            return False
        k = _norm(key)
        return k in self._exact or any(c in k for c in self._contained)

    def redact_text(self, text: str) -> str:
        """``text`` with every pattern match replaced by the mask."""
        for pattern in self.patterns:
            if pattern.pattern == _CARD:
                text = pattern.sub(self._card, text)
            else:
                text = pattern.sub(self.mask, text)
        return text

    def _card(self, match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return self.mask if _luhn(digits) else match.group(0)

    def redact(self, value: Any) -> Any:
        """A redacted copy of ``value``; ``value`` itself is left as it was."""
        return self._walk(value, 0, set())

    def redact_mapping(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted plain-dict copy of ``mapping`` (e.g. a call's bound arguments)."""
        return {
            k: self.mask if self.is_sensitive_key(k) else self._walk(v, 1, set())
            for k, v in mapping.items()
        }

    def _walk(self, value: Any, depth: int, seen: set[int]) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self.redact_text(value) if self.patterns else value
        if isinstance(value, (bytes, bytearray)):
            return value
        if depth >= self.max_depth:
            return "[...]"
        ident = id(value)
        if ident in seen:
            return "[cycle]"
        seen.add(ident)
        try:
            if isinstance(value, Mapping):
                return {
                    k: self.mask if self.is_sensitive_key(k) else self._walk(v, depth + 1, seen)
                    for k, v in value.items()
                }
            if isinstance(value, (list, tuple)):
                items = [self._walk(v, depth + 1, seen) for v in value]
                return items if isinstance(value, list) else tuple(items)
            if isinstance(value, (set, frozenset)):
                return [self._walk(v, depth + 1, seen) for v in value]
            if is_dataclass(value) and not isinstance(value, type):
                return {
                    f.name: self.mask
                    if self.is_sensitive_key(f.name)
                    else self._walk(getattr(value, f.name), depth + 1, seen)
                    for f in fields(value)
                }
            # Anything else is shown by its repr, which may itself carry a secret.
            return self.redact_text(repr(value))
        finally:
            seen.discard(ident)

    def __repr__(self) -> str:
        return f"Redactor(keys={len(self.keys)}, patterns={len(self.patterns)}, mask={self.mask!r})"


def _checked_strs(values: Optional[Iterable[str]], what: str) -> List[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out = list(values)
    for v in out:
        if not isinstance(v, str) or not v:
            raise ConfigurationError(f"Redactor {what} must be non-empty strings, got {v!r}")
    return out
