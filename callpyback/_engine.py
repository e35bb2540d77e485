"""The call engine: an observed call defined once, compiled per pipeline and signature shape.

What one observed call does (``DESIGN.md`` §3) is written once, in :class:`_Writer`'s
template: notify PRE_EXECUTION, run an attempt, then on success notify POST_SUCCESS and
COMPLETED; on failure let :func:`_failure` notify, ask the handler chain, retry, recover or
re-raise.  The four wrapper shapes differ only where a shape really does: how the function
is called (``f(...)``, ``await f(...)``, ``yield from f(...)``, or the async generator relay).

The template is rendered into Python source for one pipeline's *plan* (which observers run
in which state, what they are injected, which handler hooks exist) and one *signature shape*
(how many positional, keyword-only, ``*args`` and ``**kwargs`` parameters), compiled once per
distinct source, and instantiated per function by renaming the parameters to the function's
own (``code.replace``): the wrapper has the original's exact signature, so an arity error is
raised before any of our code runs and ``inspect`` sees the real parameters.  Each wrapper is
exactly one frame: the observers are called from it, a failure is re-raised from it, and nothing
of ours sits between the caller and the function.

Two ways to install a compiled wrapper (see :func:`make_wrapper` and :func:`instrument`):

* decorator mode: a new function object whose single closure cell holds the wrapper's record
  (the objects the code uses).  A pipeline change swaps ``__code__`` and the record; a call that
  raced with the swap notices its record is not its own and calls again.
* in-place mode (the import hook): the original function object keeps its identity and gets our
  code, with the record among its constants; the original code runs in a private copy.  Every
  reference to the function, taken before or after, sees the observed behaviour.

The generated source is registered with :mod:`linecache`, so tracebacks show the line that
called the function.  Its file name contains ``importlib`` and ``_bootstrap``, which is how
CPython's ``warnings`` recognises frames to skip when it applies ``stacklevel``: a warning raised
by an observed function lands where it would without us.
"""

from __future__ import annotations

import contextlib
import contextvars
import linecache
import sys
import threading
import types
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, Iterator, List, Optional, Tuple

from ._context import ExecutionResult, _Rare, new_context
from ._handling import Raise, Recover, Retry
from .states import TRANSITIONS, ExecutionState

if TYPE_CHECKING:
    from ._pipeline import Pipeline, Registration

__all__ = [
    "NEEDS_CONTEXT",
    "Shape",
    "checking",
    "in_observer",
    "instrument",
    "make_wrapper",
    "shape_of",
]

S = ExecutionState
_PRE, _EXEC, _OK, _FAIL, _DONE, _ERROR = (
    S.PRE_EXECUTION,
    S.EXECUTING,
    S.POST_SUCCESS,
    S.POST_FAILURE,
    S.COMPLETED,
    S.ERROR,
)


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: A fast-path ``notify`` may return this to say "this notification needs the whole context":
#: the engine then calls ``update(context)``.
NEEDS_CONTEXT: Any = _Sentinel("NEEDS_CONTEXT")

# What the failure step tells the wrapper to do.
RETRY = _Sentinel("RETRY")  # go round again
RECOVER = _Sentinel("RECOVER")  # return context.value
NEW = _Sentinel("NEW")  # raise the handler's exception, chained from the original
PENDING = _Sentinel("PENDING")  # raise the KeyboardInterrupt/SystemExit an observer raised
RERAISE = _Sentinel("RERAISE")  # re-raise the original, untouched


# --- checking mode --------------------------------------------------------------------------
class _Checking:
    """Whether wrappers compiled from now on check every transition against TRANSITIONS."""

    on = False


def checking(on: bool = True) -> None:
    """Turn transition checking on (tests) or off, for pipelines built from now on.

    When on, every wrapper builds a context up front and records each state it takes in
    :attr:`ExecutionContext.path`; a transition the table does not allow raises
    ``AssertionError`` from the engine.  This is how the test suite proves that
    ``states.TRANSITIONS`` is what the engine follows.
    """
    _Checking.on = bool(on)


#: Every illegal transition seen in checking mode (also raised where it happened; kept here
#: because the failure step's errors never reach the caller).
VIOLATIONS: List[str] = []


def _go(c: Any, state: ExecutionState) -> None:
    """Move ``c`` to ``state`` (checking mode): assert the table allows it, record it."""
    rare = c._rare
    if rare is None:
        rare = c._rare = _Rare()
    if rare.path is None:
        rare.path = [c._state]
    current = c._state
    if state not in TRANSITIONS[current]:
        message = (
            f"{c._info.target}: illegal transition {current.name} -> {state.name}; "
            f"path so far {[s.name for s in rare.path]}"
        )
        VIOLATIONS.append(message)
        raise AssertionError(message)
    rare.path.append(state)
    c._state = state


def _set(p: Pipeline, c: Any, state: ExecutionState) -> None:
    if p.check:
        _go(c, state)
    else:
        c._state = state


# --- the re-entrancy guard --------------------------------------------------------------------
# While an observer runs, calls it causes are not reported to that same observer (other
# observers and every error handler still see them): an observer can never observe itself,
# so feedback loops end.  Synchronous dispatch keeps the observers running on this thread in a
# per-thread list (a context variable would be shared by every context copied from this one,
# asyncio.to_thread workers included).  Asynchronous dispatch awaits, so other tasks run
# meanwhile: it sets a context variable instead, which asyncio.to_thread carries into workers.


class _Local(threading.local):
    def __init__(self) -> None:
        # The registrations being notified on this thread (a dict: membership, insertion and
        # removal are bytecodes, cheaper than list method calls on every guarded dispatch).
        self.a: Dict[Any, None] = {}


_TL = _Local()
_ACV: contextvars.ContextVar[Tuple[Any, ...]] = contextvars.ContextVar(
    "callpyback_async_observers", default=()
)
#: Non-empty while some async dispatch is awaiting an observer (the cheap test sync code makes).
_AANY: List[None] = []


def in_observer() -> bool:
    """True while this thread (or task) is running a CallPyBack observer."""
    return bool(_TL.a) or bool(_AANY and _ACV.get())


def _active(reg: Any) -> bool:
    return reg in _TL.a or bool(_AANY and reg in _ACV.get())


# --- observer failures ------------------------------------------------------------------------
_PROPAGATE = (KeyboardInterrupt, SystemExit)


def _obs_failed(reg: Registration, exc: BaseException) -> None:
    """An observer raised: count it, log the first of a streak, maybe disable the observer."""
    reg.owner._observer_failed(reg, exc)


def _obs_base(reg: Registration, exc: BaseException, pending: Any) -> Any:
    """A BaseException from an observer: KeyboardInterrupt and SystemExit propagate once the
    call's bookkeeping is done (returned as ``pending``); anything else is isolated."""
    if isinstance(exc, _PROPAGATE):
        return pending if pending is not None else exc
    _obs_failed(reg, exc)
    return pending


def _hook_failed(hook: Any, exc: BaseException) -> None:
    import logging

    logging.getLogger("callpyback.handlers").error(
        "error handler hook %r failed with %r; the observed call is unaffected",
        hook,
        exc,
        exc_info=exc,
    )


# --- near the recursion limit ---------------------------------------------------------------------
# At the deepest level a call may not have the stack to run its own bookkeeping (an observer's
# frame, the failure step's).  It never raises an exception of its own there: what it could not
# run is pushed on a stack of tuples and run later, by the first wrapper with stack to spare, so
# that an observer such as MetricsObserver still sees every call end.  Pushing is
# ``_DEFERRED[0] = (item, _DEFERRED[0])``: a tuple display and an item store, no call at all
# (up to 3.11 even a C method such as list.append counts against the recursion limit).
_DEFERRED: List[Any] = [None]


#: Frames of headroom a drain wants below the recursion limit (an observer's internals, the
#: logging of a failure, may need a few dozen).
_HEADROOM = 100


def _deep() -> bool:
    """Whether fewer than ``_HEADROOM`` frames are left below the recursion limit (the frames
    are walked in C: about a microsecond, and only on paths that already hit the limit)."""
    try:
        sys._getframe(max(0, sys.getrecursionlimit() - _HEADROOM))
    except ValueError:
        return False
    return True


