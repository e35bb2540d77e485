"""``callpyback check [FILE]``: validate a configuration, build its components, list every problem.

The report is the command's output, so it goes to stdout (``callpyback check | less`` shows
it); the exit status says whether the configuration is valid.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, List

from ._common import add_config_option, painter, print_problems

EXAMPLES = """\
examples:
  callpyback check                      # the file found from the current directory
  callpyback check deploy/callpyback.toml
  callpyback check -c deploy/callpyback.toml
  callpyback check pyproject.toml       # its [tool.callpyback] table
  callpyback check --no-build           # validate only: run no factory, import nothing
  callpyback check --json | jq '.problems[].key'

exit status: 0 when the configuration is valid (and, unless --no-build, every component
builds), 1 when it has problems, 2 for a usage error."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "check",
        help="validate a configuration and list every problem",
        description="Validate callpyback.toml (or [tool.callpyback] in pyproject.toml): syntax, "
        "keys, component types and their options, references, patterns and environment "
        "variables; then build every pipeline's components, as start-up would. Every problem "
        "is listed with its file, line and key path.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="the config file (default: discovered as callpyback itself does)",
    )
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    build = parser.add_mutually_exclusive_group()
    build.add_argument(
        "--no-build",
        dest="build",
        action="store_false",
        help="validate only: do not build the components (their factories may "
        "open files or connections) nor import the modules named by "
        "exception lists",
    )
    build.add_argument(
        "--build",
        dest="build",
        action="store_true",
        help="build every pipeline's components (the default)",
    )
    parser.set_defaults(func=run, build=True, parser=parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_config

    if args.file and args.config and args.file != args.config:
        args.parser.error(f"give the file once: FILE {args.file!r} or -c {args.config!r}")
    path = args.file or args.config
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _invalid(exc, args.json)
    warnings: List[Any] = []
    if args.build:
        problems = config.assembly.problems()
        if problems and config.settings.on_build_error != "warn":
            return _invalid(ConfigError(problems, config.source), args.json)
        warnings = problems
    named = {kind: sorted(refs) for kind, refs in config.components.items() if refs}
    if args.json:
        print(
            json.dumps(
                {
                    "valid": True,
                    "source": config.source,
                    "built": bool(args.build),
                    "problems": [],
                    "warnings": [p.as_dict() for p in warnings],
                    "pipelines": [p.label for p in config.pipelines],
                    "components": named,
                },
                indent=2,
            )
        )
        return 0
    paint = painter()
    count = len(config.pipelines)
    built = "" if args.build else " (not built: --no-build)"
    print(
        f"{paint('ok', 'green', 'bold')}: {config.source}: {count} "
        f"pipeline{'s' if count != 1 else ''}, "
        f"{sum(len(v) for v in named.values())} named components{built}"
    )
    if config.source == "<defaults>":
        print("  no configuration file found: nothing will be instrumented")
    if not config.settings.enabled:
        print(
            f"  settings.enabled is false ({config.origins.get('enabled', 'file')}): "
            "nothing will be instrumented"
        )
    for p in config.pipelines:
        what = (
            "empty: opts its functions out"
            if p.is_empty
            else (f"{len(p.observers)} observers, {len(p.error_handlers)} error handlers")
        )
        print(f"  {p.label}: {', '.join(p.match)} ({what})")
    if warnings:
        print(
            paint(
                f'{len(warnings)} component(s) cannot be built; on_build_error = "warn" '
                "runs without them:",
                "yellow",
            )
        )
        for problem in warnings:
            print(f"  - {problem}")
    return 0


def _invalid(error: Any, as_json: bool) -> int:
    if as_json:
        print(
            json.dumps(
                {
                    "valid": False,
                    "source": error.source,
                    "problems": [p.as_dict() for p in error.problems],
                },
                indent=2,
            )
        )
    else:
        print_problems(error)
    return 1
