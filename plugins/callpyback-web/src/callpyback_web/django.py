"""Django: a middleware for sync and async stacks.

``CallPyBackMiddleware`` observes each request around everything inside it.  The route template
comes from ``django.urls.resolve(request.path_info)`` before the request runs.  The call ends
when the server closes the response (``response.close()``, which Django's WSGI and ASGI
handlers and its test client call once the body has been sent); a streaming response that was
not consumed to its end completes as cancelled.  The exception behind a 500 is learned from
Django's ``got_request_exception`` signal.

Use it in ``settings.MIDDLEWARE`` (first, so that it sees what the others do) with
:func:`callpyback_web.configure_django`, or let ``[web]`` in ``callpyback.toml`` (or
:func:`callpyback_web.instrument` on a handler) put it outside the whole stack.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Dict, Generator, Iterator, Optional, Tuple

from ._core import (
    _CURRENT,
    DONE,
    Exchange,
    Ready,
    Request,
    Response,
    Web,
    attach,
    detach,
    note_framework_exception,
    reraise_unless_outcome,
)
from ._routes import django_template, normalise_method

__all__ = ["CallPyBackMiddleware"]

ACTIVE_KEY = "callpyback_web.observed"
_log = logging.getLogger("callpyback_web")

#: the Web a middleware listed in settings.MIDDLEWARE uses (configure_django / the drop-in)
_DEFAULT: list[Optional[Web]] = [None]
_WARNED: list[bool] = []


def _headers(meta: Dict[str, Any]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            out[key[5:].replace("_", "-").lower()] = str(value)
    if meta.get("CONTENT_TYPE"):
        out["content-type"] = str(meta["CONTENT_TYPE"])
    if meta.get("CONTENT_LENGTH"):
        out["content-length"] = str(meta["CONTENT_LENGTH"])
    return out


_MEMO: Dict[Tuple[Any, str], Optional[str]] = {}


def resolve_route(request: Any) -> Optional[str]:
    """The template of the URL pattern ``request.path_info`` resolves to (None: unmatched)."""
    from django.urls import resolve

    urlconf = getattr(request, "urlconf", None)
    key = (urlconf, request.path_info)
    try:
        return _MEMO[key]
    except KeyError:
        pass
    try:
        match = resolve(request.path_info, urlconf)
        route = match.route
        template: Optional[str] = (
            django_template(route, is_regex="(?P<" in route or route.startswith("^"))
            if route
            else None
        )
    except Exception:  # Resolver404 (and a broken urlconf, which Django reports itself)
        template = None
    if len(_MEMO) > 4096:
        _MEMO.clear()
    _MEMO[key] = template
    return template


class _DjangoExchange(Exchange):
    def __init__(self, web: Web, request: Request, get_response: Any, django_request: Any):
        super().__init__(web, request)
        self.get_response = get_response
        self.django_request = django_request
        self.gen: Any = None
        self.otel: Any = None
        self.streaming = False
        self.stream_done = False
        self.source: Any = None
        self.finished = False

    def _prepare(self, response: Any) -> None:
        request = self.request
        request.status = response.status_code
        if response.streaming:
            self.streaming = True
            if getattr(response, "is_async", False):
                response.streaming_content = _async_relay(self, response.streaming_content)
            else:
                self.source = response.streaming_content
                response.streaming_content = _SyncRelay(self)
        else:
            request.response_size = len(response.content)

    def run(self) -> Generator[Any, Any, Response]:  # sync stacks
        response = self.step(self.get_response, self.django_request)
        self._prepare(response)
        yield Ready(response)
        yield from self._stream()
        yield DONE
        return self.finish()

    def run_async(self) -> Generator[Any, Any, Response]:  # async stacks
        response = yield from self.await_(self.get_response(self.django_request))
        self._prepare(response)
        yield Ready(response)
        yield from self._stream()
        yield DONE
        return self.finish()

    def _stream(self) -> Iterator[Any]:
        if self.source is None:
            return
        request = self.request
        iterator = self.step(iter, self.source)
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

    def advance(self) -> Any:
        if self.otel is None:
            return next(self.gen)
        token = attach(self.otel)
        try:
            return next(self.gen)
        finally:
            detach(token)

    def end(self) -> None:
        """The response was closed: complete the call (cancelled if its stream was cut short)."""
        if self.finished:
            return
        self.finished = True
        if self.streaming and not self.stream_done:
            token = attach(self.otel) if self.otel is not None else None
            try:
                self.gen.close()
            finally:
                if token is not None:
                    detach(token)
            return
        try:
            while True:
                self.advance()
        except StopIteration:
            pass
        except BaseException as exc:
            reraise_unless_outcome(exc, self)


class _SyncRelay:
    """A sync streaming body, produced inside the observed call."""

    def __init__(self, exchange: _DjangoExchange) -> None:
        self.exchange = exchange

    def __iter__(self) -> _SyncRelay:
        return self

    def __next__(self) -> bytes:
        exchange = self.exchange
        if exchange.stream_done:
            raise StopIteration
        item = exchange.advance()
        if item is DONE:
            exchange.stream_done = True
            raise StopIteration
        return item  # type: ignore[no-any-return]


async def _async_relay(exchange: _DjangoExchange, source: Any) -> Any:
    # An async streaming body is iterated by Django's ASGI handler, outside the observed body;
    # the request is current while each chunk is produced, and the call ends at close().
    request = exchange.request
    iterator = source.__aiter__()
    while True:
        token = _CURRENT.set(request)
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            break
        finally:
            _CURRENT.reset(token)
        request.response_size += len(chunk)
        yield chunk
    exchange.stream_done = True


class _UntilReady:
    """Await the async body up to its ``Ready``: its other items go to the event loop."""

    __slots__ = ("exchange",)

    def __init__(self, exchange: _DjangoExchange) -> None:
        self.exchange = exchange

    def __await__(self) -> Generator[Any, Any, Any]:
        exchange = self.exchange
        gen, otel = exchange.gen, exchange.otel
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            token = attach(otel) if otel is not None else None
            try:
                item = gen.send(value) if error is None else gen.throw(error)
            finally:
                if token is not None:
                    detach(token)
            if type(item) is Ready:
                return item.response
            try:
                value, error = (yield item), None
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:
                value, error = None, exc


def _hook_close(response: Any, exchange: _DjangoExchange) -> None:
    original = response.close

    def close() -> None:
        try:
            exchange.end()
        finally:
            original()

    response.close = close


class CallPyBackMiddleware:
    """Observe each request that reaches it (sync or async, whichever Django gives it).

    ``web``: the :class:`~callpyback_web.Web` to use; listed in ``settings.MIDDLEWARE``, where
    Django passes only ``get_response``, it uses the one given to
    :func:`callpyback_web.configure_django` (or installed by ``[web]``).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any, web: Optional[Web] = None) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.web = web
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _web(self) -> Optional[Web]:
        web = self.web if self.web is not None else _DEFAULT[0]
        if web is None and not _WARNED:
            _WARNED.append(True)
            _log.warning(
                "callpyback_web.django.CallPyBackMiddleware has no Web to use: call "
                "callpyback_web.configure_django(web) or configure [web] in callpyback.toml; "
                "requests pass through unobserved"
            )
        return web

    def _prepare(self, request: Any) -> Tuple[Any, Optional[_DjangoExchange]]:
        web = self._web()
        if web is None or not web.active or ACTIVE_KEY in request.META:
            return None, None
        method = normalise_method(request.method or "GET")
        try:
            route = resolve_route(request)
        except Exception:
            route = None
        if route is None:
            route = web.unmatched_route
        call = web.call_for(method, route)
        if call is None:
            return None, None
        request.META[ACTIVE_KEY] = True
        meta = request.META
        length = meta.get("CONTENT_LENGTH")
        info = Request(
            method,
            route,
            f"http:{method} {route}",
            request.path,
            "django",
            query=meta.get("QUERY_STRING", ""),
            headers=_headers(meta) if web.capture_headers else {},
            client=meta.get("REMOTE_ADDR"),
            request_size=int(length) if isinstance(length, str) and length.isdigit() else None,
        )
        exchange = _DjangoExchange(web, info, self.get_response, request)
        if "HTTP_TRACEPARENT" in meta:
            carrier = {"traceparent": meta["HTTP_TRACEPARENT"]}
            if "HTTP_TRACESTATE" in meta:
                carrier["tracestate"] = meta["HTTP_TRACESTATE"]
            exchange.otel = web.extract_context(carrier)
        return call, exchange

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        call, exchange = self._prepare(request)
        if exchange is None:
            return self.get_response(request)
        exchange.gen = call(exchange.request)
        item = exchange.advance()
        response = item.response
        _hook_close(response, exchange)
        return response

    async def __acall__(self, request: Any) -> Any:
        call, exchange = self._prepare(request)
        if exchange is None:
            return await self.get_response(request)
        exchange.run = exchange.run_async  # type: ignore[method-assign]
        exchange.gen = call(exchange.request)
        response = await _UntilReady(exchange)
        _hook_close(response, exchange)
        return response


