"""Property: the wrapped function returns and raises exactly what the bare function does."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, List

from hypothesis import given, settings
from hypothesis import strategies as st

from callpyback import CallPyBack, create_callback_observer

INJECTABLE_SETS = st.lists(
    st.sampled_from(
        [
            "value",
            "result",
            "exception",
            "state",
            "context",
            "arguments",
            "metadata",
            "execution_time",
            "args",
            "kwargs",
        ]
    ),
    max_size=3,
    unique=True,
)


class Failure(Exception):
    pass


def make_observer(names: List[str], raises: bool, phases: List[str], sink: List[Any]) -> Any:
    params = ", ".join(names)
    src = f"def cb({params}):\n    sink.append(({params}{',' if names else ''}))\n"
    if raises:
        src += "    raise RuntimeError('observer failure')\n"
    ns: dict[str, Any] = {"sink": sink}
    exec(src, ns)
    return create_callback_observer(ns["cb"], phases=phases or None)


observer_specs = st.lists(
    st.tuples(
        INJECTABLE_SETS,
        st.booleans(),
        st.lists(
            st.sampled_from(["before_call", "after_success", "after_failure", "after_completion"]),
            max_size=2,
            unique=True,
        ),
    ),
    max_size=4,
)

outcomes = st.one_of(
    st.tuples(
        st.just("return"),
        st.one_of(
            st.integers(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=3)
        ),
    ),
    st.tuples(
        st.just("raise"), st.sampled_from([Failure, ValueError, KeyError, ZeroDivisionError])
    ),
    st.tuples(st.just("base"), st.sampled_from([KeyboardInterrupt, SystemExit])),
)


def bare_function(outcome: Any) -> Callable[..., Any]:
    kind, payload = outcome

    def f(*args: Any, **kwargs: Any) -> Any:
        if kind == "return":
            return payload
        raise payload("boom")

    return f


def run(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("returned", call())
    except BaseException as exc:
        return ("raised", (type(exc), exc.args))


@settings(max_examples=150, deadline=None)
@given(
    outcome=outcomes,
    specs=observer_specs,
    args=st.lists(st.integers(), max_size=3),
    kwargs=st.dictionaries(st.sampled_from(["a", "b", "self", "func"]), st.integers(), max_size=2),
)
def test_sync_transparency(
    outcome: Any, specs: Any, args: list[int], kwargs: dict[str, int]
) -> None:
    """For any observers (including ones that raise), returns and raises are unchanged."""
    sink: list[Any] = []
    observers = [make_observer(n, r, p, sink) for n, r, p in specs]
    f = bare_function(outcome)
    wrapped = CallPyBack(observers=observers, max_observer_failures=None)(f)
    assert run(lambda: wrapped(*args, **kwargs)) == run(lambda: f(*args, **kwargs))


@settings(max_examples=60, deadline=None)
@given(outcome=outcomes, specs=observer_specs)
def test_async_transparency(outcome: Any, specs: Any) -> None:
    """The same for coroutine functions."""
    sink: list[Any] = []
    observers = [make_observer(n, r, p, sink) for n, r, p in specs]
    f = bare_function(outcome)

    async def af(*a: Any, **k: Any) -> Any:
        return f(*a, **k)

    wrapped = CallPyBack(observers=observers, max_observer_failures=None)(af)
    assert run(lambda: asyncio.run(wrapped(1))) == run(lambda: asyncio.run(af(1)))


@settings(max_examples=60, deadline=None)
@given(outcome=outcomes, specs=observer_specs, n=st.integers(min_value=0, max_value=4))
def test_generator_transparency(outcome: Any, specs: Any, n: int) -> None:
    """The same for generators: items, return value and exception."""
    sink: list[Any] = []
    observers = [make_observer(names, r, p, sink) for names, r, p in specs]
    f = bare_function(outcome)

    def gen() -> Any:
        yield from range(n)
        return f()

    wrapped = CallPyBack(observers=observers, max_observer_failures=None)(gen)

    def drain(g: Any) -> Any:
        items: list[int] = []
        try:
            while True:
                items.append(next(g))
        except StopIteration as stop:
            return items, stop.value

    assert run(lambda: drain(wrapped())) == run(lambda: drain(gen()))
