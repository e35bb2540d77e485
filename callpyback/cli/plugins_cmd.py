"""``callpyback plugins``: installed plugins and the components they register."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import painter
from ._fmt import table

EXAMPLES = """\
examples:
  callpyback plugins                 # plugins, then every registered component
  callpyback plugins --json          # machine-readable
  CALLPYBACK_PLUGINS_DENY=finance callpyback plugins   # see what a deny list leaves"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "plugins",
        help="list plugins, their distributions, versions and components",
        description="List the plugins discovery found (entry-point group 'callpyback'), whether "
        "each loaded, and the observers, error handlers, time sources and variable extractors "
        "they register: the names a config file can use as 'type'.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)
    return parser


def _options(spec: Any, width: int = 40) -> str:
    """Option names, cut to ``width`` so the table stays readable (--json has them all)."""
    text = ", ".join(sorted(getattr(spec.options, "model_fields", {}) or {})) or "-"
    if len(text) <= width:
        return text
    return text[: text.rfind(", ", 0, width - 4)] + ", ..."


def run(args: argparse.Namespace) -> int:
    from ..plugins import get_registry, list_plugins

    infos = list_plugins()
    registry = get_registry()
    specs = sorted(registry, key=lambda s: (s.kind, s.name))
    if args.json:
        print(
            json.dumps(
                {
                    "plugins": [
                        {
                            "name": i.name,
                            "distribution": i.distribution,
                            "version": i.version,
                            "status": i.status,
                            "source": i.source,
                            "error": i.error,
                            "components": [{"kind": k, "name": n} for k, n in i.components],
                        }
                        for i in infos
                    ],
                    "components": [
                        {
                            "kind": s.kind,
                            "name": s.name,
                            "plugin": s.plugin,
                            "distribution": s.distribution,
                            "description": s.description,
                            "options": sorted(getattr(s.options, "model_fields", {}) or {}),
                        }
                        for s in specs
                    ],
                },
                indent=2,
            )
        )
        return 0
    paint = painter()
    rows = [
        (
            i.name,
            i.distribution or "-",
            i.version or "-",
            i.status,
            i.source,
            len(i.components) if i.status == "loaded" else (i.error or "-"),
        )
        for i in infos
    ]
    print(
        table(["PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "SOURCE", "COMPONENTS"], rows, paint)
    )
    print()
    comp_rows = [
        (s.kind, s.name, s.plugin, _options(s), s.description.split("\n", 1)[0] or "-")
        for s in specs
    ]
    print(table(["KIND", "TYPE", "PLUGIN", "OPTIONS", "DESCRIPTION"], comp_rows, paint))
    return 0
