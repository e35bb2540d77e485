"""The per-call hot path: one wrapper shape per kind of callable, chosen at decoration time.

Rules (DESIGN §4): no inspect, no locks, no sorting and no dict building per call.  Each wrapper
reads the decorator's current :class:`~callpyback._pipeline.Pipeline` once; ``None`` means "no
observers, handlers or extraction": a passthrough.  A pipeline with observers but no handlers or
extraction takes the inline fast path; everything else goes through ``_attempts``.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, List, Optional

from ._context import ExecutionContext, _Rare, new_context
from ._handling import Raise, Recover, Retry
from .states import ExecutionState

if TYPE_CHECKING:
    from ._pipeline import Pipeline

_INIT = ExecutionState.INITIALIZED
_PRE = ExecutionState.PRE_EXECUTION
_EXEC = ExecutionState.EXECUTING
_OK = ExecutionState.POST_SUCCESS
_FAIL = ExecutionState.POST_FAILURE
_DONE = ExecutionState.COMPLETED
_ERROR = ExecutionState.ERROR

# Re-entrancy guard: while observers run, a wrapped function they call is not observed again.
# The context variable holds a one-item list per context: slot 0 is the ident of the thread
# currently dispatching (0 when none).  Flipping a list item costs far less than
# ContextVar.set/reset per notification; the thread ident keeps a context copied into a worker
# thread (asyncio.to_thread) from seeing another thread's dispatch.  Async dispatch, which
# awaits, installs a fresh cell with a real set/reset so other tasks never see it.
_IN_OBSERVER: contextvars.ContextVar[Optional[List[int]]] = contextvars.ContextVar(
    "callpyback_in_observer", default=None
)
_guard = _IN_OBSERVER.get
_ident = threading.get_ident


def _new_cell() -> List[int]:
    cell = [0]
    _IN_OBSERVER.set(cell)
    return cell


def in_observer() -> bool:
    """True while this thread/task is running CallPyBack observers."""
    g = _guard()
    return g is not None and g[0] == _ident()


def _observer_failed(reg: Any, exc: Exception) -> None:
    reg.owner._observer_failed(reg, exc)


def _notify(regs: tuple[Any, ...], ctx: ExecutionContext) -> None:
    __tracebackhide__ = True
    g = _guard()
    if g is None:
        g = _new_cell()
    g[0] = _ident()
    try:
        for reg in regs:
            try:
                reg.fn(ctx)
            except Exception as exc:
                reg.owner._observer_failed(reg, exc)
            else:
                if reg.failures:
                    reg.failures = 0
    finally:
        g[0] = 0


async def _anotify(regs: tuple[Any, ...], ctx: ExecutionContext) -> None:
    __tracebackhide__ = True
    token = _IN_OBSERVER.set([_ident()])
    try:
        for reg in regs:
            try:
                res = reg.fn(ctx)
                if reg.is_async:
                    await res
            except Exception as exc:
                reg.owner._observer_failed(reg, exc)
            else:
                if reg.failures:
                    reg.failures = 0
    finally:
        _IN_OBSERVER.reset(token)


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, GeneratorExit):
        return True
    # asyncio is only imported if the program uses it; if it is absent nothing can be cancelled.
    aio = sys.modules.get("asyncio")
    return aio is not None and isinstance(exc, aio.CancelledError)


def _safe_hooks(hooks: tuple[Any, ...], *args: Any) -> None:
    # Handler bookkeeping (breaker counters) must never turn into the caller's exception.
    for hook in hooks:
        try:
            hook(*args)
        except Exception:
            _hook_failed(hook)


def _hook_failed(hook: Any) -> None:
    import logging

    logging.getLogger("callpyback.handlers").exception("error handler hook %r failed", hook)


# --- outcome steps shared by every shape (not on the inline fast path) -------------------------


def _set_locals(ctx: ExecutionContext, values: Any) -> None:
    ctx._rare = rare = ctx._rare or _Rare()
    rare.locals = values


def _set_success(p: Pipeline, ctx: ExecutionContext, value: Any) -> None:
    ctx._time = p.monotonic() - ctx._start
    ctx._value = value
    ctx._exception = None
    if p.chain.after_success:
        _safe_hooks(p.chain.after_success, ctx)
    ctx._state = _OK


def _set_failure(p: Pipeline, ctx: ExecutionContext, exc: BaseException) -> None:
    ctx._time = p.monotonic() - ctx._start
    ctx._exception = exc
    ctx._state = _FAIL


def _set_interrupted(p: Pipeline, ctx: ExecutionContext, exc: BaseException) -> tuple[Any, ...]:
    """Cancellation goes to COMPLETED, any other BaseException to ERROR; returns whom to notify."""
    ctx._time = p.monotonic() - ctx._start
    ctx._exception = exc
    if p.chain.record_interrupt:
        # e.g. a circuit breaker giving back a half-open trial slot the attempt held
        _safe_hooks(p.chain.record_interrupt, exc, ctx)
    if _is_cancellation(exc):
        ctx._rare = rare = ctx._rare or _Rare()
        rare.cancelled = True
        ctx._state = _DONE
        return p.completed
    ctx._state = _ERROR
    return p.error


def _recover(ctx: ExecutionContext, value: Any, by: str) -> None:
    ctx._value = value
    ctx._rare = rare = ctx._rare or _Rare()
    rare.recovered_by = by
    ctx._state = _DONE


def _raise_decided(decision: Any, exc: BaseException) -> None:
    __tracebackhide__ = True
    new = decision.exception
    if new is exc:
        raise exc
    raise new from exc


# --- sync ------------------------------------------------------------------------------------


def make_sync(func: Callable[..., Any], info: Any, owner: Any) -> Callable[..., Any]:
    current = owner._current  # a one-item list: cheaper to read per call than an attribute

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        p = current[0]
        if p is None:
            return func(*args, **kwargs)
        g = _guard()
        if g is not None and g[0] and g[0] == _ident():
            return func(*args, **kwargs)
        return p.run(func, info, args, kwargs, g)

    return wrapper


def _late_context(
    p: Pipeline, ctx: Optional[ExecutionContext], info: Any, args: Any, kwargs: Any, start: float
) -> ExecutionContext:
    """The compiled fast path's context, built now if nothing needed one before the call."""
    if ctx is None:
        ctx = new_context(info, args, kwargs, p.time_source, start)
        ctx._attempt = 1
    return ctx


