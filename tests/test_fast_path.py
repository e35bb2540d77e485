"""The engine's fast path: lazy context, ``notify`` with injected arguments, gates and
NEEDS_CONTEXT (the public protocol of docs/observers.md)."""

from __future__ import annotations

from typing import Any

import pytest

from callpyback import BaseObserver, CallPyBack, ConfigurationError, MockTimeSource, on_call
from callpyback import ExecutionState as S
from callpyback._engine import source_of
from callpyback.observers import NEEDS_CONTEXT


@pytest.fixture(autouse=True)
def production_code() -> Any:
    """These tests read the code a production build generates: not the checking mode's."""
    from callpyback import _engine

    was = _engine._Checking.on
    _engine.checking(False)
    yield
    _engine.checking(was)


def success_path(func: Any) -> str:
    """The generated code a successful call runs: before the attempt and after it, without the
    rare branches (an exception, or an interrupt raised by a PRE_EXECUTION observer)."""
    source = source_of(func) or ""
    kept, skip = [], None
    for line in source.splitlines():
        indent = len(line) - len(line.lstrip())
        if skip is not None and indent > skip:
            continue
        skip = None
        if line.strip() in ("if _cpb_p is not None:",) or line.rstrip().endswith(" as _cpb_e:"):
            skip = indent
            continue
        kept.append(line)
    return "\n".join(kept)


class Direct(BaseObserver):
    """Uses the fast-path protocol: ``notify`` inline, ``update(context)`` for the rest."""

    def __init__(self, answer: Any = None, gate: Any = None) -> None:
        super().__init__(states=[S.PRE_EXECUTION, S.COMPLETED])
        self.direct_calls: list[tuple[Any, ...]] = []
        self.updates: list[tuple[S, Any, Any]] = []
        self.answer = answer
        if gate is not None:
            self.gate = gate

    def notify(self, function_info: Any, state: S, execution_time: Any) -> Any:
        self.direct_calls.append((function_info.name, state, execution_time))
        return self.answer

    def update(self, context: Any) -> None:
        self.updates.append((context.state, context.execution_time, context.exception))


def test_notify_is_called_on_every_path_update_only_when_asked(clock: MockTimeSource) -> None:
    """notify gets every notification, inline or (on a failure) fed from the context; update
    runs only for a notification whose notify answered NEEDS_CONTEXT."""
    obs = Direct()

    @CallPyBack(observers=[obs], time_source=clock)
    def f(fail: bool) -> int:
        clock.advance(0.5)
        if fail:
            raise ValueError("no")
        return 1

    assert f(False) == 1
    assert obs.direct_calls == [("f", S.PRE_EXECUTION, None), ("f", S.COMPLETED, 0.5)]
    obs.direct_calls.clear()
    with pytest.raises(ValueError):
        f(True)
    assert obs.direct_calls == [("f", S.PRE_EXECUTION, None), ("f", S.COMPLETED, 0.5)]
    assert obs.updates == []


def test_needs_context_escalates_to_update(clock: MockTimeSource) -> None:
    """A direct callback answering NEEDS_CONTEXT gets update() with a complete context."""
    obs = Direct(answer=NEEDS_CONTEXT)

    @CallPyBack(observers=[obs], time_source=clock)
    def f() -> str:
        clock.advance(2.0)
        return "x"

    assert f() == "x"
    assert obs.updates == [(S.PRE_EXECUTION, None, None), (S.COMPLETED, 2.0, None)]


def test_gate_false_skips_the_observer_entirely() -> None:
    """A gate that declines means neither the callback nor update runs for that state."""
    asked: list[S] = []

    def gate(state: S) -> bool:  # its parameters are injected by name, like notify's
        asked.append(state)
        return state is S.COMPLETED

    obs = Direct(gate=gate)
    CallPyBack(observers=[obs])(lambda: 3)()
    assert asked == [S.PRE_EXECUTION, S.COMPLETED]
    assert [c[1] for c in obs.direct_calls] == [S.COMPLETED]


