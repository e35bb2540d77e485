"""``Redactor``: mask sensitive values by key name and by value pattern, in nested data and text.

Used by the logging and audit observers and the logging error handler (and by plugins building
on them).  It always returns new objects; the caller's values and exceptions are never modified.
"""

from __future__ import annotations

import builtins
import contextlib
import re
import types
from dataclasses import fields, is_dataclass
from typing import (
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Pattern,
    Set,
    Tuple,
    Type,
    Union,
)

from ..errors import CallPyBackError, ConfigurationError

__all__ = ["DEFAULT_KEYS", "DEFAULT_PATTERNS", "RedactedError", "Redactor"]

#: Key names redacted by default.  Matching ignores case, ``-`` and ``_``, and also catches
#: longer names containing one of these (``db_password``, ``X-Api-Key``, ``Set-Cookie``).
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

#: Value patterns redacted by default, wherever they appear inside a string.  A pattern with a
#: group named ``secret`` masks only that group (the DSN pattern keeps scheme, user and host).
DEFAULT_PATTERNS: Tuple[str, ...] = (
    r"(?<!\d)\d(?:[ -]?\d){12,}(?!\d)",  # digit runs: card numbers, Luhn-checked before masking
    r"(?i)\bbearer\s+[a-z0-9._~+/=-]+",  # HTTP bearer credentials
    r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",  # JSON web tokens
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",  # AWS access key ids
    # the password of a URL or DSN (scheme://user:password@host); greedy up to the last "@",
    # since passwords written into DSNs by hand often contain an unescaped "@"
    r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@'\"<>]*:(?P<secret>[^\s/'\"<>]+)@",
)

_CARD = DEFAULT_PATTERNS[0]
_SHORT_KEYS = {"pin", "pwd", "auth", "cvv", "cvc", "ssn"}  # too short to match as substrings
# Header values that run to the end of the line ("Cookie: a=1; b=2"), not to the next ";".
_WHOLE_LINE_KEYS = ("cookie", "authorization")
_MIN_SCRUB = 3  # argument values shorter than this are not searched for in free text

# ``name=value``, ``'name': value``, ``"name": value`` and the pair ``('name', value)``, as they
# appear in reprs, JSON, query strings and header lines.  Only the key and the separator are
# matched here; the value is read by ``_value_end``, which knows about quotes and brackets.
# Quotes may be escaped, any number of times over (the repr of a repr of a dict).
_KEY_VALUE = re.compile(
    r"""(?<![\w-])(?:b(?=\\*['"]))?(?P<q>\\*['"])?(?P<key>[A-Za-z_][\w-]*)(?(q)\\*['"])"""
    r"""[ \t]*(?P<sep>[:=,])[ \t]*"""
)
_LITERAL = re.compile(r"""b?(?P<delim>\\*['"])""")  # the opening of a (maybe escaped) literal
_AUTH_SCHEME = re.compile(
    r"(?i)(?:basic|bearer|digest|negotiate|ntlm|token|apikey|aws4-hmac-sha256)[ \t]+(?=\S)"
)
_KEYLIKE = re.compile(r"[A-Za-z_][\w-]*")
_OPEN = "([{<"
_STOP = frozenset(" \t\r\n,;&)]}>")


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


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _quoted_end(text: str, i: int) -> int:
    """Index just past the string literal whose opening quote is at ``i`` (end of text if open)."""
    quote = text[i]
    j = i + 1
    n = len(text)
    while j < n:
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == quote:
            return j + 1
        j += 1
    return n


def _value_end(text: str, i: int) -> int:
    """Where the unquoted value starting at ``i`` ends: at a delimiter or a quote at bracket
    depth 0, so that ``Secret('x', y=1)`` is read whole and ``token=abc')`` stops at the quote."""
    n = len(text)
    depth = 0
    j = i
    while j < n:
        ch = text[j]
        if depth and ch in "'\"":
            j = _quoted_end(text, j)  # a string inside brackets: Secret('x, y')
            continue
        if ch in _OPEN:
            depth += 1
        elif depth and ch in ")]}>":
            depth -= 1
        elif not depth and (ch in _STOP or ch in "'\""):
            break
        j += 1
    return j


def _safe_text(fn: Any, obj: Any) -> str:
    try:
        text = fn(obj)
        if isinstance(text, str):
            return text
    except Exception:  # a broken __str__/__repr__ must not break logging or auditing
        pass
    return f"<{type(obj).__name__} object: {getattr(fn, '__name__', 'str')}() failed>"


