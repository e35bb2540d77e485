"""``callpyback explain TARGET``: which pipeline a function gets, and why."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.machinery
import inspect
import json
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

from ._common import add_config_option, load, painter
from ._fmt import table
from ._render import explain, record

EXAMPLES = """\
examples:
  callpyback explain shop.payments:charge
  callpyback explain shop.cart:Cart.add shop.cart:Cart.remove
  callpyback explain --all shop.payments          # every function, from the source (no import)
  callpyback explain --all shop.payments --import # import it and list what it really defines
  callpyback explain -c ci.toml shop.payments:charge --json

TARGET is module:qualname (methods as Class.method).  The first matching pipeline in file
order wins; explain also shows pipelines that matched but were excluded or shadowed."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "explain",
        help="show which pipeline applies to a function, and why",
        description="Show which pipeline applies to module:qualname, which pattern matched, and "
        "the resulting observers and error handlers in order. User code is not imported "
        "unless --import is given.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="module:qualname")
    parser.add_argument(
        "--all",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="cover every function and method of MODULE (repeatable)",
    )
    parser.add_argument(
        "--import",
        dest="do_import",
        action="store_true",
        help="with --all: import MODULE instead of reading its source",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_config_option(parser)
    parser.set_defaults(func=run, parser=parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if not args.targets and not args.modules:
        args.parser.error("give at least one TARGET (module:qualname) or --all MODULE")
    config = load(args.config)
    if config is None:
        return 1
    status = 0
    results: List[dict[str, Any]] = []
    for target in args.targets:
        results.append(record(config, target))
        if not args.json:
            print(explain(config, target))
            print()
    for module in args.modules:
        try:
            found = functions_by_import(module) if args.do_import else functions_from_source(module)
        except Exception as exc:  # the module is missing, or its source does not parse
            print(
                f"callpyback explain: cannot list the functions of {module!r}: {exc}",
                file=sys.stderr,
            )
            status = 1
            continue
        except SystemExit as exc:  # --import of a module that exits at import
            print(
                f"callpyback explain: importing {module!r} raised SystemExit({exc.code!r})",
                file=sys.stderr,
            )
            status = 1
            continue
        records = [record(config, f"{module}:{q}", skipped) for q, skipped in found]
        results.extend(records)
        if not args.json:
            print(_module_table(config, module, records, args.do_import))
            print()
    if args.json:
        print(json.dumps(results, indent=2))
    return status


def _module_table(config: Any, module: str, records: List[dict[str, Any]], imported: bool) -> str:
    paint = painter()
    how = "imported" if imported else "read from source"
    head = paint(f"{module} ({len(records)} functions, {how}; config {config.source})", "bold")
    if not records:
        return f"{head}\n  (no functions or methods found)"
    rows = [
        (
            r["target"].partition(":")[2],
            r["pipeline"] or "-",
            r["pattern"] or "-",
            ", ".join(r["observers"]) or "-",
            ", ".join(r["error_handlers"]) or "-",
            "yes" if r["wrapped"] else (f"no: {r['skipped']}" if r["skipped"] else "no"),
        )
        for r in records
    ]
    return (
        head
        + "\n"
        + table(
            ["QUALNAME", "PIPELINE", "PATTERN", "OBSERVERS", "ERROR HANDLERS", "WRAPPED"],
            rows,
            paint,
        )
    )


# --- listing a module's functions ---------------------------------------------------------

#: (qualname, why the import hook would skip it, or None)
Found = List[Tuple[str, Optional[str]]]

#: Decorators whose result the import hook leaves alone (it wraps plain functions, class and
#: static methods only), and how ``explain`` says so.
_SKIPPED_DECORATORS = {
    "property": "property",
    "setter": "property",
    "getter": "property",
    "deleter": "property",
    "cached_property": "cached_property",
    "singledispatchmethod": "singledispatchmethod",
}


def _search_path() -> List[str]:
    """sys.path as ``python -m`` has it: the working directory first.  A console script has its
    own directory there instead, which would hide the user's modules."""
    cwd = os.getcwd()
    entries = [os.path.abspath(p or os.curdir) for p in sys.path]
    return sys.path if cwd in entries else [cwd, *sys.path]


def find_source(module: str) -> str:
    """The path of ``module``'s source, found without importing it or its parent packages."""
    search: Optional[List[str]] = _search_path()
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None:
            raise ModuleNotFoundError(f"no module named {name!r} on sys.path")
        search = list(spec.submodule_search_locations or [])
    assert spec is not None
    if not spec.origin or not spec.origin.endswith(".py"):
        raise ModuleNotFoundError(
            f"{module!r} has no Python source ({spec.origin or 'namespace package'}); "
            "use --import to inspect it"
        )
    return spec.origin


def _skipped(node: Any) -> Optional[str]:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        kind = _SKIPPED_DECORATORS.get(str(name))
        if kind is not None:
            return f"a {kind}, not wrapped by the import hook"
    return None


def functions_from_source(module: str) -> Found:
    """The functions and methods ``module`` defines at module and class level (qualname, and
    why the hook would skip it: a property, say)."""
    path = find_source(module)
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    out: Dict[str, Optional[str]] = {}

    def visit(body: List[ast.stmt], prefix: str, in_class: bool) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = prefix + node.name
                skipped = _skipped(node) if in_class else None
                # a property's setter repeats its name: it is still one skipped attribute
                if qualname not in out or skipped is not None:
                    out[qualname] = skipped
            elif isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.", True)
            elif isinstance(node, (ast.If, ast.Try)):
                # definitions under `if TYPE_CHECKING:` / `try: ... except ImportError:`
                for branch in _branches(node):
                    visit(branch, prefix, in_class)

    visit(tree.body, "", False)
    return list(out.items())


def _branches(node: Any) -> List[List[ast.stmt]]:
    if isinstance(node, ast.If):
        return [node.body, node.orelse]
    return [node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody]


def functions_by_import(module: str) -> Found:
    """Import ``module`` and list the functions and methods defined in it (not imported ones);
    properties and their kin are listed as skipped."""
    import functools

    cwd = os.getcwd()
    if cwd not in [os.path.abspath(p or os.curdir) for p in sys.path]:
        sys.path.insert(0, cwd)  # as python -m would: the user's modules are found
    mod = importlib.import_module(module)
    out: Dict[str, Optional[str]] = {}

    def visit(namespace: dict[str, Any], owner: Optional[type]) -> None:
        for key, value in list(namespace.items()):
            func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
            if inspect.isfunction(func) and func.__module__ == module:
                out.setdefault(func.__qualname__, None)
            elif owner is not None and isinstance(
                value, (property, functools.cached_property, functools.singledispatchmethod)
            ):
                kind = type(value).__name__
                out[f"{owner.__qualname__}.{key}"] = f"a {kind}, not wrapped by the import hook"
            elif (
                isinstance(value, type)
                and value.__module__ == module
                and (owner is None or value.__qualname__.startswith(owner.__qualname__ + "."))
            ):
                visit(dict(vars(value)), value)

    visit(dict(vars(mod)), None)
    return list(out.items())
