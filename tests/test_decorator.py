"""The decorator's API: forms of use, preserved metadata, argument handling and bad input."""

from __future__ import annotations

import asyncio
import functools
import inspect
import pickle
from typing import Any

import pytest

import callpyback
from callpyback import CallPyBack, ConfigurationError, on_call, on_success


@CallPyBack
def module_level(a: int, b: int = 2) -> int:
    """Adds."""
    return a + b


@CallPyBack(observers=[on_success(lambda value: None)])
async def module_coroutine(x: int) -> int:
    return x


@CallPyBack(observers=[on_success(lambda value: None)])
def module_generator(n: int) -> Any:
    yield from range(n)


@CallPyBack(observers=[on_success(lambda value: None)])
async def module_async_generator(n: int) -> Any:
    for i in range(n):
        yield i


def test_bare_and_called_forms() -> None:
    """@CallPyBack and @CallPyBack() both decorate; the lowercase alias is the same class."""
    assert module_level(1) == 3
    assert isinstance(module_level.__callpyback__, CallPyBack)

    @CallPyBack()
    def f() -> int:
        return 1

    assert f() == 1
    assert callpyback.callpyback is CallPyBack


def test_metadata_is_preserved() -> None:
    """functools.wraps metadata, __wrapped__ and the signature survive wrapping."""
    assert module_level.__name__ == "module_level"
    assert module_level.__qualname__ == "module_level"
    assert module_level.__doc__ == "Adds."
    assert module_level.__module__ == __name__
    assert inspect.signature(module_level) == inspect.signature(module_level.__wrapped__)
    assert list(inspect.signature(module_level).parameters) == ["a", "b"]


def test_function_kinds_are_preserved() -> None:
    """Coroutine, generator and async-generator functions stay what they were."""
    assert inspect.iscoroutinefunction(module_coroutine)
    assert inspect.isgeneratorfunction(module_generator)
    assert inspect.isasyncgenfunction(module_async_generator)
    assert inspect.isfunction(module_level)
    assert asyncio.run(module_coroutine(4)) == 4
    assert list(module_generator(3)) == [0, 1, 2]


def test_pickling_by_reference() -> None:
    """A wrapped module-level function pickles by reference and unpickles to itself."""
    for f in (module_level, module_coroutine, module_generator):
        assert pickle.loads(pickle.dumps(f)) is f


def test_caller_arguments_are_passed_as_given() -> None:
    """Positional-only parameters, *args and **kwargs of any name reach the function unchanged."""
    seen: list[dict[str, Any]] = []

    @CallPyBack(observers=[on_call(lambda arguments: seen.append(dict(arguments)))])
    def f(a: int, /, b: int, *rest: int, self: int = 0, **extra: Any) -> tuple[Any, ...]:
        return (a, b, rest, self, extra)

    assert f(1, 2, 3, 4, self=5, cls=6, a=7) == (1, 2, (3, 4), 5, {"cls": 6, "a": 7})
    assert seen == [{"a": 1, "b": 2, "rest": (3, 4), "self": 5, "extra": {"cls": 6, "a": 7}}]


def test_arguments_bound_only_when_read() -> None:
    """Without an observer reading ``arguments``, nothing is bound (a bad call fails as usual)."""

    @CallPyBack(observers=[on_success(lambda value: None)])
    def f(a: int) -> int:
        return a

    with pytest.raises(TypeError):
        f(1, 2)  # type: ignore[call-arg]


def test_arguments_apply_defaults_and_are_read_only() -> None:
    """context.arguments has defaults applied and cannot be modified."""
    got: list[Any] = []

    @CallPyBack(observers=[on_call(lambda arguments: got.append(arguments))])
    def f(a: int, b: int = 5) -> int:
        return a + b

    f(1)
    assert dict(got[0]) == {"a": 1, "b": 5}
    with pytest.raises(TypeError):
        got[0]["a"] = 3


def test_methods_see_self() -> None:
    """A method's observers see ``self`` among the arguments."""
    got: list[Any] = []

    class K:
        @CallPyBack(observers=[on_call(lambda arguments: got.append(dict(arguments)))])
        def m(self, x: int) -> int:
            return x

    k = K()
    assert k.m(3) == 3
    assert got == [{"self": k, "x": 3}]


def test_one_instance_decorates_many_functions() -> None:
    """Observers of one instance see calls of every function it decorates."""
    names: list[str] = []
    deco = CallPyBack(observers=[on_call(lambda function: names.append(function.__name__))])

    @deco
    def a() -> None: ...

    @deco
    def b() -> None: ...

    a()
    b()
    assert names == ["a", "b"]


def test_callable_object_and_partial() -> None:
    """Callable objects and functools.partial can be wrapped."""

    class Adder:
        def __call__(self, x: int) -> int:
            return x + 1

    wrapped = CallPyBack(observers=[on_success(lambda value: None)])(Adder())
    assert wrapped(1) == 2
    p = CallPyBack(observers=[on_success(lambda value: None)])(functools.partial(pow, 2))
    assert p(3) == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_observer_failures": -1}, "max_observer_failures must be a positive int"),
        ({"max_observer_failures": 0}, "max_observer_failures must be a positive int"),
        ({"exception_classes": [ValueError]}, "exception_classes only says what default_return"),
        ({"exception_classes": ["ValueError"], "default_return": 1}, "is not an exception class"),
        ({"time_source": object()}, "lacks ['now', 'monotonic', 'sleep']"),
        ({"variable_names": ["ok", "not valid"]}, "is not a valid Python identifier"),
        ({"variable_extractor": object()}, "needs a begin(code, names, caller) method"),
        ({"observers": [42]}, "42 is not an observer"),
    ],
)
def test_bad_input_is_a_configuration_error(kwargs: dict[str, Any], message: str) -> None:
    """Bad options raise ConfigurationError (a ValueError) saying what was wrong."""
    with pytest.raises(ConfigurationError) as info:
        CallPyBack(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_decorating_a_non_callable_is_an_error() -> None:
    """Decorating something that is not callable says so and hints at observers=."""
    with pytest.raises(ConfigurationError, match="can only decorate callables, got 42"):
        CallPyBack()(42)  # type: ignore[arg-type]


def test_observer_priority_must_be_int() -> None:
    """A non-int priority is refused when the observer is added."""
    with pytest.raises(ConfigurationError, match="priority must be an int"):
        CallPyBack().add_observer(on_call(lambda: None), priority="high")  # type: ignore[arg-type]


def test_empty_pipeline_is_a_passthrough() -> None:
    """With nothing configured the pipeline is None: calls go straight through."""
    deco = CallPyBack()
    f = deco(lambda x: x)
    assert deco.pipeline is None
    assert f(5) == 5


def test_repr_mentions_counts() -> None:
    deco = CallPyBack(observers=[on_call(lambda: None)], name="checkout")
    assert repr(deco) == "<CallPyBack 'checkout' observers=1 handlers=0>"
