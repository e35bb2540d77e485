"""callpyback.testing.reset(): back to a fresh process's state, without importing anything new."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from callpyback import CallPyBack, on_completion, plugins, state
from callpyback import autoinstrument as auto
from callpyback import config as config_module
from callpyback.handlers import CircuitBreakerHandler, CircuitOpenError
from callpyback.hookspecs import hookimpl
from callpyback.testing import reset, use_config
from tests.autoinstrument_support import Packages, packages_in


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Packages]:
    yield from packages_in(tmp_path)


def test_breakers_are_closed_and_zeroed() -> None:
    handler = CircuitBreakerHandler("test-testing-reset", failure_threshold=1)

    @CallPyBack(error_handlers=[handler])
    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        down()
    with pytest.raises(CircuitOpenError):
        down()
    reset()
    assert handler.breaker.state.value == "closed"
    assert (handler.breaker.stats.failures, handler.breaker.stats.rejected) == (0, 0)


def test_the_import_hook_is_uninstalled_and_functions_restored(packages: Packages) -> None:
    packages.write("{p}app.py", "def f():\n    return 1\n")
    mod = packages.name("app")
    app = __import__(mod)
    original = app.f.__code__
    auto.install(
        config_module.load_text(f'[[pipelines]]\nmatch = ["{mod}"]\nobservers = ["metrics"]\n')
    )
    assert auto.is_installed() and app.f.__code__ is not original
    reset()
    assert not auto.is_installed() and app.f.__code__ is original


def test_plugin_registry_and_current_config_are_forgotten() -> None:
    class Extra:
        @hookimpl
        def callpyback_register_components(self, registry: Any) -> None:
            registry.observer("resettest.noop", lambda: on_completion(lambda: None))

    plugins.register_plugin(Extra(), "resettest")
    config_module.configure({"version": 1})
    assert "resettest.noop" in plugins.get_registry().names("observer")
    assert config_module.current_config() is not None
    reset()
    assert "resettest.noop" not in plugins.get_registry().names("observer")
    assert config_module.current_config() is None


def test_the_state_backend_goes_back_to_the_process() -> None:
    class Backend(state.MemoryBackend):
        name = "test-reset"

    state.use(Backend())
    reset()
    assert state.current() is state.MEMORY


def test_background_queues_are_drained_or_the_timeout_is_reported() -> None:
    gate = threading.Event()
    done: list[int] = []

    def slow(value: Any) -> None:
        gate.wait(30)
        done.append(value)

    @CallPyBack(observers=[on_completion(slow, background=True)])
    def f(x: int) -> int:
        return x

    f(1)
    with pytest.raises(TimeoutError, match="background observers did not finish their queue"):
        reset(flush_timeout=0.05)
    gate.set()
    f(2)
    reset()
    assert done == [1, 2]


def test_use_config_restores_an_installation_that_was_there_before(packages: Packages) -> None:
    packages.write("{p}one.py", "def f():\n    return 1\n")
    mod = packages.name("one")
    first = config_module.load_text(f'[[pipelines]]\nmatch = ["{mod}"]\nobservers = ["metrics"]\n')
    try:
        auto.install(first)
        with use_config('[[pipelines]]\nmatch = ["nothing.here"]\nobservers = ["metrics"]\n'):
            assert auto._current().selector is not first  # type: ignore[union-attr]
        assert auto._current().selector is first  # type: ignore[union-attr]
    finally:
        auto.uninstall()


def test_reset_imports_nothing_that_was_not_used() -> None:
    """A process that never loaded config or plugins does not load pydantic or pluggy to reset."""
    code = (
        "import sys, callpyback.testing as t\n"
        "t.reset()\n"
        "heavy = {'pydantic', 'pluggy', 'callpyback.plugins', 'callpyback.config._loader'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
