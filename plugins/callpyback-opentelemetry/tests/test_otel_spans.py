"""otel.span with the real SDK: one span per call, named and attributed exactly, current while
the body runs, parented across nesting, tasks and threads, with each outcome's status."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Callable, Dict, List

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from callpyback import CallPyBack, MockTimeSource
from callpyback.handlers import RetryHandler

MODULE = __name__
DEPRECATED = {"code.namespace", "code.function", "code.filepath", "code.lineno"}


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def line_of(fn: Any) -> int:
    return int(fn.__wrapped__.__code__.co_firstlineno)


# --- shapes, names and attributes ------------------------------------------------------------


def test_sync_function_gets_one_span_named_and_attributed_exactly(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """A sync call: one INTERNAL span `module.qualname` with exactly the stable attributes."""
    seen: List[Any] = []

    @CallPyBack(observers=[span_observer], name="orders")
    def place(order_id: int) -> int:
        seen.append(trace.get_current_span())
        return order_id * 2

    assert place(21) == 42
    (span,) = exporter.get_finished_spans()
    assert (
        span.name
        == f"{MODULE}.test_sync_function_gets_one_span_named_and_attributed_exactly.<locals>.place"
    )
    assert span.kind is SpanKind.INTERNAL
    assert dict(span.attributes or {}) == {
        "code.function.name": span.name,
        "code.file.path": __file__,
        "code.line.number": line_of(place),
        "callpyback.pipeline": "orders",
        "callpyback.outcome": "success",
        "callpyback.attempts": 1,
    }
    assert not DEPRECATED & set(span.attributes or {})
    assert span.status.status_code is StatusCode.UNSET
    assert seen[0].get_span_context() == span.context  # current while the body ran
    assert span.parent is None


async def _atarget(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


def _gtarget(n: int) -> Any:
    yield from range(n)


async def _agtarget(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


class Shop:
    def method(self, x: int) -> int:
        return x

    @classmethod
    def klass(cls, x: int) -> int:
        return x

    @staticmethod
    def static(x: int) -> int:
        return x


def _drive(kind: str, fn: Callable[..., Any]) -> Any:
    if kind == "coroutine":
        return asyncio.run(fn(1))
    if kind == "generator":
        return list(fn(3))
    if kind == "async_generator":

        async def consume() -> List[int]:
            return [i async for i in fn(3)]

        return asyncio.run(consume())
    return fn(1)


@pytest.mark.parametrize(
    ("kind", "target", "expected"),
    [
        ("coroutine", _atarget, 2),
        ("generator", _gtarget, [0, 1, 2]),
        ("async_generator", _agtarget, [0, 1, 2]),
    ],
)
def test_every_shape_gets_one_span(
    span_observer: Any, exporter: InMemorySpanExporter, kind: str, target: Any, expected: Any
) -> None:
    """Coroutines, generators and async generators: one span per call, ended at the real end."""
    wrapped = CallPyBack(observers=[span_observer])(target)
    assert _drive(kind, wrapped) == expected
    span = one(exporter, f"{MODULE}.{target.__qualname__}")
    attrs = dict(span.attributes or {})
    assert attrs["code.function.name"] == span.name
    assert attrs["code.line.number"] == target.__code__.co_firstlineno
    assert attrs["callpyback.outcome"] == "success"
    assert span.end_time is not None and span.start_time is not None
    assert not DEPRECATED & set(attrs)


def test_methods_classmethods_and_staticmethods_are_named_by_qualname(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """Methods of every kind are named `module.Class.method`."""

    class Observed(Shop):
        pass

    deco = CallPyBack(observers=[span_observer])
    for attr in ("method", "klass", "static"):
        raw = Shop.__dict__[attr]
        setattr(Observed, attr, type(raw)(deco(raw.__func__)) if attr != "method" else deco(raw))
    shop = Observed()
    assert (shop.method(1), Observed.klass(2), Observed.static(3)) == (1, 2, 3)
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == sorted(f"{MODULE}.Shop.{a}" for a in ("klass", "method", "static"))


def test_name_template(create: Callable[..., Any], exporter: InMemorySpanExporter) -> None:
    """name_template formats module, qualname, name, target and pipeline."""
    observer = create("observer", "otel.span", name_template="{pipeline}/{name}")

    @CallPyBack(observers=[observer], name="billing")
    def charge() -> None:
        return None

    charge()
    assert [s.name for s in exporter.get_finished_spans()] == ["billing/charge"]


def test_integration_targets_name_the_span(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """A call observed under an integration target (http:GET /orders/{id}) is named by it."""
    deco = CallPyBack(observers=[span_observer])

    def view(order_id: str) -> str:
        return order_id

    observed = deco.observe(view, target="http:GET /orders/{id}")
    observed("7")
    (span,) = exporter.get_finished_spans()
    assert span.name == "http:GET /orders/{id}"
    assert span.attributes is not None
    assert span.attributes["callpyback.target"] == "http:GET /orders/{id}"
    assert span.attributes["code.function.name"] == f"{MODULE}.{view.__qualname__}"


def test_arguments_and_result_are_recorded_redacted(
    create: Callable[..., Any], exporter: InMemorySpanExporter
) -> None:
    """Only the listed arguments are recorded, sensitive ones masked; the result too if asked."""
    observer = create(
        "observer",
        "otel.span",
        record_arguments=["order_id", "card_number", "note", "absent"],
        redact=["note"],
        record_result=True,
    )

    @CallPyBack(observers=[observer])
    def pay(order_id: int, card_number: str, note: str, amount: float = 9.5) -> Dict[str, Any]:
        return {"ok": True, "token": "s3cr3t"}

    pay(7, "4111 1111 1111 1111", "hush")
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["callpyback.argument.order_id"] == 7
    assert attrs["callpyback.argument.card_number"] == "[REDACTED]"
    assert attrs["callpyback.argument.note"] == "[REDACTED]"
    assert "callpyback.argument.amount" not in attrs
    assert "callpyback.argument.absent" not in attrs
    assert attrs["callpyback.result"] == repr({"ok": True, "token": "[REDACTED]"})


def test_no_arguments_by_default(span_observer: Any, exporter: InMemorySpanExporter) -> None:
    """By default no argument and no result reaches the span."""

    @CallPyBack(observers=[span_observer])
    def login(user: str, password: str) -> str:
        return "session"

    login("ann", "pw")
    (span,) = exporter.get_finished_spans()
    assert not [k for k in (span.attributes or {}) if "argument" in k or "result" in k]


def test_baggage_allow_list(create: Callable[..., Any], exporter: InMemorySpanExporter) -> None:
    """Allow-listed baggage keys become attributes; others do not."""
    observer = create("observer", "otel.span", baggage=["callpyback.tenant"])

    @CallPyBack(observers=[observer])
    def work() -> None:
        return None

    ctx = baggage.set_baggage("callpyback.tenant", "acme")
    ctx = baggage.set_baggage("user.email", "ann@example.com", context=ctx)
    token = context.attach(ctx)
    try:
        work()
    finally:
        context.detach(token)
    attrs = dict(exporter.get_finished_spans()[0].attributes or {})
    assert attrs["callpyback.tenant"] == "acme"
    assert "user.email" not in attrs


# --- parentage ---------------------------------------------------------------------------------


def test_nested_observed_calls_and_other_instrumentation_are_children(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """A nested observed call and a span another instrumentation starts are children."""
    deco = CallPyBack(observers=[span_observer])
    tracer = trace.get_tracer("someone.else")

    @deco
    def inner() -> None:
        with tracer.start_as_current_span("manual"):
            pass

    @deco
    def outer() -> None:
        inner()

    with tracer.start_as_current_span("request") as request:
        outer()
    spans = {s.name.rsplit(".", 1)[-1]: s for s in exporter.get_finished_spans()}
    assert spans["outer"].parent is not None
    assert spans["outer"].parent.span_id == request.get_span_context().span_id
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id  # type: ignore[union-attr]
    assert spans["manual"].parent.span_id == spans["inner"].context.span_id  # type: ignore[union-attr]
    assert len({s.context.trace_id for s in spans.values()}) == 1  # type: ignore[union-attr]


def test_parentage_across_gather_and_to_thread(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """Tasks of asyncio.gather and workers of asyncio.to_thread inherit the span."""
    deco = CallPyBack(observers=[span_observer])

    @deco
    async def leaf(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @deco
    def blocking(i: int) -> int:
        return i

    @deco
    async def fan_out() -> List[int]:
        both = await asyncio.gather(leaf(1), leaf(2))
        return [*both, await asyncio.to_thread(blocking, 3)]

    assert asyncio.run(fan_out()) == [1, 2, 3]
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name.endswith("fan_out"))
    children = [s for s in spans if s is not root]
    assert len(children) == 3
    for child in children:
        assert child.parent is not None and child.parent.span_id == root.context.span_id  # type: ignore[union-attr]


def test_parentage_across_a_thread_pool_with_the_threading_instrumentation(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """With ThreadingInstrumentor, calls submitted to a ThreadPoolExecutor are children."""
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor

    deco = CallPyBack(observers=[span_observer])

    @deco
    def task(i: int) -> int:
        return i

    @deco
    def batch() -> List[int]:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return list(pool.map(task, range(4)))

    instrumentor = ThreadingInstrumentor()
    instrumentor.instrument()
    try:
        assert batch() == [0, 1, 2, 3]
    finally:
        instrumentor.uninstrument()
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name.endswith("batch"))
    tasks = [s for s in spans if s.name.endswith("task")]
    assert len(tasks) == 4
    assert {s.parent.span_id for s in tasks if s.parent} == {root.context.span_id}  # type: ignore[union-attr]


# --- outcomes ----------------------------------------------------------------------------------


def test_failure_is_an_error_with_one_redacted_exception_record(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """Failure: status ERROR, error.type, exactly one exception event, secrets masked."""

    class PaymentDeclined(Exception):
        pass

    @CallPyBack(observers=[span_observer])
    def pay(card_number: str) -> None:
        raise PaymentDeclined(f"declined card {card_number}")

    with pytest.raises(PaymentDeclined):
        pay("4111 1111 1111 1111")
    (span,) = exporter.get_finished_spans()
    kind = f"{MODULE}.{PaymentDeclined.__qualname__}"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == kind
    assert span.attributes["callpyback.outcome"] == "failure"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == kind
    assert event.attributes["exception.message"] == "declined card [REDACTED]"
    assert "4111" not in str(event.attributes["exception.stacktrace"])
    assert "4111" not in (span.status.description or "")
    assert "declined card [REDACTED]" in str(event.attributes["exception.stacktrace"])


def test_recovered_call_is_not_an_error(span_observer: Any, exporter: InMemorySpanExporter) -> None:
    """Recovered: status unset, callpyback.recovered_by, one event for the failed attempt."""

    @CallPyBack(observers=[span_observer], default_return=0)
    def ratio() -> float:
        return 1 / 0

    assert ratio() == 0
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    attrs = dict(span.attributes or {})
    assert attrs["callpyback.outcome"] == "recovered"
    assert attrs["callpyback.recovered_by"]
    assert "error.type" not in attrs
    assert [e.name for e in span.events] == ["callpyback.attempt.failed"]
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["error.type"] == "ZeroDivisionError"


def test_retried_then_succeeded_is_not_an_error(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """Two failed attempts, then a success: status unset, two attempt events, attempts=3."""
    tries: List[int] = []

    @CallPyBack(
        observers=[span_observer],
        error_handlers=[RetryHandler(3, exceptions=(ConnectionError,), jitter=None)],
        time_source=MockTimeSource(),
    )
    def fetch() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError(f"refused #{len(tries)}")
        return "ok"

    assert fetch() == "ok"
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    attrs = dict(span.attributes or {})
    assert (attrs["callpyback.outcome"], attrs["callpyback.attempts"]) == ("success", 3)
    assert "error.type" not in attrs
    assert [(e.name, dict(e.attributes or {})["callpyback.attempt"]) for e in span.events] == [
        ("callpyback.attempt.failed", 1),
        ("callpyback.attempt.failed", 2),
    ]
    assert [dict(e.attributes or {})["exception.message"] for e in span.events] == [
        "refused #1",
        "refused #2",
    ]


def test_retried_then_failed_records_the_last_exception_once(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """Retries exhausted: attempt events for the retried failures, one exception record."""

    @CallPyBack(
        observers=[span_observer],
        error_handlers=[RetryHandler(2, jitter=None)],
        time_source=MockTimeSource(),
    )
    def fetch() -> None:
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        fetch()
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["callpyback.attempt.failed", "exception"]
    assert span.attributes is not None
    assert span.attributes["callpyback.attempts"] == 2
    assert span.attributes["error.type"] == "TimeoutError"


def test_interruption_is_an_error(span_observer: Any, exporter: InMemorySpanExporter) -> None:
    """KeyboardInterrupt: status ERROR, error.type KeyboardInterrupt, outcome interrupted."""

    @CallPyBack(observers=[span_observer])
    def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stop()
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "KeyboardInterrupt"
    assert span.attributes["callpyback.outcome"] == "interrupted"
    assert [e.name for e in span.events] == ["exception"]


def test_cancelled_task_is_not_an_error(span_observer: Any, exporter: InMemorySpanExporter) -> None:
    """asyncio cancellation: outcome cancelled, status unset, no exception recorded."""

    @CallPyBack(observers=[span_observer])
    async def wait_forever() -> None:
        await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.ensure_future(wait_forever())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["callpyback.outcome"] == "cancelled"
    assert "error.type" not in span.attributes
    assert not span.events


def test_failing_generator_is_an_error(span_observer: Any, exporter: InMemorySpanExporter) -> None:
    """A generator that raises mid-way ends its span with status ERROR."""

    @CallPyBack(observers=[span_observer])
    def rows() -> Any:
        yield 1
        raise LookupError("gone")

    with pytest.raises(LookupError):
        list(rows())
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "LookupError"


# --- cost controls -----------------------------------------------------------------------------


def test_min_duration_keeps_only_slow_calls(
    create: Callable[..., Any], exporter: InMemorySpanExporter
) -> None:
    """Below min_duration no span is kept; a slower call gets one, parented to the caller."""
    clock = MockTimeSource()
    observer = create("observer", "otel.span", min_duration=0.5)

    @CallPyBack(observers=[observer], time_source=clock)
    def maybe_slow(seconds: float) -> None:
        clock.advance(seconds)

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        maybe_slow(0.1)
        maybe_slow(0.7)
    spans = [s for s in exporter.get_finished_spans() if s.name != "request"]
    assert len(spans) == 1
    (slow,) = spans
    assert slow.parent is not None and slow.parent.span_id == request.get_span_context().span_id
    assert slow.attributes is not None and slow.attributes["callpyback.outcome"] == "success"


def test_suppressed_instrumentation_makes_no_span(
    span_observer: Any, exporter: InMemorySpanExporter
) -> None:
    """Inside suppress_instrumentation() (what exporters use while exporting) no span is made."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    @CallPyBack(observers=[span_observer])
    def quiet() -> int:
        return 1

    with suppress_instrumentation():
        quiet()
    assert exporter.get_finished_spans() == ()


def test_unsampled_calls_keep_the_parents_decision(create: Callable[..., Any]) -> None:
    """With a sampler that drops everything nothing is exported, and the body still runs."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    from callpyback_opentelemetry import OTelSpanObserver

    observer = OTelSpanObserver(tracer_provider=provider, record_arguments=["x"])

    @CallPyBack(observers=[observer])
    def work(x: int) -> bool:
        return trace.get_current_span().is_recording()

    assert work(1) is False
    assert memory.get_finished_spans() == ()
