"""The compiled engine (``callpyback._speedups``) against the pure-Python one.

The differential property: for generated pipelines, functions and calls, a C wrapper and the
Python wrapper it stands for (its twin, built by the same engine for a pipeline of fresh, equal
observers) return and raise the same, notify the same observers with the same values, warn the
same and count the same metrics.  Plus: the fallback (``CALLPYBACK_PURE_PYTHON=1``, a missing
extension), ``callpyback --version``, transparency, and no reference growth under repeated calls.
"""

from __future__ import annotations

import gc
import inspect
import os
import pickle
import subprocess
import sys
import threading
import warnings
from typing import Any, Callable, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callpyback import (
    BaseObserver,
    CallPyBack,
    MetricsObserver,
    TimingObserver,
    _cengine,
    on_call,
    on_completion,
    on_failure,
    on_success,
)
from callpyback import ExecutionState as S

compiled = pytest.mark.skipif(
    not _cengine.active(), reason=f"the compiled engine is not active: {_cengine.ENGINE}"
)


# --- generated pipelines -------------------------------------------------------------------


class Noting(BaseObserver):
    """A fast-path observer (``notify`` with injection, optionally gated)."""

    def __init__(self, log: List[Any], gated: bool) -> None:
        super().__init__(states=[S.PRE_EXECUTION, S.POST_SUCCESS, S.COMPLETED])
        self.log = log
        if gated:
            self.gate = lambda args: bool(args) and args[0] % 2 == 0  # type: ignore[method-assign]

    def notify(self, state: S, outcome: Any, value: Any, attempt: int) -> None:
        self.log.append(("notify", state.name, outcome, value, attempt))


class Contextual(BaseObserver):
    """The general form: ``update(context)``."""

    def __init__(self, log: List[Any]) -> None:
        super().__init__(states=[S.POST_SUCCESS, S.COMPLETED])
        self.log = log

    def update(self, context: Any) -> None:
        self.log.append(
            (
                "update",
                context.state.name,
                context.outcome,
                context.value,
                context.execution_time is not None,
            )
        )


def _raiser(log: List[Any]) -> Callable[..., None]:
    def broken(value: Any) -> None:
        log.append(("broken", value))
        raise RuntimeError("observer failed")

    return broken


#: name -> factory(log) of one observer; both engines get their own, equal, instances
OBSERVERS: Dict[str, Callable[[List[Any]], Any]] = {
    "on_call": lambda log: on_call(lambda args, kwargs: log.append(("call", args, kwargs))),
    "on_success": lambda log: on_success(lambda result: log.append(("ok", result.value))),
    "value": lambda log: on_success(
        lambda value, execution_time: log.append(("value", value, execution_time is not None))
    ),
    "completion": lambda log: on_completion(
        lambda outcome, attempt: log.append(("done", outcome, attempt))
    ),
    "failure": lambda log: on_failure(lambda exception: log.append(("fail", repr(exception)))),
    "broken": lambda log: on_success(_raiser(log)),
    "noting": lambda log: Noting(log, gated=False),
    "gated": lambda log: Noting(log, gated=True),
    "context": lambda log: Contextual(log),
    "metrics": lambda log: MetricsObserver(),
    "timing": lambda log: TimingObserver(),
}


def body(mode: str) -> Callable[..., Any]:
    def f(a: int, b: int = 1, *rest: int, **kw: int) -> Any:
        if mode == "raise":
            raise ValueError(a, b)
        if mode == "keyerror" and a % 3 == 0:
            raise KeyError(a)
        return (a + b + sum(rest), sorted(kw.items()))

    return f


def pair(
    names: List[str], mode: str
) -> Tuple[Any, Any, List[Any], List[Any], List[Any], List[Any]]:
    """The C wrapper and its pure-Python twin over equal pipelines, with their logs."""
    from callpyback import _speedups  # type: ignore[attr-defined]

    logs: List[List[Any]] = [[], []]
    observers: List[List[Any]] = [[], []]
    wrappers = []
    for i in (0, 1):
        observers[i] = [OBSERVERS[n](logs[i]) for n in names]
        wrapper = CallPyBack(observers=observers[i])(body(mode))
        assert type(wrapper) is _speedups.ObservedFunction
        wrappers.append(wrapper if i == 0 else _speedups.twin_of(wrapper))
    return wrappers[0], wrappers[1], logs[0], logs[1], observers[0], observers[1]


def run(func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Any, ...]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out: Tuple[Any, ...] = ("return", func(*args, **kwargs))
        except BaseException as exc:
            out = ("raise", type(exc), exc.args)
    return (*out, tuple((w.category, str(w.message)) for w in caught))