def _drain() -> None:
    """Run what was deferred, oldest first, once the stack has room; else keep it for later."""
    if _deep():
        return  # a shallower call will run it
    while _DEFERRED[0] is not None:
        node, _DEFERRED[0] = _DEFERRED[0], None  # take the whole stack (other threads: a new one)
        items = []
        while node is not None:
            items.append(node[0])
            node = node[1]
        items.reverse()  # oldest first
        for i, (fn, args) in enumerate(items):
            try:
                fn(*args)
            except RecursionError:  # still too deep after all: the rest goes back
                for rest in items[i:]:
                    _DEFERRED[0] = (rest, _DEFERRED[0])
                return
            except Exception:  # pragma: no cover - each deferred step isolates its own failures
                pass


def _late_notify(reg: Any, call: Callable[..., Any], args: Tuple[Any, ...]) -> None:
    try:
        call(*args)
    except RecursionError as exc:
        if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
            raise  # still no stack to start it: _drain keeps it for later
        _obs_failed(reg, exc)
    except Exception as exc:
        _obs_failed(reg, exc)
    else:
        if reg.failures:
            reg.failures = 0


def _late_failure(
    p: Pipeline,
    c: Any,
    info: Any,
    args: Any,
    kwargs: Any,
    start: float,
    attempt: int,
    exc: BaseException,
    hooks: bool = True,
) -> None:
    """A failure whose step could not run: notify it (the exception has propagated as it was,
    so nothing is decided).  ``hooks``: the handlers' bookkeeping had not run either."""
    if c is None:
        c = new_context(info, args, kwargs, p.time_source, start)
        c._state = _EXEC
        c._attempt = attempt
    steps = _failure(p, c, exc, False, False, decide=False, hooks=hooks)
    try:
        steps.send(None)
    except StopIteration:
        pass


#: What a gate may be given without the call's duration (see ``_Writer.lazy_duration``).
_UNTIMED_SOURCES = frozenset(
    {
        "state",
        "outcome",
        "value",
        "attempt",
        "exception",
        "function_info",
        "function",
        "function_signature",
        "target",
        "args",
        "kwargs",
    }
)


# --- generic dispatch (failure paths, generic shapes) --------------------------------------------


def _notify(regs: Tuple[Any, ...], c: Any, pending: Any) -> Any:
    """Notify ``regs`` of ``c``'s state, on the caller's thread; returns the pending interrupt."""
    act = _TL.a
    for reg in regs:
        pushed = False
        try:
            gate = reg.gate_run
            if gate is not None and not gate(c):
                continue
            if reg.guard:
                if reg in act or (_AANY and reg in _ACV.get()):
                    continue
                act[reg] = None
                pushed = True
            reg.update(c)
        except RecursionError as exc:
            # Out of stack in our own frames (this one, the injector feeding the observer
            # from the context, a context property): the observer never started, so it runs
            # later.  Out of stack inside it is its failure, like any other exception.
            last = exc.__traceback__
            while last is not None and last.tb_next is not None:
                last = last.tb_next
            where = last.tb_frame.f_code.co_filename if last is not None else _OURS[0]
            if where in _OURS or where.startswith("<callpyback injector"):
                _DEFERRED[0] = (
                    (
                        _late_update,
                        (
                            reg,
                            (
                                c._info,
                                c._args,
                                c._kwargs,
                                c._ts,
                                c._start,
                                c._state,
                                c._attempt,
                                c._time,
                                c._value,
                                c._exc,
                                c._rare,
                            ),
                        ),
                    ),
                    _DEFERRED[0],
                )
            else:
                _DEFERRED[0] = ((_obs_failed, (reg, exc)), _DEFERRED[0])
        except Exception as exc:
            _obs_failed(reg, exc)
        except BaseException as exc:
            pending = _obs_base(reg, exc, pending)
        else:
            if reg.failures:
                reg.failures = 0
        finally:
            if pushed:
                del act[reg]
    return pending


#: Files whose frames are ours (the engine's, the context's properties).
_OURS = (__file__, sys.modules[new_context.__module__].__file__ or "")


def _fields(c: Any) -> Tuple[Any, ...]:
    """What a context says now, as a tuple (for a notification that runs later)."""
    return (
        c._info,
        c._args,
        c._kwargs,
        c._ts,
        c._start,
        c._state,
        c._attempt,
        c._time,
        c._value,
        c._exc,
        c._rare,
    )


def _revive(fields: Tuple[Any, ...]) -> Any:
    info, args, kwargs, ts, start, state, attempt, elapsed, value, exc, rare = fields
    c = new_context(info, args, kwargs, ts, start)
    c._state, c._attempt, c._time, c._value, c._exc, c._rare = (
        state,
        attempt,
        elapsed,
        value,
        exc,
        rare,
    )
    return c


def _late_update(reg: Any, fields: Tuple[Any, ...]) -> None:
    _late_notify(reg, reg.update, (_revive(fields),))


def _late_states(regs: Tuple[Any, ...], fields: Tuple[Any, ...]) -> None:
    _notify(regs, _revive(fields), None)


async def _await_observer(reg: Any, call: Callable[..., Any], args: Tuple[Any, ...]) -> None:
    """Run one async observer with the guard set for this task (and what it hands to threads)."""
    token = _ACV.set((*_ACV.get(), reg))
    _AANY.append(None)
    try:
        result = call(*args)
        if result is not None and hasattr(result, "__await__"):
            await result
    finally:
        _AANY.pop()
        _ACV.reset(token)


def _notify_steps(
    regs: Tuple[Any, ...], c: Any, pending: Any, aio: bool
) -> Generator[Any, None, Any]:
    """:func:`_notify`, yielding async observers' awaitables when ``aio`` (see :func:`_drive`)."""
    if not aio:
        return _notify(regs, c, pending)
    for reg in regs:
        if not reg.is_async:
            pending = _notify((reg,), c, pending)
            continue
        gate = reg.gate_run
        if (gate is not None and not gate(c)) or (reg.guard and _active(reg)):
            continue
        try:
            yield _await_observer(reg, reg.update, (c,))
        except Exception as exc:
            _obs_failed(reg, exc)
        except BaseException as exc:
            pending = _obs_base(reg, exc, pending)
        else:
            if reg.failures:
                reg.failures = 0
    return pending


# --- the failure step: written once, driven synchronously or awaited ---------------------------


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, GeneratorExit):
        return True
    # asyncio is only imported if the program uses it; if it is absent nothing can be cancelled.
    aio = sys.modules.get("asyncio")
    return aio is not None and isinstance(exc, aio.CancelledError)


def _hooks(hooks: Tuple[Any, ...], exc: BaseException, c: Any) -> None:
    for hook in hooks:
        try:
            hook(exc, c)
        except Exception as raised:  # handler bookkeeping never becomes the caller's exception
            try:
                _hook_failed(hook, raised)
            except RecursionError:
                pass


def _failure(
    p: Pipeline,
    c: Any,
    exc: BaseException,
    allow_retry: bool,
    aio: bool,
    decide: bool = True,
    hooks: bool = True,
) -> Generator[Any, None, Any]:
    """One failed attempt, from the outcome to what the wrapper must do next.

    A generator so that it is written once: :func:`fail` drives it without awaiting anything,
    :func:`afail` awaits what it yields (async observers, async handlers, the retry sleep).
    Out of stack part-way (near the recursion limit), what it had not notified yet runs later.
    """
    progress = [0]
    try:
        if decide and exc.__class__ is RecursionError and _deep():
            # The function ran out of stack: so would its observers, part-way.  Everything is
            # told later, from a shallower frame; the exception stands.
            raise RecursionError
        return (yield from _failure_steps(p, c, exc, allow_retry, aio, decide, hooks, progress))
    except RecursionError:
        stage = progress[0]
        if stage < 2:  # nothing notified yet: all of it, later (the exception stands)
            c._state = _EXEC
            _DEFERRED[0] = (
                (_late_failure, (p, c, None, None, None, 0.0, c._attempt, exc, stage == 0)),
                _DEFERRED[0],
            )
        elif stage < 4:  # POST_FAILURE told, COMPLETED not yet
            c._state = _DONE
            _DEFERRED[0] = (
                (
                    _late_states,
                    (
                        p.completed,
                        (
                            c._info,
                            c._args,
                            c._kwargs,
                            c._ts,
                            c._start,
                            _DONE,
                            c._attempt,
                            c._time,
                            c._value,
                            c._exc,
                            c._rare,
                        ),
                    ),
                ),
                _DEFERRED[0],
            )
        return RERAISE


