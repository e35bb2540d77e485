"""Callback injection: which argument a callback parameter of a given name receives.

Resolved once, when an observer is attached, never per call.  The engine then calls the
callback directly with the values it already holds (see ``_engine``); callbacks run from
generic code paths get them from the context through :func:`context_caller`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from .errors import ConfigurationError

__all__ = ["INJECTABLE", "Injection", "context_caller", "resolve_injection"]

#: Parameter name -> how generic paths read it off the engine's context (its own slots where
#: the value is stored as is: no property frame, which matters near the recursion limit).
INJECTABLE = {
    "context": "c",
    "function_signature": "c._info.signature",
    "arguments": "c.arguments",
    "state": "c._state",
    "result": "c.result",
    "local_variables": "c.local_variables",
    "metadata": "c.metadata",
    "timestamp": "c.timestamp",
    "execution_time": "c._time",
    "exception": "c._exc",
    "value": "c._value",
    "args": "c._args",
    "kwargs": "c.kwargs",
    "function": "c._info.function",
    "attempt": "c._attempt",
    "function_info": "c._info",
    "outcome": "c.outcome",
    "target": "c._info.target",
}

#: One injected argument: (keyword name, or None for positional; source name in INJECTABLE).
Injection = Tuple[Tuple[Optional[str], str], ...]


def describe_callable(callback: Callable[..., Any]) -> str:
    """``qualname (file:line)``, for messages about a user's callback."""
    name = getattr(callback, "__qualname__", None) or repr(callback)
    import inspect

    try:
        code = getattr(inspect.unwrap(callback), "__code__", None)
    except ValueError:  # a __wrapped__ cycle
        code = None
    if code is not None:
        return f"{name} ({code.co_filename}:{code.co_firstlineno})"
    return name


def resolve_injection(callback: Callable[..., Any], owner: str) -> Optional[Injection]:
    """Map ``callback``'s parameters to injectable sources, once, at observer creation.

    ``owner`` names the observer in messages.  None means the callback has no introspectable
    signature: it gets the context positionally.  An unknown name without a default is a
    ``ConfigurationError`` now; a parameter with a default keeps it (the ``lambda i=i:`` idiom);
    ``**kwargs`` receives everything.
    """
    import inspect  # at observer creation only, never per call

    try:
        sig = inspect.signature(callback)
    except (TypeError, ValueError):
        return None
    out: list[Tuple[Optional[str], str]] = []
    can_positional = True
    var_kw = False
    where = describe_callable(callback)
    # The observer is usually named after its callback: say it once, with where it is defined.
    label = where if where == owner or where.startswith(f"{owner} (") else f"{owner}: {where}"
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            can_positional = False
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.name not in INJECTABLE:
            if p.default is not p.empty:
                can_positional = False  # keep its default
                continue
            import difflib

            close = difflib.get_close_matches(p.name, INJECTABLE, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"observer callback {label} has parameter {p.name!r}, which CallPyBack cannot "
                f"inject.{hint} Allowed names: {', '.join(INJECTABLE)}; give the parameter a "
                "default, or take **kwargs to receive everything."
            )
        if p.kind is p.POSITIONAL_ONLY:
            if not can_positional:
                raise ConfigurationError(
                    f"observer callback {label}: positional-only parameter {p.name!r} follows a "
                    "parameter CallPyBack cannot fill; reorder or make it keyword"
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


def context_caller(
    callback: Callable[..., Any],
    injection: Optional[Injection],
    owner: str,
    escalate_to: Optional[Callable[[Any], Any]] = None,
) -> Callable[[Any], Any]:
    """``call(context)`` calling ``callback`` with its injected arguments read off the context.

    Generated as straight-line attribute reads, so a callback costs one extra call on the
    paths that hand observers a context (failures, retries, background dispatch).  With
    ``escalate_to``, a callback answering NEEDS_CONTEXT gets ``escalate_to(context)`` called.
    """
    if injection is None:
        return callback
    parts = [INJECTABLE[src] if kw is None else f"{kw}={INJECTABLE[src]}" for kw, src in injection]
    if escalate_to is None:
        source = f"def call(c):\n    return _cb({', '.join(parts)})\n"
    else:
        source = f"def call(c):\n    if _cb({', '.join(parts)}) is _NC:\n        _up(c)\n"
    from ._engine import NEEDS_CONTEXT

    namespace: dict[str, Any] = {"_cb": callback, "_NC": NEEDS_CONTEXT, "_up": escalate_to}
    exec(compile(source, f"<callpyback injector for {owner}>", "exec"), namespace)
    call: Callable[[Any], Any] = namespace["call"]
    return call
