"""Running a program as ``__main__`` with its own functions instrumented as they are defined.

A script's functions cannot be instrumented "after the module executes": by then the program
has run.  So the script's code is compiled with one extra statement after each top-level
``def``/``class`` (also inside top-level ``if``/``try``/``with``/loops, never inside functions
or classes), which instruments that one name if the config selects it.  Line numbers and the
file name are the script's own, so tracebacks and debuggers are unaffected.
"""

from __future__ import annotations

import ast
import contextlib
import os
import sys
import types
from typing import Any, List, Optional, Sequence

__all__ = ["compile_main", "defined", "run_module", "run_path"]

_NESTED = ("body", "orelse", "finalbody", "handlers", "cases")
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _hook_call(name: str, where: ast.stmt) -> ast.stmt:
    """The statement ``__import__(<this module>, ...).defined(globals(), name)``.

    ``__import__`` rather than a name in the script's globals: nothing is added to them.
    """
    load = ast.Load()
    importer = ast.Call(
        func=ast.Name(id="__import__", ctx=load),
        args=[
            ast.Constant(value=__name__),
            ast.Constant(value=None),
            ast.Constant(value=None),
            ast.List(elts=[ast.Constant(value="defined")], ctx=load),
        ],
        keywords=[],
    )
    call = ast.Expr(
        value=ast.Call(
            func=ast.Attribute(value=importer, attr="defined", ctx=load),
            args=[
                ast.Call(func=ast.Name(id="globals", ctx=load), args=[], keywords=[]),
                ast.Constant(value=name),
            ],
            keywords=[],
        )
    )
    end = getattr(where, "end_lineno", None) or where.lineno
    for node in ast.walk(call):
        node.lineno = node.end_lineno = end  # type: ignore[attr-defined]
        node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]
    return call


def _inject(body: List[Any]) -> None:
    index = 0
    while index < len(body):
        node = body[index]
        if isinstance(node, _DEFS):
            body.insert(index + 1, _hook_call(node.name, node))
            index += 2
            continue
        for fieldname in _NESTED:
            nested = getattr(node, fieldname, None)
            if isinstance(nested, list):
                if nested and isinstance(nested[0], ast.stmt):
                    _inject(nested)
                else:  # except handlers / match cases hold statement lists one level down
                    for child in nested:
                        inner = getattr(child, "body", None)
                        if isinstance(inner, list):
                            _inject(inner)
        index += 1


def compile_main(source: Any, filename: str) -> types.CodeType:
    """Compile ``source`` with the definition hooks.  A SyntaxError is the same as Python's."""
    tree = ast.parse(source, filename, "exec")
    _inject(tree.body)
    return compile(tree, filename, "exec", dont_inherit=True)


class _Namespace:
    """Gives a bare globals dict the ``__dict__`` the namespace walker reads and writes."""

    __slots__ = ("ns",)

    def __init__(self, ns: dict[str, Any]) -> None:
        self.ns = ns

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        return self.ns

    def __repr__(self) -> str:
        return f"<namespace {self.ns.get('__name__')!r}>"


def _owner_for(ns: dict[str, Any]) -> Any:
    module = sys.modules.get(str(ns.get("__name__")))
    if isinstance(module, types.ModuleType) and module.__dict__ is ns:
        return module
    return _Namespace(ns)


def defined(ns: dict[str, Any], name: str) -> None:
    """Called by the compiled ``__main__`` code right after ``name`` is defined."""
    from . import _current

    inst = _current()
    if inst is None or not inst.active:
        return
    _make_loader_truthful(ns)
    names: List[str] = []
    spec = ns.get("__spec__")
    spec_name = getattr(spec, "name", None)
    if isinstance(spec_name, str) and spec_name != ns.get("__name__"):
        names.append(spec_name)  # ``-m pkg.mod``: patterns may name pkg.mod
    names.append(str(ns.get("__name__")))
    # instrument() contains its own errors; the program must never see one of ours.
    with contextlib.suppress(Exception):
        inst.instrument(_owner_for(ns), names=names, keys=[name])


def _make_loader_truthful(ns: dict[str, Any]) -> None:
    from ._finder import InstrumentingLoader

    loader = ns.get("__loader__")
    if isinstance(loader, InstrumentingLoader):
        ns["__loader__"] = loader._cpb_loader
    spec = ns.get("__spec__")
    if spec is not None and isinstance(getattr(spec, "loader", None), InstrumentingLoader):
        spec.loader = spec.loader._cpb_loader


