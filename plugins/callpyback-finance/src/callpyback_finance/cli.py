"""``callpyback-finance verify FILE``: check an audit trail's hash chain."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .chain import verify_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callpyback-finance", description="Tools for callpyback-finance audit trails."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    verify = sub.add_parser(
        "verify",
        help="walk the hash chain and report every broken or missing record",
        description="Exit status 0 if the chain is intact, 1 if it is not (or cannot be read).",
    )
    verify.add_argument("file", help="the JSON-lines audit trail")
    verify.add_argument(
        "--head", help="a head hash seen earlier: detects records cut off the end of the file"
    )
    verify.add_argument(
        "--count", type=int, help="a record count seen earlier: detects records cut off the end"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = verify_file(args.file, expected_head=args.head, expected_count=args.count)
    except OSError as exc:
        print(
            f"callpyback-finance: cannot read {args.file!r}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    if result.ok:
        print(f"{args.file}: {result}")
        return 0
    print(f"{args.file}: {result}", file=sys.stderr)
    for problem in result.problems[1:]:  # every problem: one edit must not hide another
        print(f"{args.file}: also {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
