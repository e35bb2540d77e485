"""Audit trails join traces: the records of `audit` and `finance.audit` carry the trace id of
the call's span (and the id of the span the call ran in, its parent)."""

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
    """The record's trace_id is the call span's; its span_id is the span the call ran in."""
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
    assert record["span_id"] == format(request.get_span_context().span_id, "016x")
    assert call.parent is not None and call.parent.span_id == request.get_span_context().span_id
