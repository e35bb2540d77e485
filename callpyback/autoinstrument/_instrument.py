"""Instrument what the config selects in one module's namespace, record every change, undo it.

Functions are instrumented *in place* (``CallPyBack.instrument_in_place``): the function object
keeps its identity and gets the observing code, so every reference to it (``from m import f``
aliases, registries, route tables and dispatch dicts filled before or after) is observed, and
uninstalling gives every one of them the original back.  Nothing is assigned into the namespace.

The namespace is read through ``module.__dict__`` and ``cls.__dict__`` only: ``getattr`` would run
a module-level ``__getattr__``, trigger lazy modules and turn descriptors into bound objects.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import types
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._decorator import in_place_record
from ..errors import CallPyBackWarning

__all__ = [
    "Event",
    "InstrumentationWarning",
    "Ledger",
    "Patch",
    "instrument_namespace",
]


class InstrumentationWarning(CallPyBackWarning):
    """A function could not be instrumented; the original was kept and the import went on."""


#: The actions an :class:`Event` records.
WRAPPED = "wrapped"
SKIPPED = "skipped"
FAILED = "failed"
ALIAS_PATCHED = "alias patched"
ALIAS_REPORTED = "alias reported"


@dataclass(frozen=True)
class Event:
    """One thing the hook did or declined to do, for ``report()`` and ``callpyback explain``."""

    target: str  # module:qualname
    action: str
    reason: str = ""
    late: bool = False  # True: done by retrofit at install(), after the module was imported
    where: str = ""  # for aliases: the module:name holding the alias

    def __str__(self) -> str:
        text = f"{self.target}: {self.action}"
        if self.where:
            text += f" in {self.where}"
        if self.reason:
            text += f" ({self.reason})"
        if self.late:
            text += " [retrofit]"
        return text


class Batch:
    """What the patches of one walk share: the module name they report, retrofit or not."""

    __slots__ = ("late", "module", "wrapped")

    def __init__(self, module: str, late: bool, wrapped: bool = True) -> None:
        self.module = module
        self.late = late
        self.wrapped = wrapped  # False: aliases we pointed at an existing wrapper


class Patch:
    """One change we made: ``owner.__dict__[key]`` went from ``original`` to ``installed``, or
    (``record`` set) the function there was instrumented in place.

    Six slots and no string formatting: an import may create a thousand of them.
    """

    __slots__ = ("batch", "installed", "key", "original", "owner", "record")

    def __init__(
        self,
        owner: Any,
        key: str,
        original: Any,
        installed: Any,
        batch: Batch,
        record: Any = None,
    ) -> None:
        self.owner = owner  # a module or a class
        self.key = key
        self.original = original
        self.installed = installed
        self.batch = batch
        self.record = record  # an InPlace record, for functions instrumented in place

    @property
    def decorator(self) -> Any:
        """The CallPyBack instance observing this function."""
        if self.record is not None:
            return self.record.decorator
        member = self.installed
        func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        return getattr(func, "__callpyback__", None)

    @property
    def late(self) -> bool:
        return self.batch.late

    @property
    def wrapped(self) -> bool:
        return self.batch.wrapped

    @property
    def target(self) -> str:
        if not self.batch.wrapped:  # an alias: name the function it stands for
            func = self.original
            return f"{func.__module__}:{func.__qualname__}"
        owner = self.owner
        qualname = f"{owner.__qualname__}.{self.key}" if isinstance(owner, type) else self.key
        return f"{self.batch.module}:{qualname}"

    def is_current(self) -> bool:
        if self.record is not None:
            return bool(self.record.active)
        return self.owner.__dict__.get(self.key, _ABSENT) is self.installed

    def restore(self) -> bool:
        """Put the original back if our layer is still on top; False if someone stacked on it."""
        if self.record is not None:
            return bool(self.record.undo())
        if not self.is_current():
            return False
        _assign(self.owner, self.key, self.original)
        return True


_ABSENT = object()


def _assign(owner: Any, key: str, value: Any) -> None:
    if isinstance(owner, type):
        setattr(owner, key, value)  # a class __dict__ is a read-only proxy
    else:
        owner.__dict__[key] = value  # never the module's __setattr__ (lazy-module proxies)


class Ledger:
    """Every patch and event of one installation.  The lock guards the lists, never user code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.patches: List[Patch] = []
        self.events: List[Event] = []
        #: id(original) -> (original, wrapper): an alias of a wrapped function gets the same one
        self.wrappers: Dict[int, Tuple[Any, Any]] = {}
        self.modules_seen = 0
        self.unmatched = 0

    def commit(
        self,
        patches: Sequence[Patch],
        events: Sequence[Event],
        unmatched: int,
        wrappers: Optional[Dict[int, Tuple[Any, Any]]] = None,
        modules: int = 1,
    ) -> None:
        with self._lock:
            self.patches.extend(patches)
            self.events.extend(events)
            if wrappers:
                self.wrappers.update(wrappers)
            self.modules_seen += modules
            self.unmatched += unmatched

    def wrapper_of(self, func: Any) -> Optional[Any]:
        entry = self.wrappers.get(id(func))
        return entry[1] if entry is not None and entry[0] is func else None

    def forget_stale(self, module: Any) -> None:
        """Drop the layers of a reloaded module that its re-execution already replaced."""
        with self._lock:
            self.patches = [p for p in self.patches if p.owner is not module or p.is_current()]

    def snapshot(self) -> Tuple[List[Patch], List[Event]]:
        """The patches, and every event (wrapped functions are derived from the patches)."""
        with self._lock:
            patches, events = list(self.patches), list(self.events)
        wrapped = [Event(p.target, WRAPPED, late=p.late) for p in patches if p.wrapped]
        return patches, wrapped + events


