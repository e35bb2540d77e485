"""callpyback.testing.capture(): what it records, from which pipelines, and its assertions."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from callpyback import CallPyBack, ExecutionState, on_success
from callpyback.handlers import RetryHandler
from callpyback.testing import called, capture, use_config
from tests.autoinstrument_support import Packages, packages_in

S = ExecutionState
HERE = __name__


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Packages]:
    yield from packages_in(tmp_path)


def flaky_until(n: int) -> Any:
    calls = {"n": 0}

    def flaky(x: int, y: int = 2) -> int:
        calls["n"] += 1
        if calls["n"] < n:
            raise ConnectionError(f"attempt {calls['n']}")
        return x + y

    return flaky


def test_a_record_holds_target_arguments_outcome_attempts_duration_states_and_pipeline() -> None:
    """Each record: target, args/kwargs/bound arguments, value, attempts, duration, states."""
    deco = CallPyBack(error_handlers=[RetryHandler(3, backoff=0, jitter=None)], name="payments")
    charge = deco(flaky_until(3))
    with capture() as calls:
        assert charge(1, y=5) == 6
    [call] = calls
    assert call.target == f"{HERE}:flaky_until.<locals>.flaky"
    assert call.pipeline == "payments"
    assert call.arguments == {"x": 1, "y": 5}
    assert (call.args, call.kwargs) == ((1, 5), {})  # as the function receives them
    assert (call.outcome, call.value, call.attempts) == ("success", 6, 3)
    assert [str(e) for e in call.exceptions] == ["attempt 1", "attempt 2"]
    assert call.exception is None  # the call succeeded in the end
    assert call.duration is not None and call.duration >= 0
    assert call.states == [
        S.PRE_EXECUTION,
        S.POST_FAILURE,
        S.POST_FAILURE,
        S.POST_SUCCESS,
        S.COMPLETED,
    ]
    assert call.thread == threading.current_thread().name


def test_failure_recovery_and_interruption_are_recorded_without_changing_the_call() -> None:
    """The same exception object reaches the caller; a recovery's value and handler are kept."""
    error = ValueError("bad amount")

    @CallPyBack
    def fails() -> None:
        raise error

    @CallPyBack(default_return=0)
    def recovers() -> int:
        raise KeyError("missing")

    @CallPyBack
    def interrupted() -> None:
        raise KeyboardInterrupt

    with capture() as calls:
        with pytest.raises(ValueError) as info:
            fails()
        assert recovers() == 0
        with pytest.raises(KeyboardInterrupt):
            interrupted()
    assert info.value is error
    assert [c.outcome for c in calls] == ["failure", "recovered", "interrupted"]
    assert calls[0].exception is error and calls[0].states[-1] is S.COMPLETED
    assert calls[1].value == 0 and calls[1].recovered_by is not None
    assert calls[2].states == [S.PRE_EXECUTION, S.ERROR]


def test_sees_pipelines_compiled_and_called_before_it_started() -> None:
    """A decorator made (and its function called) before the capture is captured too."""
    seen: list[int] = []

    @CallPyBack(observers=[on_success(lambda value: seen.append(value))])
    def double(x: int) -> int:
        return 2 * x

    @CallPyBack  # an empty pipeline: a passthrough until the capture needs it
    def plain(x: int) -> int:
        return x

    assert double(1) == 2 and plain(1) == 1
    with capture() as calls:
        assert double(2) == 4 and plain(3) == 3
    assert calls.outcomes() == {
        f"{HERE}:{double.__qualname__}": ["success"],
        f"{HERE}:{plain.__qualname__}": ["success"],
    }
    assert seen == [2, 4]  # the decorator's own observer still runs, once per call


def test_nothing_stays_attached_after_the_block() -> None:
    """After the block the pipelines are what they were: an empty one is a passthrough again."""

    @CallPyBack
    def plain(x: int) -> int:
        return x

    deco = plain.__callpyback__  # type: ignore[attr-defined]
    assert deco.pipeline is None
    with capture() as calls:
        assert deco.pipeline is not None
        plain(1)
    assert deco.pipeline is None
    plain(2)
    assert len(calls) == 1


def test_sees_functions_the_import_hook_instrumented_before_it_started(packages: Packages) -> None:
    """Functions instrumented in place by callpyback.toml, imported before the capture."""
    packages.write("{p}shop/__init__.py")
    packages.write("{p}shop/cart.py", "def add(item, qty=1):\n    return [item] * qty\n")
    mod = packages.name("shop")
    toml = f'[[pipelines]]\nname = "shop"\nmatch = ["{mod}.*"]\nobservers = ["metrics"]\n'
    with use_config(toml):
        cart = __import__(f"{mod}.cart", fromlist=["add"])
        cart.add("a")
        with capture() as calls:
            assert cart.add("b", qty=2) == ["b", "b"]
    calls.assert_called(f"{mod}.cart:add", arguments={"item": "b", "qty": 2}, pipeline="shop")
    assert len(calls) == 1