def _outcome_steps(
    p: Pipeline, regs: Tuple[Any, ...], c: Any, pending: Any, aio: bool
) -> Generator[Any, Any, Any]:
    """Notify an outcome's observers with the around-hooks entered again (as on the success
    path: a tracing span is current while the failure is logged or audited).  Only pipelines
    with around-hooks come here; the others notify directly (one generator frame less, which
    counts near the recursion limit)."""
    tokens = p.enter_all(c)
    try:
        return (yield from _notify_steps(regs, c, pending, aio and p.anotify))
    finally:
        p.leave_all(c, tokens)


def _failure_steps(
    p: Pipeline,
    c: Any,
    exc: BaseException,
    allow_retry: bool,
    aio: bool,
    decide: bool,
    hooks: bool,
    progress: List[int],
) -> Generator[Any, Any, Any]:
    """The body of :func:`_failure`; ``progress[0]`` says how far it got (1: handler hooks
    run, 2: POST_FAILURE notified, 3: decided, 4: COMPLETED or ERROR notified)."""
    if p.timed:
        t = p.monotonic() - c._start
        c._time = t if t > 0.0 else 0.0  # a clock that went backwards: never a negative time
    else:
        c._time = 0.0  # nobody can see a duration: the clock was never read
    c._exc = exc
    chain = p.chain
    pending = None
    if not isinstance(exc, Exception) or isinstance(exc, GeneratorExit):
        # Cancellation (GeneratorExit, CancelledError) completes; any other BaseException is an
        # interruption (ERROR).  Neither is a failure: never retried, never recovered.
        if chain.record_interrupt and hooks:
            _hooks(chain.record_interrupt, exc, c)
        progress[0] = 2
        if _is_cancellation(exc):
            c._more().cancelled = True
            _set(p, c, _DONE)
            regs = p.completed
        else:
            _set(p, c, _ERROR)
            regs = p.error
        if regs:
            try:
                pending = yield from (
                    _outcome_steps(p, regs, c, None, aio)
                    if p.around
                    else _notify_steps(regs, c, None, aio and p.anotify)
                )
            except RecursionError:  # no stack to start notifying: later
                _DEFERRED[0] = (
                    (
                        _late_states,
                        (
                            regs,
                            (
                                c._info,
                                c._args,
                                c._kwargs,
                                c._ts,
                                c._start,
                                c._state,
                                c._attempt,
                                c._time,
                                c._value,
                                c._exc,
                                c._rare,
                            ),
                        ),
                    ),
                    _DEFERRED[0],
                )
        progress[0] = 4
        return _pend(c, pending, RERAISE)
    _set(p, c, _FAIL)
    # Handlers' bookkeeping first, so POST_FAILURE observers see e.g. the breaker it left.
    if chain.record_failure and hooks:
        _hooks(chain.record_failure, exc, c)
    progress[0] = 1
    if p.failure:
        try:
            pending = yield from (
                _outcome_steps(p, p.failure, c, pending, aio)
                if p.around
                else _notify_steps(p.failure, c, pending, aio and p.anotify)
            )
        except RecursionError:
            _DEFERRED[0] = (
                (
                    _late_states,
                    (
                        p.failure,
                        (
                            c._info,
                            c._args,
                            c._kwargs,
                            c._ts,
                            c._start,
                            c._state,
                            c._attempt,
                            c._time,
                            c._value,
                            c._exc,
                            c._rare,
                        ),
                    ),
                ),
                _DEFERRED[0],
            )
    progress[0] = 2
    decision: Any = None
    by = ""
    if chain and pending is None and decide:
        try:
            if aio and chain.is_async:
                decision, by = yield chain.adecide(exc, c, allow_retry)
            else:
                decision, by = chain.decide(exc, c, allow_retry)
        except RecursionError:  # no stack to ask the handlers: the exception stands
            decision, by = None, ""
    progress[0] = 3
    kind: Any = type(decision)
    if kind is Retry:
        try:
            if aio:
                yield p.asleep(decision.delay)
            else:
                p.sleep(decision.delay)
        except Exception as broken:
            # The time source could not wait: the retry is abandoned and the function's own
            # exception stands (a handler's machinery never replaces it).
            _hook_failed(p.sleep, broken)
            kind = None
        except BaseException as interrupt:  # interrupted while waiting: ERROR, then propagate
            c._exc = interrupt
            _set(p, c, _ERROR)
            if p.error:
                yield from (
                    _outcome_steps(p, p.error, c, None, aio)
                    if p.around
                    else _notify_steps(p.error, c, None, aio and p.anotify)
                )
            raise
        else:
            return RETRY
    if kind is Recover:
        c._value = decision.value
        c._more().recovered_by = by
    _set(p, c, _DONE)
    if p.completed:
        try:
            pending = yield from (
                _outcome_steps(p, p.completed, c, pending, aio)
                if p.around
                else _notify_steps(p.completed, c, pending, aio and p.anotify)
            )
        except RecursionError:
            _DEFERRED[0] = (
                (
                    _late_states,
                    (
                        p.completed,
                        (
                            c._info,
                            c._args,
                            c._kwargs,
                            c._ts,
                            c._start,
                            c._state,
                            c._attempt,
                            c._time,
                            c._value,
                            c._exc,
                            c._rare,
                        ),
                    ),
                ),
                _DEFERRED[0],
            )
    progress[0] = 4
    if kind is Recover:
        return _pend(c, pending, RECOVER)
    if kind is Raise and decision.exception is not exc:
        c._more().raise_ = decision.exception
        return _pend(c, pending, NEW)
    return _pend(c, pending, RERAISE)


def _pend(c: Any, pending: Any, action: Any) -> Any:
    if pending is None:
        return action
    c._more().raise_ = pending
    return PENDING


def fail(p: Pipeline, c: Any, exc: BaseException, allow_retry: bool = True) -> Any:
    """The failure step on a synchronous path."""
    steps = _failure(p, c, exc, allow_retry, False)
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the synchronous failure step awaited something")  # pragma: no cover


async def afail(p: Pipeline, c: Any, exc: BaseException, allow_retry: bool = True) -> Any:
    """The failure step on a coroutine path: awaits what the step yields."""
    steps = _failure(p, c, exc, allow_retry, True)
    sent: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            awaitable = steps.send(sent) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        sent = error = None
        try:
            sent = await awaitable
        except BaseException as raised:  # delivered into the step, as if raised there
            error = raised


# --- signature shapes ------------------------------------------------------------------------
_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ITERABLE_COROUTINE = 0x100
_CO_ASYNC_GENERATOR = 0x200
_PREFIX = "_cpb_"


class Shape:
    """The structure of a parameter list: what the compiled code depends on, not the names."""

    __slots__ = ("kwonly", "names", "positional", "posonly", "varargs", "varkw")

    def __init__(
        self,
        posonly: int,
        positional: int,
        varargs: bool,
        kwonly: int,
        varkw: bool,
        names: Tuple[str, ...],
    ) -> None:
        self.posonly = posonly
        self.positional = positional  # including the positional-only ones
        self.varargs = varargs
        self.kwonly = kwonly
        self.varkw = varkw
        self.names = names  # the real names, in co_varnames order

    @property
    def key(self) -> Tuple[int, int, bool, int, bool]:
        return (self.posonly, self.positional, self.varargs, self.kwonly, self.varkw)

    def canonical(self) -> Tuple[str, ...]:
        names = [f"{_PREFIX}a{i}" for i in range(self.positional)]
        names += [f"{_PREFIX}k{i}" for i in range(self.kwonly)]
        if self.varargs:
            names.append(f"{_PREFIX}va")
        if self.varkw:
            names.append(f"{_PREFIX}vk")
        return tuple(names)

    def params(self) -> str:
        names = self.canonical()
        pos = list(names[: self.positional])
        out = []
        if self.posonly:
            out += [*pos[: self.posonly], "/"]
            pos = pos[self.posonly :]
        out += pos
        if self.varargs:
            out.append(f"*{_PREFIX}va")
        elif self.kwonly:
            out.append("*")
        out += list(names[self.positional : self.positional + self.kwonly])
        if self.varkw:
            out.append(f"**{_PREFIX}vk")
        return ", ".join(out)

    def call(self) -> str:
        """The arguments to call the function with: exactly what the caller passed."""
        names = self.canonical()
        out = list(names[: self.positional])
        if self.varargs:
            out.append(f"*{_PREFIX}va")
        out += [f"{n}={n}" for n in names[self.positional : self.positional + self.kwonly]]
        if self.varkw:
            out.append(f"**{_PREFIX}vk")
        return ", ".join(out)

    def args_expr(self) -> str:
        names = self.canonical()
        items = list(names[: self.positional])
        if self.varargs:
            items.append(f"*{_PREFIX}va")
        if not items:
            return "()"
        return f"({', '.join(items)},)"

    def kwargs_expr(self) -> str:
        """A new dict each time: observers must never alias what the function is called with."""
        names = self.canonical()
        items = [f"'{n}': {n}" for n in names[self.positional : self.positional + self.kwonly]]
        if self.varkw:
            items.append(f"**{_PREFIX}vk")
        return "{" + ", ".join(items) + "}"


