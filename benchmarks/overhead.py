"""Overhead of CallPyBack relative to a passthrough wrapper, measured in one process.

    python benchmarks/overhead.py            # every case, table on stdout
    python benchmarks/overhead.py --quick    # fewer rounds
    python benchmarks/overhead.py -k core    # only cases whose group or name contains "core"
    python benchmarks/overhead.py --json out.json

Cases live in ``benchmarks/cases_*.py``; each defines ``CASES`` (see ``_harness.Case``).  Each
figure is the median of per-round ratios of minima over alternating ~100 us windows, with its
p25-p75 spread (see ``_harness``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path
from typing import Any, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import (  # noqa: E402
    Case,
    async_passthrough,
    atarget,
    compare,
    direct,
    passthrough,
    spread_of,
    target,
)


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(HERE.glob("cases_*.py")):
        module = importlib.import_module(path.stem)
        cases.extend(module.CASES)
    return cases


def baseline_op(case: Case) -> Any:
    if case.base_build is not None:
        return case.base_build()
    if case.baseline == "async" or case.kind == "async":
        return direct(async_passthrough(atarget), 1, kind="async")
    return direct(passthrough(target), 1)


Row = Tuple[Case, float, float, float, str]


def run_case(case: Case, rounds: int) -> Row:
    if case.kind == "custom":
        out = case.build()()
        if isinstance(out, tuple):  # one (value, baseline) pair
            value, base = out
            samples: List[float] = [value / base if base else float("inf")]
        else:
            samples = list(out)
        median, p25, p75 = spread_of(samples)
        return (case, median, p25, p75, "")
    result = compare(case.build(), baseline_op(case), case.kind, rounds)
    p25, p75 = result.spread
    unit = f"{result.case_s * 1e9:7.0f} ns vs {result.base_s * 1e9:5.0f} ns"
    return (case, result.median, p25, p75, unit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("-k", dest="select", default="", help="substring of group or case name")
    parser.add_argument("--json", dest="json_path", help="also write results as JSON here")
    args = parser.parse_args(argv)
    rounds = 7 if args.quick else 15

    rows: List[Row] = []
    for case in load_cases():
        if args.select and args.select not in case.group and args.select not in case.name:
            continue
        row = run_case(case, rounds)
        rows.append(row)
        print(_format(row), flush=True)

    print()
    print(
        f"Python {platform.python_version()} on {platform.machine()}; median of {rounds} rounds "
        "(ratio of minima over alternating ~100 us windows), [p25-p75]"
    )
    failed = [r for r in rows if r[0].target is not None and r[1] > r[0].target]
    if args.json_path:
        Path(args.json_path).write_text(
            json.dumps(
                [
                    {
                        "group": c.group,
                        "case": c.name,
                        "ratio": m,
                        "p25": lo,
                        "p75": hi,
                        "target": c.target,
                        "note": c.note,
                    }
                    for c, m, lo, hi, _ in rows
                ],
                indent=2,
            )
        )
    if failed:
        print(f"{len(failed)} case(s) above target: " + ", ".join(r[0].name for r in failed))
    return 0


def _format(row: Row) -> str:
    case, median, p25, p75, unit = row
    tgt = f"<= {case.target:g}x" if case.target is not None else ""
    ok = "" if case.target is None else ("ok" if median <= case.target else "ABOVE")
    spread = f"[{p25:.2f}-{p75:.2f}]"
    return (
        f"{case.group:10} {case.name:56} {median:6.2f}x {spread:13} {tgt:9} {ok:5} {unit}  "
        f"{case.note}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
