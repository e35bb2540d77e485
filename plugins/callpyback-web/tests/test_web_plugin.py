"""The plugin as users meet it: installed, found through its entry point; trace context."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import callpyback_web as web
import pytest

import callpyback as cpb


def test_installed_not_imported_from_the_checkout() -> None:
    """The tests exercise the installed distribution (CI installs it non-editable)."""
    from importlib.metadata import distribution

    dist = distribution("callpyback-web")
    assert [e.value for e in dist.entry_points if e.group == "callpyback"] == [
        "callpyback_web.plugin"
    ]
    src = Path(__file__).resolve().parents[1] / "src"
    direct = dist.read_text("direct_url.json") or ""
    if '"editable": true' not in direct:
        assert src not in Path(web.__file__).resolve().parents


def test_discovery_imports_no_framework() -> None:
    code = (
        "import sys, callpyback.plugins as p\n"
        "r = p.get_registry()\n"
        "print(('table', 'web') in r, 'callpyback_web.plugin' in sys.modules,\n"
        "      any(m in sys.modules for m in ('flask', 'starlette', 'django', 'fastapi',\n"
        "          'callpyback_web.wsgi', 'callpyback_web.asgi')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False"]


def test_incoming_trace_context_is_extracted_when_no_server_span_exists() -> None:
    flask = pytest.importorskip("flask")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    seen: list[Any] = []
    app = flask.Flask("otel")

    @app.get("/x")
    def view() -> str:
        seen.append(trace.get_current_span().get_span_context())
        return "x"

    web.instrument(app, pipeline=cpb.CallPyBack())
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    app.test_client().get("/x", headers={"traceparent": parent}).get_data()
    assert format(seen[0].trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(seen[0].span_id, "016x") == "b7ad6b7169203331" and seen[0].is_remote

    # A server instrumentation that already made its span current: no second extraction.
    inner = app.wsgi_app

    def server_span(environ: Any, start_response: Any) -> Any:
        with tracer.start_as_current_span("server"):
            return list(inner(environ, start_response))

    app.wsgi_app = server_span
    app.test_client().get("/x", headers={"traceparent": parent}).get_data()
    assert format(seen[1].trace_id, "032x") != "0af7651916cd43dd8448eb211c80319c"
    assert not seen[1].is_remote

    web.uninstrument(app)
    app.wsgi_app = inner.app if hasattr(inner, "app") else inner
    off = flask.Flask("off")
    off.get("/x")(view)
    web.instrument(off, web=web.Web(cpb.CallPyBack(), trace_context="never"))
    off.test_client().get("/x", headers={"traceparent": parent}).get_data()
    assert not seen[2].is_valid