GENERIC = Shape(0, 0, True, 0, True, ("args", "kwargs"))


def shape_of(func: Any) -> Shape:
    """The exact shape of a plain function, or the generic ``(*args, **kwargs)`` one."""
    if type(func) is not types.FunctionType:
        return GENERIC
    code = func.__code__
    positional = code.co_argcount
    kwonly = code.co_kwonlyargcount
    varargs = bool(code.co_flags & _CO_VARARGS)
    varkw = bool(code.co_flags & _CO_VARKEYWORDS)
    count = positional + kwonly + varargs + varkw
    names = tuple(code.co_varnames[:count])
    if any(n.startswith(_PREFIX) for n in names):
        return GENERIC  # a parameter named like our locals (vanishingly rare): stay generic
    return Shape(code.co_posonlyargcount, positional, varargs, kwonly, varkw, names)


# --- the template ------------------------------------------------------------------------------
C = _PREFIX + "c"  # the context (None until something needs it)
_PHASE_STATE = {"pre": _PRE, "ok": _OK, "done": _DONE}


class _Writer:
    """Renders the one template of an observed call for a plan, a wrapper kind and a shape.

    The generated function, in order: PRE_EXECUTION observers; the clock; the attempt (in a
    retry loop if a handler can retry); on an exception, the failure step and what it decided;
    on success, the handlers' success hooks, POST_SUCCESS and COMPLETED observers.  Each
    observer is called directly with its injected arguments, isolated, and guarded against
    observing itself.  The context is built only where something needs it.
    """

    def __init__(self, p: Pipeline, kind: str, shape: Shape, mode: str, nfree: int) -> None:
        self.p = p
        self.kind = kind
        self.shape = shape
        self.mode = mode  # "closure" or "const"
        self.nfree = nfree
        self.aio = kind in ("coroutine", "async_generator")
        self.check = p.check
        self.lines: List[str] = []
        self.indent = 1
        self.cond = 0  # open conditional blocks: a context built inside may not exist after
        self.ctx = "none"  # is the context built here: "none", "maybe" or "always"
        self.objects: Dict[str, Any] = {}  # name in the code -> object of this plan
        self.hot: set[str] = set()  # names the success path uses: unpacked at entry
        self.rare = 0  # > 0 while emitting code only a failure or an interrupt runs
        self.names: List[str] = []
        self.cold: List[str] = []
        #: name -> (registration, attribute): per-function values from ``observer.bind(info)``
        self.binders: Dict[str, Tuple[Any, str]] = {}
        #: The clock's name while the success's duration is read lazily (see lazy_duration)
        self.lazy_t: Optional[str] = None
        self.act_at_site = False

    # -- emission helpers ----------------------------------------------------------------------
    def w(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def use(self, name: str, obj: Any) -> str:
        """A name for ``obj`` in the generated code.

        On the success path it is a local unpacked from the wrapper's record at entry; code
        that only runs on a failure or an interrupt reads it from the record's cold part
        instead, so a successful call does not pay for unpacking it.
        """
        full = _PREFIX + name
        self.objects[full] = obj
        if self.rare:
            return f"{_PREFIX}COLD_{name}_"
        self.hot.add(full)
        return full

    def bound(self, name: str, reg: Registration, attr: str) -> str:
        """A per-function value: ``getattr(reg.bind(function_info), attr)``, in the record."""
        full = self.use(name, None)
        self.binders[full] = (reg, attr)
        return full

    @contextlib.contextmanager
    def rare_code(self) -> Iterator[None]:
        self.rare += 1
        try:
            yield
        finally:
            self.rare -= 1

    def b(self, name: str) -> str:
        """A builtin, bound in the record: a module global of the same name must not shadow it."""
        import builtins

        return self.use(name, getattr(builtins, name))

    def state(self, state: ExecutionState) -> str:
        return self.use(f"S_{state.name}", state)

    def open(self, text: str) -> None:
        self.w(text)
        self.indent += 1
        self.cond += 1

    def close(self, blocks: int = 1) -> None:
        self.indent -= blocks
        self.cond -= blocks

    def to(self, state: ExecutionState) -> None:
        """The context (known to exist) moves to ``state``."""
        if self.check:
            self.w(f"{self.use('go', _go)}({C}, {self.state(state)})")
        else:
            self.w(f"{C}._state = {self.state(state)}")

    def when_ctx(self, text: str) -> None:
        """Keep a context that may exist in step (its state, times and value)."""
        if self.ctx == "always":
            self.w(text)
        elif self.ctx == "maybe":
            self.w(f"if {C} is not None:")
            self.w(f"    {text}")

    def ensure_ctx(self, phase: str) -> None:
        """Build the context here unless it exists, with what this point of the call knows."""
        if self.ctx == "always":
            return
        nested = self.ctx == "maybe"
        if nested:
            self.w(f"if {C} is None:")
            self.indent += 1
        p = self.p
        shape = self.shape
        if phase in ("init", "pre"):
            start = f"{self.use('mono', p.monotonic)}()" if p.timed else "0.0"
        else:
            start = f"{_PREFIX}t0"
        self.w(
            f"{C} = {self.use('ctx', new_context)}({self.use('info', None)}, "
            f"{shape.args_expr()}, {shape.kwargs_expr()}, {self.use('ts', p.time_source)}, "
            f"{start})"
        )
        if phase == "pre":
            self.w(f"{C}._state = {self.state(_PRE)}")
        elif phase == "attempt":
            self.w(f"{C}._state = {self.state(_EXEC)}; {C}._attempt = {_PREFIX}n")
        elif phase in ("ok", "done"):
            self.w(f"{C}._attempt = {_PREFIX}n; {C}._time = {_PREFIX}t; {C}._value = {_PREFIX}v")
            self.w(f"{C}._state = {self.state(_PHASE_STATE[phase])}")
        if nested:
            self.indent -= 1
        self.ctx = "always" if self.cond == 0 else "maybe"

    # -- injected values on the inline path ----------------------------------------------------
    def expr(self, src: str, phase: str) -> str:
        info = self.use("info", None)
        fixed = {
            "context": C,
            "arguments": f"{C}.arguments",
            "metadata": f"{C}.metadata",
            "timestamp": f"{C}.timestamp",
            "local_variables": f"{C}.local_variables",
            "function_signature": f"{info}.signature",
            "function": f"{info}.function",
            "function_info": info,
            "target": f"{info}.target",
            "args": self.shape.args_expr(),
            "kwargs": self.shape.kwargs_expr(),
            "exception": "None",
            "state": self.state(_PHASE_STATE[phase]),
        }
        if src in fixed:
            return fixed[src]
        if phase == "pre":
            return "0" if src == "attempt" else "None"
        return {
            "result": f"{_PREFIX}r",
            "execution_time": f"{_PREFIX}t",
            "value": f"{_PREFIX}v",
            "attempt": f"{_PREFIX}n",
            "outcome": "'success'",
        }[src]

    def args(self, inject: Any, phase: str) -> str:
        if inject is None:  # no introspectable signature: the context, positionally
            self.ensure_ctx(phase)
            return C
        return ", ".join(
            self.expr(src, phase) if kw is None else f"{kw}={self.expr(src, phase)}"
            for kw, src in inject
        )

    # -- one state's observers, inline -------------------------------------------------------------
    def dispatch(self, regs: Tuple[Registration, ...], phase: str) -> None:
        for i, reg in enumerate(regs):
            self.one(reg, f"{phase}{i}", phase)

    def one(self, reg: Registration, tag: str, phase: str) -> None:
        r = self.use(f"r{tag}", reg)
        state = self.state(_PHASE_STATE[phase])
        opened = 0
        if reg.gate is not None:
            parts = self.args(reg.gate_inject, phase)
            self.open(f"if {self.use(f'g{tag}', reg.gate)}({parts}):")
            opened += 1
            if self.lazy_t and phase in ("ok", "done"):
                self.w(f"if {_PREFIX}t is None:")
                self.indent += 1
                self.read_duration(self.lazy_t)
                self.indent -= 1
        if reg.guard:
            act = f"{_PREFIX}act"
            if self.act_at_site:
                self.w(f"{act} = {self.use('tl', _TL)}.a")
            self.open(
                f"if {r} not in {act} and not ({self.use('AANY', _AANY)} and "
                f"{r} in {self.use('ACV', _ACV)}.get()):"
            )
            opened += 1
        if reg.background:
            # Queued with the raw facts; the worker builds the context (a frozen one).
            from ._background import submit_call

            self.w("try:")
            self.w(
                f"    {self.use('bq', submit_call)}(({r}, {self.use('info', None)}, {state}, "
                f"{self.shape.args_expr()}, {self.shape.kwargs_expr()}, "
                + ("None, None, 0, " if phase == "pre" else f"{_PREFIX}v, {_PREFIX}t, {_PREFIX}n, ")
                + (
                    f"{self.use('mono', self.p.monotonic)}()"
                    if phase == "pre" and self.p.timed
                    else f"{_PREFIX}t0"
                    if phase != "pre"
                    else "0.0"
                )
                + "))"
            )
            self.isolate(reg, r, push=False)
            self.close(opened)
            return
        if reg.guard:
            self.w(f"{_PREFIX}act[{r}] = None")
        late: Optional[Tuple[str, str]] = None
        bound = (
            reg.bind is not None
            and phase in ("pre", "done")
            and not (phase == "done" and self.p.can_retry)
        )  # after a retry the call is not a first-attempt success: notify says so
        if bound:
            # A per-function binding (docs/observers.md): start() before the call, done(t)
            # after a first-attempt success; a batching one appends to a list the engine
            # folds at ``limit``.  No dict lookup, and often no Python frame at all.
            self.w("try:")
            if phase == "pre":
                call = f"{self.bound(f'bs{tag}', reg, 'start')}()"
                late = (self.bound(f"bs{tag}", reg, "start"), "()")
                self.w(f"    {call}")
            else:
                done = self.bound(f"bd{tag}", reg, "done")
                late = (done, f"({_PREFIX}t,)")
                if reg.escalates:
                    self.w(f"    if {done}({_PREFIX}t) is {self.use('NC', NEEDS_CONTEXT)}:")
                    self.indent += 2
                    self.cond += 1
                    with self.rare_code():
                        self.ensure_ctx(phase)
                        self.w(f"{self.use(f'r{tag}', reg)}.update({C})")
                        self.w(f"if {r}.failures:")  # user code ran (on_slow): it worked
                        self.w(f"    {r}.failures = 0")
                    self.indent -= 2
                    self.cond -= 1
                else:
                    self.w(f"    {done}({_PREFIX}t)")
                if reg.bind_batch:
                    pending = self.bound(f"bp{tag}", reg, "pending")
                    # At each multiple (not "at least"): with the fold busy in another thread,
                    # a call must not try again on every append.
                    self.w(f"    if not {self.b('len')}({pending}) % {int(reg.bind_batch)}:")
                    self.w(f"        {self.bound(f'bf{tag}', reg, 'flush')}()")
        elif reg.is_async:
            # Awaited with the guard set for this task and what it hands to threads.
            self.ensure_ctx(phase)
            self.w("try:")
            self.w(f"    await {self.use('aobs', _await_observer)}({r}, {r}.update, ({C},))")
        elif reg.call is not None:
            if reg.needs_context:
                self.ensure_ctx(phase)
            cb = self.use(f"cb{tag}", reg.call)
            args = self.args(reg.inject, phase)
            call = f"{cb}({args})"
            late = (cb, f"({args},)" if args else "()")
            self.w("try:")
            if reg.escalates:
                self.w(f"    if {call} is {self.use('NC', NEEDS_CONTEXT)}:")
                self.indent += 2
                self.cond += 1
                self.ensure_ctx(phase)
                self.w(f"{r}.update({C})")
                self.indent -= 2
                self.cond -= 1
            else:
                self.w(f"    {call}")
        else:
            self.ensure_ctx(phase)
            self.w("try:")
            self.w(f"    {r}.update({C})")
            late = (f"{r}.update", f"({C},)")
        # A binding's own calls are C-level appends: they fail only when the interpreter does
        # (no memory, no stack), so a success has no failure streak to end, and no check.
        self.isolate(reg, r, push=reg.guard, late=late, reset=not bound)
        self.close(opened)

    def isolate(
        self,
        reg: Registration,
        r: str,
        push: bool,
        late: Optional[Tuple[str, str]] = None,
        reset: bool = True,
    ) -> None:
        """The except clauses after an observer call: it never breaks the observed call.

        ``late``: the callable and the argument tuple, to run the notification again later if
        the stack was too deep for it now (see ``_DEFERRED``).
        """
        e = f"{_PREFIX}oe"
        with self.rare_code():
            rr = self.use(r[len(_PREFIX) :], reg)
            of = self.use("of", _obs_failed)
            defer = self.use("DEFER", _DEFERRED)
            if late is not None:
                # Out of stack before the observer even started (the traceback ends in this
                # frame): run it later.  Out of stack part-way is its failure, like any other.
                self.w(f"except {self.b('RecursionError')} as {e}:")
                self.w(f"    if {e}.__traceback__.tb_next is None:")
                self.w(
                    f"        {defer}[0] = (({self.use('late', _late_notify)}, "
                    f"({rr}, {late[0]}, {late[1]})), {defer}[0])"
                )
                self.w("    else:")
                self.w(f"        {defer}[0] = (({of}, ({rr}, {e})), {defer}[0])")
            self.w(f"except {self.b('Exception')} as {e}:")
            self.w("    try:")
            self.w(f"        {of}({rr}, {e})")
            self.w(f"    except {self.b('Exception')}:  # no stack even to report it: later")
            self.w(f"        {defer}[0] = (({of}, ({rr}, {e})), {defer}[0])")
            self.w(f"except {self.b('BaseException')} as {e}:")
            self.w(f"    {_PREFIX}p = {self.use('ob', _obs_base)}({rr}, {e}, {_PREFIX}p)")
        if reset:
            self.w("else:")
            self.w(f"    if {r}.failures:")
            self.w(f"        {r}.failures = 0")
        if push:
            self.w("finally:")
            self.w(f"    del {_PREFIX}act[{r}]")

    # -- the attempt ------------------------------------------------------------------------
    def around_names(self) -> Tuple[Optional[str], Optional[str]]:
        if not self.p.around:
            return None, None
        return self.use("enter", self.p.enter_all), self.use("leave", self.p.leave_all)

    def step(self, text: str) -> None:
        """One stretch of the body's execution, with the around-hooks entered and left here."""
        enter, leave = self.around_names()
        if enter is None:
            self.w(text)
            return
        self.w(f"{_PREFIX}tok = {enter}({C})")
        self.w("try:")
        self.w(f"    {text}")
        self.w("finally:")
        self.w(f"    {leave}({C}, {_PREFIX}tok)")

    def relay(self) -> None:
        """Async generators (and generators with around-hooks) run in steps: relay each one."""
        f = self.use("f", None)
        g, i, s, th = (f"{_PREFIX}{x}" for x in ("g", "i", "s", "th"))
        aio = self.kind == "async_generator"
        self.w(f"{g} = {f}({self.shape.call()})")
        self.step(f"{i} = await {g}.__anext__()" if aio else f"{i} = {self.b('next')}({g})")
        self.w("while True:")
        self.indent += 1
        self.w("try:")
        self.w(f"    {s} = yield {i}")
        self.w(f"except {self.b('GeneratorExit')}:")
        self.indent += 1
        self.step(f"await {g}.aclose()" if aio else f"{g}.close()")
        self.w("raise")
        self.indent -= 1
        self.w(f"except {self.b('BaseException')} as {th}:")
        self.indent += 1
        self.step(f"{i} = await {g}.athrow({th})" if aio else f"{i} = {g}.throw({th})")
        self.indent -= 1
        self.w("else:")
        self.indent += 1
        self.step(f"{i} = await {g}.asend({s})" if aio else f"{i} = {g}.send({s})")
        self.indent -= 2

    def attempt(self) -> None:
        p = self.p
        chain = p.chain
        for i, hook in enumerate(chain.before_attempt):
            hot = chain.before_hot[i]
            if hot is not None:
                self.open(f"if not {self.use(f'bh{i}', hot)}.idle:")
            self.ensure_ctx("attempt")
            self.w(f"{self.use(f'ba{i}', hook)}({C})")
            if hot is not None:
                self.close()
        if p.extractor is not None:
            caller = f", {self.use('frame', sys._getframe)}()" if p.extractor_takes_caller else ""
            self.w(
                f"{_PREFIX}cap = {self.use('xt', p.extractor)}.begin({self.use('code', None)}, "
                f"{self.use('vn', p.variable_names)}{caller})"
            )
        hook = (chain.call_async if self.aio else chain.call_sync) or (None,)
        if hook[0] is not None:
            call = (
                f"{self.use('hook', hook[0])}({self.use('f', None)}, {self.shape.args_expr()}, "
                f"{self.shape.kwargs_expr()}, {C})"
            )
            self.step(f"{_PREFIX}v = {'await ' if self.aio else ''}{call}")
        elif self.kind == "async_generator" or (self.kind == "generator" and p.around):
            self.relay()
        else:
            call = f"{self.use('f', None)}({self.shape.call()})"
            if self.kind == "coroutine":
                call = f"await {call}"
            elif self.kind == "generator":
                call = f"yield from {call}"
            self.step(f"{_PREFIX}v = {call}")

    def capture_done(self) -> None:
        if self.p.extractor is not None:
            self.w(f"{C}._more().locals = {_PREFIX}cap.finish()")

    def failure_branch(self, loop: bool) -> None:
        p = self.p
        if not p.sees_failures:
            self.w("raise")  # nobody to tell and nothing to decide: not even a context
            return
        self.drain()
        if self.aio and (p.anotify or p.chain.is_async):
            step = f"await {self.use('afail', afail)}"
        else:
            step = self.use("fail", fail)
        x = f"{_PREFIX}x"
        self.w(f"{x} = {self.use('RERAISE', RERAISE)}")
        # The failure step must never replace the function's exception, not even near the
        # recursion limit: if it cannot run, the original is re-raised untouched, and the
        # step's notifications run later (see _DEFERRED).
        self.w("try:")
        self.indent += 1
        self.cond += 1
        self.ensure_ctx("attempt")
        self.capture_done()
        self.w(f"{x} = {step}({self.use('P', p)}, {C}, {_PREFIX}e, {loop})")
        self.indent -= 1
        self.cond -= 1
        self.w(f"except {self.b('Exception')} as {_PREFIX}fe:")
        # No stack for the step: nothing was notified, so it all runs later.  A RecursionError
        # that reaches this frame never got inside the step's own handler (which defers what
        # a step that ran part-way had left), wherever it was raised: building the context,
        # entering ``fail``, or starting the ``_failure`` frame (a C tracer such as coverage's
        # makes that raise, before any of the step's code ran).
        self.w(f"    {_PREFIX}tb = {_PREFIX}fe.__traceback__.tb_next")
        self.w(
            f"    if {_PREFIX}tb is None or {_PREFIX}tb.tb_next is None or "
            f"{_PREFIX}fe.__class__ is {self.b('RecursionError')}:"
        )
        defer = self.use("DEFER", _DEFERRED)
        self.w(
            f"        {defer}[0] = (({self.use('latef', _late_failure)}, "
            f"({self.use('P', p)}, {C}, {self.use('info', None)}, {self.shape.args_expr()}, "
            f"{self.shape.kwargs_expr()}, {_PREFIX}t0, {_PREFIX}n, {_PREFIX}e)), {defer}[0])"
        )
        if loop:
            self.w(f"if {x} is {self.use('RETRY', RETRY)}:")
            self.w("    continue")
        self.w(f"if {x} is {self.use('RECOVER', RECOVER)}:")
        self.w("    return" if self.kind == "async_generator" else f"    return {C}._value")
        self.w(f"if {x} is {self.use('NEW', NEW)}:")
        self.w(f"    raise {C}._rare.raise_ from {_PREFIX}e")
        self.w(f"if {x} is {self.use('PENDING', PENDING)}:")
        self.w(f"    raise {C}._rare.raise_")
        self.w("raise")

    def drain(self) -> None:
        """Run what a deeper call could not (cheap: one truth test when there is nothing)."""
        self.w(f"if {self.use('DEFER', _DEFERRED)}[0] is not None:")
        self.w("    try:")
        self.w(f"        {self.use('drain', _drain)}()")
        self.w(f"    except {self.b('Exception')}:")
        self.w("        pass")

    def pre_interrupted(self) -> None:
        """A PRE_EXECUTION observer raised KeyboardInterrupt/SystemExit: the call does not run;
        it is interrupted (ERROR), and the interrupt propagates."""
        p = self.p
        self.open(f"if {_PREFIX}p is not None:")
        self.ensure_ctx("pre")
        if self.aio and p.anotify:
            self.w(f"await {self.use('afail', afail)}({self.use('P', p)}, {C}, {_PREFIX}p, False)")
        else:
            self.w(f"{self.use('fail', fail)}({self.use('P', p)}, {C}, {_PREFIX}p, False)")
        self.w(f"raise {_PREFIX}p")
        self.close()

    # -- the whole function ------------------------------------------------------------------------
    def render(self) -> str:
        p = self.p
        kind = self.kind
        self.w("__tracebackhide__ = True")
        self.w("#PROLOGUE")
        if self.check or p.eager_context:
            self.ensure_ctx("init")
        else:
            self.w(f"{C} = None")
        if p.observers:
            self.w(f"{_PREFIX}p = None")
        inline = [r for r in p.pre + p.success + p.completed if r.guard]
        # Observers behind gates (a logger whose level is off) usually stay closed: then this
        # thread's registry of running observers is fetched only past a gate, not every call.
        self.act_at_site = bool(inline) and all(r.gate is not None for r in inline)
        if p.guarded and not self.act_at_site:
            self.w(f"{_PREFIX}act = {self.use('tl', _TL)}.a")
        if self.ctx == "always":
            self.to(_PRE)
        if p.pre:
            self.dispatch(p.pre, "pre")
            ctx = self.ctx
            with self.rare_code():
                self.pre_interrupted()
            self.ctx = ctx
        mono = self.use("mono", p.monotonic) if p.timed else None
        if mono:
            # Even a C call can hit the recursion limit (up to 3.11): then the call goes on
            # untimed rather than die here with its PRE_EXECUTION told and no outcome.
            self.w("try:")
            self.w(f"    {_PREFIX}t0 = {mono}()")
            self.w(f"except {self.b('Exception')}:")
            self.w(f"    {_PREFIX}t0 = 0.0")
        else:
            self.w(f"{_PREFIX}t0 = 0.0")
        self.when_ctx(f"{C}._start = {_PREFIX}t0")
        loop = p.can_retry and kind in ("function", "coroutine")
        if loop:
            self.w(f"{_PREFIX}n = 0")
            self.w("while True:")
            self.indent += 1
            self.w(f"{_PREFIX}n += 1")
            if self.ctx == "none":
                self.ctx = "maybe"  # a later attempt finds the context of the first
        else:
            self.w(f"{_PREFIX}n = 1")
        if self.ctx == "always":
            self.to(_EXEC)
            self.w(f"{C}._attempt = {_PREFIX}n")
        else:
            self.when_ctx(f"{C}._state = {self.state(_EXEC)}; {C}._attempt = {_PREFIX}n")
        before = self.ctx
        self.w("try:")
        self.indent += 1
        self.attempt()
        self.indent -= 1
        after = self.ctx
        if kind == "async_generator":
            self.w(f"except {self.b('StopAsyncIteration')}:")
            self.w(f"    {_PREFIX}v = None")
        elif kind == "generator" and p.around:
            self.w(f"except {self.b('StopIteration')} as {_PREFIX}stop:")
            self.w(f"    {_PREFIX}v = {_PREFIX}stop.value")
        with self.rare_code():
            self.w(f"except {self.b('BaseException')} as {_PREFIX}e:")
            self.indent += 1
            self.ctx = before if before == after else "maybe"
            self.failure_branch(loop)
            self.indent -= 1
        self.ctx = after
        if loop:
            self.w("break")
            self.indent -= 1
        # -- success
        if mono and self.lazy_duration():
            # Every observer of the success is gated (a logger whose level is off): the end of
            # the call is read only once a gate lets one through (see :meth:`one`).
            self.lazy_t = mono
            self.w(f"{_PREFIX}t = None")
        elif mono:
            self.read_duration(mono)
        else:
            self.w(f"{_PREFIX}t = 0.0")
        # After a retry the context still holds the failed attempt's exception: a success
        # clears it (``exception`` is the latest failed attempt's, kept only by a recovery).
        clear = f"; {C}._exc = None" if loop else ""
        self.when_ctx(f"{C}._time = {_PREFIX}t; {C}._value = {_PREFIX}v{clear}")
        self.capture_done()
        chain = p.chain
        for i, hook in enumerate(chain.after_success):
            hot = chain.after_hot[i]
            if hot is not None:
                self.w(f"if {self.use(f'ah{i}', hot)}.idle:")
                count = getattr(hot, "count", None)
                self.w(f"    {self.use(f'ac{i}', count)}()" if callable(count) else "    pass")
                self.w("else:")
                self.indent += 1
                self.cond += 1
            self.ensure_ctx("ok")
            self.w("try:")
            self.w(f"    {self.use(f'as{i}', hook)}({C})")
            with self.rare_code():
                self.w(f"except {self.b('Exception')} as {_PREFIX}he:")
                self.w(
                    f"    {self.use('hf', _hook_failed)}({self.use(f'as{i}', hook)}, {_PREFIX}he)"
                )
            if hot is not None:
                self.close()
        if p.wants_result:
            new = self.use("new", object.__new__)
            self.w(f"{_PREFIX}r = {new}({self.use('Res', ExecutionResult)})")
            self.w(f"{_PREFIX}r.value = {_PREFIX}v; {_PREFIX}r.execution_time = {_PREFIX}t")
        # The outcome's observers run with the around-hooks entered again (a tracing span is
        # current while an audit or a log record of the call is written), in this frame.
        around = bool(p.around and (p.success or p.completed) and not self.lazy_t)
        if around:
            self.ensure_ctx("ok")
            enter, leave = self.around_names()
            self.w(f"{_PREFIX}tok = {enter}({C})")
            self.w("try:")
            self.indent += 1
        if self.ctx == "always":
            self.to(_OK)
        else:
            self.when_ctx(f"{C}._state = {self.state(_OK)}")
        self.dispatch(p.success, "ok")
        if self.ctx == "always":
            self.to(_DONE)
        else:
            self.when_ctx(f"{C}._state = {self.state(_DONE)}")
        self.dispatch(p.completed, "done")
        if around:
            self.indent -= 1
            self.w("finally:")
            self.w(f"    {leave}({C}, {_PREFIX}tok)")
        if p.observers:
            self.drain()
            self.w(f"if {_PREFIX}p is not None:")
            self.w(f"    raise {_PREFIX}p")
        self.w("return" if kind == "async_generator" else f"return {_PREFIX}v")
        return self.assemble()

    def read_duration(self, mono: str) -> None:
        self.w("try:")
        self.w(f"    {_PREFIX}t = {mono}() - {_PREFIX}t0")
        self.w(f"except {self.b('Exception')}:  # no stack even for the clock")
        self.w(f"    {_PREFIX}t = 0.0")
        self.w(f"if {_PREFIX}t < 0.0:")
        self.w(f"    {_PREFIX}t = 0.0  # a clock that went backwards: never a negative time")

    def lazy_duration(self) -> bool:
        """Whether the success's duration can wait for the first gate that lets a notification
        through: nothing else on the success path reads it (no context yet, no result object,
        no handler hook, no extraction) and no gate is given it."""
        p = self.p
        regs = p.success + p.completed
        if not regs or self.ctx != "none" or self.check or p.wants_result:
            return False
        if p.chain.after_success or p.extractor is not None:
            return False
        for reg in regs:
            if reg.gate is None or reg.gate_inject is None:
                return False
            if any(src not in _UNTIMED_SOURCES for _, src in reg.gate_inject):
                return False
        return True

    def assemble(self) -> str:
        """Wrap the body in its function, the record's hot part unpacked first."""
        shape = self.shape
        names = sorted(self.hot)
        cold = sorted(n for n in self.objects if n not in self.hot)
        self.names, self.cold = names, cold
        index = {n: i for i, n in enumerate(cold)}
        for i, line in enumerate(self.lines):
            if "_COLD_" in line:
                for n in self.objects:
                    token = f"{_PREFIX}COLD_{n[len(_PREFIX) :]}_"
                    if token in line:
                        line = line.replace(
                            token, n if n in self.hot else f"{_PREFIX}cold[{index[n]}]"
                        )
                self.lines[i] = line
        unpack = ", ".join([*names, f"{_PREFIX}cold"])
        prologue: List[str] = []
        if self.mode == "closure":
            # The record must belong to this code: a call racing with a pipeline change may
            # run new code with the old record (or the reverse).  Then it calls again, which
            # runs the code the current record belongs to.  Checked before unpacking, whose
            # length differs between records.
            prologue.append(f"{_PREFIX}R = {_PREFIX}E")
            prologue.append(f"if {_PREFIX}R[0] != {_PREFIX}KEY:")
            again = f"{_PREFIX}R[1]({shape.call()})"
            if self.kind == "coroutine":
                prologue.append(f"    return await {again}")
            elif self.kind == "generator":
                prologue.append(f"    return (yield from {again})")
            elif self.kind == "async_generator":
                prologue.append(f"    async for {_PREFIX}i in {again}:")
                prologue.append(f"        yield {_PREFIX}i")
                prologue.append("    return")
            else:
                prologue.append(f"    return {again}")
            prologue.append(f"{_PREFIX}K_, {_PREFIX}again, {unpack} = {_PREFIX}R")
        else:
            prologue.append(f"{unpack} = '{_PREFIX}RECORD'")
        body: List[str] = []
        for line in self.lines:
            if line.strip() == "#PROLOGUE":
                body += ["    " + text for text in prologue]
            else:
                body.append(line)
        head = "async def" if self.aio else "def"
        fn = f"{head} {_PREFIX}w({shape.params()}):"
        if self.mode == "closure":
            src = [f"def {_PREFIX}outer({_PREFIX}E):", "    " + fn]
        else:
            src = [f"def {_PREFIX}outer():"]
            free = [f"{_PREFIX}fv{i}" for i in range(self.nfree)]
            if free:
                src.append(f"    {' = '.join(free)} = None")
            src.append("    " + fn)
        src += ["    " + line for line in body]
        if self.mode == "const" and self.nfree:
            # Never runs: makes the dummies free variables, so that this code has as many as
            # the original function and can become its __code__.
            src.append("        " + "; ".join(f"{_PREFIX}fv{i}" for i in range(self.nfree)))
        src.append(f"    return {_PREFIX}w")
        return "\n".join(src) + "\n"


# --- compiling and instantiating ---------------------------------------------------------------


class Template:
    """One compiled wrapper: its code, the key a record is checked against, and what the record
    holds."""

    __slots__ = ("binders", "code", "cold", "key", "names", "objects", "source")

    def __init__(
        self,
        code: types.CodeType,
        key: int,
        names: List[str],
        cold: List[str],
        objects: Dict[str, Any],
        source: str,
        binders: Dict[str, Tuple[Any, str]],
    ) -> None:
        self.code = code
        self.key = key
        self.names = names
        self.cold = cold
        self.objects = objects
        self.source = source
        self.binders = binders


_COMPILED: Dict[str, Tuple[types.CodeType, int]] = {}
_COMPILE_LOCK = threading.Lock()


def _compile(source: str) -> Tuple[types.CodeType, int]:
    """Compile once per distinct source; every instruction on line 1 (see :func:`_specialise`)."""
    with _COMPILE_LOCK:
        entry = _COMPILED.get(source)
        if entry is not None:
            return entry
        key = len(_COMPILED) + 1
        import ast

        tree = ast.parse(source.replace(f"{_PREFIX}KEY", str(key)))
        for node in ast.walk(tree):
            if hasattr(node, "lineno"):
                node.lineno = node.end_lineno = 1  # type: ignore[attr-defined]
                node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]
        module = compile(tree, "<callpyback>", "exec")
        outer = next(c for c in module.co_consts if isinstance(c, types.CodeType))
        inner = next(c for c in outer.co_consts if isinstance(c, types.CodeType))
        entry = _COMPILED[source] = (inner, key)
        return entry


