"""The ``callpyback`` command: one module per subcommand, each with ``add_parser`` and ``run``.

A subcommand module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` (setting
``func=run`` via ``set_defaults``) and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ["demo", "run", "top", "check", "explain", "plugins_cmd", "config_cmd"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callpyback",
        description="Observe function calls declaratively: check configs, explain pipelines, "
        "list plugins, run programs with auto-instrumentation, watch them live.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``callpyback`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status.
    """
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.version:
        import callpyback
        from callpyback._cengine import engine_description

        print(callpyback.__version__)
        print(f"engine: {engine_description()}")  # compiled or pure Python, and why
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command == "run":
        return int(args.func(args) or 0)  # the program's streams are the program's business
    _tolerate_any_encoding()
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return _reader_gone()


def _tolerate_any_encoding() -> None:
    """A report must print on any terminal: characters the output's encoding lacks (an ASCII
    locale, PYTHONIOENCODING=ascii) are escaped instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure) and getattr(stream, "errors", None) == "strict":
            reconfigure(errors="backslashreplace")


def _reader_gone() -> int:
    """The reader of our output went away (``callpyback explain ... | head``): stop quietly,
    as a filter does, and keep the interpreter from reporting the pipe again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture stdout)
        pass
    return 1