# --- wrapping ----------------------------------------------------------------------------------


def _warn(message: str) -> None:
    import logging

    logging.getLogger("callpyback.autoinstrument").warning(message)
    # Warnings promoted to errors (filterwarnings = error) must not break the import.
    with contextlib.suppress(Exception):
        warnings.warn(message, InstrumentationWarning, stacklevel=3)


_SKIP_REASONS = (
    (property, "a property: its accessors are not wrapped; decorate fget/fset explicitly"),
    (functools.cached_property, "a cached_property: attribute access is not a call"),
    (
        functools.partial,
        "a functools.partial: the function it calls is instrumented in its own module",
    ),
    (
        functools.partialmethod,
        "a functools.partialmethod: its function is instrumented where defined",
    ),
    (
        functools.singledispatchmethod,
        "a singledispatchmethod: decorate its implementations explicitly",
    ),
)


#: exact type -> reason, so the common case (a str, a module, a dict...) is one dict lookup
_SKIP_BY_TYPE = {kind: reason for kind, reason in _SKIP_REASONS}


def _skip_reason(value: Any) -> Optional[str]:
    cls = type(value)
    reason = _SKIP_BY_TYPE.get(cls)
    if reason is not None or cls.__module__ == "builtins":
        return reason
    for kind, why in _SKIP_REASONS:  # subclasses (a custom property type, say)
        if isinstance(value, kind):
            return why
    return None


#: Names whose presence in a function's code means it looks at its caller's frame.
_FRAME_NAMES = frozenset(
    {"_getframe", "currentframe", "f_back", "extract_stack", "getouterframes", "walk_stack"}
)


def inspects_frames(func: Any) -> str:
    """What in ``func``'s code looks at the call stack ("" if nothing does)."""
    code = getattr(func, "__code__", None)
    stack = [code] if isinstance(code, types.CodeType) else []
    seen = 0
    while stack and seen < 50:
        code = stack.pop()
        seen += 1
        names = set(code.co_names)
        found = names & _FRAME_NAMES
        if found:
            return f"it uses {sorted(found)[0]}"
        if "inspect" in names and names & {"stack", "getframeinfo", "trace"}:
            return "it uses inspect.stack"
        # ``getattr(sys, "_getframe", None)(1)`` (pyparsing's autoname_elements) names it in
        # a string constant instead.
        for const in code.co_consts:
            if type(const) is str and const in _FRAME_NAMES:
                return f"it uses {const} (through getattr)"
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return ""


