"""Expectations about captured calls: ``called(...)`` composed with ``>>``, ``&`` and ``|``.

``called("shop.cart:add", outcome="failure") >> called("shop.cart:checkout")`` reads "a failed
``add``, then a ``checkout``": ``>>`` is *in this order*, ``&`` *all of them, in any order*,
``|`` *either*.  Each expected call consumes one captured call, so ``called("f") & called("f")``
asks for two calls of ``f``.  Failures say which part was not met and list what was captured.
"""

from __future__ import annotations

import difflib
import re
from fnmatch import fnmatchcase
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

if TYPE_CHECKING:
    from ._capture import CallRecord, Capture

__all__ = ["Expectation", "called"]

OUTCOMES = ("success", "failure", "recovered", "cancelled", "interrupted")
_GLOB = frozenset("*?[")
#: How many captured calls a failure message lists before it says how many more there were.
_SHOWN = 40


class _Missing:
    def __repr__(self) -> str:
        return "<not given>"


_NOT_GIVEN: Any = _Missing()

_Matches = Iterator[Tuple[int, FrozenSet[int]]]  # (position after the match, records used)


def target_matches(pattern: str, target: str) -> bool:
    """Exact, or an ``fnmatch`` glob when ``pattern`` has ``*``, ``?`` or ``[``."""
    if _GLOB.isdisjoint(pattern):
        return pattern == target
    return fnmatchcase(target, pattern)


class Expectation:
    """Something the captured calls should contain; compose with ``>>``, ``&`` and ``|``."""

    def __rshift__(self, other: Expectation) -> Expectation:
        return _Composite(">>", (*_parts(self, ">>"), *_parts(_check(other), ">>")))

    def __and__(self, other: Expectation) -> Expectation:
        return _Composite("&", (*_parts(self, "&"), *_parts(_check(other), "&")))

    def __or__(self, other: Expectation) -> Expectation:
        return _Composite("|", (*_parts(self, "|"), *_parts(_check(other), "|")))

    def _matches(
        self, records: Sequence[CallRecord], start: int, used: FrozenSet[int], finished: bool
    ) -> _Matches:
        raise NotImplementedError

    def leaves(self) -> List[Called]:
        """The single-call expectations this one is made of, in order."""
        raise NotImplementedError

    def find(
        self, records: Sequence[CallRecord], finished: bool = False
    ) -> Optional[List[CallRecord]]:
        """The captured calls that satisfy this expectation (in capture order), or None.

        ``finished``: only calls that have ended count (what ``wait_for`` waits for).
        """
        for _, used in self._matches(records, 0, frozenset(), finished):
            return [records[i] for i in sorted(used)]
        return None


def _check(other: Any) -> Expectation:
    if not isinstance(other, Expectation):
        raise TypeError(
            f"expectations compose with other expectations (called(...)), got {other!r}"
        )
    return other


def _parts(expectation: Expectation, op: str) -> Tuple[Expectation, ...]:
    if isinstance(expectation, _Composite) and expectation.op == op:
        return expectation.parts
    return (expectation,)


class _Composite(Expectation):
    def __init__(self, op: str, parts: Tuple[Expectation, ...]) -> None:
        self.op = op
        self.parts = parts

    def _matches(
        self, records: Sequence[CallRecord], start: int, used: FrozenSet[int], finished: bool
    ) -> _Matches:
        if self.op == "|":
            for part in self.parts:
                yield from part._matches(records, start, used, finished)
            return
        yield from self._chain(0, records, start, start, used, finished)

    def _chain(
        self,
        i: int,
        records: Sequence[CallRecord],
        start: int,
        end: int,
        used: FrozenSet[int],
        finished: bool,
    ) -> _Matches:
        if i == len(self.parts):
            yield end, used
            return
        # ">>": each part after the previous one; "&": anywhere after our own start.
        begin = end if self.op == ">>" else start
        for after, now_used in self.parts[i]._matches(records, begin, used, finished):
            yield from self._chain(i + 1, records, start, max(end, after), now_used, finished)

    def leaves(self) -> List[Called]:
        return [leaf for part in self.parts for leaf in part.leaves()]

    def __repr__(self) -> str:
        shown = []
        for part in self.parts:
            text = repr(part)
            shown.append(f"({text})" if isinstance(part, _Composite) else text)
        return f" {self.op} ".join(shown)


