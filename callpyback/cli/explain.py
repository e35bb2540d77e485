"""``callpyback explain TARGET``: which pipeline a function gets, and why."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.machinery
import inspect
import json
import sys
from typing import Any, List, Optional

from ._common import add_config_option, load, painter
from ._fmt import table

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
    parser.add_argument("--all", dest="modules", action="append", default=[], metavar="MODULE",
                        help="cover every function and method of MODULE (repeatable)")
    parser.add_argument("--import", dest="do_import", action="store_true",
                        help="with --all: import MODULE instead of reading its source")
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
        results.append(_record(config, target))
        if not args.json:
            print(config.explain(target))
            print()
    for module in args.modules:
        try:
            qualnames = (
                functions_by_import(module) if args.do_import else functions_from_source(module)
            )
        except Exception as exc:  # the module is missing, or its source does not parse
            print(f"callpyback explain: cannot list the functions of {module!r}: {exc}",
                  file=sys.stderr)
            status = 1
            continue
        records = [_record(config, f"{module}:{q}") for q in qualnames]
        results.extend(records)
        if not args.json:
            print(_module_table(config, module, records, args.do_import))
            print()
    if args.json:
        print(json.dumps(results, indent=2))
    return status


def _record(config: Any, target: str) -> dict[str, Any]:
    found = config.pipeline_for(target)
    if found is None:
        return {"target": target, "pipeline": None, "pattern": None, "wrapped": False,
                "observers": [], "error_handlers": []}
    p = found.pipeline
    return {
        "target": target,
        "pipeline": p.label,
        "index": found.index,
        "pattern": found.pattern,
        "wrapped": bool(config.settings.enabled and p.enabled and not p.is_empty),
        "observers": [r.label for r in p.observers],
        "error_handlers": [r.label for r in p.error_handlers],
    }


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
            "yes" if r["wrapped"] else "no",
        )
        for r in records
    ]
    return head + "\n" + table(
        ["QUALNAME", "PIPELINE", "PATTERN", "OBSERVERS", "ERROR HANDLERS", "WRAPPED"], rows, paint
    )


# --- listing a module's functions ---------------------------------------------------------
def find_source(module: str) -> str:
    """The path of ``module``'s source, found without importing it or its parent packages."""
    search: Optional[List[str]] = None
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


def functions_from_source(module: str) -> List[str]:
    """Qualnames of the functions and methods ``module`` defines at module and class level."""
    path = find_source(module)
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    out: List[str] = []

    def visit(body: List[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append(prefix + node.name)
            elif isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.If, ast.Try)):
                # definitions under `if TYPE_CHECKING:` / `try: ... except ImportError:`
                for branch in _branches(node):
                    visit(branch, prefix)

    visit(tree.body, "")
    return list(dict.fromkeys(out))


def _branches(node: Any) -> List[List[ast.stmt]]:
    if isinstance(node, ast.If):
        return [node.body, node.orelse]
    return [node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody]


def functions_by_import(module: str) -> List[str]:
    """Import ``module`` and list the functions and methods defined in it (not imported ones)."""
    mod = importlib.import_module(module)
    out: List[str] = []

    def visit(namespace: dict[str, Any], owner: Optional[type]) -> None:
        for value in list(namespace.values()):
            func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
            if inspect.isfunction(func) and func.__module__ == module:
                out.append(func.__qualname__)
            elif (isinstance(value, type) and value.__module__ == module
                  and (owner is None or value.__qualname__.startswith(owner.__qualname__ + "."))):
                visit(dict(vars(value)), value)

    visit(dict(vars(mod)), None)
    return list(dict.fromkeys(out))
