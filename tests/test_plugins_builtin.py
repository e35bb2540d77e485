"""The core as its own plugin: every built-in component by its short name, with its own options
model, built lazily."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Dict, Iterator

import pytest
from pydantic import ValidationError

import callpyback as cpb
from callpyback import plugins
from callpyback._builtin_options import resolve_exception


@pytest.fixture(autouse=True)
def _fresh_discovery(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(plugins.ALLOW_ENV, raising=False)
    monkeypatch.delenv(plugins.DENY_ENV, raising=False)
    plugins.reset()
    yield
    plugins.reset()


#: name -> (minimal options, class name it builds)
EXPECTED: Dict[tuple, tuple] = {
    ("time_source", "system"): ({}, "SystemTimeSource"),
    ("time_source", "mock"): ({"initial": 5}, "MockTimeSource"),
    ("variable_extractor", "tracing"): ({}, "TracingVariableExtractor"),
    ("variable_extractor", "noop"): ({}, "NoOpVariableExtractor"),
    ("error_handler", "default"): ({"value": 0}, "DefaultErrorHandler"),
    ("error_handler", "fallback"): ({"value": 0}, "FallbackHandler"),
    ("error_handler", "retry"): ({"attempts": 3}, "RetryHandler"),
    ("error_handler", "circuit_breaker"): ({"failure_threshold": 2}, "CircuitBreakerHandler"),
    ("error_handler", "timeout"): ({"seconds": 1.5}, "TimeoutHandler"),
    ("error_handler", "exception_mapping"): (
        {"raise_as": {"KeyError": "LookupError"}},
        "ExceptionMappingHandler",
    ),
    ("error_handler", "logging_handler"): ({"level": "WARNING"}, "LoggingErrorHandler"),
    ("error_handler", "log"): ({}, "LoggingErrorHandler"),
    ("error_handler", "reraise"): ({"exceptions": ["KeyError"]}, "ReraiseHandler"),
    ("observer", "metrics"): ({"quantiles": [0.5]}, "MetricsObserver"),
    ("observer", "logging"): ({"redact": ["account"]}, "LoggingObserver"),
    ("observer", "timing"): ({"threshold": 0.5}, "TimingObserver"),
    ("observer", "alerting"): (
        {"rules": [{"name": "errors", "kind": "error_rate", "threshold": 0.5}]},
        "AlertingObserver",
    ),
    ("observer", "concurrency"): ({"non_reentrant": ["app:f"]}, "ConcurrencyObserver"),
    ("observer", "audit"): ({"path": "PATH"}, "AuditObserver"),
}


#: the core's own top-level tables of callpyback.toml (the run report, the exporters)
TABLES = {("table", "report"), ("table", "export")}


def test_every_builtin_is_registered_by_the_core_plugin() -> None:
    core = plugins.list_plugins()[0]
    assert set(core.components) == set(EXPECTED) | TABLES
    for kind, name in EXPECTED:
        assert plugins.get_registry().get(kind, name).plugin == "callpyback"


@pytest.mark.parametrize(("kind", "name"), sorted(EXPECTED))
def test_each_builtin_builds_from_options(kind: str, name: str, tmp_path: Any) -> None:
    options, cls = EXPECTED[(kind, name)]
    if options.get("path") == "PATH":
        options = {"path": str(tmp_path / "audit.jsonl")}
    component = plugins.get_registry().create(kind, name, options)
    assert type(component).__name__ == cls
    if name == "audit":
        component.close()
    spec = plugins.get_registry().get(kind, name)
    assert spec.options is not None and spec.options.model_config["extra"] == "forbid"
    assert spec.description


@pytest.mark.parametrize(("kind", "name"), sorted(EXPECTED))
def test_each_builtin_rejects_unknown_options(kind: str, name: str) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted") as info:
        plugins.get_registry().get(kind, name).validate({"no_such_option": 1})
    extra = [e for e in info.value.errors() if e["type"] == "extra_forbidden"]
    assert [e["loc"] for e in extra] == [("no_such_option",)]


def test_registry_listing_imports_no_component_module() -> None:
    """Discovery registers lazy factories: handlers and observers load when first built."""
    code = (
        "import sys, callpyback.plugins as p\n"
        "p.get_registry()\n"
        "mods = ['callpyback.handlers', 'callpyback.observers.metrics', 'callpyback.extractors',\n"
        "        'callpyback.observers.audit', 'callpyback.observers.alerting']\n"
        "print(json.dumps([m for m in mods if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_options_reach_the_component(tmp_path: Any) -> None:
    """Names from TOML become classes; values reach the constructor."""
    registry = plugins.get_registry()
    retry = registry.create(
        "error_handler",
        "retry",
        {"attempts": 4, "exceptions": ["ConnectionError", "json.JSONDecodeError"], "backoff": 0.5},
    )
    import json as json_module

    assert retry.exceptions == (ConnectionError, json_module.JSONDecodeError)
    breaker = registry.create(
        "error_handler", "circuit_breaker", {"name": "payments-db", "exclude": ["KeyError"]}
    )
    assert breaker.name == "payments-db"
    clock = registry.create("time_source", "mock", {"initial": 1234.5})
    assert clock.now() == 1234.5


def test_registry_components_work_in_a_pipeline() -> None:
    """A retry and a default built by name retry on the mock clock, then recover."""
    registry = plugins.get_registry()
    clock = registry.create("time_source", "mock", {"initial": 0})
    retry = registry.create(
        "error_handler",
        "retry",
        {"attempts": 3, "exceptions": ["ConnectionError"], "jitter": "none"},
    )
    default = registry.create(
        "error_handler", "default", {"value": "cached", "exceptions": ["OSError"]}
    )
    calls: list = []

    @cpb.CallPyBack(error_handlers=[retry, default], time_source=clock)
    def fetch() -> str:
        calls.append(clock.monotonic())
        raise ConnectionError("down")

    assert fetch() == "cached"
    assert len(calls) == 3 and clock.sleeps == [0.1, 0.2]


def test_exception_mapping_from_options() -> None:
    mapping = plugins.get_registry().create(
        "error_handler",
        "exception_mapping",
        {"raise_as": {"KeyError": "LookupError"}, "return_values": {"ZeroDivisionError": 0}},
    )

    @cpb.CallPyBack(error_handlers=[mapping])
    def divide(a: int, b: int) -> float:
        return a / b

    assert divide(1, 0) == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ValueError", ValueError),
        ("json.JSONDecodeError", json.JSONDecodeError),
        ("concurrent.futures:TimeoutError", None),
        (" KeyError ", KeyError),
    ],
)
def test_resolve_exception(name: str, expected: Any) -> None:
    found = resolve_exception(name)
    assert issubclass(found, BaseException)
    if expected is not None:
        assert found is expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ValueEror", "did you mean 'ValueError'"),
        ("json.nope", "does not name an exception"),
        ("no_such_module_x.Error", "cannot import module"),
        ("", "exception class name"),
        (3, "exception class name"),
        ("json.dumps", "does not name an exception"),
    ],
)
def test_resolve_exception_errors(name: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_exception(name)


def test_every_bad_exception_name_is_an_error_at_its_own_index() -> None:
    """Three bad names, three errors, each at its index: not one run per name."""
    with pytest.raises(ValidationError) as info:
        plugins.get_registry().get("error_handler", "retry").validate(
            {"attempts": 2, "exceptions": ["ConectionError", "KeyError", "TimeotError", "3x"]}
        )
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [("exceptions", 0), ("exceptions", 2), ("exceptions", 3)]
    assert "did you mean 'ConnectionError'" in errors[0]["msg"]
    assert "did you mean 'TimeoutError'" in errors[1]["msg"]


def test_validation_without_import_checks_names_but_imports_nothing(
    tmp_path: Any, monkeypatch: Any
) -> None:
    """With the no-import context (what check --no-build, explain and config show use) a
    dotted name is not imported; building the component imports and resolves it."""
    from callpyback._builtin_options import NO_IMPORT

    (tmp_path / "exc_marker_mod.py").write_text(
        "import sys\nsys.modules['exc_marker_ran'] = sys\nclass Oops(Exception):\n    pass\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = plugins.get_registry().get("error_handler", "retry")
    options = {"attempts": 2, "exceptions": ["exc_marker_mod.Oops"]}
    try:
        spec.validate(options, context={NO_IMPORT: True})
        assert "exc_marker_ran" not in sys.modules
        handler = spec.create(options)
        assert "exc_marker_ran" in sys.modules
        assert handler.exceptions[0].__name__ == "Oops"
    finally:
        for name in ("exc_marker_ran", "exc_marker_mod"):
            sys.modules.pop(name, None)