class Called(Expectation):
    """One expected call; see :func:`called`."""

    def __init__(
        self,
        target: str,
        *,
        outcome: Optional[str] = None,
        attempts: Optional[int] = None,
        args: Optional[Sequence[Any]] = None,
        kwargs: Optional[Mapping[str, Any]] = None,
        arguments: Optional[Mapping[str, Any]] = None,
        value: Any = _NOT_GIVEN,
        exception: Union[Type[BaseException], Tuple[Type[BaseException], ...], None] = None,
        match: Optional[str] = None,
        pipeline: Optional[str] = None,
        where: Optional[Callable[[CallRecord], bool]] = None,
    ) -> None:
        if not isinstance(target, str) or not target:
            raise TypeError(
                f"called(target): the target is a 'module:qualname' string (globs allowed), "
                f"got {target!r}"
            )
        if outcome is not None and outcome not in OUTCOMES:
            near = difflib.get_close_matches(str(outcome), OUTCOMES, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"called(outcome={outcome!r}): expected one of {OUTCOMES}{hint}")
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise ValueError(f"called(attempts={attempts!r}): expected a positive int")
        if exception is not None and not _is_exception_spec(exception):
            raise TypeError(
                f"called(exception={exception!r}): expected an exception class or a tuple of "
                "them (use match='regex' for the message)"
            )
        self.target = target
        self.filters: Dict[str, Any] = {}
        for key, given in (
            ("outcome", outcome),
            ("attempts", attempts),
            ("args", None if args is None else tuple(args)),
            ("kwargs", None if kwargs is None else dict(kwargs)),
            ("arguments", None if arguments is None else dict(arguments)),
            ("exception", exception),
            ("match", match),
            ("pipeline", pipeline),
            ("where", where),
        ):
            if given is not None:
                self.filters[key] = given
        if value is not _NOT_GIVEN:
            self.filters["value"] = value
        self._match_re = re.compile(match) if match is not None else None

    def mismatches(self, record: CallRecord) -> List[str]:
        """Why ``record`` is not this call (empty when it is), one phrase per filter."""
        why: List[str] = []
        if not target_matches(self.target, record.target):
            why.append(f"target {record.target!r}")
        f = self.filters
        if "outcome" in f and record.outcome != f["outcome"]:
            got = record.outcome if record.outcome is not None else "still running"
            why.append(f"outcome {got!r} (expected {f['outcome']!r})")
        if "attempts" in f and record.attempts != f["attempts"]:
            why.append(f"attempts {record.attempts} (expected {f['attempts']})")
        if "args" in f and record.args != f["args"]:
            why.append(f"args {record.args!r} (expected {f['args']!r})")
        if "kwargs" in f and record.kwargs != f["kwargs"]:
            why.append(f"kwargs {record.kwargs!r} (expected {f['kwargs']!r})")
        if "arguments" in f:
            for name, expected in f["arguments"].items():
                if name not in record.arguments:
                    why.append(f"no argument {name!r} (it has {sorted(record.arguments)})")
                elif record.arguments[name] != expected:
                    why.append(
                        f"argument {name}={record.arguments[name]!r} (expected {expected!r})"
                    )
        if "value" in f and (
            record.outcome not in ("success", "recovered") or record.value != f["value"]
        ):
            got = repr(record.value) if record.outcome in ("success", "recovered") else "none"
            why.append(f"value {got} (expected {f['value']!r})")
        if "exception" in f and not isinstance(record.exception, f["exception"]):
            why.append(f"exception {record.exception!r} (expected {_type_names(f['exception'])})")
        if self._match_re is not None and (
            record.exception is None or not self._match_re.search(str(record.exception))
        ):
            why.append(
                f"exception message {str(record.exception) if record.exception else None!r} "
                f"(expected to match {self._match_re.pattern!r})"
            )
        if "pipeline" in f and record.pipeline != f["pipeline"]:
            why.append(f"pipeline {record.pipeline!r} (expected {f['pipeline']!r})")
        if "where" in f:
            try:
                ok = bool(f["where"](record))
            except Exception as exc:
                why.append(f"where= raised {exc!r}")
            else:
                if not ok:
                    why.append(f"where={_callable_name(f['where'])} is false")
        return why

    def matches(self, record: CallRecord) -> bool:
        return not self.mismatches(record)

    def _matches(
        self, records: Sequence[CallRecord], start: int, used: FrozenSet[int], finished: bool
    ) -> _Matches:
        for i in range(start, len(records)):
            if i in used:
                continue
            record = records[i]
            if finished and record.outcome is None:
                continue
            if self.matches(record):
                yield i + 1, used | {i}

    def leaves(self) -> List[Called]:
        return [self]

    def __repr__(self) -> str:
        shown = [repr(self.target)]
        for key, value in self.filters.items():
            if key == "exception":
                shown.append(f"exception={_type_names(value)}")
            elif key == "where":
                shown.append(f"where={_callable_name(value)}")
            else:
                shown.append(f"{key}={value!r}")
        return f"called({', '.join(shown)})"