def template(p: Pipeline, kind: str, shape: Shape, mode: str, nfree: int = 0) -> Template:
    """The compiled wrapper for this plan, kind and shape (one compile per distinct source)."""
    cache_key = (kind, shape.key, mode, nfree)
    cached: Optional[Template] = p.templates.get(cache_key)
    if cached is not None:
        return cached
    writer = _Writer(p, kind, shape, mode, nfree)
    source = writer.render()
    code, key = _compile(source)
    tpl = Template(code, key, writer.names, writer.cold, writer.objects, source, writer.binders)
    p.templates[cache_key] = tpl
    return tpl


class _Lines(list):  # type: ignore[type-arg]
    """A file's lines for linecache, read on first use (registering them costs nothing)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.loaded = False

    def _load(self) -> None:
        if not self.loaded:
            self.loaded = True
            self.extend(linecache.getlines(self.path))

    def __len__(self) -> int:
        self._load()
        return super().__len__()

    def __getitem__(self, index: Any) -> Any:
        self._load()
        return super().__getitem__(index)

    def __iter__(self) -> Any:
        self._load()
        return super().__iter__()

    def __bool__(self) -> bool:
        return len(self) > 0


_FILENAMES: Dict[str, str] = {}


def frame_filename(path: Optional[str]) -> str:
    """The file name of our frames for functions defined in ``path``.

    Tracebacks and ``inspect.getsource`` read it through :mod:`linecache`, which we point at
    the original file's lines, so our frame shows the function's ``def`` line.  It contains
    ``importlib`` and ``_bootstrap``: CPython's ``warnings`` skips such frames when it applies
    ``stacklevel``, so a warning lands where it would without us.  It is in angle brackets, so
    coverage tools never look for it on disk.
    """
    name = _FILENAMES.get(path or "")
    if name is None:
        name = f"<callpyback: {path or 'no source'}, skipped like importlib._bootstrap>"
        if path and not path.startswith("<"):
            linecache.cache[name] = (0, None, _Lines(path), name)
        _FILENAMES[path or ""] = name
    return name


def _specialise(code: types.CodeType, shape: Shape, func: Any) -> types.CodeType:
    """The template code with this function's parameter names, name, file and line."""
    rename = dict(zip(shape.canonical(), shape.names))
    changes: Dict[str, Any] = {
        "co_varnames": tuple(rename.get(n, n) for n in code.co_varnames),
    }
    if shape.kwonly:
        # Keyword names that pass keyword-only parameters, and the kwargs view's keys.
        changes["co_consts"] = tuple(_rename_const(k, rename) for k in code.co_consts)
    fcode = getattr(func, "__code__", None)
    name = getattr(func, "__name__", None) or type(func).__name__
    changes["co_name"] = name
    if sys.version_info >= (3, 11):
        changes["co_qualname"] = getattr(func, "__qualname__", None) or name
    if isinstance(fcode, types.CodeType):
        changes["co_filename"] = frame_filename(fcode.co_filename)
        changes["co_firstlineno"] = fcode.co_firstlineno
        if fcode.co_flags & _CO_ITERABLE_COROUTINE:
            changes["co_flags"] = code.co_flags | _CO_ITERABLE_COROUTINE  # still awaitable
    else:
        changes["co_filename"] = frame_filename(None)
    return code.replace(**changes)


