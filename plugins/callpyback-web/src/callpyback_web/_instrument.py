"""``instrument(app)`` / ``uninstrument(app)``: attach to one application object, and undo it."""

from __future__ import annotations

from typing import Any, Optional

from ._core import Web

__all__ = ["instrument", "uninstrument"]

_MARK = "_callpyback_web"


def _as_web(web: Any, pipeline: Any) -> Web:
    if web is not None:
        if pipeline is not None:
            raise TypeError("give either web= or pipeline=, not both")
        if not isinstance(web, Web):
            raise TypeError(f"web must be a callpyback_web.Web, got {web!r}")
        return web
    if pipeline is None:
        raise TypeError(
            "instrument() needs the pipeline that observes requests: pipeline=CallPyBack(...) "
            "or web=callpyback_web.Web(...)"
        )
    return Web(pipeline)


def _is_flask(app: Any) -> bool:
    return any(
        c.__module__.startswith("flask") and c.__name__ == "Flask" for c in type(app).__mro__
    )


def _is_starlette(app: Any) -> bool:
    return any(
        c.__module__.startswith("starlette") and c.__name__ == "Starlette"
        for c in type(app).__mro__
    )


def _is_django_handler(app: Any) -> bool:
    return any(
        c.__module__.startswith("django.core.handlers") and c.__name__ == "BaseHandler"
        for c in type(app).__mro__
    )


def _framework(app: Any) -> str:
    for c in type(app).__mro__:
        if c.__module__.startswith("fastapi"):
            return "fastapi"
    return "starlette"


def instrument(app: Any, *, pipeline: Any = None, web: Optional[Web] = None) -> Any:
    """Observe every request ``app`` handles; returns what to serve.

    * a Flask app: ``app.wsgi_app`` is wrapped (the app itself is returned);
    * a Starlette or FastAPI app (or an ASGI middleware wrapping one, such as CORS): the app's
      middleware stack is built with ours outermost, outside its error middleware (the app
      itself is returned; a stack already built is wrapped at once);
    * a Django handler (``get_wsgi_application()``, ``get_asgi_application()``): ours goes
      outside its whole middleware stack;
    * any other WSGI or ASGI callable: a :class:`WSGIMiddleware` / :class:`ASGIMiddleware`
      around it is returned (every request then has the ``unmatched_route`` label).

    ``pipeline``: the :class:`callpyback.CallPyBack` observing every request; or ``web``: a
    :class:`~callpyback_web.Web` with per-route pipelines and options.  Instrumenting an
    application twice is a no-op; :func:`uninstrument` undoes it.
    """
    chosen = _as_web(web, pipeline)
    chosen.check()
    target = app
    for _ in range(10):  # an ASGI middleware wrapping the app: instrument the app inside
        if _is_flask(target) or _is_starlette(target) or _is_django_handler(target):
            break
        inner = getattr(target, "app", None)
        if inner is None:
            break
        target = inner
    if getattr(target, "__dict__", {}).get(_MARK) is not None:
        return app
    if _is_flask(target):
        _flask(target, chosen)
        return app
    if _is_starlette(target):
        _starlette(target, chosen)
        return app
    if _is_django_handler(target):
        _django(target, chosen)
        return app
    import inspect

    call = getattr(type(app), "__call__", None)  # noqa: B004 - the method, not callability
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        from .asgi import ASGIMiddleware

        return ASGIMiddleware(app, chosen)
    from .wsgi import WSGIMiddleware

    return WSGIMiddleware(app, chosen)


class _Record:
    """What instrument() changed on an application object, to undo exactly that."""

    def __init__(self, kind: str, web: Web) -> None:
        self.kind = kind
        self.web = web
        self.middlewares: list[Any] = []
        self.saved: dict[str, Any] = {}


def _flask(app: Any, web: Web) -> None:
    from .wsgi import WSGIMiddleware, connect_flask_signal, flask_resolver

    connect_flask_signal()
    record = _Record("flask", web)
    middleware = WSGIMiddleware(app.wsgi_app, web, resolve=flask_resolver(app), framework="flask")
    record.saved["wsgi_app"] = app.__dict__.get("wsgi_app", _ABSENT)
    record.middlewares.append(middleware)
    app.wsgi_app = middleware
    app.__dict__[_MARK] = record


