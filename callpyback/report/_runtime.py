"""What ``callpyback run`` arms around the program: the report at exit, the instrumentation
warning count, the tables the import hook was installed with, and multiprocess writers.

The report is written once, by the process that armed it: at interpreter exit (after the
program's non-daemon threads are joined and its own atexit handlers ran), or on SIGTERM, where
the program is stopped the way Ctrl-C stops it (an exception in the main thread, so every
``finally`` runs and observed calls end as interrupted) and then killed by the same signal, so
the exit status is what it would have been without callpyback.  A forked child (a worker)
never writes its parent's report.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional

__all__ = [
    "Terminated",
    "arm",
    "count_warnings",
    "ended",
    "installed",
    "program_done",
    "tables",
    "uninstalled",
    "write_now",
]

_tables: Dict[str, Any] = {}
_lock = threading.Lock()


# --- the tables the import hook was installed with (from the core's callpyback_install) -----


def installed(config: Any) -> None:
    """``callpyback_install``: keep the core's tables; a child of a multiprocess run writes."""
    found = getattr(config, "tables", None) or {}
    with _lock:
        _tables.clear()
        _tables.update({k: found[k] for k in ("report", "export") if k in found})
    directory = os.environ.get("CALLPYBACK_METRICS_MULTIPROCESS")
    if directory:
        start_child_writer(directory)


def uninstalled() -> None:
    with _lock:
        _tables.clear()


def tables() -> Dict[str, Any]:
    with _lock:
        return dict(_tables)


_writer: Any = None


def start_child_writer(directory: str) -> None:
    """A Python child of ``callpyback run`` in multiprocess mode writes its own metrics."""
    global _writer
    if _writer is not None:
        return
    try:
        from ._prometheus import MultiProcessWriter

        export = tables().get("export")
        prom = getattr(export, "prometheus", None)
        kwargs = {"buckets": prom.buckets} if prom is not None and prom.buckets else {}
        _writer = MultiProcessWriter(directory, **kwargs).start()
    except Exception as exc:  # never break the child's start-up
        logging.getLogger("callpyback.report").warning(
            "callpyback: this process's metrics will not be exported: %s", exc
        )


def adopt_writer(writer: Any) -> None:
    """The serving process's writer (children forked from it keep it)."""
    global _writer
    _writer = writer


# --- counting the import hook's warnings ------------------------------------------------------


class _Counter(logging.Filter):
    """Counts WARNING and above on ``callpyback.autoinstrument`` (where every instrumentation
    warning is logged); as a filter it changes nothing about how they are shown."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.count += 1
        return True


_counter: Optional[_Counter] = None


def count_warnings() -> None:
    global _counter
    if _counter is None:
        _counter = _Counter()
        logging.getLogger("callpyback.autoinstrument").addFilter(_counter)


def warnings_counted() -> Optional[int]:
    return None if _counter is None else _counter.count


# --- the report at exit -----------------------------------------------------------------------


class Terminated(SystemExit):
    """SIGTERM arrived: the program is unwound as by Ctrl-C, then killed by the signal."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


class _Armed:
    def __init__(self, fmt: str, path: Optional[str], argv: List[str]) -> None:
        self.format = fmt
        self.path = path
        self.argv = argv
        self.pid = os.getpid()
        self.started = time.monotonic()
        self.exit_status: Optional[int] = None
        self.ended_by: Optional[str] = None
        self.written = False
        self.lock = threading.Lock()

    def write(self) -> None:
        with self.lock:
            if self.written or os.getpid() != self.pid:
                return
            self.written = True
        from . import write_report
        from ._collect import collect

        try:
            report = collect(instrumentation_warnings=warnings_counted())
            report.duration_seconds = time.monotonic() - self.started
            report.argv = self.argv
            report.pid = self.pid
            report.exit_status = self.exit_status
            report.ended_by = self.ended_by
            where = write_report(self.format, self.path, report=report)
        except Exception as exc:  # a report must never turn an exit into a traceback
            print(f"callpyback: the run report could not be written: {exc}", file=sys.stderr)
            return
        if where is not None:
            print(f"callpyback: {self.format} report written to {where}", file=sys.stderr)


_armed: Optional[_Armed] = None
_running = True  # the program's own code is running (not yet returned to callpyback run)


def program_done() -> None:
    global _running
    _running = False


def arm(fmt: Optional[str], path: Optional[str], argv: List[str], *, sigterm: bool) -> None:
    """Write the report at exit (``fmt`` None: no report); with ``sigterm``, catch SIGTERM."""
    global _armed
    if fmt is not None:
        _armed = _Armed(fmt, path, argv)
        atexit.register(_armed.write)
    if sigterm and threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                owner = os.getpid()

                def on_sigterm(signum: int, frame: Any) -> None:
                    if os.getpid() != owner:  # a forked worker: behave as if we were not here
                        signal.signal(signum, signal.SIG_DFL)
                        os.kill(os.getpid(), signum)
                        return
                    if _running:
                        raise Terminated()
                    # After the program returned (waiting for its threads, its atexit
                    # handlers): nothing of it to unwind; write the report and end.
                    write_now()
                    die_by_sigterm()

                signal.signal(signal.SIGTERM, on_sigterm)
        except (ValueError, OSError, AttributeError):  # no signals here (embedded, Windows)
            pass


def ended(status: int, how: str) -> None:
    """Record how the program ended (for the report)."""
    if _armed is not None:
        _armed.exit_status, _armed.ended_by = status, how


def write_now() -> None:
    """Write the report now (SIGTERM: the process is about to be killed by the signal)."""
    if _armed is not None:
        _armed.write()


def die_by_sigterm() -> None:
    """End the process by SIGTERM, as it would have ended without us."""
    from ._prometheus import MultiProcessWriter

    writer = _writer
    if isinstance(writer, MultiProcessWriter):
        writer._final()
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the signal is delivered at once; never return into the caller meanwhile
    os._exit(128 + signal.SIGTERM)
