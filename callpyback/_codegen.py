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

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

from . import _call  # the guard and the slow paths live with the rest of the hot path
from ._context import ExecutionContext, ExecutionResult, new_context
from .observers._base import NEEDS_CONTEXT
from .states import ExecutionState

if TYPE_CHECKING:
    from ._pipeline import Pipeline, Registration

#: Injectable sources that expose a duration or the clock (directly or through the context).
_TIMED = frozenset({"context", "result", "execution_time", "timestamp"})


#: Injectable sources that need a context object (everything else is a local of ``run``).
_NEEDS_CONTEXT = frozenset({"context", "arguments", "metadata", "timestamp", "local_variables"})

Run = Callable[[Callable[..., Any], Any, Tuple[Any, ...], Dict[str, Any], Any], Any]


def needs_context(reg: Registration) -> bool:
    if not reg.direct:
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
        "function_info": "info",
        "args": "args",
        "kwargs": "kwargs",
        "state": "_S_PRE" if before else ("_S_OK" if phase == "ok" else "_S_DONE"),
        "result": "None" if before else "r",
        "execution_time": "None" if before else "t",
        "value": "None" if before else "value",
        "exception": "None",
        "attempt": "0" if before else "1",
        "outcome": "None" if before else "'success'",
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
    ns["_first_failed"] = _call._first_attempt_failed
    ns["_interrupted"] = _call._first_attempt_interrupted
    ns["_observer_failed"] = _call._observer_failed

    chain = p.chain
    if chain:
        assert not asynchronous, "coroutines with error handlers take the general async path"
        ns["_safe_hooks"] = _call._safe_hooks
        for i, hook in enumerate(chain.before_attempt):
            ns[f"_before{i}"] = hook
        for i, hook in enumerate(chain.after_success):
            ns[f"_after{i}"] = hook
        ns["_hook_failed"] = _call._hook_failed
    ns["_new_context"] = new_context
    ns["_NEEDS_CONTEXT"] = NEEDS_CONTEXT
    # Hooks take the context, so a chain with hooks builds it up front; otherwise it is built
    # lazily, just before the first observer that needs it (a gated observer that declines
    # then costs no context at all), and a chain without hooks (a retry) only once it fails.
    eager = bool(chain.before_attempt or chain.after_success)
    # Clock reads are skipped when nothing can see a duration: every observer is a direct
    # callback that asked for none of the timed names, and there are no handlers (a retry's
    # max_time reads the elapsed time).  ``on_success(lambda value: ...)`` pays no clock.
    regs_all = (*p.pre, *p.success, *p.failure, *p.completed, *p.error)
    timed = bool(chain) or any(
        not r.direct or any(src in _TIMED for _, src in r.injection or ()) for r in regs_all
    )

    names: Dict[int, int] = {}  # id(registration) -> index in the namespace

    def ref(reg: Registration) -> int:
        i = names.get(id(reg))
        if i is None:
            i = names[id(reg)] = len(names)
            ns[f"_reg{i}"] = reg
            ns[f"_fn{i}"] = reg.fn
            ns[f"_cb{i}"] = reg.callback
            ns[f"_gate{i}"] = reg.gate
        return i

    head = "async def run" if asynchronous else "def run"
    gen = _Writer([f"{head}(func, info, args, kwargs, g):", "    __tracebackhide__ = True"])
    w = gen.line
    if eager:
        # Inline rather than new_context(): this line runs on every call of the pipeline.
        w("c = _new(_Ctx); c.function_info = info; c.args = args; c.kwargs = kwargs")
        w("c.time_source = _ts; c._start = 0.0; c._state = _S_INIT; c._attempt = 0")
        w("c._time = None; c._value = None; c._exception = None; c._rare = None")
        gen.ctx = "always"
    else:
        w("c = None")
    if p.pre:
        if gen.ctx == "always":
            w("c._start = _mono(); c._state = _S_PRE")
        _dispatch(gen, p.pre, "pre", ref)
    w("start = _mono()" if timed else "start = 0.0")
    gen.when_ctx("c._start = start; c._state = _S_EXEC; c._attempt = 1")
    w("try:")
    for i in range(len(chain.before_attempt) if chain else 0):
        w(f"    _before{i}(c)")
    w(f"    value = {'await ' if asynchronous else ''}func(*args, **kwargs)")
    w("except Exception as exc:")
    w("    return _first_failed(func, _p, c, info, args, kwargs, start, exc)")
    w("except BaseException as exc:")
    w("    _interrupted(_p, info, args, kwargs, start, exc, c)")
    w("    raise")
    w("t = _mono() - start" if timed else "t = 0.0")
    gen.when_ctx("c._time = t; c._value = value")
    if chain and chain.after_success:
        # Handler bookkeeping must never become the caller's exception (as _safe_hooks).
        for i in range(len(chain.after_success)):
            w("try:")
            w(f"    _after{i}(c)")
            w("except Exception:")
            w(f"    _hook_failed(_after{i})")
    wants_result = any(
        reg.direct and any(src == "result" for _, src in reg.injection or ())
        for reg in (*p.success, *p.completed)
    )
    if wants_result:
        w("r = _new(_Result); r.value = value; r.execution_time = t")
    if p.success:
        gen.when_ctx("c._state = _S_OK")
        _dispatch(gen, p.success, "ok", ref)
    gen.when_ctx("c._state = _S_DONE")
    if p.completed:
        _dispatch(gen, p.completed, "done", ref)
    w("return value")
    source = "\n".join(gen.lines) + "\n"
    exec(compile(source, "<callpyback: observed call>", "exec"), ns)
    run: Run = ns["run"]
    run.__source__ = source  # type: ignore[attr-defined]  # for debugging and tests
    return run


