"""The engine against a plain model of an observed call (DESIGN.md §3), for generated pipelines.

Hypothesis generates a function (kind, and what each attempt does), observers (callback,
``notify`` and ``update`` observers, for some states, injected some names, some failing) and
handlers (retry, default return, exception mapping).  The model below says, in the plainest
Python, what every observer must be told and what the caller must get.  The engine must agree,
in both of its installations: a decorator's new wrapper and a function instrumented in place.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any, Dict, List, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callpyback import (
    BaseObserver,
    CallPyBack,
    MockTimeSource,
    create_callback_observer,
)
from callpyback import ExecutionState as S
from callpyback.handlers import ExceptionMappingHandler, RetryHandler

NOTIFIED = [S.PRE_EXECUTION, S.POST_SUCCESS, S.POST_FAILURE, S.COMPLETED, S.ERROR]
INJECTABLE = ["state", "value", "exception", "attempt", "outcome", "execution_time", "args"]


class Boom(ValueError):
    pass


class Mapped(KeyError):
    pass


class Stop(KeyboardInterrupt):
    """An interruption the test can tell apart from a real Ctrl-C."""


# --- what is generated ----------------------------------------------------------------------

attempt_st = st.one_of(
    st.tuples(st.just("return"), st.integers(-5, 5)),
    st.just(("raise",)),
    st.just(("interrupt",)),
)
observer_st = st.fixed_dictionaries(
    {
        "style": st.sampled_from(["callback", "notify", "update"]),
        "states": st.lists(st.sampled_from(NOTIFIED), min_size=1, max_size=5, unique=True),
        "names": st.lists(st.sampled_from(INJECTABLE), min_size=1, max_size=4, unique=True),
        "priority": st.integers(0, 2),
        "fails": st.booleans(),
        # notify/update observers may have a gate(state, outcome): the engine must skip
        # exactly what it closes (and read the duration lazily when every gate is closed)
        "gate": st.sampled_from([None, "open", "closed", "success", "not-success"]),
    }
)
handler_st = st.sampled_from(["none", "retry", "default", "map", "retry+default"])


def gate_allows(rule: Optional[str], outcome: Optional[str]) -> bool:
    if rule is None or rule == "open":
        return True
    if rule == "closed":
        return False
    return (outcome == "success") == (rule == "success")


class Log:
    def __init__(self) -> None:
        self.events: List[Tuple[Any, ...]] = []


def _locals_dict(names: Any) -> str:
    """Source of a dict display of the parameters by name: ``{'a': a, 'b': b}``."""
    return "{" + ", ".join(f"{n!r}: {n}" for n in names) + "}"


def _record(log: Log, index: int, names: List[str], fails: bool, values: Dict[str, Any]) -> None:
    row = [index]
    for name in names:
        v = values[name]
        row.append(type(v).__name__ if isinstance(v, BaseException) else v)
    log.events.append(tuple(row))
    if fails:
        raise RuntimeError("observer bug")  # isolated: never reaches the caller


def make_observer(log: Log, index: int, spec: Dict[str, Any]) -> Any:
    names, fails = spec["names"], spec["fails"]
    if spec["style"] == "callback":
        params = ", ".join(names)
        ns: Dict[str, Any] = {"_rec": _record, "log": log, "index": index}
        src = (
            f"def cb({params}):\n"
            f"    _rec(log, index, {names!r}, {fails!r}, {_locals_dict(names)})\n"
        )
        exec(src, ns)
        return create_callback_observer(
            ns["cb"], states=spec["states"], priority=spec["priority"], name=f"cb{index}"
        )
    if spec["style"] == "notify":
        params = ", ".join(names)
        ns = {"_rec": _record, "log": log, "index": index}
        src = (
            f"def notify(self, {params}) -> None:\n"
            f"    _rec(log, index, {names!r}, {fails!r}, {_locals_dict(names)})\n"
        )
        exec(src, ns)
        members: Dict[str, Any] = {"notify": ns["notify"]}
        if spec["gate"] is not None:
            rule = spec["gate"]
            members["gate"] = lambda self, state, outcome: gate_allows(rule, outcome)
        cls = type(f"Notify{index}", (BaseObserver,), members)
        return cls(states=spec["states"], priority=spec["priority"], name=f"n{index}")

    class Update(BaseObserver):
        def update(self, context: Any) -> None:
            values = {
                "state": context.state,
                "value": context.value,
                "exception": context.exception,
                "attempt": context.attempt,
                "outcome": context.outcome,
                "execution_time": context.execution_time,
                "args": context.args,
            }
            _record(log, index, names, fails, values)

    if spec["gate"] is not None:
        rule = spec["gate"]
        Update.gate = lambda self, state, outcome: gate_allows(rule, outcome)  # type: ignore[attr-defined]
    return Update(states=spec["states"], priority=spec["priority"], name=f"u{index}")


def handlers_for(choice: str) -> Tuple[List[Any], Dict[str, Any]]:
    handlers: List[Any] = []
    extra: Dict[str, Any] = {}
    if "retry" in choice:
        handlers.append(RetryHandler(3, backoff=0.5, jitter="none", exceptions=[Boom]))
    if choice == "map":
        handlers.append(ExceptionMappingHandler({Boom: Mapped}))
    if "default" in choice:
        extra = {"default_return": -1, "exception_classes": [Boom]}
    return handlers, extra


# --- the model --------------------------------------------------------------------------------


def model(
    kind: str, attempts: List[Tuple[Any, ...]], specs: List[Dict[str, Any]], choice: str
) -> Tuple[List[Tuple[Any, ...]], Tuple[str, Any]]:
    """What every observer is told, and what the caller gets, by DESIGN.md §3."""
    order = sorted(range(len(specs)), key=lambda i: (-specs[i]["priority"], i))
    events: List[Tuple[Any, ...]] = []
    args = (7,)

    def notify(state: S, values: Dict[str, Any]) -> None:
        for i in order:
            spec = specs[i]
            if state not in spec["states"]:
                continue
            if spec["style"] != "callback" and not gate_allows(spec["gate"], values["outcome"]):
                continue
            v = {**values, "state": state, "args": args}
            row = [i]
            for name in spec["names"]:
                x = v[name]
                row.append(type(x).__name__ if isinstance(x, BaseException) else x)
            events.append(tuple(row))

    retries = 3 if "retry" in choice and kind in ("function", "coroutine") else 1
    notify(
        S.PRE_EXECUTION,
        dict(value=None, exception=None, attempt=0, outcome=None, execution_time=None),
    )
    elapsed = 0.0
    last_exc: Optional[str] = None
    for n, step in enumerate(attempts, start=1):
        elapsed += 1.0  # each attempt advances the mock clock by 1 s
        if step[0] == "return":
            value = None if kind == "async_generator" else step[1]
            done = dict(
                value=value, exception=None, attempt=n, outcome="success", execution_time=elapsed
            )
            if last_exc is not None:
                done["exception"] = None
            notify(S.POST_SUCCESS, done)
            notify(S.COMPLETED, done)
            return events, ("returned", value)
        if step[0] == "interrupt":
            notify(
                S.ERROR,
                dict(
                    value=None,
                    exception=Stop(),
                    attempt=n,
                    outcome="interrupted",
                    execution_time=elapsed,
                ),
            )
            return events, ("raised", "Stop")
        failed = dict(
            value=None, exception=Boom(), attempt=n, outcome="failure", execution_time=elapsed
        )
        notify(S.POST_FAILURE, failed)
        last_exc = "Boom"
        if n < retries:
            elapsed += 0.5 * 2 ** (n - 1)  # the retry's back-off, slept on the mock clock
            continue
        if "default" in choice:
            notify(S.COMPLETED, {**failed, "value": -1, "outcome": "recovered"})
            return events, ("returned", None if kind == "async_generator" else -1)
        notify(S.COMPLETED, failed)
        return events, ("raised", "Mapped" if choice == "map" else "Boom")
    raise AssertionError("ran out of attempts")  # the strategies always end an attempt list


# --- the engine -------------------------------------------------------------------------------


def make_body(kind: str, attempts: List[Tuple[Any, ...]], clock: MockTimeSource) -> Any:
    steps = iter(attempts)

    def act() -> Any:
        clock.advance(1.0)
        step = next(steps)
        if step[0] == "raise":
            raise Boom()
        if step[0] == "interrupt":
            raise Stop()
        return step[1]

    if kind == "function":

        def body(x: int) -> Any:
            return act()

    elif kind == "coroutine":

        async def body(x: int) -> Any:
            await asyncio.sleep(0)
            return act()

    elif kind == "generator":

        def body(x: int) -> Any:
            yield "first"
            return act()

    else:

        async def body(x: int) -> Any:
            yield "first"
            act()

    return body


def drive(kind: str, f: Any) -> Tuple[str, Any]:
    try:
        if kind == "function":
            return ("returned", f(7))
        if kind == "coroutine":
            return ("returned", asyncio.run(f(7)))
        if kind == "generator":
            g = f(7)
            assert next(g) == "first"
            try:
                next(g)
            except StopIteration as stop:
                return ("returned", stop.value)
            raise AssertionError("generator did not stop")

        async def drain() -> Any:
            return [item async for item in f(7)]

        items = asyncio.run(drain())
        assert items == ["first"]
        return ("returned", None)
    except (Boom, Mapped, Stop) as exc:
        return ("raised", type(exc).__name__)


def run_engine(
    kind: str,
    attempts: List[Tuple[Any, ...]],
    specs: List[Dict[str, Any]],
    choice: str,
    in_place: bool,
) -> Tuple[List[Tuple[Any, ...]], Tuple[str, Any]]:
    log = Log()
    clock = MockTimeSource()
    observers = [make_observer(log, i, spec) for i, spec in enumerate(specs)]
    handlers, extra = handlers_for(choice)
    if kind in ("generator", "async_generator") and choice == "map":
        pass  # mapping applies to generators too
    deco = CallPyBack(
        observers=observers,
        error_handlers=handlers,
        time_source=clock,
        max_observer_failures=None,
        **extra,
    )
    body = make_body(kind, attempts, clock)
    if in_place:
        func = types.FunctionType(body.__code__, body.__globals__, "body", None, body.__closure__)
        deco.instrument_in_place(func)
        outcome = drive(kind, func)
    else:
        outcome = drive(kind, deco(body))
    return log.events, outcome


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["function", "coroutine", "generator", "async_generator"]),
    attempts=st.lists(attempt_st, min_size=1, max_size=3).map(
        lambda steps: [*steps[:-1], steps[-1]]
    ),
    specs=st.lists(observer_st, max_size=4),
    choice=handler_st,
    in_place=st.booleans(),
)
def test_engine_agrees_with_the_model(
    kind: str,
    attempts: List[Tuple[Any, ...]],
    specs: List[Dict[str, Any]],
    choice: str,
    in_place: bool,
) -> None:
    """Same notifications (who, which state, what was injected), same value or exception."""
    # Every attempt list ends an attempt; pad with returns so that retries never run out.
    attempts = [*attempts, ("return", 0), ("return", 0), ("return", 0)]
    expected = model(kind, attempts, specs, choice)
    got = run_engine(kind, attempts, specs, choice, in_place)
    assert got[1] == expected[1]
    assert got[0] == expected[0]
