"""Overhead of CallPyBack relative to a passthrough wrapper, measured in one process.

    python benchmarks/overhead.py            # every case, table on stdout
    python benchmarks/overhead.py --quick    # fewer repeats
    python benchmarks/overhead.py -k core    # only cases whose group or name contains "core"
    python benchmarks/overhead.py --json out.json

Cases live in ``benchmarks/cases_*.py``; each defines ``CASES`` (see ``_harness.Case``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import Case, async_passthrough, atarget, direct, passthrough, run_pair, target  # noqa: E402


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(HERE.glob("cases_*.py")):
        module = importlib.import_module(path.stem)
        cases.extend(module.CASES)
    return cases


def baseline_op(kind: str) -> Any:
    if kind == "async":
        return direct(async_passthrough(atarget), 1, kind="async")
    return direct(passthrough(target), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    parser.add_argument("-k", dest="select", default="", help="substring of group or case name")
    parser.add_argument("--json", dest="json_path", help="also write results as JSON here")
    args = parser.parse_args(argv)
    number, repeat = (3_000, 5) if args.quick else (20_000, 9)

    rows = []
    for case in load_cases():
        if args.select and args.select not in case.group and args.select not in case.name:
            continue
        if case.kind == "custom":
            value, base = case.build()()
            ratio = value / base if base else float("inf")
            rows.append((case, value, base, ratio))
        else:
            op = case.build()
            base = baseline_op(case.baseline if case.baseline in ("sync", "async") else case.kind)
            c, b, ratio = run_pair(op, base, case.kind, number, repeat)
            rows.append((case, c, b, ratio))
        case_row = rows[-1]
        print(_format(case_row), flush=True)

    print()
    print(
        f"Python {platform.python_version()} on {platform.machine()}; medians of {repeat} interleaved repeats"
    )
    failed = [r for r in rows if r[0].target is not None and r[3] > r[0].target]
    if args.json_path:
        Path(args.json_path).write_text(
            json.dumps(
                [
                    {
                        "group": c.group,
                        "case": c.name,
                        "value_s": v,
                        "baseline_s": b,
                        "ratio": r,
                        "target": c.target,
                        "note": c.note,
                    }
                    for c, v, b, r in rows
                ],
                indent=2,
            )
        )
    if failed:
        print(f"{len(failed)} case(s) above target: " + ", ".join(r[0].name for r in failed))
    return 0


def _format(row: tuple[Case, float, float, float]) -> str:
    case, value, base, ratio = row
    tgt = f"<= {case.target:g}x" if case.target is not None else ""
    ok = "" if case.target is None else ("ok" if ratio <= case.target else "ABOVE")
    unit = "" if case.kind == "custom" else f"{value * 1e9:9.0f} ns vs {base * 1e9:6.0f} ns"
    return f"{case.group:10} {case.name:52} {ratio:7.2f}x  {tgt:9} {ok:5} {unit}  {case.note}"


if __name__ == "__main__":
    raise SystemExit(main())