def counters(observers: List[Any]) -> List[Any]:
    """What the built-in observers counted, without the durations (those differ)."""
    seen = []
    for o in observers:
        if isinstance(o, MetricsObserver):
            seen.append(
                {
                    k: {
                        f: v
                        for f, v in m.items()
                        if f in ("calls", "successes", "failures", "in_flight", "max_in_flight")
                    }
                    for k, m in o.get_metrics().items()
                }
            )
            seen.append({k: h.count for k in o.get_metrics() if (h := o.histogram(k))})
        elif isinstance(o, TimingObserver):
            seen.append(sorted(o.to_dict()) if hasattr(o, "to_dict") else None)
    return seen


calls = st.lists(
    st.tuples(
        st.lists(st.integers(-5, 20), min_size=0, max_size=4).map(tuple),
        st.dictionaries(st.sampled_from(["b", "x", "y", "a"]), st.integers(0, 9), max_size=2),
    ),
    min_size=1,
    max_size=6,
)


@compiled
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.sampled_from(sorted(OBSERVERS)), min_size=0, max_size=5),
    mode=st.sampled_from(["return", "raise", "keyerror"]),
    calls=calls,
)
def test_both_engines_agree(names: List[str], mode: str, calls: List[Any]) -> None:
    fast, pure, fast_log, pure_log, fast_obs, pure_obs = pair(names, mode)
    for args, kwargs in calls:
        assert run(fast, args, kwargs) == run(pure, args, kwargs)
    assert fast_log == pure_log
    assert counters(fast_obs) == counters(pure_obs)


@compiled
def test_plans_without_handlers_are_taken_by_c_and_handlers_are_not() -> None:
    from callpyback import RetryHandler, _speedups  # type: ignore[attr-defined]

    taken = CallPyBack(observers=[MetricsObserver(), on_success(lambda result: None)])(
        body("return")
    )
    assert _speedups.plan_of(taken) is not None
    retried = CallPyBack(error_handlers=[RetryHandler(2, backoff=0)])(body("return"))
    assert _speedups.plan_of(retried) is None  # the Python twin runs it, identically
    assert retried(1) == taken(1) == (2, [])


