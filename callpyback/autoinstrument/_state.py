"""One installation of the hook: its selector, finder, ledger of patches, retrofit and undo."""

from __future__ import annotations

import contextlib
import gc
import sys
import types
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

from ._finder import InstrumentingFinder, defer, instrumenting, is_lazy
from ._instrument import (
    ALIAS_PATCHED,
    ALIAS_REPORTED,
    FAILED,
    SKIPPED,
    WRAPPED,
    Batch,
    Event,
    Ledger,
    Patch,
    instrument_namespace,
)
from ._selector import is_protected, protection

__all__ = ["Installation", "Report", "UninstallResult"]


@dataclass(frozen=True)
class Report:
    """What the hook did: per-function events and totals; ``str(report)`` summarises it."""

    source: Any
    installed: bool
    events: Sequence[Event] = field(default_factory=tuple)
    modules_seen: int = 0
    unmatched: int = 0

    def _where(self, action: str) -> List[Event]:
        return [e for e in self.events if e.action == action]

    @property
    def wrapped(self) -> List[Event]:
        """The functions the hook wrapped."""
        return self._where(WRAPPED)

    @property
    def skipped(self) -> List[Event]:
        """The functions it left alone, each with the reason."""
        return self._where(SKIPPED)

    @property
    def failed(self) -> List[Event]:
        """The functions it could not wrap, each with the reason."""
        return self._where(FAILED)

    @property
    def aliases_patched(self) -> List[Event]:
        """Aliases in other modules pointed at a wrapper by the retrofit."""
        return self._where(ALIAS_PATCHED)

    @property
    def aliases_reported(self) -> List[Event]:
        """Aliases the retrofit found but must not patch (standard library, callpyback)."""
        return self._where(ALIAS_REPORTED)

    def wrapped_targets(self) -> List[str]:
        """The ``module:qualname`` of every wrapped function."""
        return [e.target for e in self.wrapped]

    def about(self, target: str) -> List[Event]:
        """Every event for ``module:qualname`` (aliases included)."""
        return [e for e in self.events if e.target == target]

    def explain(self, target: str) -> str:
        """What the import hook did with ``target``, one line per event."""
        events = self.about(target)
        if not events:
            state = "installed" if self.installed else "not installed"
            return f"import hook ({state}): {target} has not been met in an imported module"
        return "\n".join(f"import hook: {e}" for e in events)

    def __str__(self) -> str:
        return (
            f"callpyback import hook ({'installed' if self.installed else 'not installed'}, "
            f"config {self.source!r}): {len(self.wrapped)} wrapped "
            f"({sum(e.late for e in self.wrapped)} by retrofit), {len(self.skipped)} skipped, "
            f"{len(self.failed)} failed, {len(self.aliases_patched)} aliases patched, "
            f"{len(self.aliases_reported)} aliases reported, "
            f"{self.modules_seen} modules instrumented"
        )


@dataclass(frozen=True)
class UninstallResult:
    """``restored``: layers put back; ``kept``: targets where someone else's patch sits on ours."""

    restored: int
    kept: Sequence[str]


