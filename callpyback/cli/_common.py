"""Pieces the config-related subcommands share: loading a config and printing its problems."""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any, Optional

from ._fmt import Painter, use_color


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="the config file (default: $CALLPYBACK_CONFIG, else callpyback.toml or "
        "[tool.callpyback] in pyproject.toml, searched upwards to the project root)",
    )


def painter(stream: Optional[IO[str]] = None) -> Painter:
    return Painter(use_color(stream or sys.stdout))


def print_problems(error: Any, stream: Optional[IO[str]] = None) -> None:
    """Every problem of a ConfigError, one block each: where, what, given, allowed, hint.

    To stdout by default: for ``check`` the problems are the report.
    """
    out = stream or sys.stdout
    paint = painter(out)
    count = len(error.problems)
    where = error.source or "the configuration"
    plural = "s" if count != 1 else ""
    print(
        paint(f"{count} problem{plural} in {where}; nothing was applied", "red", "bold"), file=out
    )
    for p in error.problems:
        print(f"{paint(p.location(), 'bold')}: {paint(p.key, 'cyan')}", file=out)
        print(f"    {paint('error:', 'red')}   {p.message}", file=out)
        if p.has_given:
            print(f"    given:   {p.given!r}", file=out)
        if p.component:
            print(f"    in:      the options of {p.component}", file=out)
        if p.allowed:
            print(f"    allowed: {p.allowed}", file=out)
        if p.suggestions:
            hint = " or ".join(repr(s) for s in p.suggestions)
            print(f"    {paint('did you mean', 'yellow')} {hint}?", file=out)


def load(path: Optional[str]) -> Any:
    """The config, or None after printing its problems to stderr (the caller exits with 1).

    Only validates: no component is built and no module named in the file is imported.
    """
    from ..config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print_problems(exc, sys.stderr)
        return None
