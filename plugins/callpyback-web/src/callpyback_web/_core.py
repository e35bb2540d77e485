"""One HTTP request = one observed call, whatever the framework.

Each route template gets one observed callable, ``decorator.observe(http_request,
target="http:GET /orders/{order_id}")``, cached per (method, template).  ``http_request`` is a
*generator* function: the framework adapter (WSGI, ASGI, Django) drives it, and the engine sees
a generator call whose body runs the application and ends when the response has been sent.
Its items are what the adapter needs from the body:

* WSGI: :data:`STARTED` once the application returned its iterable, then the body chunks;
* ASGI and async Django: the event loop's own objects (futures, trio traps) that the
  application's coroutine yields, which the adapter hands to the loop unchanged and whose
  results it sends back (so the application's coroutine is stepped *inside* the observed body,
  one resume at a time, and everything the engine makes current around a resume - an
  OpenTelemetry span - is current while the application runs);
* :class:`Ready` (Django: the response object exists) and :data:`DONE` (the body was fully
  produced; finishing waits for the server to close the response).

The outcome is the client's: a status in ``failure_statuses`` (5xx by default) makes the body
raise at its end (the application's own exception when the framework turned one into the 500,
else :class:`ErrorResponse`), and the adapter swallows exactly that exception, since the client
already has its answer.  An exception that escaped the application propagates untouched.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Generator,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ._routes import RoutePattern, normalise_method

__all__ = [
    "DONE",
    "STARTED",
    "ErrorResponse",
    "Exchange",
    "Ready",
    "Request",
    "Response",
    "RouteRule",
    "Web",
    "current_request",
    "http_request",
    "parse_statuses",
]

_CURRENT: contextvars.ContextVar[Optional[Request]] = contextvars.ContextVar(
    "callpyback_web.request", default=None
)


def current_request() -> Optional[Request]:
    """The :class:`Request` being handled here (this thread, this task), or None."""
    return _CURRENT.get()


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


STARTED: Any = _Marker("STARTED")
DONE: Any = _Marker("DONE")


class Ready:
    """Yielded by the body when the framework's response object exists (Django)."""

    __slots__ = ("response",)

    def __init__(self, response: Any) -> None:
        self.response = response


class ErrorResponse(Exception):
    """The outcome of a request answered with a failure status and no exception behind it."""

    def __init__(self, status: Optional[int], target: str) -> None:
        self.status = status
        self.target = target
        what = f"status {status}" if status is not None else "no response"
        super().__init__(f"{target} answered with {what}")

    def __reduce__(self) -> Any:
        return (type(self), (self.status, self.target))


_IDS = itertools.count(1)
_PID = os.getpid()


