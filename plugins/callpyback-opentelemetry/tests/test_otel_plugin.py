"""The plugin as users meet it: installed, found through its entry point, configured from
callpyback.toml (with the project's usual errors), and never instrumented by the import hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import callpyback
import callpyback.autoinstrument as auto
from callpyback import ConfigError, ConfigurationError, load_config, plugins


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callpyback.toml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def test_discovered_through_its_entry_point() -> None:
    """Plugin 'otel' of distribution callpyback-opentelemetry registers two observers, a table."""
    found = {p.name: p for p in plugins.list_plugins()}["otel"]
    assert (found.distribution, found.version, found.status) == (
        "callpyback-opentelemetry",
        "1.0.0",
        "loaded",
    )
    assert found.entry_point == "otel = callpyback_opentelemetry.plugin"
    assert set(found.components) == {
        ("observer", "otel.span"),
        ("observer", "otel.metrics"),
        ("table", "otel"),
    }
    spec = plugins.get_registry().get("observer", "otel.span")
    assert spec.origin == "otel (distribution callpyback-opentelemetry)"


def test_installed_not_imported_from_the_checkout() -> None:
    """The tests exercise the installed distribution, not the source tree."""
    import callpyback_opentelemetry

    src = Path(__file__).resolve().parents[1] / "src"
    assert src not in Path(callpyback_opentelemetry.__file__).resolve().parents


def test_discovery_imports_no_opentelemetry() -> None:
    """Discovery imports the plugin module only: no OpenTelemetry package, no observer module."""
    code = (
        "import sys, callpyback.plugins as p\n"
        "r = p.get_registry()\n"
        "print(('observer', 'otel.span') in r, 'callpyback_opentelemetry.plugin' in sys.modules,\n"
        "      any(m.startswith('opentelemetry') for m in sys.modules),\n"
        "      'callpyback_opentelemetry.spans' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False", "False"]


def test_without_an_sdk_the_observers_load_trace_nothing_and_start_no_threads() -> None:
    """With only the API in use (no provider set), calls run, nothing is current, no thread."""
    code = textwrap.dedent(
        """
        import asyncio, json, threading
        from callpyback import CallPyBack, plugins
        from opentelemetry import trace
        registry = plugins.get_registry()
        span = registry.create("observer", "otel.span", {})
        meter = registry.create("observer", "otel.metrics", {})
        before = threading.active_count()

        @CallPyBack(observers=[span, meter])
        def work(x):
            return trace.get_current_span().get_span_context().is_valid, x

        @CallPyBack(observers=[span, meter])
        def rows():
            yield 1

        results = [work(1), list(rows())]
        print(json.dumps({"results": results, "threads": threading.active_count() - before,
                          "provider": type(trace.get_tracer_provider()).__name__}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {
        "results": [[False, 1], [1]],
        "threads": 0,
        "provider": "ProxyTracerProvider",
    }


@pytest.mark.parametrize("entry", ["otel", "callpyback-opentelemetry", "callpyback_opentelemetry"])
def test_can_be_denied(entry: str) -> None:
    plugins.configure(deny=[entry])
    assert ("observer", "otel.span") not in plugins.get_registry()


# --- configuration ---------------------------------------------------------------------------


def test_a_pipeline_from_callpyback_toml(tmp_path: Path, exporter: InMemorySpanExporter) -> None:
    """otel.span and otel.metrics by name in callpyback.toml, applied by the import hook."""
    pkg = tmp_path / "otelshop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "orders.py").write_text(
        "def place(n):\n    return confirm(n)\n\ndef confirm(n):\n    return n + 1\n"
    )
    config = write(
        tmp_path,
        """
        version = 1
        [observers.span]
        type = "otel.span"
        record_arguments = ["n"]

        [observers.otel_metrics]
        type = "otel.metrics"

        [[pipelines]]
        name = "shop"
        match = ["otelshop.*"]
        observers = ["span", "otel_metrics"]
        """,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        auto.install(str(config))
        try:
            from otelshop import orders

            assert orders.place(1) == 2
        finally:
            auto.uninstall()
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("otelshop")]:
            del sys.modules[name]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"otelshop.orders.place", "otelshop.orders.confirm"}
    place, confirm = spans["otelshop.orders.place"], spans["otelshop.orders.confirm"]
    assert confirm.parent is not None and confirm.parent.span_id == place.context.span_id  # type: ignore[union-attr]
    assert place.attributes is not None
    assert place.attributes["callpyback.pipeline"] == "shop"
    assert place.attributes["callpyback.argument.n"] == 1


