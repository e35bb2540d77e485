"""Compile a pipeline's synchronous fast path into one straight-line function.

Generated once per pipeline (lazily, on the first call after a change) rather than interpreted per
call, because on this path the cost of the interpreter's generic machinery is the overhead users
pay: a loop over observers, a trampoline per callback and a context object nobody reads.  The
generated ``run``:

* builds an :class:`ExecutionContext` only if some observer needs one (a ``BaseObserver``, or a
  callback asking for ``context``, ``arguments``, ``metadata``, ``timestamp`` or
  ``local_variables``);
* calls callback observers directly with their injected arguments taken from local variables;
* builds one ``ExecutionResult`` per notification state, shared by the observers that ask;
* handles failures through the shared slow path (failures are not the fast path).

Coroutine functions get an ``async def`` twin when every observer is synchronous (sync observers
never await, so the guard cell logic is the same).

Pipelines with error handlers come here too (unless a handler wraps the call itself, as a
timeout does): the success path stays straight-line with the handlers' ``before_attempt`` and
``after_success`` hooks inlined, and the first failure hands over to the general retry loop.
Pipelines with variable extraction use the general loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from . import _call  # the guard and the slow paths live with the rest of the hot path
from ._context import ExecutionContext, ExecutionResult
from .states import ExecutionState

if TYPE_CHECKING:
    from ._pipeline import Pipeline, Registration

#: Injectable sources that need a context object (everything else is a local of ``run``).
_NEEDS_CONTEXT = frozenset({"context", "arguments", "metadata", "timestamp", "local_variables"})

Run = Callable[[Callable[..., Any], Any, Tuple[Any, ...], Dict[str, Any], Any], Any]


def needs_context(reg: Registration) -> bool:
    if reg.injection is None or not reg.direct:
        return True
    return any(src in _NEEDS_CONTEXT for _, src in reg.injection)


def _expr(src: str, phase: str) -> str:
    """Source expression for one injected argument in one phase ("pre", "ok" or "done")."""
    before = phase == "pre"
    return {
        "context": "c",
        "arguments": "c.arguments",
        "metadata": "c.metadata",
        "timestamp": "c.timestamp",
        "local_variables": "c.local_variables",
        "function_signature": "info.signature",
        "function": "info.function",
        "args": "args",
        "kwargs": "kwargs",
        "state": "_S_PRE" if before else ("_S_OK" if phase == "ok" else "_S_DONE"),
        "result": "None" if before else "r",
        "execution_time": "None" if before else "t",
        "value": "None" if before else "value",
        "exception": "None",
        "attempt": "0" if before else "1",
    }[src]


def compile_run(p: Pipeline, asynchronous: bool = False) -> Run:
    """The specialised ``run(func, info, args, kwargs, g)`` for pipeline ``p``.

    ``g`` is the re-entrancy guard cell the wrapper already read (or None).
    """
    ns: Dict[str, Any] = {
        "_S_INIT": ExecutionState.INITIALIZED,
        "_S_PRE": ExecutionState.PRE_EXECUTION,
        "_S_EXEC": ExecutionState.EXECUTING,
        "_S_OK": ExecutionState.POST_SUCCESS,
        "_S_DONE": ExecutionState.COMPLETED,
        "_Result": ExecutionResult,
        "_Ctx": ExecutionContext,
        "_new": object.__new__,
        "_p": p,
        "_ts": p.time_source,
        "_mono": p.monotonic,
    }
    ns["_guard"] = _call._guard
    ns["_new_cell"] = _call._new_cell
    ns["_ident"] = _call._ident
    ns["_failed"] = _call._simple_failed
    ns["_interrupted"] = _call._simple_interrupted
    ns["_observer_failed"] = _call._observer_failed

    chain = p.chain
    if chain:
        assert not asynchronous, "coroutines with error handlers take the general async path"
        ns["_first_failed"] = _call._first_attempt_failed
        ns["_safe_hooks"] = _call._safe_hooks
        for i, hook in enumerate(chain.before_attempt):
            ns[f"_before{i}"] = hook
        ns["_after_success"] = chain.after_success
    regs_all = (*p.pre, *p.success, *p.failure, *p.completed, *p.error)
    # Hooks take the context; a chain without hooks (a retry) needs one only once it fails.
    use_ctx = bool(chain.before_attempt or chain.after_success) or any(
        needs_context(r) for r in regs_all
    )
    names: Dict[int, int] = {}  # id(registration) -> index in the namespace

    def ref(reg: Registration) -> int:
        i = names.get(id(reg))
        if i is None:
            i = names[id(reg)] = len(names)
            ns[f"_reg{i}"] = reg
            ns[f"_fn{i}"] = reg.fn
            ns[f"_cb{i}"] = reg.callback
        return i

    head = "async def run" if asynchronous else "def run"
    lines: List[str] = [f"{head}(func, info, args, kwargs, g):", "    __tracebackhide__ = True"]
    w = lines.append
    if use_ctx:
        w("    c = _new(_Ctx); c.function_info = info; c.args = args; c.kwargs = kwargs")
        w("    c.time_source = _ts; c._attempt = 0; c._time = None; c._value = None")
        w("    c._exception = None; c._rare = None; c._state = _S_INIT")
    else:
        w("    c = None")
    if p.pre:
        if use_ctx:
            w("    c._start = _mono(); c._state = _S_PRE")
        _dispatch(lines, p.pre, "pre", ref, use_ctx)
    w("    start = _mono()")
    if use_ctx:
        w("    c._start = start; c._state = _S_EXEC; c._attempt = 1")
    w("    try:")
    for i in range(len(chain.before_attempt) if chain else 0):
        w(f"        _before{i}(c)")
    w(
        "        value = await func(*args, **kwargs)"
        if asynchronous
        else "        value = func(*args, **kwargs)"
    )
    w("    except Exception as exc:")
    if chain:
        w("        return _first_failed(func, _p, c, info, args, kwargs, start, exc)")
    else:
        w("        _failed(_p, info, args, kwargs, start, exc, c)")
        w("        raise")
    w("    except BaseException as exc:")
    w("        _interrupted(_p, info, args, kwargs, start, exc, c)")
    w("        raise")
    w("    t = _mono() - start")
    if use_ctx:
        w("    c._time = t; c._value = value")
    if chain and chain.after_success:
        w("    _safe_hooks(_after_success, c)")
    wants_result = any(
        reg.injection is not None and any(src == "result" for _, src in reg.injection)
        for reg in (*p.success, *p.completed)
    )
    if wants_result:
        w("    r = _new(_Result); r.value = value; r.execution_time = t")
    if p.success:
        if use_ctx:
            w("    c._state = _S_OK")
        _dispatch(lines, p.success, "ok", ref, use_ctx)
    if use_ctx:
        w("    c._state = _S_DONE")
    if p.completed:
        _dispatch(lines, p.completed, "done", ref, use_ctx)
    w("    return value")
    source = "\n".join(lines) + "\n"
    exec(compile(source, "<callpyback: observed call>", "exec"), ns)
    run: Run = ns["run"]
    run.__source__ = source  # type: ignore[attr-defined]  # for debugging and tests
    return run


def _dispatch(
    lines: List[str],
    regs: Tuple[Registration, ...],
    phase: str,
    ref: Callable[[Registration], int],
    use_ctx: bool,
) -> None:
    w = lines.append
    guarded = any(r.guard for r in regs)
    pad = "    "
    if guarded:
        w("    if g is None:")
        w("        g = _new_cell()")
        w("    g[0] = _ident()")
        w("    try:")
        pad = "        "
    for reg in regs:
        i = ref(reg)
        if reg.injection is None or not reg.direct:
            call = f"_fn{i}(c)"
        else:
            parts = [
                _expr(src, phase) if kw is None else f"{kw}={_expr(src, phase)}"
                for kw, src in reg.injection
            ]
            call = f"_cb{i}({', '.join(parts)})"
        w(f"{pad}try:")
        w(f"{pad}    {call}")
        w(f"{pad}except Exception as e:")
        w(f"{pad}    _observer_failed(_reg{i}, e)")
        w(f"{pad}else:")
        w(f"{pad}    if _reg{i}.failures:")
        w(f"{pad}        _reg{i}.failures = 0")
    if guarded:
        w("    finally:")
        w("        g[0] = 0")


def describe(run: Optional[Run]) -> str:
    return getattr(run, "__source__", "<not compiled>")