def _rename_const(value: Any, rename: Dict[str, str]) -> Any:
    if type(value) is str:
        return rename.get(value, value)
    if type(value) is tuple and value and all(type(v) is str for v in value):
        return tuple(rename.get(v, v) for v in value)
    return value


def _record(tpl: Template, func: Any, info: Any) -> List[Any]:
    """The objects the wrapper's code reads: its hot names in order, then the cold tuple."""
    per_function = {f"{_PREFIX}f": func, f"{_PREFIX}info": info, f"{_PREFIX}code": info.code}
    bindings: Dict[int, Any] = {}
    for name, (reg, attr) in tpl.binders.items():
        binding = bindings.get(id(reg))
        if binding is None:
            binding = bindings[id(reg)] = reg.bind(info)
        per_function[name] = getattr(binding, attr)

    def get(name: str) -> Any:
        return per_function[name] if name in per_function else tpl.objects[name]

    return [*(get(n) for n in tpl.names), tuple(get(n) for n in tpl.cold)]


class _ConstRecord(tuple):  # type: ignore[type-arg]
    """An in-place wrapper's record, among its code's constants: compared and hashed by
    identity, so ``hash(f.__code__)`` and ``==`` keep working whatever the record holds."""

    __slots__ = ()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other


def make_wrapper(p: Pipeline, func: Any, info: Any) -> types.FunctionType:
    """A new function with ``func``'s exact signature observing its calls through ``p``."""
    shape = shape_of(func)
    globals_ = getattr(func, "__globals__", None)
    if not isinstance(globals_, dict):
        module = sys.modules.get(getattr(func, "__module__", None) or "")
        globals_ = module.__dict__ if module is not None else {"__name__": "__main__"}
    plain = type(func) is types.FunctionType
    tpl = template(p, info.kind, shape, "closure")
    cell = types.CellType()
    code = _specialise(tpl.code, shape, func)
    wrapper = types.FunctionType(
        code, globals_, code.co_name, func.__defaults__ if plain else None, (cell,)
    )
    if plain and func.__kwdefaults__:
        wrapper.__kwdefaults__ = func.__kwdefaults__
    cell.cell_contents = (tpl.key, wrapper, *_record(tpl, func, info))
    return wrapper


