"""A pytest plugin recording every test's outcome (``-p cpb_corpus_outcomes``).

The corpus runner copies this file into each library's venv as ``cpb_corpus_outcomes.py`` and
loads it with ``-p`` in both runs (plain and instrumented), so the two runs differ only by
``callpyback run``.  It writes ``$CPB_CORPUS_OUTCOMES`` (JSON) at the end of the session:

* ``outcomes``: node id -> ``passed`` / ``failed`` / ``error`` / ``skipped`` / ``xfailed`` /
  ``xpassed``, and ``collect-error`` for a collector that failed;
* ``messages``: node id -> the crash line of every outcome that is not ``passed``;
* ``session``: wall and CPU seconds from session start to finish (collection and tests);
* ``instrumentation``: what the import hook wrapped and how many calls the metrics observers
  counted (``None`` in the plain run), so an "identical" result can be told apart from a run
  that instrumented nothing.

Hypothesis' timing checks (``deadline``, the ``too_slow`` health check) and its random seed
depend on speed and luck, not on what the code does: both runs turn them off the same way,
keeping the suite's own other settings.

Only the standard library and pytest are imported here; callpyback is read from
``sys.modules`` when the hook is installed, never imported.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict

import pytest

_outcomes: Dict[str, str] = {}
_messages: Dict[str, str] = {}
_started = [0.0, 0.0]


def _crash(report: Any) -> str:
    longrepr = getattr(report, "longrepr", None)
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        text = str(getattr(crash, "message", ""))
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        text = str(longrepr[2])
    else:
        text = str(longrepr or "")
        text = text.strip().splitlines()[-1] if text.strip() else ""
    return text.strip()[:400]


def _set(nodeid: str, outcome: str, report: Any) -> None:
    _outcomes[nodeid] = outcome
    if outcome != "passed":
        _messages[nodeid] = _crash(report) or getattr(report, "wasxfail", "") or outcome


@pytest.hookimpl(trylast=True)
def pytest_configure(config: Any) -> None:
    # Before the test modules import (``@settings(...)`` copies the default profile's values
    # when it is applied) and after the suite's own conftest loaded its profile (trylast).
    import importlib.util

    if importlib.util.find_spec("hypothesis") is None:
        return
    try:
        import hypothesis

        settings, health = hypothesis.settings, hypothesis.HealthCheck
        current: Any = settings.default
        suppressed = [*current.suppress_health_check, health.too_slow]
        settings.register_profile(
            "cpb-corpus",
            parent=current,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=suppressed,
        )
        settings.load_profile("cpb-corpus")
    except Exception as exc:  # an old Hypothesis: say so, and run as the suite says
        print(f"cpb_corpus_outcomes: Hypothesis left as configured ({exc!r})", file=sys.stderr)


def pytest_sessionstart(session: Any) -> None:
    _started[:] = [time.perf_counter(), time.process_time()]


def pytest_runtest_logreport(report: Any) -> None:
    nodeid, when = report.nodeid, report.when
    xfail = hasattr(report, "wasxfail")
    if when == "setup":
        if report.failed:
            _set(nodeid, "error", report)
        elif report.skipped:
            _set(nodeid, "xfailed" if xfail else "skipped", report)
    elif when == "call":
        if report.passed:
            _set(nodeid, "xpassed" if xfail else "passed", report)
        elif report.failed:
            _set(nodeid, "failed", report)
        else:
            _set(nodeid, "xfailed" if xfail else "skipped", report)
    elif when == "teardown" and report.failed:
        _set(nodeid, "error", report)  # a passing test whose teardown failed is an error


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _set(report.nodeid or "<session>", "collect-error", report)


def _instrumentation() -> Any:
    auto = sys.modules.get("callpyback.autoinstrument")
    if auto is None or not auto.is_installed():
        return None
    rep = auto.report()
    calls = failures = 0
    seen: Dict[int, Any] = {}
    for decorator in auto.decorators():
        for observer in decorator.observers:
            if callable(getattr(observer, "get_metrics", None)):
                seen.setdefault(id(observer), observer)
    for observer in seen.values():
        for stats in observer.get_metrics().values():
            calls += int(stats.get("calls", 0))
            failures += int(stats.get("failures", 0))
    return {
        "wrapped": len(rep.wrapped),
        "skipped": sorted(str(e) for e in rep.skipped),
        "frame_inspectors": sorted(e.target for e in rep.skipped if "caller's frame" in e.reason),
        "failed": sorted(str(e) for e in rep.failed),
        "calls": calls,
        "failures": failures,  # calls that raised: exception-heavy suites pay for these
    }


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    path = os.environ.get("CPB_CORPUS_OUTCOMES")
    if not path:
        return
    try:
        instrumentation = _instrumentation()
    except Exception as exc:  # reported, never a crash of the suite
        instrumentation = {"error": repr(exc)}
    data = {
        "outcomes": _outcomes,
        "messages": _messages,
        "exitstatus": int(exitstatus),
        "instrumentation": instrumentation,
        # collection and tests, without interpreter and pytest start-up (nor ours)
        "session": [time.perf_counter() - _started[0], time.process_time() - _started[1]],
    }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=0, sort_keys=True)
