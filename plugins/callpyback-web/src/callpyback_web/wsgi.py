"""WSGI: a middleware for any WSGI application, and Flask's route templates.

The request's call ends when the application's response iterable is exhausted (the last chunk
has been handed to the server), or, cancelled, when the server closes it before that (a client
that went away).  The application is called when the server calls us, as without us, and its
iterable is closed exactly once.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Generator, Optional, Tuple

from ._core import (
    _CURRENT,
    STARTED,
    Exchange,
    Request,
    Web,
    attach,
    detach,
    reraise_unless_outcome,
)
from ._routes import normalise_method, werkzeug_template

__all__ = ["WSGIMiddleware", "flask_resolver"]

#: Set in the environ of a request already observed (two layers of instrumentation).
ACTIVE_KEY = "callpyback_web.observed"

Resolver = Callable[[Dict[str, Any]], Optional[str]]


def _headers(environ: Dict[str, Any]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out[key[5:].replace("_", "-").lower()] = value
    if "CONTENT_TYPE" in environ:
        out["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        out["content-length"] = environ["CONTENT_LENGTH"]
    return out


def _trace_headers(environ: Dict[str, Any]) -> Dict[str, str]:
    out = {}
    for key, name in (("HTTP_TRACEPARENT", "traceparent"), ("HTTP_TRACESTATE", "tracestate")):
        if key in environ:
            out[name] = environ[key]
    return out


class _WSGIExchange(Exchange):
    def __init__(
        self, web: Web, request: Request, app: Any, environ: Any, start_response: Any
    ) -> None:
        super().__init__(web, request)
        self.app = app
        self.environ = environ
        self.start_response = start_response
        self.otel: Any = None

    def _start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        try:
            self.request.status = int(status.split(None, 1)[0])
        except (ValueError, IndexError):
            pass
        if exc_info is None:
            return self.start_response(status, headers)
        return self.start_response(status, headers, exc_info)

    def run(self) -> Generator[Any, Any, Any]:
        request = self.request
        result = self.step(self.app, self.environ, self._start_response)
        try:
            yield STARTED
            iterator = self.step(iter, result)
            while True:
                token = _CURRENT.set(request)
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                finally:
                    _CURRENT.reset(token)
                request.response_size += len(chunk)
                yield chunk
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                self.step(close)
        return self.finish()

    def advance(self, gen: Any) -> Any:
        if self.otel is None:
            return next(gen)
        token = attach(self.otel)
        try:
            return next(gen)
        finally:
            detach(token)


class _Body:
    """The iterable the server gets: the observed call's chunks."""

    __slots__ = ("done", "exchange", "gen")

    def __init__(self, gen: Any, exchange: _WSGIExchange) -> None:
        self.gen = gen
        self.exchange = exchange
        self.done = False

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        if self.done:
            raise StopIteration
        try:
            return self.exchange.advance(self.gen)  # type: ignore[no-any-return]
        except StopIteration:
            self.done = True
            raise
        except BaseException as exc:
            self.done = True
            reraise_unless_outcome(exc, self.exchange)
            raise StopIteration from None

    def close(self) -> None:
        if not self.done:  # closed before the end: the client went away
            self.done = True
            exchange = self.exchange
            token = attach(exchange.otel) if exchange.otel is not None else None
            try:
                self.gen.close()
            finally:
                if token is not None:
                    detach(token)


class WSGIMiddleware:
    """Observe every request to the WSGI application ``app``.

    ``web``: the :class:`~callpyback_web.Web` that chooses pipelines.  ``resolve(environ)``
    returns the route template of a request (None: unmatched); without it every request is
    ``web.unmatched_route`` (give one: raw paths are never used as labels).
    """

    def __init__(
        self,
        app: Any,
        web: Web,
        *,
        resolve: Optional[Resolver] = None,
        framework: str = "wsgi",
    ) -> None:
        self.app = app
        self.web = web
        self.resolve = resolve
        self.framework = framework
        self.enabled = True

    def __repr__(self) -> str:
        return f"<callpyback_web.WSGIMiddleware {self.framework} around {self.app!r}>"

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Any:
        web = self.web
        if not self.enabled or ACTIVE_KEY in environ:
            return self.app(environ, start_response)
        method = normalise_method(environ.get("REQUEST_METHOD", "GET"))
        route = None
        if self.resolve is not None:
            try:
                route = self.resolve(environ)
            except Exception:  # a resolver bug must not break the request
                route = None
        if route is None:
            route = web.unmatched_route
        call = web.call_for(method, route)
        if call is None:
            return self.app(environ, start_response)
        environ[ACTIVE_KEY] = True
        length = environ.get("CONTENT_LENGTH")
        request = Request(
            method,
            route,
            f"http:{method} {route}",
            environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            self.framework,
            query=environ.get("QUERY_STRING", ""),
            headers=_headers(environ) if web.capture_headers else {},
            client=environ.get("REMOTE_ADDR"),
            request_size=int(length) if length and length.isdigit() else None,
        )
        exchange = _WSGIExchange(web, request, self.app, environ, start_response)
        if web.trace_context != "never" and "HTTP_TRACEPARENT" in environ:
            exchange.otel = web.extract_context(_trace_headers(environ))
        gen = call(request)
        try:
            exchange.advance(gen)  # runs the application, up to STARTED
        except StopIteration:  # pragma: no cover - the body always yields STARTED first
            return []
        except BaseException as exc:
            reraise_unless_outcome(exc, exchange)
            return []
        return _Body(gen, exchange)


# --- Flask ---------------------------------------------------------------------------------------
def flask_resolver(app: Any) -> Resolver:
    """Route templates from the Flask app's URL map (``/orders/<int:id>`` -> ``/orders/{id}``),
    matched before the request runs, with a bounded memo per (method, host, path)."""
    memo: Dict[Tuple[str, str, str, str], Optional[str]] = {}

    def resolve(environ: Dict[str, Any]) -> Optional[str]:
        key = (
            environ.get("REQUEST_METHOD", ""),
            environ.get("HTTP_HOST", ""),
            environ.get("SCRIPT_NAME", ""),
            environ.get("PATH_INFO", ""),
        )
        try:
            return memo[key]
        except KeyError:
            pass
        try:
            adapter = app.url_map.bind_to_environ(
                environ, server_name=app.config.get("SERVER_NAME")
            )
            rule, _ = adapter.match(return_rule=True)
            route: Optional[str] = werkzeug_template(rule.rule)
        except Exception:  # NotFound, MethodNotAllowed, RequestRedirect: one shared label
            route = None
        if len(memo) > 4096:
            memo.clear()
        memo[key] = route
        return route

    return resolve


_FLASK_SIGNAL: list[Any] = []


def _on_flask_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
    from ._core import note_framework_exception

    note_framework_exception(exception)


def connect_flask_signal() -> None:
    """Learn the exception behind a Flask 500 (``got_request_exception``), once per process."""
    if _FLASK_SIGNAL:
        return
    from flask import got_request_exception

    got_request_exception.connect(_on_flask_exception, weak=False)
    _FLASK_SIGNAL.append(got_request_exception)


def disconnect_flask_signal() -> None:
    while _FLASK_SIGNAL:
        _FLASK_SIGNAL.pop().disconnect(_on_flask_exception)
