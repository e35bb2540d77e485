"""Observer base classes and the callback factories (``on_call``, ``on_success``, ...)."""

from __future__ import annotations

from typing import Any, Callable, Collection, Dict, FrozenSet, Iterable, Optional, Tuple, Union

from ..errors import ConfigurationError
from ..states import NOTIFIED_STATES, PHASE_STATES, ExecutionState, Phase

__all__ = [
    "INJECTABLE",
    "NEEDS_CONTEXT",
    "BaseObserver",
    "CallbackObserver",
    "call_user_callback",
    "create_callback_observer",
    "on_call",
    "on_completion",
    "on_error",
    "on_failure",
    "on_success",
    "resolve_states",
    "state_for_function",
]

StateSpec = Union[ExecutionState, Phase, str]


class _NeedsContext:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEEDS_CONTEXT"


#: A built-in observer's direct ``callback`` (see ``BaseObserver``) returns this to say "this
#: notification needs the whole context after all": the core then calls ``update(context)``.
NEEDS_CONTEXT: Any = _NeedsContext()

#: Parameter name -> expression on the context ``c`` that a callback parameter of that name gets.
INJECTABLE = {
    "context": "c",
    "function_signature": "c.function_info.signature",
    "arguments": "c.arguments",
    "state": "c._state",
    "result": "c.result",
    "local_variables": "c.local_variables",
    "metadata": "c.metadata",
    "timestamp": "c.timestamp",
    "execution_time": "c._time",
    "exception": "c._exception",
    "value": "c._value",
    "args": "c.args",
    "kwargs": "c.kwargs",
    "function": "c.function_info.function",
    "attempt": "c._attempt",
    "function_info": "c.function_info",
    "outcome": "c.outcome",
}


def call_user_callback(owner: Any, callback: Any, arg: Any, logger: str, what: str) -> None:
    """Run a user's alert-style callback; its failure is logged once and counted on ``owner``.

    The callback is the user's code: its failure must never stop the observer's own work (or,
    through the observer, the observed call).
    """
    try:
        callback(arg)
    except Exception as exc:
        owner.callback_failures += 1
        if owner.callback_failures == 1:
            import logging

            logging.getLogger(logger).error(
                "%s raised %r (further failures are counted in callback_failures)",
                what,
                exc,
                exc_info=exc,
            )


def state_for_function(
    lock: Any,
    by_info: Dict[Any, Any],
    by_target: Dict[str, Any],
    info: Any,
    make: Callable[[Any], Any],
) -> Any:
    """Create (once) an observer's per-function state for ``info``.

    Keyed by the ``FunctionInfo`` for the hot-path lookup, and by ``module:qualname`` so that a
    function decorated twice (a reload, two decorators) shares one entry.  Callers do the
    lock-free ``by_info.get(info)`` first and come here only on a miss.
    """
    with lock:
        state = by_info.get(info)
        if state is None:
            target = info.target
            state = by_target.get(target)
            if state is None:
                state = by_target[target] = make(info)
            by_info[info] = state
        return state


def resolve_states(
    states: Optional[Iterable[StateSpec]] = None,
    phases: Optional[Iterable[StateSpec]] = None,
    *,
    owner: str = "observer",
) -> Optional[FrozenSet[ExecutionState]]:
    """Normalise ``states``/``phases`` (enums or their names) to notified states; None means all."""
    if states is None and phases is None:
        return None
    out: set[ExecutionState] = set()
    for spec in [*(_as_iter(states, "states", owner)), *(_as_iter(phases, "phases", owner))]:
        out.add(_to_state(spec, owner))
    if not out:
        raise ConfigurationError(
            f"{owner}: an empty list of states/phases would never be notified; "
            "pass None to receive every state"
        )
    return frozenset(out)


def _as_iter(value: Any, what: str, owner: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, ExecutionState, Phase)):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise ConfigurationError(
            f"{owner}: {what}={value!r} must be a state, a phase or a list of them"
        ) from None