@compiled
def test_methods_bind_and_metrics_count_exactly_under_threads() -> None:
    metrics = MetricsObserver()
    deco = CallPyBack(observers=[metrics])

    class Box:
        def __init__(self) -> None:
            self.n = 0

        @deco
        def add(self, k: int) -> int:
            self.n += k
            return self.n

    box = Box()
    assert Box.add(box, 2) == 2 and box.add(3) == 5
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [
            threading.Thread(target=lambda: [box.add(0) for _ in range(2000)]) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    (stats,) = metrics.get_metrics().values()
    assert stats["calls"] == stats["successes"] == 2 + 8 * 2000
    assert metrics.histogram(next(iter(metrics.get_metrics()))).count == 2 + 8 * 2000


@CallPyBack(observers=[MetricsObserver()])
def plain(x: int, *, y: int = 2) -> int:
    """Doc of plain."""
    return x * y


@compiled
def test_transparency_of_the_c_wrapper() -> None:
    w = plain
    assert inspect.isfunction(w) and not inspect.iscoroutinefunction(w)
    assert (
        str(inspect.signature(w)) == "(x: 'int', *, y: 'int' = 2) -> 'int'"
    )  # postponed annotations
    assert (
        inspect.isfunction(w.__wrapped__) and w.__name__ == "plain" and w.__doc__ == "Doc of plain."
    )
    assert w.__qualname__ == "plain" and w.__module__ == __name__
    assert pickle.loads(pickle.dumps(w)) is w
    assert w(3) == 6 and w(3, y=3) == 9
    with pytest.raises(TypeError):
        w(1, 2)  # arity errors are raised before anything is notified, as the Python wrapper


@compiled
def test_recursion_depth_is_that_of_the_unwrapped_function() -> None:
    deco = CallPyBack(observers=[MetricsObserver()])

    ref: Dict[str, Any] = {}

    def depth(n: int) -> int:
        return 0 if n == 0 else 1 + ref["f"](n - 1)  # through the wrapper when it is one

    def deepest() -> int:
        lo, hi = 1, 100_000
        while lo < hi:
            mid = (lo + hi + 1) // 2
            try:
                ref["f"](mid)
                lo = mid
            except RecursionError:
                hi = mid - 1
        return lo

    ref["f"] = depth
    plain_depth = deepest()
    ref["f"] = observed = deco(depth)
    assert deepest() >= 0.9 * plain_depth
    assert observed(50) == 50


@compiled
def test_no_reference_growth_over_repeated_calls() -> None:
    ok = CallPyBack(observers=[MetricsObserver(), on_success(lambda result: None)])(body("return"))
    bad = CallPyBack(observers=[on_completion(lambda outcome: None)])(body("raise"))

    def burst() -> None:
        for i in range(2000):
            ok(i, 2, 3, x=1)
            with pytest.raises(ValueError):
                bad(i)

    burst()
    gc.collect()
    before = len(gc.get_objects())
    refs = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else None
    burst()
    gc.collect()
    assert len(gc.get_objects()) - before < 50
    if refs is not None:  # a debug build
        assert sys.gettotalrefcount() - refs < 200


# --- the fallback ------------------------------------------------------------------------------

PROBE = """
import callpyback, types
from callpyback import CallPyBack, MetricsObserver, _cengine
m = MetricsObserver()
f = CallPyBack(observers=[m])(lambda x: x + 1)
assert f(1) == 2 and type(f) is types.FunctionType, type(f)
assert m.get_metrics()[next(iter(m.get_metrics()))]["calls"] == 1
print(_cengine.ENGINE)
"""


def probe(env: Dict[str, str], prelude: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-c", prelude + PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_pure_python_when_disabled_by_the_environment() -> None:
    assert probe({"CALLPYBACK_PURE_PYTHON": "1"}) == ("pure Python (CALLPYBACK_PURE_PYTHON is set)")


def test_pure_python_when_the_extension_is_missing() -> None:
    # What a machine without a C compiler installs: no callpyback._speedups at all.
    out = probe(
        {"CALLPYBACK_PURE_PYTHON": ""}, "import sys; sys.modules['callpyback._speedups'] = None\n"
    )
    assert out.startswith("pure Python (the compiled extension is not installed")


def test_version_says_which_engine() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "callpyback", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CALLPYBACK_PURE_PYTHON": "1"},
    )
    assert out.stdout.splitlines()[1] == "engine: pure Python (CALLPYBACK_PURE_PYTHON is set)"
    out = subprocess.run(
        [sys.executable, "-m", "callpyback", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines()[1] == f"engine: {_cengine.ENGINE}"


@compiled
@pytest.mark.parametrize(
    "engine",
    [
        "compiled",
        "pure",
    ],
)
def test_failures_at_the_recursion_limit_are_each_notified_once(engine: str) -> None:
    """Unbounded recursion through the wrapper: every level fails with RecursionError, its
    failure step starting at every possible stack depth (some with no room even to start:
    ``_cengine.failed`` defers those, as the Python template does).  Each call is notified as
    one failure, once, and none stays in flight."""
    from callpyback import _speedups  # type: ignore[attr-defined]

    old = sys.getrecursionlimit()
    try:
        for limit in range(300, 340):
            log: List[Any] = []
            metrics = MetricsObserver()
            ref: Dict[str, Any] = {}

            def down(n: int, ref: Dict[str, Any] = ref) -> Any:
                return ref["f"](n + 1)

            w = CallPyBack(
                observers=[
                    on_failure(lambda exception, log=log: log.append(type(exception).__name__)),
                    on_completion(lambda outcome, log=log: log.append(outcome)),
                    metrics,
                ]
            )(down)
            ref["f"] = w if engine == "compiled" else _speedups.twin_of(w)
            sys.setrecursionlimit(limit)
            try:
                ref["f"](0)
            except RecursionError:
                pass
            finally:
                sys.setrecursionlimit(old)
            ref["f"] = lambda n: n
            w(0)  # a later call runs what was deferred
            (stats,) = metrics.get_metrics().values()
            calls = stats["calls"] - 1
            assert stats["failures"] == calls == log.count("RecursionError") > 0
            assert log.count("failure") == calls and stats["in_flight"] == 0
    finally:
        sys.setrecursionlimit(old)


@compiled
@pytest.mark.parametrize("inner_engine", ["compiled", "pure"])
@pytest.mark.parametrize("outer_engine", ["compiled", "pure"])
def test_reentrancy_guard_is_shared_by_both_engines(outer_engine: str, inner_engine: str) -> None:
    """An observer calling an observed function is not told about that call (no feedback
    loop), whichever engine runs the outer call and the inner one: one registry per thread."""
    from callpyback import _engine, _speedups  # type: ignore[attr-defined]

    seen: List[Any] = []
    inside: List[bool] = []

    def observe(value: Any) -> None:
        seen.append(value)
        inside.append(_engine.in_observer())
        if value == "outer":
            inner()

    deco = CallPyBack(observers=[on_success(observe)])
    outer_w = deco(lambda: "outer")
    inner_w = deco(lambda: "inner")
    outer = outer_w if outer_engine == "compiled" else _speedups.twin_of(outer_w)
    inner = inner_w if inner_engine == "compiled" else _speedups.twin_of(inner_w)
    assert outer() == "outer" and seen == ["outer"] and inside == [True]
    assert not _engine.in_observer() and len(_engine._TL.a) == 0
    assert inner() == "inner" and seen == ["outer", "inner"]
