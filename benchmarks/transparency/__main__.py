"""``python -m benchmarks.transparency [--libs a,b] [--full] [--ci] [--json FILE] [--results FILE]``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional

from .corpus import BY_NAME, CI_SUBSET, LIBRARIES, ci_subset
from .results import merge, render, saved
from .runner import CorpusError, LibraryResult, cache_dir, config_text, run_library, table


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.transparency",
        description="Run real libraries' own test suites plainly and with every function of "
        "the package observed by callpyback; compare every test's outcome.",
    )
    parser.add_argument("--libs", help="comma-separated names (default: all)", default="")
    parser.add_argument(
        "--ci",
        action="store_true",
        help=f"the CI subset: {','.join(CI_SUBSET)} (in one shared venv)",
    )
    parser.add_argument(
        "--full", action="store_true", help="whole suites where the default runs a subset"
    )
    parser.add_argument(
        "--frame-inspectors",
        action="store_true",
        help="also instrument functions that inspect their caller's frame "
        "(instrument_frame_inspectors = true)",
    )
    parser.add_argument(
        "--avoid",
        action="store_true",
        help="apply the documented way to avoid each inherent difference (exclude those "
        "functions): the suites must then be identical",
    )
    parser.add_argument("--json", type=Path, help="write every result (and the venvs' pins) here")
    parser.add_argument(
        "--results",
        type=Path,
        help="write the table as markdown, with the command and the machine, here "
        "(benchmarks/transparency/RESULTS.md)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="run nothing: render --results from saved --json files (later files' rows replace "
        "earlier ones of the same library and arguments)",
    )
    parser.add_argument("--list", action="store_true", help="list the corpus and exit")
    args = parser.parse_args(argv)

    if args.list:
        for lib in LIBRARIES:
            extra = f"  ({lib.note})" if lib.note else ""
            print(f"{lib.name}=={lib.version}  packages {','.join(lib.packages)}{extra}")
        print(f"\ncache: {cache_dir()}\nconfig of the instrumented run, for six:\n")
        print(config_text(BY_NAME["six"]))
        return 0
    if args.render:
        if not args.results:
            parser.error("--render needs --results FILE")
        command = shlex.join(["python", "-m", "benchmarks.transparency", *(argv or sys.argv[1:])])
        stamp = time.strftime("Rendered %Y-%m-%d %H:%M UTC", time.gmtime())
        rows, runs = merge(args.render)
        args.results.write_text(render(rows, command, stamp, runs))
        return 0
    names = CI_SUBSET if args.ci else [n for n in args.libs.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown libraries {unknown}; the corpus has {sorted(BY_NAME)}")
    libs = [BY_NAME[n] for n in names] if names else LIBRARIES
    if args.ci:
        libs = ci_subset()
    elif not names:  # the whole corpus: the releases this Python can install
        unsupported = [lib for lib in libs if not lib.supported]
        for lib in unsupported:
            print(
                f"  {lib.key}: needs Python >= {lib.python[0]}.{lib.python[1]}, not run",
                file=sys.stderr,
            )
        libs = [lib for lib in libs if lib.supported]

    started = time.time()
    results: List[LibraryResult] = []
    broken: List[str] = []
    for lib in libs:
        try:
            results.append(
                run_library(
                    lib,
                    full=args.full,
                    frame_inspectors=args.frame_inspectors,
                    avoid=args.avoid,
                    shared=ci_subset() if args.ci else (),
                    log=lambda text: print(f"  {text}", file=sys.stderr, flush=True),
                )
            )
        except CorpusError as exc:
            broken.append(f"{lib.key}: {exc}")
            print(f"  {lib.key}: {exc}", file=sys.stderr, flush=True)
    print(table(results))
    for line in broken:
        print(f"\nNOT RUN {line}")
    if args.json:
        command = shlex.join(["python", "-m", "benchmarks.transparency", *(argv or sys.argv[1:])])
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
        args.json.write_text(saved(command, stamp, [r.to_json() for r in results]))
    if args.results:
        args.results.write_text(results_markdown(results, broken, argv, started))
    return 0 if not any(r.unexpected for r in results) and not broken else 1


def results_markdown(
    results: List[LibraryResult], broken: List[str], argv: Optional[List[str]], started: float
) -> str:
    """RESULTS.md of this run (``results.render``), with the libraries that could not run."""
    command = shlex.join(
        ["python", "-m", "benchmarks.transparency", *(sys.argv[1:] if argv is None else argv)]
    )
    when = time.strftime("Run %Y-%m-%d %H:%M UTC", time.gmtime(started))
    when += f" ({(time.time() - started) / 60:.0f} min)"
    text = render([r.to_json() for r in results], command, when)
    return text + "".join(f"\nNOT RUN {line}\n" for line in broken)


if __name__ == "__main__":
    sys.exit(main())
