"""Target patterns (``module[:qualname]`` globs, ``re:`` regexes) and the precompiled matcher.

Rules, for both halves of ``module:qualname``:

* they are dot-boundary aware: ``shop`` matches ``shop`` and ``shop.x``, never ``shopping``;
  likewise the qualname ``Cart`` matches ``Cart`` and every ``Cart.method``;
* ``*`` matches within one dotted segment, ``**`` across segments, ``?`` one character, and
  ``[abc]`` / ``[!abc]`` a character class;
* ``re:REGEX`` is matched (``re.fullmatch``) against the whole ``module:qualname``.
"""

from __future__ import annotations

import functools
import re
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["Matcher", "Pattern", "PatternError", "compile_pattern"]

_GLOB_CHARS = frozenset("*?[")
# \w: Python identifiers may be non-ASCII (PEP 3131).
_MODULE_OK = re.compile(r"[\w.*?\[\]!-]+\Z")
_QUAL_OK = re.compile(r"[\w.*?\[\]!<>-]+\Z")
_REGEX_META = frozenset(".^$*+?{}[]\\|()")


class PatternError(ValueError):
    """A pattern that cannot be compiled; the message says why and what is allowed."""


def _translate(glob: str, what: str, raw: str) -> str:
    out: List[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^.]*")
        elif c == "?":
            out.append("[^.]")
        elif c == "[":
            end = glob.find("]", i + 2)
            if end < 0:
                raise PatternError(f"unclosed '[' in the {what} part of {raw!r}")
            body = glob[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _check_dotted(part: str, what: str, raw: str) -> None:
    if part.startswith(".") or part.endswith(".") or ".." in part:
        raise PatternError(
            f"the {what} part of {raw!r} has an empty dotted segment (a leading, trailing or "
            "doubled '.')"
        )


def _regex_prefix(regex: str) -> str:
    """The literal text every match of ``regex`` must start with ('' if unknown)."""
    depth, escaped, in_class = 0, False, False
    for c in regex:  # a top-level alternation means no common prefix
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return ""
    out: List[str] = []
    i = 0
    while i < len(regex):
        c = regex[i]
        if c == "\\" and i + 1 < len(regex) and regex[i + 1] in ".:-_":
            nxt, step = regex[i + 1], 2
        elif c in _REGEX_META:
            break
        else:
            nxt, step = c, 1
        # a quantifier after this character makes it optional or repeated: stop before it
        if i + step < len(regex) and regex[i + step] in "*?{+":
            break
        out.append(nxt)
        i += step
    return "".join(out)


class Pattern:
    """One compiled pattern.  ``matches(module, qualname)`` is the whole test."""

    __slots__ = ("_module_re", "_qual_re", "_regex", "index_key", "literal_module", "raw")

    def __init__(self, raw: str) -> None:
        if not isinstance(raw, str) or not raw.strip():
            raise PatternError("a pattern must be a non-empty string such as 'shop.payments'")
        if raw != raw.strip():
            raise PatternError(f"pattern {raw!r} has leading or trailing whitespace")
        self.raw = raw
        self.literal_module: Optional[str] = None
        self._module_re: Optional[re.Pattern[str]] = None
        self._qual_re: Optional[re.Pattern[str]] = None
        self._regex: Optional[re.Pattern[str]] = None
        if raw.startswith("re:"):
            body = raw[3:]
            if not body:
                raise PatternError("'re:' must be followed by a regular expression")
            try:
                self._regex = re.compile(body)
            except re.error as exc:
                raise PatternError(f"bad regular expression {body!r}: {exc}") from None
            prefix = _regex_prefix(body)
            #: literal text every matching target starts with, for may_match_module
            self.index_key = prefix
            return
        module, sep, qual = raw.partition(":")
        if not module:
            raise PatternError(f"pattern {raw!r} has no module part before ':'")
        if sep and not qual:
            raise PatternError(f"pattern {raw!r} ends with ':'; give a qualname or drop the ':'")
        if ":" in qual:
            raise PatternError(f"pattern {raw!r} has more than one ':'; write module:qualname")
        if not _MODULE_OK.match(module):
            raise PatternError(
                f"the module part of {raw!r} may only hold letters, digits, '_', '-', '.' and "
                "the glob characters * ? [ ]"
            )
        if qual and not _QUAL_OK.match(qual):
            raise PatternError(
                f"the qualname part of {raw!r} may only hold letters, digits, '_', '.', '<', "
                "'>' and the glob characters * ? [ ]"
            )
        _check_dotted(module, "module", raw)
        if qual:
            _check_dotted(qual, "qualname", raw)
            self._qual_re = re.compile(rf"(?:{_translate(qual, 'qualname', raw)})(?:\..*)?\Z", re.S)
        if _GLOB_CHARS.isdisjoint(module):
            self.literal_module = module
            self.index_key = module
        else:
            self._module_re = re.compile(
                rf"(?:{_translate(module, 'module', raw)})(?:\..*)?\Z", re.S
            )
            first = module.split(".", 1)[0]
            self.index_key = first + "." if _GLOB_CHARS.isdisjoint(first) else ""

    @property
    def is_regex(self) -> bool:
        """True for a ``re:`` pattern."""
        return self._regex is not None

    def matches(self, module: str, qualname: str) -> bool:
        """Whether the pattern selects ``module:qualname``."""
        if self._regex is not None:
            return self._regex.fullmatch(f"{module}:{qualname}") is not None
        lit = self.literal_module
        if lit is not None:
            if module != lit and not module.startswith(lit + "."):
                return False
        elif self._module_re is None or self._module_re.match(module) is None:
            return False
        return self._qual_re is None or self._qual_re.match(qualname) is not None

    def may_match_module(self, module: str) -> bool:
        """False only if no function of ``module`` can match."""
        if self._regex is not None:
            key = self.index_key
            head = module + ":"
            return head.startswith(key) or key.startswith(head)
        lit = self.literal_module
        if lit is not None:
            return module == lit or module.startswith(lit + ".")
        return self._module_re is not None and self._module_re.match(module) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.raw!r})"


