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
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

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
        # A pool terminating its workers sends SIGTERM: write the last numbers, then die by it.
        _catch_sigterm()
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

    def __init__(self, code: int = 128 + signal.SIGTERM) -> None:
        super().__init__(code)  # the argument too, so that it pickles as itself


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
        with critical():
            self._write()

    def _write(self) -> None:
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


# --- SIGTERM ----------------------------------------------------------------------------------
#
# A signal handler runs in the main thread, between two of its bytecodes: it must never wait
# for a lock the code it interrupted may hold.  Our own bookkeeping on the main thread (the
# report at exit, a multiprocess sync) is a critical section: SIGTERM arriving inside one is
# remembered, and acted on when the section ends.  Anything else the handler does that reads
# observers runs on a helper thread with a time limit.

_busy = 0  # depth of the main thread's critical sections
_deferred: Optional[int] = None  # a signal that arrived inside one


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Our own work on the main thread that a SIGTERM must not interrupt (it waits for it)."""
    global _busy, _deferred
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _busy += 1
    try:
        yield
    finally:
        _busy -= 1
        if not _busy and _deferred is not None:
            signum, _deferred = _deferred, None
            _on_sigterm(signum)


def _bounded(work: Any, timeout: float) -> None:
    thread = threading.Thread(target=work, name="callpyback-exit", daemon=True)
    thread.start()
    thread.join(timeout)


_owner: Optional[int] = None


def _on_sigterm(signum: int, frame: Any = None) -> None:
    global _deferred
    if _busy:
        _deferred = signum
        return
    if os.getpid() != _owner:
        # A forked worker (a pool terminating it): its last metrics, then die by the signal
        # as if we were not here.
        die_by_sigterm()
    if _running and not _terminating:
        _unwind()
    # After the program returned (joining its threads, its atexit handlers), or a second
    # SIGTERM (the program swallowed the first, or is still unwinding): write the report, end.
    _bounded(write_now, 30.0)
    die_by_sigterm()


#: Seconds the program may take to unwind after SIGTERM before it is ended anyway (without
#: us it would have died at once; a program that catches the exception must not live on).
UNWIND_SECONDS = 5.0
_terminating = False


def _unwind() -> None:
    global _terminating
    _terminating = True
    timer = threading.Timer(UNWIND_SECONDS, os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
    raise Terminated()  # unwind the program; callpyback run reports, then dies


def arm(fmt: Optional[str], path: Optional[str], argv: List[str], *, sigterm: bool) -> None:
    """Write the report at exit (``fmt`` None: no report); with ``sigterm``, catch SIGTERM."""
    global _armed, _owner
    if fmt is not None:
        _armed = _Armed(fmt, path, argv)
        atexit.register(_armed.write)
    if sigterm:
        _owner = os.getpid()
        _catch_sigterm()


def _catch_sigterm() -> None:
    """Handle SIGTERM, unless the program (or whoever) already does."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
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
    """End the process by SIGTERM, as it would have ended without us (after a last sync)."""
    writer = _writer
    if writer is not None:
        _bounded(writer._final, 2.0)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the signal is delivered at once; never return into the caller meanwhile
    os._exit(128 + signal.SIGTERM)