class RedactedError(CallPyBackError):
    """A stand-in for an exception whose text was redacted; never raised.

    The logging observer and handler give ``logging`` one of these (inside ``exc_info``) instead
    of the live exception, so that formatting the record's traceback cannot reveal the message.
    Its class is named like the original's, so the formatted traceback reads the same apart from
    the masks; ``original_type`` names the real class.  The traceback, cause, context and notes
    are carried over (the causes as stand-ins too).  The user's exception is not touched.
    """

    original_type: str = ""

    def __init__(self, text: str, representation: str) -> None:
        super().__init__(text)
        self._text = text
        self._repr = representation

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return self._repr

    def __reduce__(self) -> Any:
        # The per-class stand-ins are made at run time and cannot be found by name: they come
        # back as a plain RedactedError with the same (already redacted) text.
        return (RedactedError, (self._text, self._repr), self.__dict__ or None)


# Exception groups (Python 3.11+) need stand-ins that are groups, or traceback hides members.
_BASE_GROUP: Any = getattr(builtins, "BaseExceptionGroup", None)
_GROUP: Any = getattr(builtins, "ExceptionGroup", None)
_STAND_IN_CLASSES: Dict[Tuple[str, str, bool], Type[BaseException]] = {}


def _stand_in_class(original: type, group: bool) -> Type[BaseException]:
    module = getattr(original, "__module__", None) or "builtins"
    qualname = getattr(original, "__qualname__", None) or original.__name__
    key = (module, qualname, group)
    cls = _STAND_IN_CLASSES.get(key)
    if cls is None:
        if len(_STAND_IN_CLASSES) > 1024:  # many dynamically made exception classes
            _STAND_IN_CLASSES.clear()
        bases: Tuple[type, ...] = (RedactedError,)
        if group:
            # Only a real exception group has its members shown by ``traceback``.
            bases = (_GROUP, RedactedError)
        namespace = {
            "__module__": module,
            "__qualname__": qualname,
            "original_type": f"{module}.{qualname}",
        }
        if group:
            namespace["__new__"] = _group_new
            namespace["__init__"] = _group_init
        cls = type(original.__name__, bases, namespace)
        _STAND_IN_CLASSES[key] = cls
    return cls


def _group_new(cls: Any, text: str, representation: str, members: List[Any]) -> Any:
    return _GROUP.__new__(cls, text, members)


def _group_init(self: Any, text: str, representation: str, members: List[Any]) -> None:
    self._text = text
    self._repr = representation


