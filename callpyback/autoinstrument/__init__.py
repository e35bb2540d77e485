"""Auto-instrumentation: apply ``callpyback.toml`` pipelines to functions as their modules import.

``install(config=None)`` puts a finder at the front of ``sys.meta_path`` and retrofits matching
modules that were already imported; ``uninstall()`` removes it and restores every function and
method we replaced (and only ours).  ``report()`` says what was wrapped, skipped, failed, and
which aliases were patched or reported.  ``CALLPYBACK_DISABLED=1`` turns it all off.

See ``docs/auto-instrumentation.md``.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

from ..config._flags import AUTOINSTALL_ENV, DISABLED_ENV, kill_switch
from ._instrument import Event, InstrumentationWarning
from ._selector import Selector
from ._state import Installation, Report, UninstallResult

__all__ = [
    "AUTOINSTALL_ENV",
    "CONFIG_ENV",
    "DISABLE_ENV",
    "Event",
    "InstrumentationWarning",
    "Report",
    "Selector",
    "UninstallResult",
    "disabled",
    "explain",
    "install",
    "is_installed",
    "report",
    "summary_table",
    "uninstall",
    "when_imported",
]

#: ``CALLPYBACK_DISABLED=1``: the kill switch.  Nothing is installed, nothing is wrapped.
DISABLE_ENV = DISABLED_ENV
#: ``CALLPYBACK_CONFIG=path``: the config file the bootstrap (and ``install()``) loads.
CONFIG_ENV = "CALLPYBACK_CONFIG"

_lock = threading.Lock()  # guards install/uninstall only; never held while modules import
_installation: Optional[Installation] = None


_warned: set[str] = set()


def disabled() -> bool:
    """True when the kill switch ``CALLPYBACK_DISABLED`` is set.

    It is read by the same parser as every boolean setting (``callpyback.config._flags``), so
    the hook and ``Config.wrapper_for`` always agree.  A value that is not a boolean counts as
    set, and is reported once on the ``callpyback.autoinstrument`` logger.
    """
    switch = kill_switch()
    if switch.warning and switch.warning not in _warned:
        _warned.add(switch.warning)
        _log().warning("callpyback: %s", switch.warning)
    return switch.on


def _current() -> Optional[Installation]:
    return _installation


def install(config: Any = None, *, build: bool = True) -> Optional[Report]:
    """Install the import hook; returns the report of the retrofit, or None if disabled.

    ``config``: None (``$CALLPYBACK_CONFIG``, else ``callpyback.toml`` discovery), a path, or a
    loaded config (anything with ``may_match_module``, ``wrapper_for`` and ``settings``).
    Installing again replaces the previous installation (uninstalling it first).

    A :class:`~callpyback.config.Config` has every pipeline built first: a config that fails to
    validate, or a component that cannot be built (with the default
    ``on_build_error = "error"``), raises its :class:`~callpyback.ConfigError` and installs
    nothing.  ``build=False`` builds each pipeline when the hook first needs it instead: the
    ``.pth`` bootstrap does that, because at interpreter start-up the program's own directory
    is not on ``sys.path`` yet (its modules, named by exception lists, cannot be imported).
    """
    global _installation
    if disabled():
        _log().info("callpyback: %s is set; the import hook is not installed", DISABLE_ENV)
        return None
    from ._selector import (
        discover_plugin_packages,
        resolve_selector,
        set_machinery,
        set_plugin_packages,
    )

    if config is None and os.environ.get(CONFIG_ENV):
        config = os.environ[CONFIG_ENV]
    selector = resolve_selector(config)
    settings = getattr(selector, "settings", None)
    if settings is not None and getattr(settings, "enabled", True) is False:
        _log().info(
            "callpyback: settings.enabled is false in %s; nothing installed",
            getattr(selector, "source", None),
        )
        uninstall()
        return None
    from ..config._config import Config

    if build and isinstance(selector, Config):
        # Start-up is when a component that cannot be built must be found (an audit trail
        # that cannot be opened): not at the first import, once per function.
        selector.build_all()
    set_plugin_packages(discover_plugin_packages())
    set_machinery(selector)
    with _lock:
        previous, _installation = _installation, None
    if previous is not None:
        _deactivate(previous)
    installation = Installation(selector)
    with _lock:
        _installation = installation
    installation.activate()  # outside the lock: retrofit may touch user objects
    if isinstance(selector, Config) and selector.registry is not None:
        # Plugins attach the integrations their tables ask for ([web], [db], [state]...).
        from ..plugins import notify_install

        installation.plugins_installed = True
        notify_install(selector)
    return installation.report()


def _deactivate(installation: Any) -> UninstallResult:
    result = installation.deactivate()
    from ._finder import forget_watchers

    forget_watchers()
    if getattr(installation, "plugins_installed", False):
        from ..plugins import notify_uninstall

        notify_uninstall()
    return result  # type: ignore[no-any-return]


def uninstall() -> UninstallResult:
    """Remove the hook and restore what we replaced (layers others stacked on ours stay)."""
    global _installation
    with _lock:
        installation, _installation = _installation, None
    if installation is None:
        return UninstallResult(0, ())
    return _deactivate(installation)


def when_imported(name: str, callback: Any) -> None:
    """Call ``callback(module)`` once module ``name`` is imported (now, if it already is)."""
    from ._finder import when_imported as watch

    watch(name, callback)


def is_installed() -> bool:
    """Whether the import hook is installed now."""
    return _installation is not None and _installation.active


def report() -> Report:
    """What the current installation wrapped, skipped, failed and which aliases it handled."""
    installation = _installation
    if installation is None:
        return Report(None, False)
    return installation.report()


def explain(target: str) -> str:
    """What the import hook did with ``module:qualname`` (for ``callpyback explain``)."""
    return report().explain(target)


def decorators() -> list[Any]:
    """The distinct ``CallPyBack`` instances the hook applied (in first-use order)."""
    installation = _installation
    if installation is None:
        return []
    patches, _ = installation.ledger.snapshot()
    seen: dict[int, Any] = {}
    for patch in patches:
        decorator = patch.decorator
        if decorator is not None:
            seen.setdefault(id(decorator), decorator)
    return list(seen.values())


def summary_table() -> str:
    """A text table of calls, errors, retries and p50/p99 latency per instrumented function.

    Read from every metrics observer (anything with ``get_metrics()``) in the pipelines the hook
    applied; empty string if there is none.
    """
    merged: dict[str, dict[str, Any]] = {}
    observers: dict[int, Any] = {}
    for decorator in decorators():
        for observer in decorator.observers:
            if callable(getattr(observer, "get_metrics", None)):
                observers.setdefault(id(observer), observer)
    for observer in observers.values():
        for target, stats in observer.get_metrics().items():
            merged.setdefault(target, stats)
    if not merged:
        return ""
    header = ("function", "calls", "errors", "retries", "p50 ms", "p99 ms")
    rows = []
    for target, stats in sorted(merged.items()):
        latency = stats.get("latency") or {}
        rows.append(
            (
                target,
                str(stats.get("calls", 0)),
                str(stats.get("failures", 0) + stats.get("interrupted", 0)),
                str(stats.get("retries", 0)),
                _ms(latency.get("p50")),
                _ms(latency.get("p99")),
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
    return "\n".join(lines)


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


def _log() -> Any:
    import logging

    return logging.getLogger("callpyback.autoinstrument")
