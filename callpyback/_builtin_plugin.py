"""The core as its own first plugin: registers the built-in components under short names.

It goes through the same ``callpyback_register_components`` hook as any third-party plugin, but
:mod:`callpyback.plugins` registers it directly (not through an entry point) so that it can be
neither missing nor denied.  Factories import their module on first use: listing the registry
does not import every built-in observer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from . import _builtin_options as o
from .hookspecs import hookimpl
if TYPE_CHECKING:
    from .plugins import ComponentRegistrar

__all__ = ["callpyback_register_components"]


def _lazy(module: str, attr: str, adapt: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """A factory importing ``module.attr`` when first called, then ``adapt(cls, **options)``."""

    def factory(**options: Any) -> Any:
        cls = getattr(importlib.import_module(module), attr)
        if adapt is not None:
            return adapt(cls, **options)
        return cls(**options)

    factory.__name__ = attr
    factory.__qualname__ = f"{module}.{attr}"
    factory.__doc__ = f"Build {module}.{attr} from validated options."
    return factory


def _default_handler(cls: Any, *, value: Any, exceptions: Any, name: Any) -> Any:
    return cls(value, tuple(exceptions), name=name)


@hookimpl
def callpyback_register_components(registry: ComponentRegistrar) -> None:
    # --- time sources
    registry.time_source(
        "system",
        _lazy("callpyback.time_sources", "SystemTimeSource"),
        options=o.NoOptions,
        description="The real clocks (time.time, time.perf_counter, time.sleep).",
    )
    registry.time_source(
        "mock",
        _lazy("callpyback.time_sources", "MockTimeSource"),
        options=o.MockTimeOptions,
        description="A manual clock for tests; sleep advances it instead of blocking.",
    )
    # --- error handlers
    for name in ("default", "fallback"):
        registry.error_handler(
            name,
            _lazy("callpyback._handling", "DefaultErrorHandler", _default_handler),
            options=o.DefaultHandlerOptions,
            description="Recover the listed exceptions with a fixed value.",
        )
