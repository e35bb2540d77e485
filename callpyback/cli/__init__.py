"""The ``callpyback`` command: one module per subcommand, each with ``add_parser`` and ``run``.

A subcommand module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` (setting
``func=run`` via ``set_defaults``) and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ["demo", "run", "check", "explain", "plugins_cmd", "config_cmd"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callpyback",
        description="Observe function calls declaratively: check configs, explain pipelines, "
        "list plugins, run programs with auto-instrumentation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.version:
        import callpyback

        print(callpyback.__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
