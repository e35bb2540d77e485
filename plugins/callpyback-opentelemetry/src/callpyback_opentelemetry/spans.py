"""``otel.span``: one OpenTelemetry span per observed call, current while the body runs.

The span is started at PRE_EXECUTION (in the caller's context, so it is a child of whatever span
is current there) and kept in ``context.metadata``.  The engine calls :meth:`enter` and
:meth:`exit` around each stretch of the function body *in the wrapper's own frame* (for
generators and async generators: around each resume, never across a ``yield``), and that is
where the span is attached and detached: a token never leaves the frame and the stretch that
created it, so closing a generator from another task or thread cannot fail to detach.  The span
ends at COMPLETED or ERROR, with the call's outcome.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Dict, Iterable, List, Optional, Tuple

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.semconv.attributes.code_attributes import (
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from callpyback import BaseObserver, ConfigurationError, ExecutionState, Redactor

from . import __version__
from .plugin import check_template

__all__ = [
    "ATTEMPT_EVENT",
    "SPAN_KEY",
    "CallSpan",
    "OTelSpanObserver",
    "error_type",
    "function_name",
]

_PRE = ExecutionState.PRE_EXECUTION
_FAIL = ExecutionState.POST_FAILURE
_DONE = ExecutionState.COMPLETED
_ERROR = ExecutionState.ERROR

#: Where the span of a call is kept in ``context.metadata`` (a :class:`CallSpan`).
SPAN_KEY = "callpyback_opentelemetry.span"
#: The event added for each failed attempt that was then retried or recovered.
ATTEMPT_EVENT = "callpyback.attempt.failed"

#: OpenTelemetry's "suppress instrumentation" flag (set by exporters while they export, and by
#: ``opentelemetry.instrumentation.utils.suppress_instrumentation``); honoured like contrib does.
_SUPPRESS = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)


#: The API's globals: while ``_TRACER_PROVIDER`` is None no provider is set (no SDK) and every
#: span would be a no-op.  The API's own ``ProxyTracer`` decides by reading it; the public
#: ``get_tracer_provider()`` also looks up an environment variable on every call (microseconds),
#: which a per-call check cannot afford.  Should a future API drop the global, the lookup gives
#: False and the observer simply asks the tracer, as it does with an SDK.
_TRACE_GLOBALS = vars(trace)
_BAGGAGE_MAX = 256  # characters of a baggage value copied onto a span (it is untrusted input)


def function_name(info: Any) -> str:
    """``code.function.name``: the fully qualified name, ``module.qualname``."""
    module = info.module
    return f"{module}.{info.qualname}" if module else info.qualname


def error_type(exc: BaseException) -> str:
    """``error.type``: the exception's class, module-qualified unless it is a builtin."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"


class CallSpan:
    """The span of one call, as kept in ``context.metadata[SPAN_KEY]``.

    ``span`` and ``context`` (the OpenTelemetry context holding it, what :meth:`enter`
    attaches) are None while a ``min_duration`` call has not been kept yet.
    """

    __slots__ = ("context", "failed", "parent", "span", "start_ns")

    def __init__(self, span: Any, ctx: Any, parent: Any = None, start_ns: int = 0) -> None:
        self.span = span
        self.context = ctx
        self.parent = parent
        self.start_ns = start_ns
        #: Failed attempts not written yet: (exception, attempt, time in ns).  Whether each is an
        #: attempt event or the call's exception is known only once the next state arrives.
        #: None until the first failure (most calls never fail).
        self.failed: Optional[List[Tuple[BaseException, int, int]]] = None


class _Facts:
    """What is known about one function, computed once: the span name and static attributes."""

    __slots__ = ("attributes", "name")

    def __init__(self, name: str, attributes: Dict[str, Any]) -> None:
        self.name = name
        self.attributes = attributes