class _Walk:
    """State of one namespace walk: what to match against, and what it has done so far."""

    def __init__(
        self, selector: Any, defining: str, names: Sequence[str], ledger: Ledger, late: bool
    ):
        self.selector = selector
        self.defining = defining  # the __module__ value of functions defined here
        self.names = tuple(names)  # the module names patterns are matched against
        self.ledger = ledger
        self.late = late
        self.patches: List[Patch] = []
        self.events: List[Event] = []
        self.unmatched = 0
        self.done: Dict[int, Tuple[Any, Any]] = {}  # id(original) -> (original, wrapper)
        self.batch = Batch(self.names[0], late)
        self.classes: set[int] = set()

    def target(self, qualname: str) -> str:
        return f"{self.names[0]}:{qualname}"

    def decorator_for(self, qualname: str) -> Any:
        names = self.names
        if len(names) == 1:
            return self.selector.wrapper_for(names[0], qualname)
        for name in names:
            decorator = self.selector.wrapper_for(name, qualname)
            if decorator is not None:
                return decorator
        return None

    def wrap(self, func: types.FunctionType) -> Optional[Any]:
        """Instrument ``func`` in place (its record) or wrap it (the wrapper); None: keep it."""
        if func.__module__ != self.defining:
            # Imported from elsewhere: instrumented where it is defined.  Only an original
            # wrapped the classic way in its own module gets that same wrapper here.
            return self.ledger.wrapper_of(func)
        pair = self.done.get(id(func))
        if pair is not None:
            # The same function under a second name: in place it is observed already; a
            # classic wrapper is installed under this name too.
            return None if pair[1] is func else pair[1]
        # getattr, not ``in func.__dict__``: reading __dict__ creates an empty dict per function.
        if getattr(func, "__callpyback__", None) is not None or func.__name__ == "<lambda>":
            return None  # decorated by hand, or a lambda
        if in_place_record(func) is not None:
            return None  # instrumented already (a second installation, or a re-walk)
        qualname = func.__qualname__
        try:
            decorator = self.decorator_for(qualname)
        except Exception as exc:
            self.fail(qualname, f"selecting its pipeline raised {exc!r}")
            return None
        if decorator is None:
            self.unmatched += 1
            return None
        reason = inspects_frames(func)
        if reason and not getattr(self.selector, "instrument_frame_inspectors", False):
            self.events.append(
                Event(
                    self.target(qualname),
                    SKIPPED,
                    f"it inspects its caller's frame ({reason}); a wrapper frame would change "
                    "what it sees. Set instrument_frame_inspectors = true to observe it anyway",
                    self.late,
                )
            )
            return None
        in_place = getattr(decorator, "instrument_in_place", None)
        try:
            # A CallPyBack instruments the function itself; any other decorator a selector
            # hands out is applied the classic way, and its wrapper put in the namespace.
            result = in_place(func) if in_place is not None else decorator(func)
        except Exception as exc:
            self.fail(qualname, f"{type(exc).__name__}: {exc}")
            return None
        self.done[id(func)] = (func, func if in_place is not None else result)
        return result

    def fail(self, qualname: str, reason: str) -> None:
        self.events.append(Event(self.target(qualname), FAILED, reason, self.late))
        _warn(
            f"callpyback could not instrument {self.target(qualname)}: {reason}; the original "
            "function is kept and the import goes on"
        )

    def skip(self, qualname: str, reason: str) -> None:
        try:
            wanted = self.decorator_for(qualname) is not None
        except Exception:
            wanted = False
        if wanted:  # only worth telling about when a pattern asked for it
            self.events.append(Event(self.target(qualname), SKIPPED, reason, self.late))

    def record(self, owner: Any, key: str, original: Any, result: Any) -> None:
        from .._decorator import InPlace

        if isinstance(result, InPlace):
            self.patches.append(Patch(owner, key, original, original, self.batch, result))
            return
        descriptor = isinstance(original, (classmethod, staticmethod))
        installed = type(original)(result) if descriptor else result
        try:
            _assign(owner, key, installed)
        except Exception as exc:
            where = f"{owner.__qualname__}.{key}" if isinstance(owner, type) else key
            self.fail(where, f"cannot assign: {exc!r}")
            return
        self.patches.append(Patch(owner, key, original, installed, self.batch))

    # --- members --------------------------------------------------------------------------
    def member(self, owner: Any, key: str, value: Any, prefix: str) -> None:
        kind = type(value)
        if kind is types.FunctionType:
            record = self.wrap(value)
            if record is not None:
                self.record(owner, key, value, record)
        elif kind is staticmethod or kind is classmethod:
            func = value.__func__
            if type(func) is types.FunctionType:
                record = self.wrap(func)
                if record is not None:
                    self.record(owner, key, value, record)
        elif isinstance(value, type):
            qual = f"{prefix}{key}"
            if (
                value.__dict__.get("__module__") == self.defining
                and value.__qualname__ == qual
                and id(value) not in self.classes
            ):
                self.classes.add(id(value))
                for name, attr in list(value.__dict__.items()):
                    self.member(value, name, attr, f"{qual}.")
        else:
            reason = _skip_reason(value)
            if reason is not None:
                self.skip(f"{prefix}{key}", reason)


def instrument_namespace(
    module: types.ModuleType,
    selector: Any,
    ledger: Ledger,
    *,
    names: Optional[Sequence[str]] = None,
    late: bool = False,
    keys: Optional[Sequence[str]] = None,
) -> int:
    """Wrap the selected functions, methods and classes of ``module``; returns how many.

    ``names``: the module names patterns are matched against (default: ``__name__``); ``keys``:
    only these entries of the namespace (the ``__main__`` hook instruments each definition as
    it runs).  Never raises: a failure is an event and one warning.
    """
    ns = module.__dict__
    defining = ns.get("__name__")
    if not isinstance(defining, str):
        return 0
    walk = _Walk(selector, defining, names or (defining,), ledger, late)
    # A module dict may hold non-str keys (only through hostile code); skip them.
    items: List[Tuple[Any, Any]] = (
        list(ns.items()) if keys is None else [(k, ns[k]) for k in keys if k in ns]
    )
    for key, value in items:
        if not isinstance(key, str):
            continue
        try:
            walk.member(module, key, value, "")
        except Exception as exc:  # a bug of ours, or a hostile object: never break the import
            walk.fail(key, f"internal error {exc!r}")
    # One definition of a __main__ script at a time is not one more module.  Functions
    # instrumented in place need no alias patching: their aliases hold the observed object.
    classic = {k: v for k, v in walk.done.items() if v[0] is not v[1]}
    ledger.commit(walk.patches, walk.events, walk.unmatched, classic, int(keys is None))
    return len(walk.done)