def _first_attempt_interrupted(
    p: Pipeline, info: Any, args: Any, kwargs: Any, start: float, exc: BaseException, ctx: Any
) -> None:
    """The compiled fast path's BaseException branch (the caller re-raises)."""
    if p.completed or p.error or p.chain.record_interrupt:
        _interrupt(p, _late_context(p, ctx, info, args, kwargs, start), exc)


def run_attempts(
    p: Pipeline, func: Callable[..., Any], info: Any, args: Any, kwargs: Any, g: Any = None
) -> Any:
    """The sync path for pipelines with error handlers or variable extraction."""
    __tracebackhide__ = True
    ctx = new_context(info, args, kwargs, p.time_source, p.monotonic())
    if p.pre:
        ctx._state = _PRE
        _notify(p.pre, ctx)
        ctx._start = p.monotonic()
    return _attempts(func, p, ctx, args, kwargs)


_RETRY: Any = object()  # _failed_attempt's "go round again"


def _interrupt(p: Pipeline, ctx: ExecutionContext, exc: BaseException) -> None:
    regs = _set_interrupted(p, ctx, exc)
    if regs:
        _notify(regs, ctx)


def _finish(p: Pipeline, ctx: ExecutionContext, value: Any) -> None:
    """A successful attempt: POST_SUCCESS, then COMPLETED."""
    _set_success(p, ctx, value)
    if p.success:
        _notify(p.success, ctx)
    ctx._state = _DONE
    if p.completed:
        _notify(p.completed, ctx)


def _failed_attempt(
    p: Pipeline, ctx: ExecutionContext, exc: Exception, allow_retry: bool = True
) -> Any:
    """A sync attempt raised: notify, let the chain decide.

    Returns ``_RETRY`` (after sleeping) or the recovered value; otherwise raises the outcome.
    Generators pass ``allow_retry=False``: a retry would restart them and repeat items.
    """
    __tracebackhide__ = True
    chain = p.chain
    _set_failure(p, ctx, exc)
    # Handlers' bookkeeping first, so POST_FAILURE observers see e.g. the breaker it left.
    if chain.record_failure:
        _safe_hooks(chain.record_failure, exc, ctx)
    if p.failure:
        _notify(p.failure, ctx)
    decision, by = chain.decide(exc, ctx, allow_retry) if chain else (None, "")
    if type(decision) is Retry:
        try:
            p.sleep(decision.delay)
        except BaseException as interrupt:
            _interrupt(p, ctx, interrupt)
            raise
        return _RETRY
    if type(decision) is Recover:
        _recover(ctx, decision.value, by)
        if p.completed:
            _notify(p.completed, ctx)
        return decision.value
    ctx._state = _DONE
    if p.completed:
        _notify(p.completed, ctx)
    if type(decision) is Raise:
        _raise_decided(decision, exc)
    raise exc


