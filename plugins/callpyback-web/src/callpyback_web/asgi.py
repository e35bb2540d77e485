"""ASGI: a pure ASGI middleware (never ``BaseHTTPMiddleware``, which breaks context variables),
and Starlette's / FastAPI's route templates.

The application's coroutine is stepped inside the observed body (see :mod:`._core`), so the
request's call is *running* whenever the application is.  The call ends when the final
``http.response.body`` (``more_body`` false) has been sent: what the application does after
that (Starlette's background tasks) still runs, outside the call, with its exceptions
propagating as before.  A client that disconnected before the final body completes the call as
cancelled.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Generator, List, Optional, Tuple

from ._core import (
    _CURRENT,
    Exchange,
    Request,
    Response,
    Web,
    _Marker,
    attach,
    detach,
    reraise_unless_outcome,
)
from ._routes import normalise_method

__all__ = ["ASGIMiddleware", "starlette_resolver"]

ACTIVE_KEY = "callpyback_web.observed"
INCOMPLETE: Any = _Marker("INCOMPLETE")

Resolver = Callable[[Dict[str, Any]], Optional[str]]


def _headers(raw: Any) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for name, value in raw or ():
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


class _ASGIExchange(Exchange):
    def __init__(
        self, web: Web, request: Request, app: Any, scope: Any, receive: Any, send: Any
    ) -> None:
        super().__init__(web, request)
        self.app = app
        self.scope = scope
        self.receive = receive
        self.send = send
        self.otel: Any = None
        self.tail: Optional[Tuple[Any, Any]] = None
        self.disconnected = False
        self.received = 0

    async def _receive(self) -> Any:
        message = await self.receive()
        kind = message.get("type")
        if kind == "http.request":
            self.received += len(message.get("body", b""))
        elif kind == "http.disconnect":
            self.disconnected = True
        return message

    async def _send(self, message: Any) -> None:
        kind = message.get("type")
        request = self.request
        if kind == "http.response.start":
            request.status = message.get("status")
        elif kind == "http.response.body":
            request.response_size += len(message.get("body", b""))
            if not message.get("more_body", False):
                await self.send(message)
                self.complete = True
                return
        elif kind == "http.response.pathsend":
            await self.send(message)
            self.complete = True
            return
        await self.send(message)

    def run(self) -> Generator[Any, Any, Response]:
        request = self.request
        it = self.app(self.scope, self._receive, self._send).__await__()
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            token = _CURRENT.set(request)
            try:
                signal = it.send(value) if error is None else it.throw(error)
            except StopIteration:
                break
            finally:
                _CURRENT.reset(token)
            if self.complete:
                self.tail = (it, signal)  # the rest runs after the call (background tasks)
                break
            try:
                value, error = (yield signal), None
            except GeneratorExit:
                it.close()
                raise
            except BaseException as exc:  # CancelledError and friends go to the application
                value, error = None, exc
        if request.request_size is None and self.received:
            request.request_size = self.received
        if not self.complete and self.disconnected and request.status is not None:
            yield INCOMPLETE  # the driver closes us here: the call completes as cancelled
        return self.finish()


class _Drive:
    """Await the observed body: hand its items to the event loop, then run the tail."""

    __slots__ = ("exchange", "gen")

    def __init__(self, gen: Any, exchange: _ASGIExchange) -> None:
        self.gen = gen
        self.exchange = exchange

    def _close(self) -> None:
        otel = self.exchange.otel
        token = attach(otel) if otel is not None else None
        try:
            self.gen.close()
        finally:
            if token is not None:
                detach(token)

    def __await__(self) -> Generator[Any, Any, None]:
        gen, exchange = self.gen, self.exchange
        otel = exchange.otel
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            token = attach(otel) if otel is not None else None
            try:
                item = gen.send(value) if error is None else gen.throw(error)
            except StopIteration:
                break
            except BaseException as exc:
                reraise_unless_outcome(exc, exchange)
                break
            finally:
                if token is not None:
                    detach(token)
            if item is INCOMPLETE:
                self._close()
                break
            try:
                value, error = (yield item), None
            except GeneratorExit:
                self._close()
                raise
            except BaseException as exc:
                value, error = None, exc
        tail = exchange.tail
        if tail is None:
            return
        exchange.tail = None
        it, signal = tail
        while True:
            try:
                value, error = (yield signal), None
            except GeneratorExit:
                it.close()
                raise
            except BaseException as exc:
                value, error = None, exc
            try:
                signal = it.send(value) if error is None else it.throw(error)
            except StopIteration:
                return


class ASGIMiddleware:
    """Observe every HTTP request to the ASGI application ``app`` (other scopes pass through).

    ``resolve(scope)`` returns the route template (None: unmatched).
    """

    def __init__(
        self,
        app: Any,
        web: Web,
        *,
        resolve: Optional[Resolver] = None,
        framework: str = "asgi",
    ) -> None:
        self.app = app
        self.web = web
        self.resolve = resolve
        self.framework = framework
        self.enabled = True

    def __repr__(self) -> str:
        return f"<callpyback_web.ASGIMiddleware {self.framework} around {self.app!r}>"

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or not self.enabled or ACTIVE_KEY in scope:
            await self.app(scope, receive, send)
            return
        web = self.web
        method = normalise_method(scope.get("method", "GET"))
        route = None
        if self.resolve is not None:
            try:
                route = self.resolve(scope)
            except Exception:  # a resolver bug must not break the request
                route = None
        if route is None:
            route = web.unmatched_route
        call = web.call_for(method, route)
        if call is None:
            await self.app(scope, receive, send)
            return
        scope[ACTIVE_KEY] = True
        headers = _headers(scope.get("headers"))
        length = headers.get("content-length")
        client = scope.get("client")
        request = Request(
            method,
            route,
            f"http:{method} {route}",
            scope.get("path", ""),
            self.framework,
            query=(scope.get("query_string") or b"").decode("latin-1"),
            headers=headers if web.capture_headers else {},
            client=client[0] if client else None,
            request_size=int(length) if length and length.isdigit() else None,
        )
        exchange = _ASGIExchange(web, request, self.app, scope, receive, send)
        if "traceparent" in headers:
            exchange.otel = web.extract_context(headers)
        await _Drive(call(request), exchange)


# --- Starlette and FastAPI -----------------------------------------------------------------------
def starlette_resolver(app: Any) -> Resolver:
    """Route templates of a Starlette or FastAPI app, found before the request runs by walking
    ``app.router.routes`` with each route's own ``matches(scope)`` (mounts and FastAPI's
    included routers recursively); a bounded memo per (method, root path, path)."""
    memo: Dict[Tuple[str, str, str], Optional[str]] = {}
    from starlette.routing import Match

    def walk(routes: List[Any], scope: Dict[str, Any], prefix: str) -> Optional[str]:
        for route in routes:
            try:
                match, child = route.matches(scope)
            except Exception:
                continue
            if match is Match.FULL:
                return template(route, {**scope, **child}, prefix)
        return None  # nothing, or only a PARTIAL match (405): the shared label

    def template(route: Any, scope: Dict[str, Any], prefix: str) -> Optional[str]:
        included = getattr(route, "effective_route_contexts", None)
        if callable(included):
            return fastapi_included(route, scope, prefix)
        sub = getattr(route, "routes", None)
        fmt = getattr(route, "path_format", None) or getattr(route, "path", None)
        if (
            hasattr(route, "app")
            and isinstance(getattr(route, "path", None), str)
            and (type(route).__name__ == "Mount" or sub is not None)
        ):
            base: str = prefix + route.path.rstrip("/")
            if sub:
                return walk(list(sub), scope, base)
            return base + "/{path}"
        if isinstance(fmt, str):
            return prefix + fmt
        return None

    compiled: Dict[int, Any] = {}

    def fastapi_included(route: Any, scope: Dict[str, Any], prefix: str) -> Optional[str]:
        # FastAPI >= 0.137 keeps included routers as a tree whose nodes match without saying
        # which route matched; their effective routes know the full paths.
        from starlette._utils import get_route_path
        from starlette.routing import compile_path

        path = get_route_path(scope)
        method = scope.get("method")
        for context in route.effective_route_contexts():
            original = getattr(context, "original_route", None)
            inner = getattr(context, "starlette_route", None)
            full = getattr(context, "path", None) or getattr(context, "path_format", None)
            if inner is not None and getattr(inner, "routes", None) is not None:
                found = template(inner, scope, prefix)
                if found is not None:
                    return found
                continue
            if not isinstance(full, str):
                continue
            regex = compiled.get(id(context))
            if regex is None:
                regex = compiled[id(context)] = compile_path(full)
            if regex[0].match(path) is None:
                continue
            methods = getattr(original, "methods", None)
            if methods and method not in methods:
                continue
            return prefix + regex[1]
        return None

    def resolve(scope: Dict[str, Any]) -> Optional[str]:
        key = (scope.get("method", ""), scope.get("root_path", ""), scope.get("path", ""))
        try:
            return memo[key]
        except KeyError:
            pass
        route = walk(list(app.router.routes), scope, "")
        if len(memo) > 4096:
            memo.clear()
        memo[key] = route
        return route

    return resolve