def test_context_built_late_is_consistent_with_earlier_blocks() -> None:
    """A context first needed after the call carries the same call's facts."""
    seen: dict[str, Any] = {}

    class Late(BaseObserver):
        def __init__(self) -> None:
            super().__init__(states=[S.COMPLETED])

        def update(self, context: Any) -> None:
            seen.update(
                state=context.state,
                attempt=context.attempt,
                value=context.value,
                args=context.args,
                arguments=dict(context.arguments),
            )

    calls: list[Any] = []
    deco = CallPyBack(observers=[on_call(lambda args: calls.append(args)), Late()])
    assert deco(lambda a, b=2: a + b)(1) == 3
    assert calls == [(1, 2)]  # what the function is called with: defaults applied
    assert seen == {
        "state": S.COMPLETED,
        "attempt": 1,
        "value": 3,
        "args": (1, 2),
        "arguments": {"a": 1, "b": 2},
    }


def test_compiled_source_builds_no_context_for_callbacks() -> None:
    """With only callback observers the generated code never builds a context."""
    deco = CallPyBack(observers=[on_call(lambda args: None)])
    f = deco(lambda: 1)
    f()
    assert "_cpb_ctx(" not in success_path(f)


def test_outcome_names_every_ending() -> None:
    """context.outcome (and the injected ``outcome``) names how each call ended."""
    seen: list[Any] = []

    def watch(state: S, outcome: Any) -> None:
        seen.append((state.name, outcome))

    deco = CallPyBack(observers=[watch])
    deco(lambda: 1)()
    with pytest.raises(ValueError):
        deco(lambda: int("x"))()

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deco(interrupted)()
    CallPyBack(observers=[watch], default_return=0)(lambda: 1 / 0)()

    @deco
    def gen() -> Any:
        yield 1

    g = gen()
    next(g)
    g.close()
    assert seen == [
        ("PRE_EXECUTION", None),
        ("POST_SUCCESS", "success"),
        ("COMPLETED", "success"),
        ("PRE_EXECUTION", None),
        ("POST_FAILURE", "failure"),
        ("COMPLETED", "failure"),
        ("PRE_EXECUTION", None),
        ("ERROR", "interrupted"),
        ("PRE_EXECUTION", None),
        ("POST_FAILURE", "failure"),
        ("COMPLETED", "recovered"),
        ("PRE_EXECUTION", None),
        ("COMPLETED", "cancelled"),
    ]


def test_no_clock_when_no_observer_can_see_a_duration(clock: MockTimeSource) -> None:
    """Callbacks that ask for no timed name cost no clock read; one that asks gets real time."""
    seen: list[Any] = []
    untimed = CallPyBack(
        observers=[
            on_call(lambda args: seen.append(args)),
        ],
        time_source=clock,
    )
    plain = untimed(lambda x: x)
    plain(1)
    assert "_cpb_t0 = 0.0" in (source_of(plain) or "")

    from callpyback import on_failure, on_success

    timed = CallPyBack(
        observers=[
            on_success(lambda value: seen.append(value)),
            on_failure(lambda execution_time: seen.append(execution_time)),
        ],
        time_source=clock,
    )

    @timed
    def slow(fail: bool) -> int:
        clock.advance(1.5)
        if fail:
            raise ValueError
        return 2

    assert slow(False) == 2
    with pytest.raises(ValueError):
        slow(True)
    assert seen == [(1,), 2, 1.5]
    assert "_cpb_t0 = _cpb_mono()" in (source_of(slow) or "")


def test_notify_parameters_are_validated_when_attached() -> None:
    """A notify (or gate) asking for a name the engine cannot inject fails at add_observer."""

    class Bad(BaseObserver):
        def notify(self, state: S, reslt: Any) -> None:
            pass

    with pytest.raises(ConfigurationError, match=r"'reslt'.*Did you mean 'result'"):
        CallPyBack(observers=[Bad()])


def test_a_third_party_observer_is_as_fast_as_a_built_in_one(clock: MockTimeSource) -> None:
    """The protocol the built-ins use is public: the same generated code calls both directly."""
    from callpyback import MetricsObserver

    class Counter(BaseObserver):
        def __init__(self) -> None:
            super().__init__(states=[S.COMPLETED])
            self.n = 0

        def notify(self, outcome: Any) -> None:
            self.n += 1

    counter = Counter()
    f = CallPyBack(observers=[counter, MetricsObserver()], time_source=clock)(lambda: 1)
    f()
    source = success_path(f)
    assert counter.n == 1
    # both called directly with their injected values; no context built for either
    assert source.count(".update(") == 0 and "_cpb_ctx(" not in source