def _starlette(app: Any, web: Web) -> None:
    from .asgi import ASGIMiddleware, starlette_resolver

    framework = _framework(app)
    record = _Record(framework, web)
    resolve = starlette_resolver(app)
    previous = app.__dict__.get("build_middleware_stack", _ABSENT)
    build = app.build_middleware_stack  # the class's, or another instrumentation's

    def build_middleware_stack() -> Any:
        middleware = ASGIMiddleware(build(), web, resolve=resolve, framework=framework)
        record.middlewares.append(middleware)
        return middleware

    build_middleware_stack._callpyback_web = True  # type: ignore[attr-defined]
    record.saved["build_middleware_stack"] = previous
    record.saved["build"] = build_middleware_stack
    app.build_middleware_stack = build_middleware_stack
    if app.middleware_stack is not None:  # already serving: wrap the built stack now
        middleware = ASGIMiddleware(app.middleware_stack, web, resolve=resolve, framework=framework)
        record.middlewares.append(middleware)
        app.middleware_stack = middleware
    app.__dict__[_MARK] = record


def _django(handler: Any, web: Web) -> None:
    if handler._middleware_chain is None:
        handler.load_middleware(is_async=_is_async_handler(handler))
    if handler.__dict__.get(_MARK) is None:  # (the drop-in may have attached while loading)
        attach_django_handler(handler, web)


def attach_django_handler(handler: Any, web: Web) -> None:
    """Put the middleware outside the loaded stack of ``handler``, recorded for uninstrument."""
    from . import django as dj

    if handler.__dict__.get(_MARK) is not None:
        return
    dj.connect_signal()
    record = _Record("django", web)
    previous = handler._middleware_chain
    dj.wrap_handler_chain(handler, web)
    record.saved["_middleware_chain"] = previous
    record.middlewares.append(handler.__dict__.get("_callpyback_web_middleware"))
    handler.__dict__[_MARK] = record


def _is_async_handler(handler: Any) -> bool:
    return any(c.__name__ == "ASGIHandler" for c in type(handler).__mro__)


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def uninstrument(app: Any) -> bool:
    """Undo :func:`instrument` on ``app``; False if it was not instrumented.

    What we set is restored only where it is still ours; where something was stacked on top of
    our layer since, our layer stays in place but passes every request through unobserved.
    """
    target = app
    for _ in range(10):
        if getattr(target, "__dict__", {}).get(_MARK) is not None:
            break
        inner = getattr(target, "app", None)
        if inner is None:
            break
        target = inner
    record = getattr(target, "__dict__", {}).get(_MARK)
    if record is None:
        if hasattr(app, "enabled") and hasattr(app, "web"):  # a middleware we returned
            app.enabled = False
            return True
        return False
    for middleware in record.middlewares:
        if middleware is not None:
            middleware.enabled = False
    state = target.__dict__
    if record.kind == "flask":
        if state.get("wsgi_app") is record.middlewares[0]:
            _restore(state, "wsgi_app", record.saved["wsgi_app"])
    elif record.kind in ("starlette", "fastapi"):
        if state.get("build_middleware_stack") is record.saved["build"]:
            _restore(state, "build_middleware_stack", record.saved["build_middleware_stack"])
        stack = state.get("middleware_stack")
        if stack is not None and stack in record.middlewares:
            target.middleware_stack = stack.app
    elif record.kind == "django":
        chain = state.get("_middleware_chain")
        if getattr(chain, "__wrapped__", None) is record.middlewares[0]:
            target._middleware_chain = record.saved["_middleware_chain"]
        state.pop("_callpyback_web_middleware", None)
    del state[_MARK]
    return True


def _restore(state: dict[str, Any], name: str, value: Any) -> None:
    if value is _ABSENT:
        state.pop(name, None)
    else:
        state[name] = value


def instrumented(app: Any) -> bool:
    """Whether ``app`` (or the app inside it) is instrumented by :func:`instrument`."""
    target = app
    for _ in range(10):
        if getattr(target, "__dict__", {}).get(_MARK) is not None:
            return True
        target = getattr(target, "app", None)
        if target is None:
            return False
    return False