@pytest.mark.parametrize(
    ("table", "where", "message"),
    [
        (
            'type = "otel.span"\nbackground = true',
            "observers.span.background",
            "cannot run in the background",
        ),
        (
            'type = "otel.span"\nname_template = "{module}.{func}"',
            "observers.span.name_template",
            "unknown field(s) ['func']",
        ),
        (
            'type = "otel.span"\nmin_duration = -1',
            "observers.span.min_duration",
            "greater than or equal to 0",
        ),
        (
            'type = "otel.span"\nrecord_arguments = ["order id"]',
            "observers.span.record_arguments",
            "identifiers",
        ),
        (
            'type = "otel.span"\nrecord_result = "yes please"',
            "observers.span.record_result",
            "boolean",
        ),
        ('type = "otel.span"\nsample = 0.5', "observers.span.sample", "sample"),
        (
            'type = "otel.metrics"\nbuckets = [1.0, 0.5]',
            "observers.span.buckets",
            "strictly increasing",
        ),
    ],
)
def test_bad_options_name_file_line_key_and_value(
    tmp_path: Path, table: str, where: str, message: str
) -> None:
    """A bad option is a ConfigError naming the file, the line, the key path and the problem."""
    body = "version = 1\n[observers.span]\n" + table + "\n"
    path = tmp_path / "callpyback.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    line = body.splitlines().index(table.splitlines()[-1]) + 1
    assert f"callpyback.toml:{line}" in text, text
    assert where in text, text
    assert message in text, text


def test_bad_otel_table_is_reported(tmp_path: Path) -> None:
    """The [otel] table is validated by the plugin's model."""
    path = write(tmp_path, "version = 1\n[otel]\nshutdown_timeout = 0\nsdk = true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "otel.shutdown_timeout" in str(info.value) and "callpyback.toml:3" in str(info.value)


def test_background_is_refused_in_code_too(create: Callable[..., Any]) -> None:
    """Built in code with background=True: a ConfigurationError, not a silent worker."""
    from callpyback_opentelemetry import OTelSpanObserver

    with pytest.raises(ConfigurationError, match="background"):
        OTelSpanObserver(background=True)
    with pytest.raises(ConfigurationError, match="background"):
        callpyback.CallPyBack(observers=[OTelSpanObserver()], enable_async_observers=True)(
            lambda: None
        )()


# --- the import hook leaves OpenTelemetry and the plugin alone ---------------------------------


def test_the_import_hook_never_instruments_opentelemetry_or_the_plugin(tmp_path: Path) -> None:
    """A catch-all pattern reaches the program's modules, not opentelemetry.* nor the plugin,
    whether they are imported after install() or were imported before it (the retrofit)."""
    write(
        tmp_path,
        """
        version = 1
        [observers.span]
        type = "otel.span"

        [[pipelines]]
        match = ["*"]
        observers = ["span"]
        """,
    )
    (tmp_path / "usermod.py").write_text("def work():\n    return 1\n")
    code = textwrap.dedent(
        """
        import json, sys
        import opentelemetry.context            # before install: the retrofit sees it
        import callpyback, callpyback.autoinstrument as auto
        auto.install("callpyback.toml")
        import opentelemetry.trace, opentelemetry.sdk.trace, opentelemetry.propagate
        import callpyback_opentelemetry.spans, callpyback_opentelemetry.metrics
        import usermod
        seen = {
            "usermod.work": usermod.work,
            "opentelemetry.context.attach": opentelemetry.context.attach,
            "opentelemetry.trace.get_tracer": opentelemetry.trace.get_tracer,
            "opentelemetry.sdk.trace.TracerProvider.get_tracer":
                opentelemetry.sdk.trace.TracerProvider.get_tracer,
            "opentelemetry.propagate.inject": opentelemetry.propagate.inject,
            "callpyback_opentelemetry.spans.function_name":
                callpyback_opentelemetry.spans.function_name,
            "callpyback_opentelemetry.metrics.instruments_for":
                callpyback_opentelemetry.metrics.instruments_for,
        }
        print(json.dumps({k: callpyback.instrumented_by(v) is not None for k, v in seen.items()}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found.pop("usermod.work") is True  # the hook is really at work
    assert found == dict.fromkeys(found, False)


def test_threads_are_not_started_by_building_observers() -> None:
    """Building the observers starts no thread (the SDK's own processors aside)."""
    before = threading.active_count()
    from callpyback_opentelemetry import OTelMetricsObserver, OTelSpanObserver

    OTelSpanObserver()
    OTelMetricsObserver()
    assert threading.active_count() == before
