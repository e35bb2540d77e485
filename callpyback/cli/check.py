"""``callpyback check [FILE]``: validate a configuration and list every problem."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import painter, print_problems

EXAMPLES = """\
examples:
  callpyback check                      # the file found from the current directory
  callpyback check deploy/callpyback.toml
  callpyback check pyproject.toml       # its [tool.callpyback] table
  callpyback check --build              # also construct every component
  callpyback check --json | jq '.problems[].key'

exit status: 0 when the configuration is valid, 1 when it has problems."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "check",
        help="validate a configuration and list every problem",
        description="Validate callpyback.toml (or [tool.callpyback] in pyproject.toml): syntax, "
        "keys, component types and their options, references, patterns and environment "
        "variables. Every problem is listed with its file, line and key path.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="the config file (default: discovered as callpyback itself does)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--build", action="store_true",
                        help="also build every pipeline's components (runs their factories, "
                        "which may open files or connections)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_config

    try:
        config = load_config(args.file)
        if args.build:
            config.build_all()
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"valid": False, "source": exc.source,
                              "problems": [p.as_dict() for p in exc.problems]}, indent=2))
        else:
            print_problems(exc)
        return 1
    named = {kind: sorted(refs) for kind, refs in config.components.items() if refs}
    if args.json:
        print(json.dumps({"valid": True, "source": config.source,
                          "pipelines": [p.label for p in config.pipelines],
                          "components": named}, indent=2))
        return 0
    paint = painter()
    count = len(config.pipelines)
    print(f"{paint('ok', 'green', 'bold')}: {config.source}: {count} "
          f"pipeline{'s' if count != 1 else ''}, "
          f"{sum(len(v) for v in named.values())} named components")
    if config.source == "<defaults>":
        print("  no configuration file found: nothing will be instrumented")
    if not config.settings.enabled:
        print(f"  settings.enabled is false ({config.origins.get('enabled', 'file')}): "
              "nothing will be instrumented")
    for p in config.pipelines:
        what = "empty: opts its functions out" if p.is_empty else (
            f"{len(p.observers)} observers, {len(p.error_handlers)} error handlers"
        )
        print(f"  {p.label}: {', '.join(p.match)} ({what})")
    return 0