def called(
    target: str,
    *,
    outcome: Optional[str] = None,
    attempts: Optional[int] = None,
    args: Optional[Sequence[Any]] = None,
    kwargs: Optional[Mapping[str, Any]] = None,
    arguments: Optional[Mapping[str, Any]] = None,
    value: Any = _NOT_GIVEN,
    exception: Union[Type[BaseException], Tuple[Type[BaseException], ...], None] = None,
    match: Optional[str] = None,
    pipeline: Optional[str] = None,
    where: Optional[Callable[[CallRecord], bool]] = None,
) -> Called:
    """An expected call of ``target`` (``module:qualname``; ``*``/``?`` globs allowed).

    Every filter given must hold: ``outcome`` (``"success"``, ``"failure"``, ``"recovered"``,
    ``"cancelled"``, ``"interrupted"``), ``attempts`` (1 = no retry), ``args``/``kwargs``
    (exactly as passed), ``arguments`` (some bound parameters, defaults applied), ``value``
    (returned or recovered), ``exception`` (a class: ``isinstance``), ``match`` (a regex
    searched in ``str(exception)``), ``pipeline`` (its name), ``where`` (any predicate on the
    :class:`CallRecord`).
    """
    return Called(
        target,
        outcome=outcome,
        attempts=attempts,
        args=args,
        kwargs=kwargs,
        arguments=arguments,
        value=value,
        exception=exception,
        match=match,
        pipeline=pipeline,
        where=where,
    )


def _is_exception_spec(value: Any) -> bool:
    items = value if isinstance(value, tuple) else (value,)
    return bool(items) and all(
        isinstance(item, type) and issubclass(item, BaseException) for item in items
    )


def _type_names(spec: Any) -> str:
    items = spec if isinstance(spec, tuple) else (spec,)
    names = [t.__qualname__ for t in items]
    return names[0] if len(names) == 1 else f"({', '.join(names)})"


def _callable_name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


# --- assertions and their messages -----------------------------------------------------------


def as_expectation(expected: Any, filters: Mapping[str, Any]) -> Expectation:
    if isinstance(expected, Expectation):
        if filters:
            raise TypeError(
                f"keyword filters ({', '.join(sorted(filters))}) go inside called(...) when an "
                "expectation is given"
            )
        return expected
    if isinstance(expected, str):
        return called(expected, **filters)
    raise TypeError(
        f"expected a target such as 'pkg.module:function' or an expectation built with "
        f"called(...), got {expected!r}"
    )