@functools.lru_cache(maxsize=4096)
def compile_pattern(raw: str) -> Pattern:
    """A shared compiled :class:`Pattern` (immutable), so validation and matching reuse it."""
    return Pattern(raw)


# (pipeline index, pattern): candidates are tried in pipeline order.
_Entry = Tuple[int, Pattern]


class Matcher:
    """All pipelines' patterns, indexed so one lookup touches only plausible candidates.

    Literal module patterns are found by dict lookups of the target module and its parent
    packages; globs and regexes with a literal first segment by that segment; the rest (a
    leading wildcard, a regex without a literal prefix) are tried for every target.
    """

    def __init__(self, pipelines: Sequence[Tuple[Sequence[Pattern], Sequence[Pattern]]]) -> None:
        self._literal: Dict[str, List[_Entry]] = {}
        self._first: Dict[str, List[_Entry]] = {}
        self._always: List[_Entry] = []
        self._excludes: Tuple[Tuple[Pattern, ...], ...] = tuple(
            tuple(excl) for _, excl in pipelines
        )
        for index, (match, _) in enumerate(pipelines):
            for pattern in match:
                entry = (index, pattern)
                if pattern.literal_module is not None:
                    self._literal.setdefault(pattern.literal_module, []).append(entry)
                else:
                    first = pattern.index_key.split(".", 1)[0].split(":", 1)[0]
                    complete = len(first) < len(pattern.index_key)
                    if first and complete:
                        self._first.setdefault(first, []).append(entry)
                    else:
                        self._always.append(entry)
        self._module_cache: Dict[str, bool] = {}

    def _candidates(self, module: str) -> List[_Entry]:
        literal = self._literal
        found: List[_Entry] = []
        if literal:
            dot = module.find(".")
            while dot >= 0:
                hit = literal.get(module[:dot])
                if hit:
                    found += hit
                dot = module.find(".", dot + 1)
            hit = literal.get(module)
            if hit:
                found += hit
        if self._first:
            hit = self._first.get(module.partition(".")[0])
            if hit:
                found += hit
        if self._always:
            found += self._always
        return found

    def match(self, module: str, qualname: str) -> Optional[_Entry]:
        """The first pipeline (in file order) matching and not excluding the target."""
        candidates = self._candidates(module)
        if len(candidates) > 1:
            candidates.sort(key=_first_item)
        rejected = -1
        for index, pattern in candidates:
            if index == rejected or not pattern.matches(module, qualname):
                continue
            if self.excluded_by(index, module, qualname) is not None:
                rejected = index
                continue
            return index, pattern
        return None

    def excluded_by(self, index: int, module: str, qualname: str) -> Optional[Pattern]:
        for pattern in self._excludes[index]:
            if pattern.matches(module, qualname):
                return pattern
        return None

    def may_match_module(self, module: str) -> bool:
        cached = self._module_cache.get(module)
        if cached is None:
            cached = any(p.may_match_module(module) for _, p in self._candidates(module))
            if len(self._module_cache) > 100_000:  # bound memory under pathological churn
                self._module_cache.clear()
            self._module_cache[module] = cached
        return cached


def _first_item(entry: _Entry) -> int:
    return entry[0]