def test_integration_targets_are_captured_under_their_own_target() -> None:
    """``deco.observe(func, target=...)`` (what the web and db plugins use)."""
    deco = CallPyBack(name="web")
    view = deco.observe(lambda order_id: {"id": order_id}, target="http:GET /orders/{id}")
    with capture() as calls:
        view(7)
    calls.assert_called("http:GET /orders/{id}", outcome="success", value={"id": 7})
    calls.assert_called("http:GET *")


def test_calls_from_threads_and_asyncio_tasks_started_in_the_block() -> None:
    """Every thread and task: the capture is process-wide while it is active."""

    @CallPyBack
    def work(n: int) -> int:
        return n

    @CallPyBack
    async def awork(n: int) -> int:
        await asyncio.sleep(0)
        return n

    async def main() -> None:
        await asyncio.gather(*(asyncio.create_task(awork(i), name=f"t{i}") for i in range(3)))

    with capture() as calls:
        threads = [threading.Thread(target=work, args=(i,), name=f"w{i}") for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        asyncio.run(main())
    work_calls = calls.for_target(f"{HERE}:{work.__qualname__}")
    assert sorted(c.thread for c in work_calls) == ["w0", "w1", "w2"]
    tasks = calls.for_target(f"{HERE}:{awork.__qualname__}")
    assert sorted(c.task or "" for c in tasks) == ["t0", "t1", "t2"]
    assert {c.value for c in tasks} == {0, 1, 2}


def test_background_pipelines_are_recorded_on_the_callers_thread() -> None:
    """A decorator whose observers run on the background worker still records synchronously."""

    @CallPyBack(enable_async_observers=True, observers=[on_success(lambda: None)])
    def bg(x: int) -> int:
        return x

    with capture() as calls:
        bg(1)
        assert calls.outcomes() == {f"{HERE}:{bg.__qualname__}": ["success"]}  # no waiting
    assert calls[0].thread == threading.current_thread().name


def test_generators_are_one_call_each_ending_when_exhausted_or_closed() -> None:
    @CallPyBack
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    with capture() as calls:
        assert list(numbers(3)) == [0, 1, 2]
        gen = numbers(5)
        next(gen)
        assert calls[-1].outcome is None and not calls[-1].finished  # still running
        gen.close()
    assert [c.outcome for c in calls] == ["success", "cancelled"]


def test_captures_nest_and_each_sees_the_calls_of_its_own_block() -> None:
    @CallPyBack
    def f(x: int) -> int:
        return x

    with capture() as outer:
        f(1)
        with capture() as inner:
            f(2)
        f(3)
    assert [c.value for c in outer] == [1, 2, 3]
    assert [c.value for c in inner] == [2]


def test_a_call_already_running_when_the_block_began_is_not_recorded() -> None:
    """A generator started before the block keeps the pipeline it started with."""

    @CallPyBack
    def numbers() -> Iterator[int]:
        yield 1
        yield 2

    gen = numbers()
    next(gen)
    with capture() as calls:
        assert list(gen) == [2]
        assert list(numbers()) == [1, 2]
    assert [c.states[0] for c in calls] == [S.PRE_EXECUTION]


def test_a_decorator_made_inside_the_block_is_captured() -> None:
    with capture() as calls:

        @CallPyBack
        def late(x: int) -> int:
            return x

        late(4)
    calls.assert_called(f"{HERE}:{late.__qualname__}", value=4)


# --- queries and assertions ---------------------------------------------------------------------


@pytest.fixture
def shop_calls() -> Iterator[Any]:
    @CallPyBack(name="cart")
    def add(item: str, qty: int = 1) -> str:
        if qty < 1:
            raise ValueError(f"qty must be >= 1, got {qty}")
        return item

    @CallPyBack(name="cart")
    def checkout() -> str:
        return "ok"

    with capture() as calls:
        add("apple")
        with pytest.raises(ValueError):
            add("pear", qty=0)
        checkout()
    yield calls


ADD = f"{HERE}:shop_calls.<locals>.add"
CHECKOUT = f"{HERE}:shop_calls.<locals>.checkout"


def test_queries(shop_calls: Any) -> None:
    assert shop_calls.targets() == [ADD, CHECKOUT]
    assert shop_calls.outcomes() == {ADD: ["success", "failure"], CHECKOUT: ["success"]}
    assert shop_calls.outcomes(ADD) == {ADD: ["success", "failure"]}
    assert [c.arguments["item"] for c in shop_calls.for_target(ADD)] == ["apple", "pear"]
    assert len(shop_calls.for_target(f"{HERE}:shop_calls.<locals>.*")) == 3
    shop_calls.clear()
    assert len(shop_calls) == 0


def test_assert_called_filters(shop_calls: Any) -> None:
    [failed] = shop_calls.assert_called(
        ADD, outcome="failure", exception=ValueError, match=r"qty must be >= 1"
    )
    assert failed.arguments == {"item": "pear", "qty": 0}
    shop_calls.assert_called(ADD, args=("apple", 1), kwargs={}, value="apple", attempts=1)
    shop_calls.assert_called(ADD, times=2)
    shop_calls.assert_called(ADD, where=lambda call: call.arguments["qty"] == 0)
    shop_calls.assert_not_called(CHECKOUT, outcome="failure")
    shop_calls.assert_not_called(f"{HERE}:refund")


def test_expectations_compose(shop_calls: Any) -> None:
    ok, fail = called(ADD, outcome="success"), called(ADD, outcome="failure")
    shop_calls.assert_called(ok >> fail >> called(CHECKOUT))
    shop_calls.assert_called(called(CHECKOUT) & ok)  # any order
    shop_calls.assert_called(called(f"{HERE}:refund") | called(CHECKOUT))
    shop_calls.assert_called(called(ADD) & called(ADD))  # two distinct calls
    shop_calls.assert_not_called(called(ADD) & called(ADD) & called(ADD))
    shop_calls.assert_not_called(called(CHECKOUT) >> ok)
    assert repr(ok >> (fail | called(CHECKOUT))) == (
        f"called({ADD!r}, outcome='success') >> "
        f"(called({ADD!r}, outcome='failure') | called({CHECKOUT!r}))"
    )


def test_a_mismatch_says_why_for_each_call_of_the_target(shop_calls: Any) -> None:
    with pytest.raises(AssertionError) as info:
        shop_calls.assert_called(ADD, outcome="failure", attempts=3)
    assert str(info.value) == (
        f"callpyback: no captured calls satisfy called({ADD!r}, outcome='failure', attempts=3)\n"
        f"calls of {ADD} (2):\n"
        f"  #1 {ADD}(item='apple', qty=1) success -> 'apple' [1 attempt, "
        f"{shop_calls[0].duration:.6g}s, pipeline 'cart']\n"
        "      not a match: outcome 'success' (expected 'failure'); attempts 1 (expected 3)\n"
        f"  #2 {ADD}(item='pear', qty=0) failure: ValueError('qty must be >= 1, got 0') "
        f"[1 attempt, {shop_calls[1].duration:.6g}s, pipeline 'cart']\n"
        "      not a match: attempts 1 (expected 3)"
    )


def test_a_target_never_called_gets_a_did_you_mean_and_the_whole_capture(shop_calls: Any) -> None:
    with pytest.raises(AssertionError) as info:
        shop_calls.assert_called(f"{HERE}:shop_calls.<locals>.checkuot")
    text = str(info.value)
    assert f"{HERE}:shop_calls.<locals>.checkuot was never called; did you mean {CHECKOUT!r}?" in (
        text
    )
    assert "captured calls (3):" in text and text.count("\n  #") == 3


def test_composed_failures_name_the_unmet_part_or_the_order(shop_calls: Any) -> None:
    with pytest.raises(AssertionError) as info:
        shop_calls.assert_called(called(ADD) >> called(CHECKOUT, outcome="failure"))
    assert f"unmet: called({CHECKOUT!r}, outcome='failure')" in str(info.value)
    assert "not a match: outcome 'success' (expected 'failure')" in str(info.value)
    with pytest.raises(AssertionError) as info:
        shop_calls.assert_called(called(CHECKOUT) >> called(ADD))
    assert "not in the order or number asked for" in str(info.value)


def test_times_and_not_called_messages(shop_calls: Any) -> None:
    with pytest.raises(AssertionError, match=r"expected 3 calls matching called\(.*captured 2"):
        shop_calls.assert_called(ADD, times=3)
    with pytest.raises(AssertionError) as info:
        shop_calls.assert_not_called(ADD, outcome="failure")
    assert "expected no call matching" in str(info.value) and "#2 " in str(info.value)


def test_bad_expectations_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'failure'"):
        called("m:f", outcome="failed")
    with pytest.raises(ValueError, match="positive int"):
        called("m:f", attempts=0)
    with pytest.raises(TypeError, match="exception class"):
        called("m:f", exception="ValueError")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="inside called"):
        capture().assert_called(called("m:f"), outcome="success")
    with pytest.raises(TypeError, match="compose with other expectations"):
        called("m:f") >> "m:g"  # type: ignore[operator]


def test_wait_for_a_call_made_by_a_thread() -> None:
    @CallPyBack
    def job() -> str:
        return "done"

    release = threading.Event()

    def worker() -> None:
        release.wait()
        job()

    with capture() as calls:
        t = threading.Thread(target=worker)
        t.start()
        release.set()
        [call] = calls.wait_for(f"{HERE}:{job.__qualname__}", outcome="success", timeout=30)
        t.join()
    assert call.value == "done"
    with pytest.raises(AssertionError, match=r"no captured calls within 0.01s satisfy"):
        calls.wait_for(f"{HERE}:never", timeout=0.01)


def test_await_for_a_call_made_by_another_task() -> None:
    @CallPyBack
    async def job() -> str:
        await asyncio.sleep(0)
        return "done"

    async def main() -> Any:
        with capture() as calls:
            task = asyncio.create_task(job())
            found = await calls.await_for(called(f"{HERE}:{job.__qualname__}"), timeout=30)
            await task
            return found

    [call] = asyncio.run(main())
    assert call.outcome == "success"