def _listing(title: str, records: Sequence[CallRecord], explain: Optional[Called] = None) -> str:
    lines = [f"{title} ({len(records)}):" if records else f"{title}: none"]
    for record in records[:_SHOWN]:
        lines.append(f"  {record.describe()}")
        if explain is not None:
            why = explain.mismatches(record)
            if why:
                lines.append(f"      not a match: {'; '.join(why)}")
    if len(records) > _SHOWN:
        lines.append(f"  ... and {len(records) - _SHOWN} more")
    return "\n".join(lines)


def _about_leaf(capture: Capture, leaf: Called, records: Sequence[CallRecord]) -> str:
    same = [r for r in records if target_matches(leaf.target, r.target)]
    if same:
        return _listing(f"calls of {leaf.target}", same, leaf)
    targets = sorted({r.target for r in records})
    near = _near(leaf.target, targets)
    text = f"{leaf.target} was never called"
    if near:
        text += f"; did you mean {' or '.join(repr(n) for n in near)}?"
    if not capture.active and not records:
        text += " (the capture was not active: use it as `with capture() as calls:`)"
    return text


def _near(name: str, candidates: Sequence[str]) -> List[str]:
    """Targets ``name`` may be a typo of.  Targets share long prefixes (a module, a class), so
    each is compared on what follows the prefix it has in common with ``name``."""
    scored = []
    for candidate in candidates:
        common = 0
        for a, b in zip(name, candidate):  # characters, deliberately (not path components)
            if a != b:
                break
            common += 1
        ratio = difflib.SequenceMatcher(None, name[common:], candidate[common:]).ratio()
        if ratio >= 0.6:
            scored.append((-ratio, candidate))
    return [candidate for _, candidate in sorted(scored)[:3]]


def failure_message(capture: Capture, expectation: Expectation, waited: float = 0.0) -> str:
    records = capture.calls
    when = f" within {waited:g}s" if waited else ""
    head = f"callpyback: no captured calls{when} satisfy {expectation!r}"
    parts = [head]
    if isinstance(expectation, Called):
        parts.append(_about_leaf(capture, expectation, records))
        if not any(target_matches(expectation.target, r.target) for r in records):
            parts.append(_listing("captured calls", records))
        return "\n".join(parts)
    unmet = [leaf for leaf in expectation.leaves() if not any(leaf.matches(r) for r in records)]
    for leaf in unmet:
        parts.append(f"unmet: {leaf!r}\n" + _about_leaf(capture, leaf, records))
    if not unmet:
        parts.append(
            "each expected call was captured, but not in the order or number asked for "
            "(>> is 'in this order', & 'all of them', and each captured call counts once)"
        )
    parts.append(_listing("captured calls", records))
    return "\n".join(parts)


def check_called(
    capture: Capture, expected: Any, times: Optional[int], filters: Mapping[str, Any]
) -> List[CallRecord]:
    __tracebackhide__ = True
    expectation = as_expectation(expected, filters)
    records = capture.calls
    if times is not None:
        if not isinstance(expectation, Called):
            raise TypeError("times= counts the calls of one target; compose with & instead")
        matching = [r for r in records if expectation.matches(r)]
        if len(matching) != times:
            raise AssertionError(
                f"callpyback: expected {times} call{'' if times == 1 else 's'} matching "
                f"{expectation!r}, captured {len(matching)}\n"
                + _about_leaf(capture, expectation, records)
            )
        return matching
    found = expectation.find(records)
    if found is None:
        raise AssertionError(failure_message(capture, expectation))
    return found


def check_not_called(capture: Capture, expected: Any, filters: Mapping[str, Any]) -> None:
    __tracebackhide__ = True
    expectation = as_expectation(expected, filters)
    records = capture.calls
    if isinstance(expectation, Called):
        matching = [r for r in records if expectation.matches(r)]
        if matching:
            raise AssertionError(
                f"callpyback: expected no call matching {expectation!r}, captured "
                f"{len(matching)}\n" + _listing("matching calls", matching)
            )
        return
    found = expectation.find(records)
    if found is not None:
        raise AssertionError(
            f"callpyback: expected the captured calls not to satisfy {expectation!r}, but "
            "they do\n" + _listing("calls that satisfy it", found)
        )
