"""CallPyBack for web applications: each HTTP request is one observed call.

The call's target is the route template with the method (``http:GET /orders/{order_id}``),
its argument the :class:`Request` (method, route, path, headers, sizes, status), its value a
:class:`Response`, and its outcome the client's: a 5xx response or an exception is a failure,
a 4xx a success (``failure_statuses`` says otherwise).  It ends when the response body has been
sent.  See ``docs/web-apps.md``.

In code::

    callpyback_web.instrument(app, pipeline=CallPyBack(observers=[MetricsObserver()]))

Drop-in: a ``[web]`` table in ``callpyback.toml`` under ``callpyback run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ._core import ErrorResponse, Request, Response, RouteRule, Web, current_request
from ._instrument import instrument, instrumented, uninstrument
from ._routes import RoutePattern

if TYPE_CHECKING:
    from .asgi import ASGIMiddleware
    from .calltree import Call, CallTreeObserver
    from .wsgi import WSGIMiddleware

__all__ = [
    "ASGIMiddleware",
    "Call",
    "CallTreeObserver",
    "ErrorResponse",
    "Request",
    "Response",
    "RoutePattern",
    "RouteRule",
    "WSGIMiddleware",
    "Web",
    "configure_django",
    "current_request",
    "instrument",
    "instrumented",
    "uninstrument",
]

_LAZY = {
    "ASGIMiddleware": "asgi",
    "WSGIMiddleware": "wsgi",
    "Call": "calltree",
    "CallTreeObserver": "calltree",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'callpyback_web' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def configure_django(web: Optional[Web]) -> None:
    """The :class:`Web` used by ``callpyback_web.django.CallPyBackMiddleware`` when it is listed
    in ``settings.MIDDLEWARE`` (Django gives it no arguments); None detaches it."""
    from .django import set_default

    set_default(web)