def _attempts(
    func: Callable[..., Any], p: Pipeline, ctx: ExecutionContext, args: Any, kwargs: Any
) -> Any:
    """Attempts with error handlers, retries and variable extraction (sync)."""
    __tracebackhide__ = True
    chain = p.chain
    extractor = p.extractor
    while True:
        ctx._state = _EXEC
        ctx._attempt += 1
        capture = extractor.begin(ctx.function_info.code, p.variable_names) if extractor else None
        try:
            for hook in chain.before_attempt:
                hook(ctx)
            if chain.call_sync:
                value = chain.call_sync[0](func, args, kwargs, ctx)
            else:
                value = func(*args, **kwargs)
        except Exception as exc:
            if capture is not None:
                _set_locals(ctx, capture.finish())
            out = _failed_attempt(p, ctx, exc)
            if out is _RETRY:
                continue
            return out
        except BaseException as exc:
            if capture is not None:
                _set_locals(ctx, capture.finish())
            _interrupt(p, ctx, exc)
            raise
        if capture is not None:
            _set_locals(ctx, capture.finish())
        _finish(p, ctx, value)
        return value


def _first_attempt_failed(
    func: Callable[..., Any],
    p: Pipeline,
    ctx: Optional[ExecutionContext],
    info: Any,
    args: Any,
    kwargs: Any,
    start: float,
    exc: Exception,
) -> Any:
    """The compiled fast path's failure branch: the same steps as any failed attempt."""
    __tracebackhide__ = True
    if not (p.chain or p.failure or p.completed):
        raise exc  # nobody to tell and nothing to decide: no context either
    ctx = _late_context(p, ctx, info, args, kwargs, start)
    out = _failed_attempt(p, ctx, exc)
    if out is _RETRY:
        return _attempts(func, p, ctx, args, kwargs)
    return out


# --- coroutine ---------------------------------------------------------------------------------
# The general async path: pipelines with async observers, async-capable handlers, a call hook
# (timeout) or extraction.  Everything else on coroutines takes the compiled ``Pipeline.arun``.


async def _adispatch(p: Pipeline, regs: tuple[Any, ...], ctx: ExecutionContext) -> None:
    if p.anotify:
        await _anotify(regs, ctx)
    else:
        _notify(regs, ctx)


async def _ainterrupt(p: Pipeline, ctx: ExecutionContext, exc: BaseException) -> None:
    regs = _set_interrupted(p, ctx, exc)
    if regs:
        await _adispatch(p, regs, ctx)


async def _afinish(p: Pipeline, ctx: ExecutionContext, value: Any) -> None:
    _set_success(p, ctx, value)
    if p.success:
        await _adispatch(p, p.success, ctx)
    ctx._state = _DONE
    if p.completed:
        await _adispatch(p, p.completed, ctx)


async def _afailed_attempt(
    p: Pipeline, ctx: ExecutionContext, exc: Exception, allow_retry: bool = True
) -> Any:
    """The async twin of :func:`_failed_attempt` (awaits async handlers and observers)."""
    __tracebackhide__ = True
    chain = p.chain
    _set_failure(p, ctx, exc)
    if chain.record_failure:
        _safe_hooks(chain.record_failure, exc, ctx)
    if p.failure:
        await _adispatch(p, p.failure, ctx)
    decision, by = (await chain.adecide(exc, ctx, allow_retry)) if chain else (None, "")
    if type(decision) is Retry:
        try:
            await p.asleep(decision.delay)
        except BaseException as interrupt:
            await _ainterrupt(p, ctx, interrupt)
            raise
        return _RETRY
    if type(decision) is Recover:
        _recover(ctx, decision.value, by)
        if p.completed:
            await _adispatch(p, p.completed, ctx)
        return decision.value
    ctx._state = _DONE
    if p.completed:
        await _adispatch(p, p.completed, ctx)
    if type(decision) is Raise:
        _raise_decided(decision, exc)
    raise exc


async def _abefore_attempt(chain: Any, ctx: ExecutionContext) -> None:
    for hook in chain.before_attempt:
        res = hook(ctx)
        if res is not None and hasattr(res, "__await__"):
            await res