class _Writer:
    """Source lines of ``run``, and what is known at this point about the context ``c``."""

    def __init__(self, lines: List[str]) -> None:
        self.lines = lines
        self.ctx = "none"  # "none": c is None here; "maybe": it may exist; "always": it does
        self.indent = 1

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def when_ctx(self, text: str) -> None:
        """Keep an existing context in step (its state, times and value)."""
        if self.ctx == "always":
            self.line(text)
        elif self.ctx == "maybe":
            self.line("if c is not None:")
            self.line(f"    {text}")

    def ensure_ctx(self, phase: str) -> None:
        """Build the context here if nothing has yet, with the fields this phase knows."""
        if self.ctx == "always":
            return
        self.line("if c is None:")
        if phase == "pre":
            self.line("    c = _new_context(info, args, kwargs, _ts, _mono()); c._state = _S_PRE")
        else:
            state = "_S_OK" if phase == "ok" else "_S_DONE"
            self.line("    c = _new_context(info, args, kwargs, _ts, start)")
            self.line(f"    c._attempt = 1; c._time = t; c._value = value; c._state = {state}")
        if self.ctx == "none":
            self.ctx = "maybe"


def _dispatch(
    gen: _Writer, regs: Tuple[Registration, ...], phase: str, ref: Callable[[Registration], int]
) -> None:
    w = gen.line
    guarded = any(r.guard for r in regs)
    if guarded:
        w("if g is None:")
        w("    g = _new_cell()")
        w("g[0] = _ident()")
        w("try:")
        gen.indent += 1
    state = {"pre": "_S_PRE", "ok": "_S_OK", "done": "_S_DONE"}[phase]
    for reg in regs:
        i = ref(reg)
        gated = reg.gate is not None
        if gated:
            # The observer said it may decline this state cheaply: ask before doing anything.
            w(f"if _gate{i}({state}):")
            gen.indent += 1
        if not reg.direct:
            gen.ensure_ctx(phase)
            call = f"_fn{i}(c)"
        else:
            if needs_context(reg):
                gen.ensure_ctx(phase)
            parts = [
                _expr(src, phase) if kw is None else f"{kw}={_expr(src, phase)}"
                for kw, src in reg.injection or ()
            ]
            call = f"_cb{i}({', '.join(parts)})"
        w("try:")
        if reg.escalates:
            w(f"    if {call} is _NEEDS_CONTEXT:")
            gen.indent += 2
            gen.ensure_ctx(phase)
            w(f"_fn{i}(c)")
            gen.indent -= 2
        else:
            w(f"    {call}")
        w("except Exception as e:")
        w(f"    _observer_failed(_reg{i}, e)")
        w("else:")
        w(f"    if _reg{i}.failures:")
        w(f"        _reg{i}.failures = 0")
        if gated:
            gen.indent -= 1
    if guarded:
        gen.indent -= 1
        w("finally:")
        w("    g[0] = 0")
