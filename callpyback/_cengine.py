"""The compiled engine's glue: which plans ``callpyback._speedups`` runs, and its continuations.

The pure-Python engine (:mod:`callpyback._engine`) is complete; the C extension is its twin for
the success path of the plans it can represent (see :func:`plan_for`), and hands everything
else back to Python with identical behaviour:

* a call that does not bind to the signature (or a function whose defaults were reassigned) is
  run by the Python wrapper itself, which raises the TypeError before anything is notified;
* an exception from the function goes to :func:`failed`, the engine's failure step for that
  attempt, run as if inside the template's ``except`` block; it says what to do next;
* a PRE_EXECUTION observer raising KeyboardInterrupt/SystemExit goes to :func:`pre_interrupted`.

Decorator mode returns a ``_speedups.ObservedFunction`` standing for the Python wrapper (its
*twin*: every attribute is the twin's, and so is every call the plan cannot take).  In-place
mode keeps the function object: its code stays the Python engine's (with the plan as one more
constant) and its vectorcall pointer becomes the C engine's, which the interpreter uses for
every call on 3.9, 3.10 and 3.12+ (on 3.11 only for calls made from C: Python-to-Python calls
run the code, that is the Python engine).

``CALLPYBACK_PURE_PYTHON=1`` (read once, at import) keeps the C engine out entirely.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import types
from typing import Any, Optional, Tuple, cast

from . import _engine
from ._context import ExecutionResult, new_context
from .states import ExecutionState

__all__ = [
    "ENGINE",
    "PURE_ENV",
    "active",
    "engine_description",
    "instrument",
    "make_wrapper",
    "rebind",
    "unpatch",
]

#: Set to anything but "" or "0" to run the pure-Python engine even where the extension exists.
PURE_ENV = "CALLPYBACK_PURE_PYTHON"
#: The ABI the glue was written for (``_speedups.ABI``): a stale build is not used.
ABI = 1

_S = ExecutionState
_EXEC, _PRE = _S.EXECUTING, _S.PRE_EXECUTION
_STATES = (_S.PRE_EXECUTION, _S.POST_SUCCESS, _S.COMPLETED)


# --- the continuations (called by C, as if from the template's own frame) ---------------------


def failed(
    p: Any, info: Any, args: Tuple[Any, ...], kwargs: Any, t0: float, c: Any, e: BaseException
) -> Any:
    """The template's failure branch for one attempt (no retry loop: the C engine covers no
    handler chain).  Returns None (re-raise ``e``), ``(1, value)`` (recovered), ``(2, exc)``
    (raise ``exc`` from ``e``) or ``(3, exc)`` (raise ``exc``, an observer's interrupt)."""
    __tracebackhide__ = True
    deferred = _engine._DEFERRED
    if deferred[0] is not None:
        try:
            _engine._drain()
        except Exception:
            pass
    x = _engine.RERAISE
    try:
        if c is None:
            c = new_context(info, args, kwargs, p.time_source, t0)
            c._state = _EXEC
            c._attempt = 1
        x = _engine.fail(p, c, e, False)
    except Exception as fe:
        # No stack for the step (or for its first frame): nothing was notified, so it all runs
        # later.  A step that ran part-way handles its own shortage, so a RecursionError that
        # reaches this frame never started it (checked first: no call, no stack needed).
        if fe.__class__ is RecursionError or _never_started(fe):
            deferred[0] = (
                (_engine._late_failure, (p, c, info, args, dict(kwargs), t0, 1, e)),
                deferred[0],
            )
    if x is _engine.RECOVER:
        return (1, c._value)
    if x is _engine.NEW:
        return (2, c._rare.raise_)
    if x is _engine.PENDING:
        return (3, c._rare.raise_)
    return None


_STEP_CODES = (_engine.fail.__code__, _engine._failure.__code__)


def _never_started(fe: BaseException) -> bool:
    """Whether the failure step raised before notifying anything: in this frame, in ``fail``'s,
    or as its generator (``_failure``) resumed, before its own ``try`` (anything raised inside
    that ``try`` it handles itself, deferring what it had not told yet)."""
    tb = fe.__traceback__.tb_next if fe.__traceback__ is not None else None
    if tb is None or tb.tb_next is None:
        return True
    last = tb
    while last.tb_next is not None:
        last = last.tb_next
    return last.tb_frame.f_code in _STEP_CODES and not isinstance(fe, StopIteration)


def pre_interrupted(
    p: Any, info: Any, args: Tuple[Any, ...], kwargs: Any, c: Any, pending: BaseException
) -> None:
    """A PRE_EXECUTION observer raised KeyboardInterrupt/SystemExit: the call is interrupted
    (ERROR is notified); the C engine then raises ``pending``."""
    __tracebackhide__ = True
    if c is None:
        c = new_context(info, args, kwargs, p.time_source, p.monotonic() if p.timed else 0.0)
        c._state = _PRE
    _engine.fail(p, c, pending, False)


# --- loading -------------------------------------------------------------------------------------


def _load() -> Tuple[Any, str]:
    if os.environ.get(PURE_ENV, "").strip() not in ("", "0"):
        return None, f"pure Python ({PURE_ENV} is set)"
    if sys.implementation.name != "cpython":
        return (
            None,
            f"pure Python (the compiled engine is for CPython, not {sys.implementation.name})",
        )
    try:
        # By name: mypy sees the module or not depending on whether it was built.
        _speedups: Any = importlib.import_module("callpyback._speedups")
    except ImportError as exc:
        return None, f"pure Python (the compiled extension is not installed: {exc})"
    if getattr(_speedups, "ABI", None) != ABI:
        return None, (
            "pure Python (callpyback._speedups is a stale build, ABI "
            f"{getattr(_speedups, 'ABI', '?')} instead of {ABI}: reinstall callpyback)"
        )
    from ._pipeline import Registration

    fast_clock = _speedups.configure(
        AANY=_engine._AANY,
        ACV=_engine._ACV,
        DEFERRED=_engine._DEFERRED,
        drain=_engine._drain,
        obs_failed=_engine._obs_failed,
        obs_base=_engine._obs_base,
        late_notify=_engine._late_notify,
        late_failure=_engine._late_failure,
        new_context=new_context,
        ExecutionResult=ExecutionResult,
        NEEDS_CONTEXT=_engine.NEEDS_CONTEXT,
        failed=failed,
        pre_failed=pre_interrupted,
        EXECUTING=_EXEC,
        perf_counter=time.perf_counter,
        Registration=Registration,
    )
    # One per-thread list of running observers for both engines (the re-entrancy guard): the
    # C one, which Python reads as ``_TL.a`` too.  Replaced before any wrapper is compiled
    # (templates capture ``_TL`` when they are rendered).
    _engine._TL = _speedups.ThreadActive()
    clock = "perf_counter read in C" if fast_clock else "the time source's clock"
    return _speedups, f"compiled (callpyback._speedups; {clock})"


_speedups, ENGINE = _load()


def active() -> bool:
    """True when the compiled engine takes the calls it can."""
    return _speedups is not None


def engine_description() -> str:
    """Which engine runs observed calls, and why (``callpyback --version`` prints it)."""
    return ENGINE


def speedups() -> Any:
    """The extension module, or None (pure Python)."""
    return _speedups


# --- which plans the C engine takes --------------------------------------------------------------


def _encode(injection: Any) -> Optional[Tuple[Tuple[int, ...], int, Optional[Tuple[str, ...]]]]:
    """An injection as (source codes, how many are positional, keyword names)."""
    codes = []
    names: list[str] = []
    npos = 0
    for kw, src in injection:
        code = _SOURCE_CODES.get(src)
        if code is None:
            return None
        if kw is None:
            if names:
                return None  # a positional one after a keyword one: never produced, not taken
            npos += 1
        else:
            names.append(kw)
        codes.append(code)
    if len(codes) > 32:
        return None
    return (tuple(codes), npos, tuple(names) if names else None)


_SOURCE_CODES = {name: i for i, name in enumerate(_speedups.SOURCES)} if _speedups else {}


def why_not(p: Any, kind: str) -> Optional[str]:
    """Why the C engine does not take this plan (None: it does).  For docs and tests."""
    if _speedups is None:
        return "the compiled engine is not active"
    if kind != "function":
        return f"a {kind.replace('_', ' ')} (only plain functions and methods are compiled)"
    if p.check:
        return "transition checking is on"
    if p.chain:
        return "an error-handler chain (retries, recovery, timeouts)"
    if p.extractor is not None:
        return "variable extraction"
    if p.around:
        return "an observer with enter/exit around the body"
    if p.eager_context:
        return "a context needed before the call"
    if p.anotify:
        return "an async observer"
    return None


def plan_for(p: Any, func: Any, info: Any, *, inplace: bool) -> Any:
    """The C engine's Plan for calls of ``func`` through ``p`` (None: the Python engine's)."""
    if why_not(p, info.kind) is not None:
        return None
    sp = _speedups
    # A C wrapper of a C wrapper: the inner one's twin has the exact signature.
    callee = _python_callee(func)
    shape = _engine.shape_of(callee)
    if shape is _engine.GENERIC:
        shape_spec = None
    else:
        code = callee.__code__
        names = tuple(code.co_varnames[: shape.positional + shape.kwonly])
        shape_spec = (
            shape.positional,
            shape.posonly,
            shape.kwonly,
            shape.varargs,
            shape.varkw,
            names,
        )
    bindings: dict[int, Any] = {}
    submit = None
    phases = []
    for phase, regs in ((0, p.pre), (1, p.success), (2, p.completed)):
        steps = []
        for reg in regs:
            gate_inj = None
            if reg.gate is not None and reg.gate_inject is not None:
                if phase and not p.wants_result and any(s == "result" for _, s in reg.gate_inject):
                    return None  # the template has no result object for it
                gate_inj = _encode(reg.gate_inject)
                if gate_inj is None:
                    return None
            inj = None
            pending = flush = None
            batch = 0
            fn: Any = None
            if reg.background:
                from ._background import submit_call

                kind, submit = sp.K_BG, submit_call
            elif reg.bind is not None and phase in (0, 2):
                binding = bindings.get(id(reg))
                if binding is None:
                    binding = bindings[id(reg)] = reg.bind(info)
                if phase == 0:
                    kind, fn = sp.K_START, binding.start
                else:
                    kind, fn = sp.K_DONE, binding.done
                    if reg.bind_batch:
                        pending, batch, flush = binding.pending, int(reg.bind_batch), binding.flush
                        if type(pending) is not list:
                            return None
            elif reg.is_async:
                return None
            elif reg.call is not None:
                kind, fn = sp.K_CALL, reg.call
                inj = _encode(reg.inject)
                if inj is None:
                    return None
            else:
                kind, fn = sp.K_CTX, reg.update
            steps.append(
                (
                    kind,
                    reg,
                    fn,
                    reg.update,
                    reg.guard,
                    reg.escalates,
                    reg.gate,
                    gate_inj,
                    inj,
                    pending,
                    batch,
                    flush,
                    reg.needs_context,
                )
            )
        phases.append(tuple(steps))
    return sp.Plan(
        f=func,
        info=info,
        pipeline=p,
        time_source=p.time_source,
        monotonic=p.monotonic if p.timed else None,
        submit=submit,
        states=_STATES,
        shape=shape_spec,
        pre=phases[0],
        ok=phases[1],
        done=phases[2],
        wants_result=p.wants_result,
        sees_failures=p.sees_failures,
        inplace=inplace,
        defaults_from=callee,
    )


# --- the seams _decorator uses ---------------------------------------------------------


def _python_callee(func: Any) -> Any:
    """What the Python twin calls: a C wrapper's own twin (so that its shape is exact)."""
    if _speedups is not None and type(func) is _speedups.ObservedFunction:
        return _speedups.twin_of(func)
    return func


def make_wrapper(p: Any, func: Any, info: Any) -> types.FunctionType:
    """The wrapper for ``func``: the Python engine's, stood for by a C one where it can be
    (typed as the function it passes for: ``inspect.isfunction`` is true of both)."""
    twin = _engine.make_wrapper(p, _python_callee(func), info)
    if _speedups is None or info.kind != "function":
        return twin
    return cast(
        types.FunctionType, _speedups.ObservedFunction(twin, _plan_or_none(p, func, info, False))
    )


def _plan_or_none(p: Any, func: Any, info: Any, inplace: bool) -> Any:
    try:
        return plan_for(p, func, info, inplace=inplace)
    except Exception:  # pragma: no cover - a plan the C engine rejects: the Python engine runs
        import logging

        logging.getLogger("callpyback").debug(
            "the compiled engine does not take %s", info.target, exc_info=True
        )
        return None


def rebind(p: Any, wrapper: Any, func: Any, info: Any) -> None:
    """Point a decorator-mode wrapper (either engine's) at a new pipeline."""
    if _speedups is not None and type(wrapper) is _speedups.ObservedFunction:
        _engine.rebind(p, _speedups.twin_of(wrapper), _python_callee(func), info)
        _speedups.set_plan(wrapper, _plan_or_none(p, func, info, False))
        return
    _engine.rebind(p, wrapper, func, info)


def instrument(p: Any, func: types.FunctionType, copy: types.FunctionType, info: Any) -> None:
    """Give ``func`` itself the observing code (in-place mode), and the C engine's entry."""
    _engine.instrument(p, func, copy, info)
    if _speedups is None:
        return
    plan = _plan_or_none(p, copy, info, True) if info.kind == "function" else None
    if plan is None:
        _speedups.unpatch(func)
        return
    code = func.__code__
    func.__code__ = code.replace(co_consts=(*code.co_consts, plan))
    _speedups.patch(func)


def unpatch(func: Any) -> None:
    """The function was given its original code back: its plain vectorcall too."""
    if _speedups is not None and type(func) is types.FunctionType:
        _speedups.unpatch(func)