# --- the exception behind a 500 --------------------------------------------------------------
_SIGNAL: list[Any] = []


def _on_exception(sender: Any, request: Any = None, **extra: Any) -> None:
    exc = sys.exc_info()[1]
    if exc is not None:
        note_framework_exception(exc)


def connect_signal() -> None:
    if _SIGNAL:
        return
    from django.core.signals import got_request_exception

    got_request_exception.connect(_on_exception, weak=False, dispatch_uid="callpyback_web")
    _SIGNAL.append(got_request_exception)


def disconnect_signal() -> None:
    while _SIGNAL:
        _SIGNAL.pop().disconnect(dispatch_uid="callpyback_web")


def set_default(web: Optional[Web]) -> None:
    _DEFAULT[0] = web
    if web is not None:
        connect_signal()


def wrap_handler_chain(handler: Any, web: Web) -> None:
    """Put the middleware outside a loaded handler's whole middleware stack."""
    from django.core.handlers.exception import convert_exception_to_response

    chain = handler._middleware_chain
    if chain is None or isinstance(getattr(chain, "__wrapped__", None), CallPyBackMiddleware):
        return
    middleware = CallPyBackMiddleware(chain, web=web)
    wrapped = convert_exception_to_response(middleware)
    handler._middleware_chain = wrapped
    handler.__dict__["_callpyback_web_middleware"] = middleware
