"""Observer registrations and the immutable, compiled pipeline a wrapper reads once per call."""

from __future__ import annotations

import functools
from typing import Any, Callable, FrozenSet, Optional, Tuple

from ._call import run_attempts
from ._codegen import compile_run
from ._handling import HandlerChain
from .states import ExecutionState

__all__ = ["Pipeline", "Registration"]

S = ExecutionState


class Registration:
    """One observer attached to one decorator instance, with its own failure count."""

    __slots__ = (
        "background",
        "callback",
        "direct",
        "disabled",
        "escalates",
        "failures",
        "fn",
        "gate",
        "guard",
        "injection",
        "is_async",
        "name",
        "observer",
        "owner",
        "priority",
        "ref",
        "seq",
        "states",
        "total_failures",
    )

    def __init__(
        self,
        *,
        owner: Any,
        observer: Any,
        ref: Any,
        fn: Callable[[Any], Any],
        name: str,
        priority: int,
        seq: int,
        states: Optional[FrozenSet[ExecutionState]],
        is_async: bool,
        background: bool,
        guard: bool = True,
        injection: Any = None,
        callback: Any = None,
        gate: Any = None,
    ) -> None:
        self.owner = owner
        self.observer = observer  # None when held weakly; see ``ref``
        self.ref = ref
        self.fn = fn
        self.name = name
        self.priority = priority
        self.seq = seq
        self.states = states
        self.is_async = is_async
        self.background = background
        self.guard = guard
        #: For callback observers: how to call ``callback`` directly (see ``_codegen``).
        self.injection = injection
        self.callback = callback
        self.direct = (
            injection is not None and callback is not None and ref is None and not background
        )
        #: Optional ``gate(state) -> bool`` the fast path asks first: False means "update would
        #: do nothing for this state", so no context is built for it.
        self.gate = gate if ref is None and not background else None
        #: A direct callback that may answer NEEDS_CONTEXT (built-in observers; never a user's
        #: callback observer, whose return value means nothing).
        self.escalates = self.direct and not getattr(observer, "is_callback_observer", False)
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
                ("async", self.is_async),
                ("background", self.background),
                ("disabled", self.disabled),
            )
            if on
        )
        return f"<Registration {self.name!r} priority={self.priority}{flags}>"


class Pipeline:
    """Pre-sorted observer tuples per notified state, the handler chain, clock and extractor.

    Immutable: adding or removing an observer builds a new one (copy-on-write), so a call reads
    a consistent pipeline without taking a lock.
    """

    __slots__ = (
        "anotify",
        "arun",
        "asleep",
        "chain",
        "completed",
        "error",
        "extractor",
        "failure",
        "monotonic",
        "pre",
        "run",
        "simple",
        "sleep",
        "success",
        "time_source",
        "variable_names",
    )

    def __init__(
        self,
        registrations: Tuple[Registration, ...],
        chain: HandlerChain,
        time_source: Any,
        extractor: Any,
        variable_names: Tuple[str, ...],
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
        self.chain = chain
        self.time_source = time_source
        self.monotonic: Callable[[], float] = time_source.monotonic
        self.sleep: Callable[[float], None] = time_source.sleep
        self.asleep: Callable[[float], Any] = getattr(time_source, "asleep", None) or _asyncio_sleep
        self.extractor = extractor
        self.variable_names = variable_names
        self.simple = not chain and extractor is None
        self.anotify = any(r.is_async for r in live)
        # ``run(func, info, args, kwargs)`` is the sync path; the fast one is compiled on first
        # use, so a burst of add_observer() calls compiles once, not once per call.
        # Compiled unless an attempt needs the general loop's machinery up front (a capture
        # around each attempt, or a handler wrapping the call itself).
        compiled = extractor is None and not chain.call_sync
        self.run: Callable[..., Any] = (
            self._compile_then_run if compiled else functools.partial(run_attempts, self)
        )
        #: The coroutine twin of the fast path (None: use the general async path).
        self.arun: Optional[Callable[..., Any]] = (
            self._compile_then_arun if self.simple and not self.anotify else None
        )

    def _compile_then_run(self, func: Any, info: Any, args: Any, kwargs: Any, g: Any) -> Any:
        __tracebackhide__ = True
        self.run = compile_run(self)
        return self.run(func, info, args, kwargs, g)

    async def _compile_then_arun(self, func: Any, info: Any, args: Any, kwargs: Any, g: Any) -> Any:
        __tracebackhide__ = True
        self.arun = compile_run(self, asynchronous=True)
        return await self.arun(func, info, args, kwargs, g)

    @property
    def empty(self) -> bool:
        return self.simple and not (
            self.pre or self.success or self.failure or self.completed or self.error
        )

    def __repr__(self) -> str:
        def names(regs: Tuple[Registration, ...]) -> list[str]:
            return [r.name for r in regs]

        return (
            f"<Pipeline pre={names(self.pre)} success={names(self.success)} "
            f"failure={names(self.failure)} completed={names(self.completed)} "
            f"error={names(self.error)} handlers={len(self.chain.handlers)} "
            f"extractor={self.extractor!r}>"
        )


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
