"""``callpyback config show``: the effective configuration, secrets redacted."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_config_option, load

EXAMPLES = """\
examples:
  callpyback config show
  CALLPYBACK_ENABLED=false callpyback config show     # see the override and where it came from
  callpyback config show -c deploy.toml --format json
  callpyback config show --no-redact                  # only on a trusted terminal

Values of keys that look secret (password, token, secret, api_key, ...), of keys listed in
settings.redact, and values read from secret-looking environment variables show as ***."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "config",
        help="show the effective configuration",
        description="Inspect the configuration callpyback would use.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="print the effective configuration after precedence and substitution",
        description="Print the configuration after precedence (argument > environment > file > "
        "default) and ${ENV} substitution, with the origin of each setting and secrets "
        "redacted.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(show)
    show.add_argument(
        "--format", choices=("toml", "json"), default="toml", help="output format (default: toml)"
    )
    show.add_argument(
        "--no-redact", dest="redact", action="store_false", help="show secret values as they are"
    )
    show.set_defaults(func=run)
    parser.set_defaults(func=lambda args: _usage(parser))
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run(args: argparse.Namespace) -> int:
    from ._fmt import dump_toml
    from ._render import effective

    config = load(args.config)
    if config is None:
        return 1
    doc = effective(config, redacted=args.redact)
    if args.format == "json":
        print(
            json.dumps(
                {"source": config.source, "origins": dict(config.origins), "config": doc},
                indent=2,
                default=str,
            )
        )
        return 0
    comments = {f"settings.{k}": f"from {v}" for k, v in config.origins.items()}
    print(f"# effective configuration from {config.source}")
    print(dump_toml(doc, comments), end="")
    return 0
