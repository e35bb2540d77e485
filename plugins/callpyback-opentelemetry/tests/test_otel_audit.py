"""Audit trails join traces: the records of `audit` and `finance.audit` carry the trace and span
ids of the call's own span (its observers of the outcome run with the span current again)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from callpyback import CallPyBack


def records(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("audit_type", ["audit", "finance.audit"])
def test_audit_record_and_span_share_the_trace(
    create: Callable[..., Any],
    exporter: InMemorySpanExporter,
    tmp_path: Path,
    audit_type: str,
) -> None:
    """The record's trace_id and span_id are the call span's, a child of the request's."""
    trail = tmp_path / "audit.jsonl"
    span = create("observer", "otel.span")
    audit = create("observer", audit_type, path=str(trail))

    @CallPyBack(observers=[span, audit])
    def transfer(account: str, amount: int) -> str:
        return "done"

    with trace.get_tracer("web").start_as_current_span("POST /transfers") as request:
        transfer("acc-1", 10)
    (record,) = records(trail)
    call = next(s for s in exporter.get_finished_spans() if s.name.endswith("transfer"))
    assert record["trace_id"] == format(call.context.trace_id, "032x")  # type: ignore[union-attr]
    assert record["span_id"] == format(call.context.span_id, "016x")  # type: ignore[union-attr]
    assert call.parent is not None and call.parent.span_id == request.get_span_context().span_id


def test_the_outcome_observers_see_the_span_of_a_failed_call(
    create: Callable[..., Any], exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """A failure's POST_FAILURE and COMPLETED observers run with the call's span current too,
    and nothing of it is left current after the call."""
    seen: List[Any] = []

    def note(state: Any) -> None:
        seen.append((state.name, trace.get_current_span().get_span_context().span_id))

    from callpyback import on_completion, on_failure

    @CallPyBack(observers=[create("observer", "otel.span"), on_failure(note), on_completion(note)])
    def charge() -> None:
        raise RuntimeError("declined")

    with pytest.raises(RuntimeError):
        charge()
    call = next(s for s in exporter.get_finished_spans() if s.name.endswith("charge"))
    assert seen == [("POST_FAILURE", call.context.span_id), ("COMPLETED", call.context.span_id)]
    assert not trace.get_current_span().get_span_context().is_valid