def rebind(p: Pipeline, wrapper: types.FunctionType, func: Any, info: Any) -> None:
    """Point a decorator-mode wrapper at a new pipeline (after add/remove_observer...)."""
    shape = shape_of(func)
    tpl = template(p, info.kind, shape, "closure")
    code = _specialise(tpl.code, shape, func)
    cell = wrapper.__closure__[0]  # type: ignore[index]
    # A call racing with this swap may run the new code with the old record or the reverse:
    # it sees the key differ and calls the record's twin, a function of the record's own code
    # (and the same cell), so it never loops however the two writes interleave.
    twin = types.FunctionType(
        code, wrapper.__globals__, code.co_name, wrapper.__defaults__, (cell,)
    )
    twin.__kwdefaults__ = wrapper.__kwdefaults__
    wrapper.__code__ = code
    cell.cell_contents = (tpl.key, twin, *_record(tpl, func, info))


def instrument(p: Pipeline, func: types.FunctionType, copy: types.FunctionType, info: Any) -> None:
    """Give ``func`` itself the observing code (in-place mode); ``copy`` runs the original."""
    shape = shape_of(copy)
    tpl = template(p, info.kind, shape, "const", len(copy.__code__.co_freevars))
    code = _specialise(tpl.code, shape, copy)
    record = _ConstRecord(_record(tpl, copy, info))
    placeholder = f"{_PREFIX}RECORD"
    consts = tuple(record if type(c) is str and c == placeholder else c for c in code.co_consts)
    func.__code__ = code.replace(co_consts=consts)


def copy_function(func: types.FunctionType) -> types.FunctionType:
    """A private twin of ``func`` that runs its original code (for in-place mode)."""
    copy = types.FunctionType(
        func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__qualname__ = func.__qualname__
    copy.__module__ = func.__module__
    copy.__doc__ = func.__doc__
    return copy


def source_of(func: Any) -> Optional[str]:
    """The generated source of an observed function's current code (for debugging)."""
    code = getattr(func, "__code__", None)
    for source, (compiled, _key) in list(_COMPILED.items()):
        if code is not None and compiled.co_code == code.co_code:
            return source
    return None
