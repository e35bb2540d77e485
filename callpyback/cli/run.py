"""``callpyback run``: run a script or module under the import hook, as ``python`` would."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run a Python program with auto-instrumentation from callpyback.toml",
        description="Run a script (or a module with -m) in this process with the import hook "
        "installed: functions the config selects are observed from the moment their modules are "
        "imported, including the script's own.  sys.argv, __main__ and the exit status are as "
        "with python; Python subprocesses are instrumented too (CALLPYBACK_AUTOINSTALL=1).\n\n"
        "examples:\n  callpyback run examples/shop/app.py\n"
        "  callpyback run --config ci.toml -m mypkg.cli --verbose",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="the callpyback.toml to use (default: $CALLPYBACK_CONFIG, else discovered)",
    )
    parser.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        metavar="MODULE [ARGS]",
        help="run a module, like python -m (everything after it goes to the module)",
    )
    parser.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        metavar="SCRIPT [ARGS]",
        help="the script to run and its arguments",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..autoinstrument import AUTOINSTALL_ENV, CONFIG_ENV, disabled, install
    from ..autoinstrument._main import ProgramNotFound, run_module, run_path, trim_traceback

    if args.module:
        module, program_args = args.module[0], args.module[1:]
        script = None
    elif args.program:
        script, program_args = args.program[0], args.program[1:]
        module = None
    else:
        print(
            "callpyback run: give a script (callpyback run app.py) or a module "
            "(callpyback run -m package.module)",
            file=sys.stderr,
        )
        return 2
    if script is not None and not os.path.exists(script):
        print(f"callpyback run: can't open file {script!r}: no such file", file=sys.stderr)
        return 2
    if args.config:
        if not os.path.isfile(args.config):
            print(f"callpyback run: --config {args.config!r} is not a file", file=sys.stderr)
            return 2
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    if not disabled():
        try:
            report = install(_choose_config(script))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # ConfigurationError and friends: say what, run nothing
            print(f"callpyback run: {exc}", file=sys.stderr)
            return 2
        except BaseException as exc:  # never end start-up without saying why
            print(
                f"callpyback run: start-up stopped: {type(exc).__name__}: {exc}; the program "
                "was not run",
                file=sys.stderr,
            )
            return 2
        source = getattr(report, "source", None)
        if isinstance(source, str) and os.path.isfile(source):
            # Children use the very file this process uses, whatever their working directory.
            os.environ[CONFIG_ENV] = os.path.abspath(source)
        # Python subprocesses of the program install the hook through the .pth bootstrap.
        os.environ[AUTOINSTALL_ENV] = "1"
    filename = os.path.abspath(script) if script is not None else None
    try:
        if module is not None:
            run_module(module, program_args)
        else:
            assert script is not None
            run_path(script, program_args)
    except SystemExit as exc:
        return _exit_status(exc)
    except ProgramNotFound as exc:
        print(f"{sys.executable}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the program's own error: its traceback, status 1, as python does
        if module is not None:
            filename = getattr(sys.modules.get("__main__"), "__file__", None)
        tb = trim_traceback(exc, filename)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


def _choose_config(script: Optional[str]) -> Any:
    """--config / $CALLPYBACK_CONFIG, else discovery from the working directory, else from the
    script's own directory (so an example can ship its callpyback.toml next to it)."""
    from ..autoinstrument import CONFIG_ENV
    from ..config import load_config

    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return explicit
    config = load_config()
    if config.source == "<defaults>" and script is not None:
        here = os.path.dirname(os.path.abspath(script))
        beside = load_config(cwd=here)
        if beside.source != "<defaults>":
            return beside
    return config


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
