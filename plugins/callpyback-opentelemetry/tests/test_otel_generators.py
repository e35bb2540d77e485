"""Generators and async generators closed early, from elsewhere: the span is attached only while
the body runs, in the wrapper's frame, so nothing fails to detach and the context is unchanged.

The failure these guard against (opentelemetry-python#2606, langfuse#13590) is a context token
created in one frame or task and reset in another; OpenTelemetry logs it on the
``opentelemetry.context`` logger as "Failed to detach context".
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from typing import Any, AsyncIterator, Iterator, List

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from callpyback import CallPyBack


@pytest.fixture
def detach_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="opentelemetry.context")
    return caplog


def no_detach_failures(caplog: pytest.LogCaptureFixture) -> None:
    records = [r for r in caplog.records if r.name.startswith("opentelemetry.context")]
    assert records == [], [r.getMessage() for r in records]


def test_the_probe_sees_a_real_detach_failure(detach_log: pytest.LogCaptureFixture) -> None:
    """The caplog check can fail: a token reset in another context is logged where we look."""
    token = context.attach(context.set_value("k", 1))
    other = threading.Thread(target=context.detach, args=(token,))
    other.start()
    other.join()
    context.detach(token)
    assert any("Failed to detach context" in r.getMessage() for r in detach_log.records)


def test_break_out_of_a_generator(
    span_observer: Any, exporter: InMemorySpanExporter, detach_log: pytest.LogCaptureFixture
) -> None:
    """`break` from a for loop over an observed generator: span ended (cancelled), no detach
    error, and the caller's context is what it was before."""
    seen: List[Any] = []

    @CallPyBack(observers=[span_observer])
    def numbers() -> Iterator[int]:
        i = 0
        while True:
            seen.append(trace.get_current_span().get_span_context().span_id)
            yield i
            i += 1

    before = context.get_current()
    for i in numbers():
        assert context.get_current() == before  # not attached between resumes
        if i == 2:
            break
    gc.collect()
    assert context.get_current() == before
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["callpyback.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.UNSET
    assert set(seen) == {span.context.span_id}  # type: ignore[union-attr]
    no_detach_failures(detach_log)


def test_generator_closed_from_another_thread(
    span_observer: Any, exporter: InMemorySpanExporter, detach_log: pytest.LogCaptureFixture
) -> None:
    """A generator started here and closed by another thread: no detach error anywhere."""

    @CallPyBack(observers=[span_observer])
    def numbers() -> Iterator[int]:
        yield 1
        yield 2

    gen = numbers()
    before = context.get_current()
    assert next(gen) == 1
    closer = threading.Thread(target=gen.close)
    closer.start()
    closer.join()
    assert context.get_current() == before
    assert len(exporter.get_finished_spans()) == 1
    no_detach_failures(detach_log)


def test_async_generator_closed_from_another_task(
    span_observer: Any, exporter: InMemorySpanExporter, detach_log: pytest.LogCaptureFixture
) -> None:
    """aclose() of an observed async generator from another task (langfuse#13590's case)."""
    inside: List[Any] = []

    @CallPyBack(observers=[span_observer])
    async def stream() -> AsyncIterator[int]:
        try:
            for i in range(10):
                inside.append(trace.get_current_span().get_span_context().span_id)
                await asyncio.sleep(0)
                yield i
        finally:
            inside.append(trace.get_current_span().get_span_context().span_id)

    async def main() -> None:
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("consumer"):
            agen = stream()
            before = context.get_current()
            assert await agen.__anext__() == 0
            assert await agen.__anext__() == 1
            assert context.get_current() == before
            await asyncio.create_task(agen.aclose())
            assert context.get_current() == before

    asyncio.run(main())
    spans = {s.name.rsplit(".", 1)[-1]: s for s in exporter.get_finished_spans()}
    span = spans["stream"]
    assert span.attributes is not None and span.attributes["callpyback.outcome"] == "cancelled"
    assert span.parent is not None and span.parent.span_id == spans["consumer"].context.span_id  # type: ignore[union-attr]
    # The finally block ran (in the closing task) with the generator's span current.
    assert set(inside) == {span.context.span_id}  # type: ignore[union-attr]
    no_detach_failures(detach_log)


def test_async_generator_abandoned_and_finalised_by_the_loop(
    span_observer: Any, exporter: InMemorySpanExporter, detach_log: pytest.LogCaptureFixture
) -> None:
    """An async generator dropped half-way is closed by the event loop's finaliser: no error."""

    @CallPyBack(observers=[span_observer])
    async def stream() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async def main() -> None:
        agen = stream()
        await agen.__anext__()
        del agen
        gc.collect()
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(main())
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["callpyback.outcome"] == "cancelled"
    no_detach_failures(detach_log)


def test_exhausted_and_thrown_into(
    span_observer: Any, exporter: InMemorySpanExporter, detach_log: pytest.LogCaptureFixture
) -> None:
    """send() and throw() resume the body with the span attached, and detach again."""

    @CallPyBack(observers=[span_observer])
    def echo() -> Iterator[Any]:
        received = yield "ready"
        try:
            yield received
        except ValueError:
            yield "caught"

    before = context.get_current()
    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("hello") == "hello"
    assert gen.throw(ValueError("x")) == "caught"
    assert context.get_current() == before
    with pytest.raises(StopIteration):
        next(gen)
    assert context.get_current() == before
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["callpyback.outcome"] == "success"
    no_detach_failures(detach_log)