def make_async(func: Callable[..., Any], info: Any, owner: Any) -> Callable[..., Any]:
    current = owner._current

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        p = current[0]
        if p is None:
            return await func(*args, **kwargs)
        g = _guard()
        if g is not None and g[0] and g[0] == _ident():
            return await func(*args, **kwargs)
        if p.arun is not None:
            return await p.arun(func, info, args, kwargs, g)
        ctx = new_context(info, args, kwargs, p.time_source, p.monotonic())
        if p.pre:
            ctx._state = _PRE
            await _adispatch(p, p.pre, ctx)
            ctx._start = p.monotonic()
        chain = p.chain
        extractor = p.extractor
        while True:
            ctx._state = _EXEC
            ctx._attempt += 1
            capture = extractor.begin(info.code, p.variable_names) if extractor else None
            try:
                if chain.before_attempt:
                    await _abefore_attempt(chain, ctx)
                if chain.call_async:
                    value = await chain.call_async[0](func, args, kwargs, ctx)
                else:
                    value = await func(*args, **kwargs)
            except Exception as exc:
                if capture is not None:
                    _set_locals(ctx, capture.finish())
                out = await _afailed_attempt(p, ctx, exc)
                if out is _RETRY:
                    continue
                return out
            except BaseException as exc:
                if capture is not None:
                    _set_locals(ctx, capture.finish())
                await _ainterrupt(p, ctx, exc)
                raise
            if capture is not None:
                _set_locals(ctx, capture.finish())
            await _afinish(p, ctx, value)
            return value

    return wrapper


# --- generators ------------------------------------------------------------------------------
# Generators are never retried (a retry would restart them and repeat items): a Retry decision
# is skipped and the chain goes on.  A Recover decision ends the generator with that value.


def make_generator(func: Callable[..., Any], info: Any, owner: Any) -> Callable[..., Any]:
    current = owner._current

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        p = current[0]
        if p is None or in_observer():
            return (yield from func(*args, **kwargs))
        ctx = new_context(info, args, kwargs, p.time_source, p.monotonic())
        if p.pre:
            ctx._state = _PRE
            _notify(p.pre, ctx)
            ctx._start = p.monotonic()
        ctx._state = _EXEC
        ctx._attempt = 1
        capture = p.extractor.begin(info.code, p.variable_names) if p.extractor else None
        try:
            for hook in p.chain.before_attempt:
                hook(ctx)
            value = yield from func(*args, **kwargs)
        except Exception as exc:
            if capture is not None:
                _set_locals(ctx, capture.finish())
            return _failed_attempt(p, ctx, exc, allow_retry=False)
        except BaseException as exc:
            if capture is not None:
                _set_locals(ctx, capture.finish())
            _interrupt(p, ctx, exc)
            raise
        if capture is not None:
            _set_locals(ctx, capture.finish())
        _finish(p, ctx, value)
        return value

    return wrapper


def make_async_generator(func: Callable[..., Any], info: Any, owner: Any) -> Callable[..., Any]:
    # The relay loop is written out twice on purpose: an inner async generator cannot forward
    # asend/athrow/aclose, so the yield has to stay in this frame.
    current = owner._current

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        p = current[0]
        agen = func(*args, **kwargs)
        if p is None or in_observer():
            try:
                item = await agen.__anext__()
                while True:
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await agen.aclose()
                        raise
                    except BaseException as thrown:
                        item = await agen.athrow(thrown)
                    else:
                        item = await agen.asend(sent)
            except StopAsyncIteration:
                return
        ctx = new_context(info, args, kwargs, p.time_source, p.monotonic())
        if p.pre:
            ctx._state = _PRE
            await _adispatch(p, p.pre, ctx)
            ctx._start = p.monotonic()
        ctx._state = _EXEC
        ctx._attempt = 1
        capture = p.extractor.begin(info.code, p.variable_names) if p.extractor else None
        try:
            if p.chain.before_attempt:
                await _abefore_attempt(p.chain, ctx)
            item = await agen.__anext__()
            while True:
                try:
                    sent = yield item
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as thrown:
                    item = await agen.athrow(thrown)
                else:
                    item = await agen.asend(sent)
        except StopAsyncIteration:
            pass  # exhausted: success
        except Exception as exc:
            if capture is not None:
                _set_locals(ctx, capture.finish())
            # An async generator cannot return a value: a recovery ends it quietly.
            await _afailed_attempt(p, ctx, exc, allow_retry=False)
            return
        except BaseException as exc:
            if capture is not None:
                _set_locals(ctx, capture.finish())
            await _ainterrupt(p, ctx, exc)
            raise
        if capture is not None:
            _set_locals(ctx, capture.finish())
        await _afinish(p, ctx, None)

    return wrapper