class Redactor:
    """Replace values of sensitive keys, and sensitive substrings of text, with a mask.

    ``keys``: names whose values are masked wholesale (case, ``-`` and ``_`` ignored; a name
    *containing* a key of four letters or more matches too).  They are recognised in data
    (mappings, dataclass and namedtuple fields, object attributes, ``(name, value)`` pairs such
    as header lists) and in text (``name=value``, ``'name': 'value'``, ``name: value`` header
    lines).  ``patterns``: regular expressions masked inside any string (digit runs that look
    like card numbers are masked only if they pass the Luhn check; a pattern with a group named
    ``secret`` masks only that group).  ``extend=True`` adds yours to the defaults instead of
    replacing them.  Containers are walked to ``max_depth``.
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
        if not isinstance(mask, str) or not mask:
            raise ConfigurationError(f"Redactor mask must be a non-empty string, got {mask!r}")
        self.mask = mask
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ConfigurationError(
                f"Redactor max_depth must be a positive int, got {max_depth!r}"
            )
        self.max_depth = max_depth

    # --- keys ---------------------------------------------------------------------------------
    def is_sensitive_key(self, key: Any) -> bool:
        """Whether values under ``key`` are redacted (exact names and name fragments)."""
        if isinstance(key, (bytes, bytearray)):
            key = bytes(key).decode("latin-1")
        if not isinstance(key, str):
            return False
        k = _norm(key)
        return k in self._exact or any(c in k for c in self._contained)

    def _is_pair_key(self, item: Any) -> bool:
        """Whether ``item`` is the name in a ``(name, value)`` pair, such as a header name."""
        if isinstance(item, (bytes, bytearray)):
            item = bytes(item).decode("latin-1")
        return (
            isinstance(item, str) and _KEYLIKE.fullmatch(item) is not None
        ) and self.is_sensitive_key(item)

    # --- text ---------------------------------------------------------------------------------
    def redact_text(self, text: str) -> str:
        """``text`` with sensitive ``key=value`` values and every pattern match masked."""
        if self._exact:
            text = self._redact_key_values(text)
        for pattern in self.patterns:
            if pattern.pattern == _CARD:
                text = pattern.sub(self._card, text)
            elif "secret" in pattern.groupindex:
                text = pattern.sub(self._group, text)
            else:
                text = pattern.sub(self.mask, text)
        return text

    def _redact_key_values(self, text: str) -> str:
        out: List[str] = []
        done = 0  # text[:done] is already in ``out``
        pos = 0  # where the next key is searched for
        n = len(text)
        search = _KEY_VALUE.search
        while True:
            m = search(text, pos)
            if m is None:
                break
            key = m.group("key")
            sep = m.group("sep")
            if (sep == "," and m.group("q") is None) or not self.is_sensitive_key(key):
                pos = m.end("key")  # the value may hold keys of its own: look inside it
                continue
            start = m.end()
            if start >= n:
                break
            literal = _LITERAL.match(text, start)
            if literal is not None:
                delim = literal.group("delim")
                start = literal.start("delim")  # a bytes literal keeps its b
                if len(delim) == 1:
                    end = _quoted_end(text, start)
                    closed = end - start >= 2 and text[end - 1] == delim
                else:  # an escaped literal ends at the same escaped quote
                    close = text.find(delim, start + len(delim))
                    closed = close >= 0
                    end = close + len(delim) if closed else _value_end(text, start + len(delim))
                masked = delim + self.mask + (delim if closed else "")
            elif text[start] in _OPEN:
                end = _value_end(text, start)  # a structure: {...}, [...], (...), <...>
                masked = self.mask
            elif sep == ":" and any(k in _norm(key) for k in _WHOLE_LINE_KEYS):
                end = start
                while end < n and text[end] not in "\r\n'\"":
                    end += 1
                masked = self.mask
            else:
                scheme = _AUTH_SCHEME.match(text, start)
                end = _value_end(text, scheme.end() if scheme else start)
                masked = self.mask
            if end == start:
                pos = m.end()
                continue
            out.append(text[done:start])
            out.append(masked)
            done = pos = end
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    def _card(self, match: re.Match[str]) -> str:
        run = match.group(0)
        groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", run)]
        digits = "".join(run[a:b] for a, b in groups)
        if _is_card(digits):
            return self.mask
        if len(groups) == 1:
            return run
        # A card number next to other numbers ("ref 1234 4111 1111 1111 1111"): try every
        # stretch of whole digit groups, so that the neighbours cannot hide it.
        hit = [False] * len(groups)
        for i in range(len(groups)):
            chunk = ""
            for j in range(i, len(groups)):
                chunk += run[groups[j][0] : groups[j][1]]
                if len(chunk) > 19:
                    break
                if _is_card(chunk):
                    hit[i : j + 1] = [True] * (j + 1 - i)
        if not any(hit):
            return run
        pieces: List[str] = []
        last = 0
        i = 0
        while i < len(groups):
            if not hit[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(groups) and hit[j + 1]:
                j += 1
            pieces.append(run[last : groups[i][0]])
            pieces.append(self.mask)
            last = groups[j][1]
            i = j + 1
        pieces.append(run[last:])
        return "".join(pieces)

    def _group(self, match: re.Match[str]) -> str:
        whole = match.group(0)
        start, end = match.span("secret")
        if start < 0:
            return whole
        base = match.start()
        return whole[: start - base] + self.mask + whole[end - base :]

    def partial(self, value: Any, keep: int = 4) -> str:
        """A mask that shows the last ``keep`` characters of ``value`` (``"************4242"``),
        but only when they are at most a quarter of it: a shorter value is masked whole, so a
        PIN or a short password is never mostly revealed."""
        text = str(value)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ConfigurationError(f"Redactor.partial keep must be an int >= 0, got {keep!r}")
        if keep == 0 or len(text) < 4 * keep:
            return self.mask
        return "*" * (len(text) - keep) + text[-keep:]

    # --- exceptions ---------------------------------------------------------------------------
    def secrets_in(self, arguments: Optional[Mapping[str, Any]]) -> List[str]:
        """The text forms of the values held under sensitive names in ``arguments`` (at any
        depth), longest first: what :meth:`mask_values` looks for in free text."""
        found: Set[str] = set()
        if arguments:
            # Odd mappings: scrubbing is best effort, and the patterns still apply.
            with contextlib.suppress(Exception):
                self._collect(arguments, False, found, 0, set())
        return sorted((s for s in found if len(s) >= _MIN_SCRUB), key=len, reverse=True)

    def _collect(
        self, value: Any, hidden: bool, found: Set[str], depth: int, seen: Set[int]
    ) -> None:
        if value is None or isinstance(value, bool) or depth > self.max_depth:
            return
        if isinstance(value, (str, int, float)):
            if hidden:
                found.add(str(value))
            return
        if isinstance(value, (bytes, bytearray)):
            if hidden:
                found.add(bytes(value).decode("utf-8", "replace"))
                found.add(repr(bytes(value))[2:-1])
            return
        if id(value) in seen:
            return
        seen.add(id(value))
        for key, item in self._items(value):
            self._collect(item, hidden or self.is_sensitive_key(key), found, depth + 1, seen)
        if hidden and not isinstance(value, (Mapping, list, tuple, set, frozenset)):
            found.add(_safe_text(str, value))

    @staticmethod
    def _items(value: Any) -> List[Tuple[Any, Any]]:
        if isinstance(value, Mapping):
            return list(value.items())
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return list(zip(value._fields, value))
        if isinstance(value, (list, tuple)):
            if len(value) == 2 and isinstance(value[0], (str, bytes)):
                return [(value[0], value[1]), (None, value[0])]
            return [(None, v) for v in value]
        if isinstance(value, (set, frozenset)):
            return [(None, v) for v in value]
        if is_dataclass(value) and not isinstance(value, type):
            return [(f.name, getattr(value, f.name, None)) for f in fields(value)]
        if isinstance(value, types.SimpleNamespace):
            return list(vars(value).items())
        return []

    def mask_values(self, text: str, secrets: Iterable[str] = ()) -> str:
        """``text`` with each of ``secrets`` (e.g. from :meth:`secrets_in`) masked wherever it
        appears, then :meth:`redact_text` applied."""
        for secret in secrets:
            if secret and secret in text:
                text = text.replace(secret, self.mask)
        return self.redact_text(text)

    _mask_values = mask_values  # what the exception methods use, whatever a subclass overrides

    def exception_message(
        self, exception: BaseException, arguments: Optional[Mapping[str, Any]] = None
    ) -> str:
        """``str(exception)``, redacted; values of the call's sensitive ``arguments`` are masked
        wherever the message quotes them.  Safe with a failing ``__str__``."""
        return self._mask_values(_safe_text(str, exception), self.secrets_in(arguments))

    def exception_repr(
        self, exception: BaseException, arguments: Optional[Mapping[str, Any]] = None
    ) -> str:
        """``repr(exception)``, redacted like :meth:`exception_message`."""
        return self._mask_values(_safe_text(repr, exception), self.secrets_in(arguments))

    def redact_exception(
        self, exception: BaseException, arguments: Optional[Mapping[str, Any]] = None
    ) -> BaseException:
        """A :class:`RedactedError` stand-in for ``exception``: same class name, same traceback,
        redacted message, and its cause, context and notes redacted the same way."""
        secrets = self.secrets_in(arguments)
        try:
            return self._stand_in(exception, secrets, {}, 0)
        except Exception:  # an exotic exception: a plain stand-in still logs it, redacted
            text = self._mask_values(_safe_text(str, exception), secrets)
            plain = RedactedError(text, self._mask_values(_safe_text(repr, exception), secrets))
            return plain.with_traceback(exception.__traceback__)

    def exc_info(
        self, exception: BaseException, arguments: Optional[Mapping[str, Any]] = None
    ) -> Tuple[Type[BaseException], BaseException, Any]:
        """What to pass to ``logging`` as ``exc_info=``: ``(type, stand-in, traceback)``.

        The formatted traceback then shows only redacted text, while the record still names the
        real exception type.  ``exception`` itself is left exactly as it was.
        """
        stand_in = self.redact_exception(exception, arguments)
        return type(exception), stand_in, exception.__traceback__

    def _stand_in(
        self, exc: BaseException, secrets: List[str], memo: Dict[int, Any], depth: int
    ) -> BaseException:
        done = memo.get(id(exc))
        if done is not None:
            return done  # type: ignore[no-any-return]
        text = self._mask_values(_safe_text(str, exc), secrets)
        representation = self._mask_values(_safe_text(repr, exc), secrets)
        members = getattr(exc, "exceptions", None)
        group = (
            _BASE_GROUP is not None
            and isinstance(exc, _BASE_GROUP)
            and isinstance(members, tuple)
            and bool(members)
            and depth < 50
        )
        stand_in: Any
        if group:
            subs = [self._stand_in(m, secrets, memo, depth + 1) for m in members]  # type: ignore[union-attr]
            # The group's own __str__ adds "(N sub-exceptions)" to its message.
            message = self._mask_values(_safe_text(str, getattr(exc, "message", "")), secrets)
            stand_in = _stand_in_class(type(exc), True)(message, representation, subs)
        else:
            stand_in = _stand_in_class(type(exc), False)(text, representation)
        memo[id(exc)] = stand_in
        stand_in.__traceback__ = exc.__traceback__
        stand_in.__suppress_context__ = exc.__suppress_context__
        if depth < 50:  # traceback shows every link; bound the copy all the same
            if exc.__cause__ is not None:
                stand_in.__cause__ = self._stand_in(exc.__cause__, secrets, memo, depth + 1)
            if exc.__context__ is not None:
                stand_in.__context__ = self._stand_in(exc.__context__, secrets, memo, depth + 1)
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            stand_in.__notes__ = [
                self._mask_values(n if isinstance(n, str) else _safe_text(repr, n), secrets)
                for n in notes
            ]
        return stand_in  # type: ignore[no-any-return]

    # --- data ---------------------------------------------------------------------------------
    def redact(self, value: Any) -> Any:
        """A redacted copy of ``value``; ``value`` itself is left as it was.

        Mappings, lists and tuples keep their kind; sets become lists; dataclass instances,
        namedtuples and ``SimpleNamespace`` objects become dicts of their fields; bytes stay
        bytes; any other object becomes its redacted repr.
        """
        return self._walk(value, 0, set())

    def redact_mapping(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted plain-dict copy of ``mapping`` (e.g. a call's bound arguments)."""
        return {
            self._key(k): self.mask if self.is_sensitive_key(k) else self._walk(v, 1, set())
            for k, v in mapping.items()
        }

    def _key(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.redact_text(key)
        if key is None or isinstance(key, (bool, int, float, bytes)):
            return self._walk(key, 0, set())
        return self.redact_text(_safe_text(repr, key))

    def _fields(
        self, pairs: Iterable[Tuple[str, Any]], depth: int, seen: Set[int]
    ) -> Dict[Any, Any]:
        return {
            self._key(k): self.mask if self.is_sensitive_key(k) else self._walk(v, depth + 1, seen)
            for k, v in pairs
        }

    def _walk(self, value: Any, depth: int, seen: Set[int]) -> Any:
        if value is None or isinstance(value, (bool, float)):
            return value
        if isinstance(value, int):
            # A card number passed as an int is as sensitive as the string.
            if (value >= 10**12 or value <= -(10**12)) and _is_card(str(abs(value))):
                return self.mask
            return value
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("utf-8", "surrogateescape")
            clean = self.redact_text(text)
            return bytes(value) if clean == text else clean.encode("utf-8", "surrogateescape")
        if depth >= self.max_depth:
            return "[...]"
        ident = id(value)
        if ident in seen:
            return "[cycle]"
        seen.add(ident)
        try:
            if isinstance(value, Mapping):
                return self._fields(value.items(), depth, seen)
            if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
                return self._fields(zip(value._fields, value), depth, seen)
            if isinstance(value, (list, tuple)):
                if len(value) == 2 and self._is_pair_key(value[0]):
                    # a (name, value) pair, as in header lists: [("Authorization", "...")]
                    pair = [self._walk(value[0], depth + 1, seen), self.mask]
                    return pair if isinstance(value, list) else tuple(pair)
                items = [self._walk(v, depth + 1, seen) for v in value]
                return items if isinstance(value, list) else tuple(items)
            if isinstance(value, (set, frozenset)):
                return [self._walk(v, depth + 1, seen) for v in value]
            if is_dataclass(value) and not isinstance(value, type):
                return self._fields(
                    ((f.name, getattr(value, f.name, None)) for f in fields(value)), depth, seen
                )
            if isinstance(value, types.SimpleNamespace):
                return self._fields(vars(value).items(), depth, seen)
            # Anything else is shown by its repr, which may itself carry a secret.
            return self.redact_text(_safe_text(repr, value))
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