class Installation:
    def __init__(self, selector: Any) -> None:
        self.selector = selector
        self.source = getattr(selector, "source", None)
        self.ledger = Ledger()
        self.finder = InstrumentingFinder(self)
        self.active = False
        self.plugins_installed = False  # callpyback_install was called for this installation

    # --- selection --------------------------------------------------------------------------
    def protected(self, module: str) -> bool:
        return is_protected(module, self.selector)

    def selects(self, module: str) -> bool:
        try:
            return bool(self.selector.may_match_module(module)) and not self.protected(module)
        except Exception:
            return False

    # --- the hook's callback ------------------------------------------------------------------
    def instrument(
        self,
        module: types.ModuleType,
        *,
        late: bool = False,
        names: Optional[Sequence[str]] = None,
        keys: Optional[Sequence[str]] = None,
    ) -> int:
        """Instrument an executed module (again after a reload); never raises."""
        if not self.active:
            return 0
        # Wrapping a large module allocates thousands of small objects; pausing the cyclic GC
        # for that moment avoids repeated collections mid-walk (they run afterwards instead).
        paused = keys is None and gc.isenabled()
        if paused:
            gc.disable()
        try:
            if keys is None:
                self.ledger.forget_stale(module)
            with instrumenting():
                return instrument_namespace(
                    module, self.selector, self.ledger, names=names, late=late, keys=keys
                )
        except Exception as exc:  # pragma: no cover - instrument_namespace already contains errors
            from ._instrument import _warn

            _warn(f"callpyback could not instrument module {module.__name__!r}: {exc!r}")
            return 0
        finally:
            if paused:
                gc.enable()

    # --- install / retrofit / uninstall -------------------------------------------------------
    def activate(self) -> None:
        self.active = True
        if self.finder not in sys.meta_path:
            sys.meta_path.insert(0, self.finder)
        self.retrofit()

    def retrofit(self) -> None:
        """Instrument matching modules imported before install(), then patch or report aliases."""
        import logging

        before = len(self.ledger.patches)
        late_modules = []
        # Any: sys.modules may hold non-module objects (lazy proxies), whatever typeshed says.
        loaded: List[Tuple[str, Any]] = list(sys.modules.items())
        for name, module in loaded:
            if not isinstance(module, types.ModuleType) or not self.selects(name):
                continue
            if is_lazy(module):  # not executed yet: instrument it when it is
                defer(module, self)
                continue
            ns = module.__dict__
            if ns.get("__name__") != name:
                continue
            spec_name = getattr(ns.get("__spec__"), "name", None)
            if name == "__main__" and isinstance(spec_name, str) and protection(spec_name):
                continue  # e.g. ``python -m callpyback`` or ``python -m pytest`` itself
            if self.instrument(module, late=True):
                late_modules.append(name)
        wrapped = [p for p in self.ledger.patches[before:] if p.wrapped]
        patched, reported = self._aliases() if wrapped else ([], [])
        if late_modules or reported:
            logging.getLogger("callpyback.autoinstrument").info(
                "callpyback retrofit: %d function(s) in %d already-imported module(s) wrapped late "
                "(%s); %d alias(es) in other modules patched; %d alias(es) left unpatched and "
                "reported: %s",
                len(wrapped),
                len(late_modules),
                ", ".join(late_modules),
                len(patched),
                len(reported),
                "; ".join(f"{e.where} -> {e.target} ({e.reason})" for e in reported) or "none",
            )

    def _aliases(self) -> tuple[List[Event], List[Event]]:
        """Find other modules' names bound to a function we just wrapped late, and patch them."""
        ledger = self.ledger
        patches: List[Patch] = []
        events: List[Event] = []
        by_id = dict(ledger.wrappers)
        aliases = Batch("", late=True, wrapped=False)
        loaded: List[Tuple[str, Any]] = list(sys.modules.items())
        for name, module in loaded:
            if not isinstance(module, types.ModuleType) or is_lazy(module):
                continue  # a lazy module holds no aliases until it runs (and reading would run it)
            ns = module.__dict__
            for key, value in list(ns.items()):
                pair = by_id.get(id(value))
                if pair is None or pair[0] is not value or not isinstance(key, str):
                    continue
                original, wrapper = pair
                target = f"{original.__module__}:{original.__qualname__}"
                where = f"{name}:{key}"
                reason = protection(name)
                if reason is not None:  # never write into callpyback, plugins or the stdlib
                    events.append(
                        Event(
                            target,
                            ALIAS_REPORTED,
                            f"held by {reason}; not patched, calls through it are not observed",
                            late=True,
                            where=where,
                        )
                    )
                    continue
                ns[key] = wrapper
                patches.append(Patch(module, key, original, wrapper, aliases))
                events.append(Event(target, ALIAS_PATCHED, late=True, where=where))
        ledger.commit(patches, events, 0, modules=0)
        return [e for e in events if e.action == ALIAS_PATCHED], [
            e for e in events if e.action == ALIAS_REPORTED
        ]

    def deactivate(self) -> UninstallResult:
        self.active = False
        with contextlib.suppress(ValueError):  # someone removed it already
            sys.meta_path.remove(self.finder)
        patches, _ = self.ledger.snapshot()
        restored = 0
        kept: List[str] = []
        for patch in reversed(patches):
            if patch.restore():
                restored += 1
            elif patch.owner.__dict__.get(patch.key) is not None:
                kept.append(f"{patch.target} (at {_describe(patch.owner)}.{patch.key})")
        if kept:
            import logging

            logging.getLogger("callpyback.autoinstrument").warning(
                "callpyback uninstall: %d layer(s) left in place because another patch sits on "
                "top of ours: %s",
                len(kept),
                ", ".join(kept),
            )
        return UninstallResult(restored, tuple(kept))

    def report(self) -> Report:
        _, events = self.ledger.snapshot()
        return Report(
            self.source, self.active, tuple(events), self.ledger.modules_seen, self.ledger.unmatched
        )


def _describe(owner: Any) -> str:
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}"
    return str(owner.__dict__.get("__name__", owner))