def _attr_value(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    return repr(value)


class OTelSpanObserver(BaseObserver):
    """One span per logical call (kind INTERNAL), named ``module.qualname`` by default.

    Attributes: ``code.function.name``, ``code.file.path``, ``code.line.number``,
    ``callpyback.target``, ``callpyback.pipeline``, then ``callpyback.outcome`` and
    ``callpyback.attempts`` at the end (``callpyback.recovered_by`` for a recovery).  A failure
    or interruption sets status ERROR and ``error.type`` and records the exception (redacted);
    a recovered or retried call is not an error and gets one ``callpyback.attempt.failed``
    event per failed attempt; a cancellation (``CancelledError``, a generator closed early) is
    not an error.

    ``record_arguments``: parameter names recorded as ``callpyback.argument.<name>``, redacted
    by ``redactor`` (a :class:`~callpyback.Redactor`; ``redact`` adds names to the defaults).
    ``record_result``: the returned value as ``callpyback.result`` (redacted).
    ``min_duration``: seconds; a shorter call gets no span.  Such spans are created when the
    call ends (their start time is the call's), so they are *not* current while the body runs.
    ``baggage``: baggage keys (an allow-list) copied onto the span as attributes.
    ``tracer_provider``: default the global one (set later is fine: the API's proxy follows it).
    """

    #: The span is made current on the caller's thread: never a background observer.
    background = False

    def __init__(
        self,
        *,
        name_template: Optional[str] = None,
        record_arguments: Iterable[str] = (),
        redact: Iterable[str] = (),
        redactor: Optional[Redactor] = None,
        record_result: bool = False,
        min_duration: float = 0.0,
        baggage: Iterable[str] = (),
        tracer_provider: Any = None,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> None:
        if background:
            raise ConfigurationError(
                "otel.span cannot run in the background: its span is made current on the "
                "caller's thread while the function body runs"
            )
        super().__init__(priority=priority, name=name or "otel.span")
        self.states = frozenset({_PRE, _FAIL, _DONE, _ERROR})
        if name_template is not None:
            try:
                check_template(name_template)
            except ValueError as exc:
                raise ConfigurationError(f"otel.span: {exc}") from None
        self.name_template = name_template
        self.record_arguments = tuple(record_arguments)
        bad = [a for a in self.record_arguments if not isinstance(a, str) or not a.isidentifier()]
        if bad:
            raise ConfigurationError(f"otel.span record_arguments must be names, got {bad!r}")
        if redactor is not None and not isinstance(redactor, Redactor):
            raise ConfigurationError(f"otel.span redactor must be a Redactor, got {redactor!r}")
        self.redactor = redactor if redactor is not None else Redactor(keys=list(redact))
        self.record_result = bool(record_result)
        if (
            isinstance(min_duration, bool)
            or not isinstance(min_duration, (int, float))
            or (min_duration < 0)
        ):
            raise ConfigurationError(
                f"otel.span min_duration must be a number of seconds >= 0, got {min_duration!r}"
            )
        self.min_duration = float(min_duration)
        self.baggage = tuple(baggage)
        self.tracer = trace.get_tracer(
            "callpyback_opentelemetry", __version__, tracer_provider=tracer_provider
        )
        #: On the global provider, while none is set, calls skip OpenTelemetry altogether.
        self._global = tracer_provider is None
        #: Set (never unset) once this observer has kept a span: until then no call can have one,
        #: and enter() and the end of a call need not look (a no-SDK call stays cheap).
        self._spans = False
        self._facts: Dict[Any, _Facts] = {}
        self._lock = threading.Lock()

    # --- per function -------------------------------------------------------------------------
    def facts(self, info: Any) -> _Facts:
        """The span name and static attributes of ``info``'s function (computed once)."""
        facts = self._facts.get(info)
        if facts is None:
            with self._lock:
                facts = self._facts.get(info)
                if facts is None:
                    facts = self._facts[info] = self._learn(info)
        return facts

    def _learn(self, info: Any) -> _Facts:
        qualified = function_name(info)
        target = info.target
        if self.name_template is not None:
            span_name = self.name_template.format(
                module=info.module or "",
                qualname=info.qualname,
                name=info.name,
                target=target,
                pipeline=info.pipeline or "",
            )
        elif target == f"{info.module}:{info.qualname}":
            span_name = qualified
        else:  # an integration's call (http:GET /orders/{id}): its low-cardinality target
            span_name = target
        attributes: Dict[str, Any] = {CODE_FUNCTION_NAME: qualified}
        if target != f"{info.module}:{info.qualname}":
            attributes["callpyback.target"] = target  # an integration's (http:GET /x)
        path, line = info.file_path, info.line_number
        if path is not None:
            attributes[CODE_FILE_PATH] = path
        if line is not None:
            attributes[CODE_LINE_NUMBER] = line
        if info.pipeline:
            attributes["callpyback.pipeline"] = info.pipeline
        return _Facts(span_name, attributes)

    # --- the observer protocol ----------------------------------------------------------------
    def update(self, context: Any) -> None:
        state = context.state
        if state is _PRE:
            self._start(context)
        elif not self._spans:
            return
        elif state is _FAIL:
            call = context.metadata.get(SPAN_KEY)
            if call is not None:
                if call.failed is None:
                    call.failed = []
                call.failed.append((context.exception, context.attempt, time.time_ns()))
        else:
            call = context.metadata.get(SPAN_KEY)
            if call is not None:
                self._finish(context, call)

    def enter(self, context: Any) -> Any:
        """A stretch of the body is about to run, in this frame: make the span current."""
        if not self._spans:
            return None
        call = context.metadata.get(SPAN_KEY)
        if call is None or call.context is None:
            return None
        return otel_context.attach(call.context)

    def exit(self, context: Any, token: Any) -> None:
        """The stretch is over (returned, raised or yielded), in the same frame: detach."""
        if token is not None:
            otel_context.detach(token)

    # --- start and end ------------------------------------------------------------------------
    def _start(self, context: Any) -> None:
        if self._global and _TRACE_GLOBALS.get("_TRACER_PROVIDER", False) is None:
            return  # no SDK: the span would be a no-op (and a remote parent stays current)
        parent = otel_context.get_current()  # read once: the span's parent, and the flag
        if _SUPPRESS is not None and parent.get(_SUPPRESS):
            return
        if self.min_duration:
            # Kept only if slow enough: decided at the end, so nothing is started now.
            self._spans = True
            context.metadata[SPAN_KEY] = CallSpan(None, None, parent, time.time_ns())
            return
        facts = self.facts(context.function_info)
        span = self.tracer.start_span(
            facts.name,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=facts.attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        if not span.get_span_context().is_valid:
            return  # a no-op tracer (and no remote parent): nothing to make current or to end
        if span.is_recording() and (self.record_arguments or self.baggage):
            self._call_attributes(span, context, parent)
        self._spans = True
        context.metadata[SPAN_KEY] = CallSpan(span, trace.set_span_in_context(span, parent))

    def _call_attributes(self, span: Any, context: Any, parent: Any) -> None:
        if self.record_arguments:
            arguments = context.arguments
            present = {k: arguments[k] for k in self.record_arguments if k in arguments}
            for key, value in self.redactor.redact_mapping(present).items():
                if value is not None:
                    span.set_attribute(f"callpyback.argument.{key}", _attr_value(value))
        if self.baggage:
            entries = otel_baggage.get_all(parent)
            for key in self.baggage:
                value = entries.get(key)
                if value is not None:
                    span.set_attribute(key, str(value)[:_BAGGAGE_MAX])

    def _finish(self, context: Any, call: CallSpan) -> None:
        span = call.span
        if span is None:  # min_duration: keep it only if the call took long enough
            elapsed = context.execution_time
            if elapsed is None or elapsed < self.min_duration:
                return
            facts = self.facts(context.function_info)
            span = self.tracer.start_span(
                facts.name,
                context=call.parent,
                kind=SpanKind.INTERNAL,
                attributes=facts.attributes,
                start_time=call.start_ns,
                record_exception=False,
                set_status_on_exception=False,
            )
            call.span = span
            if span.is_recording():
                self._call_attributes(span, context, call.parent)
        if not span.is_recording():
            span.end()
            return
        outcome = context.outcome
        failed = call.failed or []
        final: Optional[BaseException] = None
        if outcome == "failure":  # the last attempt's exception is the call's
            final = failed.pop()[0] if failed else context.exception
        elif outcome == "interrupted":
            final = context.exception
        if failed or final is not None:
            arguments = context.arguments
            for exc, attempt, at in failed:
                span.add_event(
                    ATTEMPT_EVENT,
                    {
                        "callpyback.attempt": attempt,
                        ERROR_TYPE: error_type(exc),
                        EXCEPTION_TYPE: error_type(exc),
                        EXCEPTION_MESSAGE: self.redactor.exception_message(exc, arguments),
                    },
                    timestamp=at,
                )
            failed.clear()
            if final is not None:
                self._record_error(span, final, arguments)
        end = {
            "callpyback.outcome": outcome or "unknown",
            "callpyback.attempts": context.attempt or 1,
        }
        if outcome == "recovered":
            end["callpyback.recovered_by"] = context.recovered_by or ""
        span.set_attributes(end)
        if self.record_result and outcome in ("success", "recovered"):
            span.set_attribute(
                "callpyback.result", _attr_value(self.redactor.redact(context.value))
            )
        span.end()

    def _record_error(self, span: Any, exc: BaseException, arguments: Any) -> None:
        kind = error_type(exc)
        redactor = self.redactor
        message = redactor.exception_message(exc, arguments)
        stand_in = redactor.redact_exception(exc, arguments)
        stack = "".join(traceback.format_exception(type(stand_in), stand_in, exc.__traceback__))
        span.record_exception(
            exc,
            attributes={
                EXCEPTION_TYPE: kind,
                EXCEPTION_MESSAGE: message,
                EXCEPTION_STACKTRACE: stack,
            },
        )
        span.set_attribute(ERROR_TYPE, kind)
        span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}" if message else kind))
