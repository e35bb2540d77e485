"""``callpyback run``: run a script or module under the import hook, as ``python`` would."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Optional, Tuple


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run a Python program with auto-instrumentation from callpyback.toml",
        description="Run a script (or a module with -m) in this process with the import hook "
        "installed: functions the config selects are observed from the moment their modules are "
        "imported, including the script's own.  sys.argv, __main__ and the exit status are as "
        "with python; Python subprocesses are instrumented too (CALLPYBACK_AUTOINSTALL=1).\n\n"
        "examples:\n  callpyback run examples/shop/app.py\n"
        "  callpyback run --report text examples/shop/app.py\n"
        "  callpyback run --report html --metrics-port 9464 app.py\n"
        "  callpyback run --config ci.toml -m mypkg.cli --verbose",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="the callpyback.toml to use (default: $CALLPYBACK_CONFIG, else discovered)",
    )
    report = parser.add_argument_group(
        "seeing what was observed (see docs/reports.md)",
        "These override $CALLPYBACK_REPORT=FORMAT[:PATH] and the [report] and "
        "[export.prometheus] tables of callpyback.toml.",
    )
    report.add_argument(
        "--report",
        metavar="FORMAT",
        choices=("text", "json", "html", "off"),
        help="write a run report at exit: text (stderr unless --report-file), json or html "
        "(default file callpyback-report.json/.html); off: none",
    )
    report.add_argument(
        "--report-file",
        metavar="PATH",
        help="where to write the report (without --report, its extension says the format)",
    )
    report.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=_port,
        help="serve Prometheus /metrics on this port while the program runs (0: any free port)",
    )
    report.add_argument(
        "--metrics-addr",
        metavar="ADDR",
        help="the address to serve /metrics on (default 127.0.0.1: this machine only)",
    )
    report.add_argument(
        "--metrics-multiprocess",
        action="store_true",
        help="also export the program's worker processes (gunicorn, multiprocessing), "
        "through prometheus_client's multiprocess mode",
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


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535 (0: any free one), got {text!r}")
    return port


def run(args: argparse.Namespace) -> int:
    from ..autoinstrument import AUTOINSTALL_ENV, CONFIG_ENV, disabled, install

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
    from ..report import _runtime

    _runtime.count_warnings()  # from before the hook's retrofit, which may warn too
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
    argv = [script, *program_args] if script is not None else ["-m", str(module), *program_args]
    try:
        armed = _start_outputs(args, argv)
    except Exception as exc:  # a report that cannot be written, a port in use: run nothing
        print(f"callpyback run: {exc}", file=sys.stderr)
        return 2
    status, how = _run_program(module, script, program_args, armed)
    _runtime.ended(status, how)
    return status


def _run_program(
    module: Optional[str], script: Optional[str], program_args: List[str], armed: bool
) -> Tuple[int, str]:
    """Run the program as python would; returns (exit status, how it ended)."""
    from ..autoinstrument._main import ProgramNotFound, run_module, run_path, trim_traceback
    from ..report import _runtime

    filename = os.path.abspath(script) if script is not None else None
    try:
        try:
            if module is not None:
                run_module(module, program_args)
            else:
                assert script is not None
                run_path(script, program_args)
        finally:
            _runtime.program_done()
    except _runtime.Terminated:
        # SIGTERM: the program is unwound; report, then end by the signal as it would have.
        _runtime.ended(128 + 15, "SIGTERM")
        _runtime.write_now()
        _runtime.die_by_sigterm()
        raise  # not reached
    except SystemExit as exc:
        return _exit_status(exc), "sys.exit"
    except ProgramNotFound as exc:
        print(f"{sys.executable}: {exc}", file=sys.stderr)
        return 1, "exception"
    except KeyboardInterrupt:
        _runtime.ended(130, "KeyboardInterrupt")
        raise
    except Exception as exc:  # the program's own error: its traceback, status 1, as python does
        if module is not None:
            filename = getattr(sys.modules.get("__main__"), "__file__", None)
        tb = trim_traceback(exc, filename)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1, "exception"
    return 0, "exit"


def _start_outputs(args: argparse.Namespace, argv: List[str]) -> bool:
    """Arm the run report and serve /metrics, as the flags, environment and tables say."""
    from ..report import _runtime
    from ..report._settings import choose_metrics, choose_report

    tables = _runtime.tables()
    report = choose_report(
        getattr(args, "report", None),
        getattr(args, "report_file", None),
        os.environ,
        tables.get("report"),
    )
    metrics = choose_metrics(
        getattr(args, "metrics_port", None),
        getattr(args, "metrics_addr", None),
        bool(getattr(args, "metrics_multiprocess", False)),
        os.environ,
        tables.get("export"),
    )
    writer = None
    if metrics is not None:
        from ..report._prometheus import MULTIPROCESS_ENV, serve

        directory = None
        if metrics.multiprocess:
            directory = metrics.multiprocess_dir or _fresh_directory()
            # Before prometheus_client is imported, so the program's own metrics are
            # multiprocess too; children inherit both.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
            os.environ[MULTIPROCESS_ENV] = directory
        server = serve(
            metrics.port, metrics.addr, buckets=metrics.buckets, multiprocess_dir=directory
        )
        writer = server.writer
        if writer is not None:
            _runtime.adopt_writer(writer)
        mode = " (every process, multiprocess mode)" if directory else ""
        print(f"callpyback: serving Prometheus metrics at {server.url}{mode}", file=sys.stderr)
    _runtime.arm(
        report.format if report is not None else None,
        report.path if report is not None else None,
        argv,
        sigterm=report is not None or writer is not None,
    )
    return report is not None


def _fresh_directory() -> str:
    import atexit
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="callpyback-metrics-")
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)  # registered first, so it runs after the last sync and the report
    return directory


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
