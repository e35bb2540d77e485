"""Observer base classes and the callback factories (``on_call``, ``on_success``, ...)."""

from __future__ import annotations

from typing import Any, Callable, Dict, FrozenSet, Iterable, Optional

from .._engine import NEEDS_CONTEXT
from .._inject import INJECTABLE, context_caller, resolve_injection
from ..errors import ConfigurationError
from ..states import ExecutionState, Phase, StateSpec, resolve_states

__all__ = [
    "INJECTABLE",
    "NEEDS_CONTEXT",
    "BaseObserver",
    "CallbackObserver",
    "_fork_safe",
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


_FORK_SAFE: Any = None


def _fork_safe(observer: Any) -> None:
    """Have ``observer._after_fork()`` run in a forked child (it recreates the observer's locks).

    A lock another thread held at ``fork()`` stays held forever in the child; every lock a call
    or a read may take must be replaced there.
    """
    global _FORK_SAFE
    import os
    import weakref

    if _FORK_SAFE is None:
        _FORK_SAFE = weakref.WeakSet()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
    _FORK_SAFE.add(observer)


def _after_fork_in_child() -> None:
    for observer in list(_FORK_SAFE or ()):
        try:
            observer._after_fork()
        except Exception:  # pragma: no cover - a child must start whatever happens
            pass


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

    # The fast-path protocol (public, documented in docs/observers.md; the built-in observers
    # use nothing else).  Define any of:
    #
    # * ``notify(...)``: called instead of ``update`` with its parameters injected by name, like
    #   a callback observer's (validated when attached).  No context is built for it unless a
    #   parameter asks for one.  It may return NEEDS_CONTEXT to have ``update(context)`` called
    #   for that notification instead.  Generic paths (failures, background workers) call it
    #   too, with values read off the context.
    # * ``gate(state) -> bool``: asked first; False means "nothing to do for this state", and
    #   the observer is skipped (a disabled log level costs one call).
    # * ``enter(context) -> token`` and ``exit(context, token)``: around each stretch of the
    #   function body, in the wrapper's frame (each resume of a generator).  For observers that
    #   must make something current while the body runs, such as a tracing span.

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
        """Handle one notification; ``context.state`` says which. Subclasses implement it."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement update(context) or notify(...)"
        )

    update._callpyback_abstract = True  # type: ignore[attr-defined]  # "not implemented"

    def __repr__(self) -> str:
        states = "all" if self.states is None else sorted(s.name for s in self.states)
        return (
            f"<{type(self).__name__} name={self.name!r} priority={self.priority} states={states}>"
        )


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
        # The engine calls the callback itself (the fast-path ``notify``), with its parameters
        # injected; ``update(context)`` feeds it from a context where someone has one.
        self.notify = callback
        self.update = context_caller(  # type: ignore[method-assign,assignment]
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