def _to_state(spec: Any, owner: str) -> ExecutionState:
    if isinstance(spec, Phase):
        return PHASE_STATES[spec]
    if isinstance(spec, ExecutionState):
        if spec not in NOTIFIED_STATES:
            raise ConfigurationError(
                f"{owner}: {spec!r} is internal and never notified; choose from "
                f"{sorted(s.name for s in NOTIFIED_STATES)}"
            )
        return spec
    if isinstance(spec, str):
        key = spec.strip().upper()
        if key in Phase.__members__:
            return PHASE_STATES[Phase[key]]
        if key in ExecutionState.__members__:
            return _to_state(ExecutionState[key], owner)
        allowed = sorted(Phase.__members__) + sorted(s.name for s in NOTIFIED_STATES)
        import difflib

        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(
            f"{owner}: unknown state or phase {spec!r}; allowed: {allowed}{hint}"
        )
    raise ConfigurationError(
        f"{owner}: {spec!r} is not a state or phase (use ExecutionState, Phase or their names)"
    )


class BaseObserver:
    """Subclass and implement :meth:`update`; it may be ``async def`` (awaited on async paths).

    ``states`` / ``phases`` say what to be notified of; with neither, every notified state is
    delivered and ``update`` filters on ``context.state`` itself.  Higher ``priority`` runs first.
    """

    priority: int = 0
    name: Optional[str] = None
    states: Optional[FrozenSet[ExecutionState]] = None
    background: bool = False
    #: Set False only on observers that never run user code (they then skip the re-entrancy
    #: guard, which saves a little per call).  Anything that may call a wrapped function,
    #: directly or not, must keep it.
    reentrancy_guard: bool = True

    # Optional fast-path protocol (used by the built-in observers; see docs/observers.md):
    # ``callback`` + ``injection`` let the compiled fast path call ``callback`` directly with
    # injected arguments, without building a context, where the outcome is known (before the
    # call, and after a first-attempt success); ``callback`` may return NEEDS_CONTEXT to have
    # ``update(context)`` called instead.  ``gate(state) -> bool`` answers "would update do
    # anything for this state?" there; False skips the observer and its context.

    def __init__(
        self,
        *,
        priority: int = 0,
        name: Optional[str] = None,
        states: Optional[Iterable[StateSpec]] = None,
        phases: Optional[Iterable[StateSpec]] = None,
        background: bool = False,
    ) -> None:
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ConfigurationError(f"priority must be an int, got {priority!r}")
        self.priority = priority
        self.name = name or type(self).__name__
        resolved = resolve_states(states, phases, owner=self.name)
        if resolved is not None:
            self.states = resolved
        self.background = bool(background)

    def update(self, context: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement update(context)")

    def __repr__(self) -> str:
        states = "all" if self.states is None else sorted(s.name for s in self.states)
        return (
            f"<{type(self).__name__} name={self.name!r} priority={self.priority} states={states}>"
        )


def _describe(callback: Callable[..., Any]) -> str:
    name = getattr(callback, "__qualname__", None) or repr(callback)
    import inspect

    code = getattr(inspect.unwrap(callback), "__code__", None)
    if code is not None:
        return f"{name} ({code.co_filename}:{code.co_firstlineno})"
    return name


#: One injected argument: (keyword name, or None for positional; source name from INJECTABLE).
Injection = Tuple[Tuple[Optional[str], str], ...]


def resolve_injection(callback: Callable[..., Any], owner: str) -> Optional[Injection]:
    """Map ``callback``'s parameters to injectable sources, once, at observer creation.

    None means the callback has no introspectable signature: it gets the context positionally.
    """
    import inspect  # at observer creation only, never per call

    try:
        sig = inspect.signature(callback)
    except (TypeError, ValueError):
        return None
    out: list[Tuple[Optional[str], str]] = []
    can_positional = True
    var_kw = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            can_positional = False
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.name not in INJECTABLE:
            if p.default is not p.empty:
                can_positional = False  # keep its default (the ``lambda i=i:`` idiom)
                continue
            import difflib

            close = difflib.get_close_matches(p.name, INJECTABLE, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"{owner} callback {_describe(callback)} has parameter {p.name!r}, "
                f"which CallPyBack cannot inject.{hint} Allowed names: {', '.join(INJECTABLE)}; "
                "give the parameter a default, or take **kwargs to receive everything."
            )
        if p.kind is p.POSITIONAL_ONLY:
            if not can_positional:
                raise ConfigurationError(
                    f"{owner} callback {_describe(callback)}: positional-only parameter {p.name!r} "
                    "follows a parameter CallPyBack cannot fill; reorder or make it keyword"
                )
            out.append((None, p.name))
        elif p.kind is p.POSITIONAL_OR_KEYWORD and can_positional:
            out.append((None, p.name))
        else:
            out.append((p.name, p.name))
    if var_kw:
        named = set(sig.parameters)
        out.extend((k, k) for k in INJECTABLE if k not in named)
    return tuple(out)


def _compile_injector(
    callback: Callable[..., Any], injection: Optional[Injection], owner: str
) -> Callable[[Any], Any]:
    """Build ``update(context)`` calling ``callback`` with its injected arguments.

    Straight-line attribute reads, so a callback costs one extra call per notification.  (The
    sync fast path does better still: it calls the callback directly, see ``_codegen``.)
    """
    if injection is None:
        return callback
    parts = [INJECTABLE[src] if kw is None else f"{kw}={INJECTABLE[src]}" for kw, src in injection]
    source = f"def update(c):\n    return _cb({', '.join(parts)})\n"
    namespace: dict[str, Any] = {"_cb": callback}
    exec(compile(source, f"<callpyback injector for {owner}>", "exec"), namespace)
    update: Callable[[Any], Any] = namespace["update"]
    return update


def _is_coroutine_function(fn: Any) -> bool:
    import inspect

    call = vars(type(fn)).get("__call__")
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class CallbackObserver(BaseObserver):
    """An observer made from a plain callable, its parameters injected by name."""

    is_callback_observer = True

    def __init__(
        self,
        callback: Callable[..., Any],
        *,
        states: Optional[Iterable[StateSpec]] = None,
        phases: Optional[Iterable[StateSpec]] = None,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> None:
        if not callable(callback):
            raise ConfigurationError(
                "an observer callback must be callable, got "
                f"{callback!r} ({type(callback).__name__})"
            )
        super().__init__(
            priority=priority,
            name=name or getattr(callback, "__qualname__", None) or repr(callback),
            states=states,
            phases=phases,
            background=background,
        )
        self.callback = callback
        self.is_async = _is_coroutine_function(callback)
        self.injection = resolve_injection(callback, self.name or "observer")
        # An instance attribute, not a method: the dispatcher calls a plain function.
        self.update = _compile_injector(  # type: ignore[method-assign,assignment]
            callback, self.injection, self.name or "observer"
        )


def create_callback_observer(
    callback: Callable[..., Any],
    states: Optional[Iterable[StateSpec]] = None,
    phases: Optional[Iterable[StateSpec]] = None,
    *,
    priority: int = 0,
    name: Optional[str] = None,
    background: bool = False,
) -> CallbackObserver:
    """An observer for ``states``/``phases`` (all notified states when both are None)."""
    return CallbackObserver(
        callback, states=states, phases=phases, priority=priority, name=name, background=background
    )


def _factory(phase: Phase, doc: str) -> Callable[..., CallbackObserver]:
    def factory(
        callback: Callable[..., Any],
        *,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> CallbackObserver:
        return CallbackObserver(
            callback, phases=[phase], priority=priority, name=name, background=background
        )

    factory.__doc__ = doc
    return factory


on_call = _factory(Phase.BEFORE_CALL, "Observe each call before it runs (PRE_EXECUTION).")
on_call.__name__ = on_call.__qualname__ = "on_call"
on_success = _factory(Phase.AFTER_SUCCESS, "Observe each successful call (POST_SUCCESS).")
on_success.__name__ = on_success.__qualname__ = "on_success"
on_failure = _factory(Phase.AFTER_FAILURE, "Observe each failed attempt (POST_FAILURE).")
on_failure.__name__ = on_failure.__qualname__ = "on_failure"
on_completion = _factory(
    Phase.AFTER_COMPLETION, "Observe the end of each call, whatever the outcome (COMPLETED)."
)
on_completion.__name__ = on_completion.__qualname__ = "on_completion"
on_error = _factory(
    Phase.ON_ERROR,
    "Observe calls interrupted by a BaseException such as KeyboardInterrupt (ERROR).",
)
on_error.__name__ = on_error.__qualname__ = "on_error"


def observer_states(observer: Any) -> Optional[Collection[ExecutionState]]:
    """The states an arbitrary observer object subscribes to (None: all)."""
    states = getattr(observer, "states", None)
    phases = getattr(observer, "phases", None)
    if states is None and phases is None:
        return None
    return resolve_states(states, phases, owner=repr(observer))