def code_for_runpy(loader: Any, fullname: str) -> Any:
    """``get_code`` for ``runpy`` (``python -m``): the module's code with definition hooks."""
    try:
        source = loader.get_source(fullname)
        filename = loader.get_filename(fullname)
    except Exception:
        source = None
    if source is None:
        return loader.get_code(fullname)
    try:
        return compile_main(source, filename)
    except SyntaxError:
        return loader.get_code(fullname)  # raises Python's own error
    except Exception as exc:
        from ._instrument import _warn

        _warn(
            f"callpyback could not prepare {fullname!r} for instrumentation ({exc!r}); "
            "it runs uninstrumented"
        )
        return loader.get_code(fullname)


# --- running a program the way ``python`` would ----------------------------------------------


def _new_main(**attrs: Any) -> types.ModuleType:
    main = types.ModuleType("__main__")
    main.__dict__.update(attrs)
    main.__dict__.setdefault("__builtins__", __builtins__)
    sys.modules["__main__"] = main
    return main


def run_path(path: str, args: Sequence[str]) -> None:
    """``python path args...``: a script file, or a directory / zip file with ``__main__.py``."""
    import importlib.machinery

    sys.argv[:] = [path, *args]
    if os.path.isdir(path) or (not path.endswith((".py", ".pyw")) and _is_zip(path)):
        # Directories and zip apps go through runpy, like python does; their modules are
        # instrumented by the hook as usual, and __main__.py's functions are not.
        import runpy

        sys.path.insert(0, path)
        runpy.run_path(path, run_name="__main__")
        return
    # Since Python 3.9 a script's __file__ (and its code's file name) is absolute.
    path_abs = os.path.abspath(path)
    sys.path[0:1] = [os.path.dirname(path_abs)]
    with open(path_abs, "rb") as handle:  # bytes: compile() honours the encoding cookie
        source = handle.read()
    main = _new_main(
        __file__=path_abs,
        __cached__=None,
        __package__=None,
        __spec__=None,
        __loader__=importlib.machinery.SourceFileLoader("__main__", path_abs),
    )
    code = compile_main(source, path_abs)
    exec(code, main.__dict__)


def _is_zip(path: str) -> bool:
    import zipfile

    return os.path.isfile(path) and zipfile.is_zipfile(path)


def run_module(name: str, args: Sequence[str]) -> None:
    """``python -m name args...``."""
    from ._finder import InstrumentingLoader

    sys.path[0:1] = [os.getcwd()]
    spec = _find(name)
    if spec.submodule_search_locations is not None:
        main_name = f"{name}.__main__"
        spec = _find(main_name)
        name = main_name
    loader = spec.loader
    if isinstance(loader, InstrumentingLoader):
        loader = loader._cpb_loader
        spec.loader = loader
    if loader is None:
        raise ProgramNotFound(f"No code object available for {name} (a namespace package)")
    code = code_for_runpy(loader, name)
    origin = spec.origin if spec.has_location else None
    sys.argv[:] = [origin or name, *args]
    main = _new_main(
        __file__=origin,
        __cached__=spec.cached,
        __package__=spec.parent,
        __spec__=spec,
        __loader__=loader,
    )
    if origin is None:
        del main.__file__
    exec(code, main.__dict__)


class ProgramNotFound(Exception):
    """The module given to ``-m`` cannot be found (reported like python: one line, status 1)."""


def _find(name: str) -> Any:
    import importlib.util

    if name.startswith("."):
        raise ProgramNotFound("Relative module names not supported")
    try:
        spec = importlib.util.find_spec(name)
    except ImportError as exc:  # a missing parent package
        raise ProgramNotFound(
            f"Error while finding module specification for {name!r} ({type(exc).__name__}: {exc})"
        ) from exc
    if spec is None:
        raise ProgramNotFound(f"No module named {name}")
    return spec


def trim_traceback(exc: BaseException, filename: Optional[str]) -> Any:
    """The traceback from the program's first frame on, as python would print it."""
    tb = exc.__traceback__
    if filename is None:
        return tb
    probe = tb
    while probe is not None and probe.tb_frame.f_code.co_filename != filename:
        probe = probe.tb_next
    return probe if probe is not None else tb
