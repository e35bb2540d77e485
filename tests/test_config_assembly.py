"""From config to decorators: what wrapper_for builds, and that calls really go through it."""

from __future__ import annotations

import threading

import pytest

from callpyback import CallPyBack, MockTimeSource
from callpyback.cli._render import explain
from callpyback.config import ConfigError, load_text
from callpyback.config._config import MISSING
from tests.config_helpers import (
    FallbackHandler,
    NoOpExtractor,
    RecordingObserver,
    RetryHandler,
    make_registry,
)

CONFIG = """
version = 1
[settings]
max_observer_failures = 4

[observers.audit]
type = "recording"
label = "audit"
priority = 10

[error_handlers.retry_twice]
type = "retry"
attempts = 2

[time_sources.clock]
type = "mock"
initial = 100.0

[[pipelines]]
name = "payments"
match = ["shop.payments"]
observers = ["audit", {type = "recording", label = "local"}]
error_handlers = ["retry_twice", {type = "fallback", value = -1}]
time_source = "clock"
variables = ["amount"]
variable_extractor = "noop"

[[pipelines]]
name = "cart"
match = ["shop.cart:Cart"]
observers = ["audit"]
default_return = 0
exception_classes = ["ZeroDivisionError", "KeyError"]

[[pipelines]]
name = "quiet"
match = ["shop"]
"""


@pytest.fixture
def config():  # type: ignore[no-untyped-def]
    return load_text(CONFIG, file="shop.toml", registry=make_registry(), env={})


def test_wrapper_for_builds_a_real_callpyback(config) -> None:  # type: ignore[no-untyped-def]
    """The decorator carries the pipeline's components, in order, with its settings."""
    deco = config.wrapper_for("shop.payments", "charge")
    assert isinstance(deco, CallPyBack)
    assert deco.name == "payments"
    assert deco.max_observer_failures == 4
    assert [o.label for o in deco.observers] == ["audit", "local"]  # priority 10 runs first
    handlers = deco.chain.handlers
    assert isinstance(handlers[0], RetryHandler) and handlers[0].attempts == 2
    assert isinstance(handlers[1], FallbackHandler) and handlers[1].value == -1
    assert isinstance(deco.time_source, MockTimeSource)
    assert deco.time_source.now() == 100.0
    assert isinstance(deco.variable_extractor, NoOpExtractor)
    assert deco.variable_names == ("amount",)


def test_one_decorator_per_pipeline_and_one_instance_per_name(config) -> None:  # type: ignore[no-untyped-def]
    """Functions of a pipeline share its decorator; a named component is shared by pipelines."""
    a = config.wrapper_for("shop.payments", "charge")
    b = config.wrapper_for("shop.payments.card", "refund")
    cart = config.wrapper_for("shop.cart", "Cart.add")
    assert a is b
    assert cart is not a
    audit = next(o for o in a.observers if o.label == "audit")
    assert audit in cart.observers


def test_calls_flow_through_the_configured_pipeline(config) -> None:  # type: ignore[no-untyped-def]
    """A wrapped function retries, then falls back, and the observers see every state."""
    deco = config.wrapper_for("shop.payments", "charge")
    attempts = []

    @deco
    def charge(amount: int) -> int:
        attempts.append(amount)
        raise ConnectionError("down")

    assert charge(5) == -1
    assert attempts == [5, 5]
    audit = next(o for o in deco.observers if o.label == "audit")
    states = [s for s, _ in audit.events]
    assert states[0] == "PRE_EXECUTION"
    assert states[-1] == "COMPLETED"
    assert states.count("POST_FAILURE") == 2


def test_default_return_and_exception_classes(config) -> None:  # type: ignore[no-untyped-def]
    """default_return recovers exactly the listed exception classes."""
    deco = config.wrapper_for("shop.cart", "Cart.total")

    class Cart:
        @deco
        def total(self, key: str) -> int:
            return {"a": 1}[key] // (0 if key == "a" else 1)

    assert Cart().total("a") == 0  # ZeroDivisionError recovered
    assert Cart().total("b") == 0  # KeyError recovered
    deco2 = config.wrapper_for("shop.cart", "Cart.other")
    assert deco2 is deco


def test_empty_pipeline_opts_out(config) -> None:  # type: ignore[no-untyped-def]
    """A matching pipeline with nothing in it means: leave the function alone."""
    match = config.pipeline_for("shop.misc:helper")
    assert match is not None and match.pipeline.name == "quiet" and match.pipeline.is_empty
    assert config.wrapper_for("shop.misc", "helper") is None
    assert config.wrapper_for("elsewhere", "f") is None
    assert "deliberately not wrapped" in explain(config, "shop.misc:helper")


