"""Daemon worker threads for :class:`~callpyback.handlers.TimeoutHandler` on sync functions.

Why not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined at interpreter exit,
so one function that overran its timeout (and cannot be stopped) would hang the program's exit;
and it never shrinks.  These workers are daemon threads, reused while busy traffic lasts (a
thread start costs ~100 µs, a hand-off a few µs), and each exits after ``IDLE_SECONDS`` without
work.  A worker stuck in an overrunning call simply stays busy; others are started as needed.
No thread exists until the first timed call, and a forked child starts afresh.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable, List, Optional

__all__ = ["run_with_timeout"]

IDLE_SECONDS = 30.0

_lock = threading.Lock()
_idle: List[_Worker] = []
_fork_hook_installed = False


class _Worker:
    __slots__ = ("jobs", "thread")

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=self._loop, name="callpyback-timeout-worker", daemon=True
        )

    def _loop(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with _lock:
                    if self in _idle:  # nobody picked us meanwhile: retire
                        _idle.remove(self)
                        return
                continue  # picked just now: the job is on its way
            job()
            del job
            with _lock:
                _idle.append(self)


def _after_fork_in_child() -> None:
    # The parent's workers do not exist in the child; forget them and the (maybe held) lock.
    global _lock
    _lock = threading.Lock()
    _idle.clear()


def _submit(job: Callable[[], None]) -> None:
    global _fork_hook_installed
    with _lock:
        worker = _idle.pop() if _idle else None
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True
    if worker is None:
        worker = _Worker()
        worker.thread.start()
    worker.jobs.put(job)


class _Outcome:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()  # released by the worker when the call is over
        self.value: Any = None
        self.error: Optional[BaseException] = None


def run_with_timeout(call: Callable[[], Any], seconds: float) -> tuple[bool, Any]:
    """Run ``call()`` on a worker; ``(True, value)``, ``(False, None)`` on timeout, or raise.

    The call's own exception (even a ``TimeoutError``) is re-raised as is.
    """
    outcome = _Outcome()

    def job() -> None:
        try:
            outcome.value = call()
        except BaseException as exc:  # handed to the waiting caller, who re-raises it
            outcome.error = exc
        finally:
            outcome.done.release()

    _submit(job)
    if not outcome.done.acquire(timeout=seconds):
        return False, None
    error = outcome.error
    if error is not None:
        outcome.error = None  # no reference cycle through the traceback
        raise error
    return True, outcome.value
