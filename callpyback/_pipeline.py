"""Observer registrations and the immutable pipeline (the *plan*) the engine compiles.

A :class:`Pipeline` is built whenever a decorator's observers change (copy-on-write): it sorts
the registrations per notified state once and works out everything the compiled wrapper needs
to know (does anyone read the clock, a context, the arguments; which hooks exist), so that a
call decides nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple

from ._handling import HandlerChain
from ._inject import Injection, context_caller, resolve_injection
from .states import ExecutionState

__all__ = ["Pipeline", "Registration"]

S = ExecutionState

#: Injectable names that need the context object (the rest the engine holds in locals).
_CONTEXT_SOURCES = frozenset({"context", "arguments", "metadata", "timestamp", "local_variables"})
#: Injectable names through which an observer can see a duration or the clock.
_TIMED_SOURCES = frozenset({"context", "result", "execution_time", "timestamp"})


class Registration:
    """One observer attached to one decorator, with its own consecutive-failure count.

    ``call``/``inject``: the direct callback the engine calls with injected arguments (a
    callback observer's function, or an observer's ``notify``); ``update(context)``: what the
    generic paths call (the observer's ``update``, or ``call`` fed from the context).
    """

    __slots__ = (
        "background",
        "bind",
        "bind_batch",
        "call",
        "disabled",
        "enter",
        "escalates",
        "exit",
        "failures",
        "gate",
        "gate_inject",
        "gate_run",
        "guard",
        "inject",
        "is_async",
        "name",
        "needs_context",
        "observer",
        "owner",
        "priority",
        "ref",
        "run",
        "seq",
        "states",
        "timed",
        "total_failures",
        "update",
    )

    def __init__(
        self,
        *,
        owner: Any,
        observer: Any,
        ref: Any,
        name: str,
        priority: int,
        seq: int,
        states: Optional[FrozenSet[ExecutionState]],
        is_async: bool,
        background: bool,
        guard: bool,
        update: Callable[[Any], Any],
        call: Optional[Callable[..., Any]] = None,
        inject: Optional[Injection] = None,
        escalates: bool = False,
        gate: Optional[Callable[[Any], Any]] = None,
        enter: Optional[Callable[[Any], Any]] = None,
        exit: Optional[Callable[[Any, Any], Any]] = None,
        bind: Optional[Callable[[Any], Any]] = None,
        bind_batch: int = 0,
    ) -> None:
        self.owner = owner
        self.observer = observer  # None when held weakly; see ``ref``
        self.ref = ref
        self.name = name
        self.priority = priority
        self.seq = seq
        self.states = states
        self.is_async = is_async
        self.background = background
        self.guard = guard
        self.gate = gate
        # The gate's parameters are injected by name too; generic paths feed them from the
        # context.
        self.gate_inject = resolve_injection(gate, f"{name}.gate") if gate is not None else None
        self.gate_run = context_caller(gate, self.gate_inject, name) if gate is not None else None
        self.enter = enter
        self.exit = exit
        #: ``observer.bind(function_info)`` (the per-function fast path), and the length at
        #: which its batching binding's ``pending`` list is flushed (0: not batching)
        self.bind = bind
        self.bind_batch = bind_batch
        if call is not None and inject is None:
            call = None  # no introspectable signature: the generic path hands it the context
        self.call = call
        self.inject = inject
        self.escalates = escalates and call is not None
        #: What the generic paths (failures, background workers) and an escalation call.
        self.run = update
        self.update = update
        if background:
            from ._background import background_update

            self.update = background_update(self)
        sources = {src for _, src in (*(inject or ()), *(self.gate_inject or ()))}
        self.needs_context = call is None or bool(sources & _CONTEXT_SOURCES)
        self.timed = call is None or escalates or bool(sources & _TIMED_SOURCES)
        self.failures = 0  # consecutive; reset by a success
        self.total_failures = 0
        self.disabled = False

    def target(self) -> Any:
        return self.observer if self.ref is None else self.ref()

    def wants(self, state: ExecutionState) -> bool:
        return self.states is None or state in self.states

    def __repr__(self) -> str:
        flags = "".join(
            f" {flag}"
            for flag, on in (
                ("weak", self.ref is not None),
                ("direct", self.call is not None),
                ("async", self.is_async),
                ("background", self.background),
                ("disabled", self.disabled),
            )
            if on
        )
        return f"<Registration {self.name!r} priority={self.priority}{flags}>"


class Pipeline:
    """What the engine compiles: observers per state, the handler chain, clock and extractor.

    Immutable: adding or removing an observer builds a new one, so a call reads a consistent
    pipeline without taking a lock.  Its compiled wrappers are cached in :attr:`templates`.
    """

    def __init__(
        self,
        registrations: Tuple[Registration, ...],
        chain: HandlerChain,
        time_source: Any,
        extractor: Any,
        variable_names: Tuple[str, ...],
        *,
        check: bool = False,
    ) -> None:
        live = sorted(
            (r for r in registrations if not r.disabled), key=lambda r: (-r.priority, r.seq)
        )

        def for_state(state: ExecutionState) -> Tuple[Registration, ...]:
            return tuple(r for r in live if r.wants(state))

        self.pre = for_state(S.PRE_EXECUTION)
        self.success = for_state(S.POST_SUCCESS)
        self.failure = for_state(S.POST_FAILURE)
        self.completed = for_state(S.COMPLETED)
        self.error = for_state(S.ERROR)
        notified = {*self.pre, *self.success, *self.failure, *self.completed, *self.error}
        self.registrations = tuple(r for r in live if r in notified or r.enter is not None)
        self.chain = chain
        self.time_source = time_source
        self.monotonic: Callable[[], float] = time_source.monotonic
        self.sleep: Callable[[float], None] = time_source.sleep
        self.asleep: Callable[[float], Any] = getattr(time_source, "asleep", None) or _asleep
        self.extractor = extractor
        self.variable_names = variable_names
        self.extractor_takes_caller = extractor is not None and _takes_caller(extractor)
        self.check = check
        regs = self.registrations
        self.observers = bool(regs)
        self.anotify = any(r.is_async for r in regs)
        self.guarded = any(r.guard for r in regs)
        around = tuple(r for r in regs if r.enter is not None)
        self.around = bool(around)
        self._around = around
        # A clock is read only if something can see a duration: an observer that is not a
        # direct callback (it gets the whole context), a callback asking for a duration, the
        # timestamp or the context, a handler that may read the time, or extraction.
        self.timed = any(r.timed for r in regs) or (bool(chain) and chain.reads_time) or check
        self.wants_result = any(
            r.call is not None and any(src == "result" for _, src in r.inject or ())
            for r in (*self.success, *self.completed)
        )
        # Some things need the context before the call: built once, up front.
        self.eager_context = (
            extractor is not None
            or self.around
            or bool(chain.call_sync or chain.call_async)
            or any(hot is None for hot in chain.before_hot)
        )
        self.sees_failures = bool(
            self.failure or self.completed or self.error or chain or extractor is not None
        )
        self.can_retry = bool(chain)
        self.empty = not regs and not chain and extractor is None
        #: (kind, shape key, mode, free variables) -> compiled Template
        self.templates: Dict[Any, Any] = {}

    def enter_all(self, context: Any) -> Tuple[Any, ...]:
        """Enter every around-hook (a stretch of the body is about to run); isolated."""
        tokens = []
        for reg in self._around:
            try:
                tokens.append(reg.enter(context))  # type: ignore[misc]
            except Exception as exc:
                tokens.append(None)
                reg.owner._observer_failed(reg, exc)
        return tuple(tokens)

    def leave_all(self, context: Any, tokens: Tuple[Any, ...]) -> None:
        """Leave them, innermost first, in the frame that entered them."""
        for reg, token in zip(reversed(self._around), reversed(tokens)):
            try:
                reg.exit(context, token)  # type: ignore[misc]
            except Exception as exc:
                reg.owner._observer_failed(reg, exc)

    def __repr__(self) -> str:
        def names(regs: Tuple[Registration, ...]) -> list[str]:
            return [r.name for r in regs]

        return (
            f"<Pipeline pre={names(self.pre)} success={names(self.success)} "
            f"failure={names(self.failure)} completed={names(self.completed)} "
            f"error={names(self.error)} handlers={len(self.chain.handlers)} "
            f"extractor={self.extractor!r}>"
        )


def _takes_caller(extractor: Any) -> bool:
    """Whether ``extractor.begin`` accepts the caller's frame (the documented third argument)."""
    import inspect

    try:
        params = inspect.signature(extractor.begin).parameters
    except (TypeError, ValueError):
        return False
    return len(params) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params.values())


async def _asleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