def test_disabled_pipeline_is_not_applied() -> None:
    """enabled = false on a pipeline keeps its functions unwrapped (and claims them)."""
    config = load_text(
        '[[pipelines]]\nmatch = ["a"]\nenabled = false\nobservers = ["metrics"]\n'
        '[[pipelines]]\nmatch = ["a"]\nobservers = ["metrics"]\n',
        registry=make_registry(),
        env={},
    )
    assert config.pipeline_for("a:f").index == 0
    assert config.wrapper_for("a", "f") is None


def test_extends_inherits_unset_keys() -> None:
    """A pipeline that extends another takes the keys it does not set from it (transitively)."""
    config = load_text(
        """
        [[pipelines]]
        name = "base"
        match = ["base"]
        observers = ["metrics"]
        error_handlers = [{type = "fallback", value = 1}]
        default_return = 7
        [[pipelines]]
        name = "mid"
        extends = "base"
        match = ["mid"]
        observers = [{type = "recording", label = "mid"}]
        [[pipelines]]
        name = "leaf"
        extends = "mid"
        match = ["leaf"]
        default_return = 9
        """.replace("\n        ", "\n"),
        registry=make_registry(),
        env={},
    )
    base, mid, leaf = config.pipelines
    assert [r.type for r in mid.observers] == ["recording"]
    assert mid.error_handlers == base.error_handlers
    assert mid.default_return == 7
    assert leaf.observers == mid.observers
    assert leaf.default_return == 9
    assert leaf.match == ("leaf",)
    assert config.pipelines[0].default_return is not MISSING


def test_settings_defaults_apply_to_pipelines() -> None:
    """settings.time_source is the clock of every pipeline that names none."""
    config = load_text(
        '[settings]\ntime_source = "mock"\n[[pipelines]]\nmatch = ["a"]\nobservers = ["metrics"]\n',
        registry=make_registry(),
        env={},
    )
    assert isinstance(config.wrapper_for("a", "f").time_source, MockTimeSource)


def test_factory_failure_is_a_located_config_error() -> None:
    """A component whose factory raises becomes a ConfigError naming the key and line."""
    from callpyback._registry import ComponentSpec

    def broken() -> None:
        raise OSError("cannot open audit log")

    registry = make_registry()
    registry.add(ComponentSpec("observer", "broken", broken, None))
    config = load_text(
        '[[pipelines]]\nmatch = ["a"]\nobservers = ["broken"]\n',
        file="x.toml",
        registry=registry,
        env={},
    )
    with pytest.raises(ConfigError) as info:
        config.wrapper_for("a", "f")
    (problem,) = info.value.problems
    assert problem.line == 3 and problem.key == "pipelines[0].observers[0]"
    assert "cannot open audit log" in problem.message


def test_unresolvable_exception_class_at_build() -> None:
    """A dotted exception name that cannot be imported is reported when the pipeline is built."""
    config = load_text(
        '[[pipelines]]\nmatch = ["a"]\ndefault_return = 0\n'
        'exception_classes = ["no_such_pkg_zz.Error"]\n',
        file="x.toml",
        registry=make_registry(),
        env={},
    )
    with pytest.raises(ConfigError, match=r"no_such_pkg_zz\.Error"):
        config.wrapper_for("a", "f")
    ok = load_text(
        '[[pipelines]]\nmatch = ["a"]\ndefault_return = 0\n'
        'exception_classes = ["json.JSONDecodeError"]\n',
        registry=make_registry(),
        env={},
    )
    import json

    assert ok.wrapper_for("a", "f").exception_classes == (json.JSONDecodeError,)


def test_concurrent_wrapper_for_builds_once(config) -> None:  # type: ignore[no-untyped-def]
    """Threads asking at once all get the same decorator, and named components are built once."""
    built = []
    from callpyback._registry import ComponentSpec

    registry = make_registry()
    registry.add(
        ComponentSpec(
            "observer", "counted", lambda: built.append(1) or RecordingObserver("c"), None
        )
    )
    cfg = load_text(
        '[observers.c]\ntype = "counted"\n'
        '[[pipelines]]\nmatch = ["a"]\nobservers = ["c"]\n'
        '[[pipelines]]\nmatch = ["b"]\nobservers = ["c"]\n',
        registry=registry,
        env={},
    )
    results = []
    barrier = threading.Barrier(8)

    def worker(module: str) -> None:
        barrier.wait()
        results.append(cfg.wrapper_for(module, "f"))

    threads = [threading.Thread(target=worker, args=("ab"[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 2
    assert built == [1]