@dataclass(eq=False)
class Request:
    """What observers see of a request (the observed call's one argument, ``request``).

    ``headers`` are lower-cased names (values of repeated headers joined by ``", "``); they are
    data like any argument, so the audit and logging observers' redaction applies to them
    (``authorization``, ``cookie`` and the like are masked by default there).
    """

    method: str
    route: str
    target: str
    path: str
    framework: str
    query: str = ""
    headers: Dict[str, str] = field(default_factory=dict)
    client: Optional[str] = None
    request_size: Optional[int] = None
    id: str = ""
    #: filled in as the response goes out
    status: Optional[int] = None
    response_size: int = 0
    #: observed calls made while handling it (filled by the ``web.calltree`` observer)
    children: List[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = f"{_PID:x}-{next(_IDS):x}"


@dataclass(frozen=True)
class Response:
    """The value of a successful request call."""

    status: Optional[int]
    size: int
    request_size: Optional[int] = None


def http_request(request: Request) -> Generator[Any, Any, Response]:
    """The body of every observed request: runs the application through its exchange."""
    exchange: Exchange = request.__dict__["_exchange"]
    return (yield from exchange.run())


# --- the exchange: what an adapter runs inside the observed body ------------------------------
class Exchange:
    """One request's run, subclassed per adapter (``run()`` is the observed body)."""

    exception: Optional[BaseException] = None  # what the framework turned into a 5xx
    raised: Optional[BaseException] = None  # what the body raised for the outcome only
    complete = False  # the final body chunk was sent

    def __init__(self, web: Web, request: Request) -> None:
        self.web = web
        self.request = request
        request.__dict__["_exchange"] = self

    def run(self) -> Generator[Any, Any, Response]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield  # type: ignore[unreachable]  # makes run a generator, as its overrides are

    def finish(self) -> Response:
        """The outcome: return the response, or raise for a failure status."""
        request = self.request
        status = request.status
        if status is None or status in self.web.failure_statuses:
            exc = self.exception or ErrorResponse(status, request.target)
            self.raised = exc
            raise exc
        return Response(status, request.response_size, request.request_size)

    def note_exception(self, exc: BaseException) -> None:
        """The framework handled ``exc`` (a 500 follows): it is the failure's exception."""
        self.exception = exc

    def await_(self, awaitable: Any) -> Generator[Any, Any, Any]:
        """``result = yield from exchange.await_(coroutine)``: step it with the request current.

        Each step (``send``/``throw``) runs with :func:`current_request` set, and is reset
        before the step's yielded object goes to the adapter (and the event loop), so no
        context token ever crosses a ``yield``.
        """
        it = awaitable.__await__()
        request = self.request
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            token = _CURRENT.set(request)
            try:
                signal = it.send(value) if error is None else it.throw(error)
            except StopIteration as stop:
                return stop.value
            finally:
                _CURRENT.reset(token)
            try:
                value, error = (yield signal), None
            except GeneratorExit:
                it.close()
                raise
            except BaseException as exc:  # CancelledError and friends go to the application
                value, error = None, exc

    def step(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` with the request current."""
        token = _CURRENT.set(self.request)
        try:
            return func(*args)
        finally:
            _CURRENT.reset(token)


def note_framework_exception(exc: BaseException) -> None:
    """Signal receivers call this: the exception the framework turned into a 5xx response."""
    request = _CURRENT.get()
    if request is not None:
        exchange = request.__dict__.get("_exchange")
        if exchange is not None:
            exchange.note_exception(exc)


# --- which requests are observed, and by which pipeline ---------------------------------------
def parse_statuses(values: Iterable[Union[int, str]]) -> FrozenSet[int]:
    """``["5xx", 429, "400-403"]`` -> the set of statuses that are failures."""
    out: set[int] = set()
    for value in values:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a status")
        if isinstance(value, int):
            if not 100 <= value <= 599:
                raise ValueError(f"status {value} is not between 100 and 599")
            out.add(value)
            continue
        text = str(value).strip().lower()
        if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
            first = int(text[0]) * 100
            out.update(range(first, first + 100))
        elif "-" in text:
            low, _, high = text.partition("-")
            if not (low.strip().isdigit() and high.strip().isdigit()):
                raise ValueError(f"{value!r} is not a range such as '500-504'")
            lo, hi = int(low), int(high)
            if not 100 <= lo <= hi <= 599:
                raise ValueError(f"range {value!r} is not within 100-599 (low to high)")
            out.update(range(lo, hi + 1))
        elif text.isdigit():
            out.update(parse_statuses([int(text)]))
        else:
            raise ValueError(
                f"{value!r} is not a status: use a code (503), a class ('4xx', '5xx') or a "
                "range ('500-504')"
            )
    return frozenset(out)


SERVER_ERRORS = parse_statuses(["5xx"])


@dataclass(frozen=True)
class RouteRule:
    """Requests whose method and route template match get ``pipeline`` (None: not observed)."""

    match: Tuple[RoutePattern, ...]
    exclude: Tuple[RoutePattern, ...] = ()
    pipeline: Any = None
    observe: bool = True

    def applies(self, method: str, route: str) -> bool:
        return any(p.matches(method, route) for p in self.match) and not any(
            p.matches(method, route) for p in self.exclude
        )


_NOT_OBSERVED: Any = _Marker("NOT_OBSERVED")


class Web:
    """The integration's choices: which pipeline observes each route, and what fails.

    ``pipeline``: the :class:`callpyback.CallPyBack` for every request that no rule of
    ``routes`` claims (None: those requests are not observed), or a callable
    ``target -> CallPyBack | None``.  ``routes``: :class:`RouteRule` entries, the first that
    applies wins.  ``failure_statuses``: statuses that make the call a failure (5xx).
    ``unmatched_route``: the one label of every request no route matched.
    ``trace_context``: ``"auto"`` extracts the incoming W3C trace context with
    ``opentelemetry.propagate`` when the application has imported OpenTelemetry and no server
    instrumentation of its own made a span current; ``"always"`` imports it if installed;
    ``"never"``.  ``capture_headers``: whether observers get the request headers.
    """

    def __init__(
        self,
        pipeline: Any = None,
        *,
        routes: Sequence[RouteRule] = (),
        failure_statuses: Iterable[Union[int, str]] = ("5xx",),
        unmatched_route: str = "<unmatched>",
        trace_context: str = "auto",
        capture_headers: bool = True,
    ) -> None:
        if trace_context not in ("auto", "always", "never"):
            raise ValueError(
                f"trace_context must be 'auto', 'always' or 'never', got {trace_context!r}"
            )
        self.pipeline = pipeline
        self.routes = tuple(routes)
        self.failure_statuses = parse_statuses(failure_statuses)
        self.unmatched_route = unmatched_route
        self.trace_context = trace_context
        self.capture_headers = bool(capture_headers)
        self._calls: Dict[Tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.active = True

    def __repr__(self) -> str:
        return f"<Web pipeline={self.pipeline!r} routes={len(self.routes)}>"

    def decorator_for(self, method: str, route: str) -> Any:
        """The CallPyBack that observes requests to ``method route`` (None: not observed)."""
        for rule in self.routes:
            if rule.applies(method, route):
                return rule.pipeline if rule.observe else None
        pipeline = self.pipeline
        if pipeline is not None and not hasattr(pipeline, "observe"):
            return pipeline(f"http:{method} {route}")  # a selector
        return pipeline

    def call_for(self, method: str, route: str) -> Any:
        """The observed callable of ``http:METHOD ROUTE`` (None: not observed); built once."""
        method = normalise_method(method)
        key = (method, route)
        call = self._calls.get(key)
        if call is None:
            with self._lock:
                call = self._calls.get(key)
                if call is None:
                    decorator = self.decorator_for(method, route)
                    call = (
                        _NOT_OBSERVED
                        if decorator is None
                        else decorator.observe(http_request, target=f"http:{method} {route}")
                    )
                    if len(self._calls) > 10_000:  # routes are few; a bug must not grow forever
                        self._calls.clear()
                    self._calls[key] = call
        return None if call is _NOT_OBSERVED or not self.active else call

    def check(self) -> None:
        """Build the observed callable of one probe target per pipeline now, so that a pipeline
        that cannot observe requests (a timeout handler: it cannot bound a generator) fails at
        start-up, not at the first request."""
        seen: set[int] = set()
        candidates = [self.pipeline, *(rule.pipeline for rule in self.routes)]
        for decorator in candidates:
            if decorator is None or not hasattr(decorator, "observe") or id(decorator) in seen:
                continue
            seen.add(id(decorator))
            decorator.observe(http_request, target="http:GET /")

    # --- trace context --------------------------------------------------------------------
    def extract_context(self, headers: Mapping[str, str]) -> Any:
        """The OpenTelemetry context to attach for this request, or None."""
        mode = self.trace_context
        if mode == "never":
            return None
        if mode != "always" and "opentelemetry.trace" not in sys.modules:
            return None  # the application does not use OpenTelemetry: never import it
        try:
            import opentelemetry.propagate as propagate
        except ImportError:
            return None
        if "traceparent" not in headers:
            return None
        try:
            from opentelemetry import trace

            if trace.get_current_span().get_span_context().is_valid:
                return None  # a server instrumentation already made its span current
            return propagate.extract(headers)
        except Exception:  # a broken propagator must not break the request
            return None


def attach(context: Any) -> Any:
    from opentelemetry import context as otel_context

    return otel_context.attach(context)


def detach(token: Any) -> None:
    from opentelemetry import context as otel_context

    otel_context.detach(token)


def reraise_unless_outcome(exc: BaseException, exchange: Exchange) -> None:
    """The body raised ``exc``: swallow it if it was raised only to report the outcome."""
    if exc is not exchange.raised:
        raise exc
