"""CallPyBack's pytest plugin (entry point ``pytest11: callpyback``; ``-p no:callpyback`` turns
it off).

Fixtures ``callpyback_capture``, ``callpyback_clock`` and ``callpyback_config``; the marker
``@pytest.mark.callpyback(config=...)``; ``--callpyback-report``; and isolation between tests
(circuit breakers closed and zeroed, background queues drained, a leaked import hook reported
and removed).  See ``docs/testing.md``.

This module is a top-level module, not part of the ``callpyback`` package, so that loading it
imports nothing of CallPyBack: a test session that never uses CallPyBack pays for this file
and a few ``sys.modules`` lookups per test, and coverage measured with ``pytest-cov`` starts
before the package is imported.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

_CAPTURE = pytest.StashKey[Any]()
_START = pytest.StashKey[Any]()
_ISOLATE = pytest.StashKey[bool]()
_REPORT = pytest.StashKey[Any]()
_SESSION = pytest.StashKey[Any]()
_SEAMS = pytest.StashKey[Any]()
#: id(installation) -> (installation, "fixture" | "test", fixturedef or None): who installed it
_OWNERS: Dict[int, Tuple[Any, str, Any]] = {}
#: id(observer or time source) -> (it, fixturedef): put in force by a module/class/session fixture
_SEAM_OWNERS: Dict[int, Tuple[Any, Any]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("callpyback", "CallPyBack")
    group.addoption(
        "--callpyback-report",
        action="store_true",
        default=False,
        help="at the end of the session, print the run report of every call observed by "
        "CallPyBack pipelines during the tests",
    )
    group.addoption(
        "--callpyback-report-file",
        default=None,
        metavar="PATH",
        help="also write that report to PATH (.json, .html, or text)",
    )
    group.addoption(
        "--callpyback-config",
        default=None,
        metavar="PATH",
        help="install the import hook with this callpyback.toml for the whole session (before "
        "collection imports the code under test); overrides the ini value callpyback_config",
    )
    parser.addini(
        "callpyback_config",
        default=None,
        help="callpyback.toml (relative to the ini file) whose pipelines instrument the code "
        "under test for the whole session; unset: no import hook unless a test asks for one",
    )
    parser.addini(
        "callpyback_isolation",
        type="bool",
        default=True,
        help="close and zero CallPyBack circuit breakers and drain background observer queues "
        "after each test (default: true)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "callpyback(config): install the import hook with a callpyback.toml (a path, or TOML "
        "text) for this test; shorthand for the callpyback_config fixture",
    )
    config.stash[_ISOLATE] = bool(config.getini("callpyback_isolation"))
    source = config.getoption("callpyback_config")
    base = config.invocation_params.dir
    if not source:
        source = config.getini("callpyback_config")
        base = config.inipath.parent if config.inipath is not None else config.rootpath
    if source:
        from callpyback.config import ConfigError
        from callpyback.testing._pytest import SessionConfig

        try:
            config.stash[_SESSION] = SessionConfig(source, [base])
        except ConfigError as exc:
            raise pytest.UsageError(f"callpyback_config: {exc}") from None
    if config.getoption("callpyback_report") or config.getoption("callpyback_report_file"):
        from callpyback.testing._pytest import SessionReport

        config.stash[_REPORT] = SessionReport()


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is not None:
        session.close()


def pytest_collection_modifyitems(items: Any) -> None:
    # The marker is a shorthand for the fixture: tests carrying it get it without asking.
    for item in items:
        names = getattr(item, "fixturenames", None)
        if (
            names is not None
            and "callpyback_config" not in names
            and item.get_closest_marker("callpyback") is not None
        ):
            names.insert(0, "callpyback_config")


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def callpyback_capture(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Every call observed by any CallPyBack pipeline during the test (a
    ``callpyback.testing.Capture``): ``assert_called``, ``assert_not_called``, ``for_target``,
    ``outcomes``, ``wait_for``.  A failing test's report lists the captured calls."""
    from callpyback.testing import capture

    with capture() as calls:
        request.node.stash[_CAPTURE] = calls
        yield calls


@pytest.fixture
def callpyback_clock() -> Iterator[Any]:
    """A ``MockTimeSource`` in force for every pipeline during the test (durations, timestamps,
    retry sleeps, breaker timeouts); no global clock is patched."""
    from callpyback.testing import mock_time

    with mock_time() as clock:
        yield clock


@pytest.fixture
def callpyback_config(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Call it with a ``callpyback.toml`` path or TOML text: the import hook is installed with
    it for the test, then uninstalled and everything restored.  ``@pytest.mark.callpyback(
    config=...)`` loads one before the test starts."""
    from callpyback.testing._pytest import ConfigFixture, apply_marker

    fixture = ConfigFixture(request)
    try:
        marker = request.node.get_closest_marker("callpyback")
        if marker is not None:
            apply_marker(fixture, marker)
        yield fixture
    finally:
        fixture.close()


# --- isolation --------------------------------------------------------------------------------


def _seams() -> Any:
    """What the testing seam holds now: (time source or None, observers); None if unloaded."""
    decorator = sys.modules.get("callpyback._decorator")
    if decorator is None:
        return None
    override = decorator._OVERRIDE
    return override.time_source, tuple(observer for observer, _ in override.observers)


def _installation() -> Any:
    auto = sys.modules.get("callpyback.autoinstrument")
    if auto is None:
        return None
    installation = auto._current()
    return installation if installation is not None and installation.active else None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    item.stash[_START] = _installation()
    item.stash[_SEAMS] = _seams()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Any:
    before = _installation()
    seams = _seams()
    try:
        return (yield)
    finally:
        after = _installation()
        if after is not None and after is not before:
            _OWNERS[id(after)] = (after, "fixture", fixturedef)
        if getattr(fixturedef, "scope", "function") != "function":
            now = _seams()
            if now is not None and now != seams:
                for held in (now[0], *now[1]):
                    _SEAM_OWNERS[id(held)] = (held, fixturedef)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    before = _installation()
    try:
        return (yield)
    finally:
        after = _installation()
        if after is not None and after is not before:
            _OWNERS[id(after)] = (after, "test", None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        calls = item.stash.get(_CAPTURE, None)
        if calls is not None:
            report.sections.append(("Captured callpyback calls", calls.describe()))
    return report


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Any:
    failed = True
    try:
        result = yield
        failed = False
        return result
    finally:
        leaks = [m for m in (_after_test(item), _leaked_seams(item)) if m is not None]
        if leaks and not failed:
            pytest.fail("\n".join(leaks), pytrace=False)


def _after_test(item: pytest.Item) -> Optional[str]:
    """Reset what must not leak into the next test; the message if the test leaked a hook."""
    if "callpyback" not in sys.modules:
        return None  # nothing of CallPyBack ran in this process yet: nothing to reset
    leak = _leaked_hook(item)
    if item.config.stash.get(_ISOLATE, True):
        background = sys.modules.get("callpyback._background")
        if background is not None:
            background.flush(10.0)
        breakers = sys.modules.get("callpyback.handlers._breaker")
        if breakers is not None:
            breakers.reset_breakers()
    return leak


def _leaked_hook(item: pytest.Item) -> Optional[str]:
    installation = _installation()
    if installation is None:
        _OWNERS.clear()
        return None
    owner = _OWNERS.get(id(installation))
    if owner is None or owner[0] is not installation:
        start = item.stash.get(_START, None)
        if start is not None and installation.selector is start.selector:
            # There before the test began (the session's config, or one installed at start-up),
            # or put back by the callpyback_config fixture after the test replaced it.
            return None
        by = "this test, outside its fixtures' set-up and its body (a finalizer or a hook)"
    elif owner[1] == "fixture":
        fixturedef = owner[2]
        if fixturedef.scope != "function" and fixturedef.cached_result is not None:
            return None  # a module/class/session fixture owns it and is still alive
        by = f"the fixture {fixturedef.argname!r} ({fixturedef.scope} scope)"
    else:
        by = "the test body"
    _OWNERS.clear()
    source = getattr(installation, "source", None)
    auto = sys.modules["callpyback.autoinstrument"]
    auto.uninstall()
    return (
        f"callpyback: {item.nodeid} left the import hook installed (installed by {by}"
        f"{f', config {source}' if source else ''}). A test must uninstall what it installs: "
        "use the callpyback_config fixture or `with callpyback.testing.use_config(...)`, or call "
        "callpyback.autoinstrument.uninstall() in a finally or fixture teardown. It has been "
        "uninstalled now, so the next tests do not inherit it."
    )


def _owned(held: Any) -> bool:
    """Put in force by a module/class/session fixture that is still alive."""
    owner = _SEAM_OWNERS.get(id(held))
    return owner is not None and owner[0] is held and owner[1].cached_result is not None


def _leaked_seams(item: pytest.Item) -> Optional[str]:
    """A capture left recording or a clock left in force after the test (and its fixtures)
    ended: the next tests would be timed by it, or recorded.  Undone here, and reported."""
    now = _seams()
    if now is None:
        return None
    for key, (_, fixturedef) in list(_SEAM_OWNERS.items()):
        if fixturedef.cached_result is None:  # torn down: what it held is no longer owned
            del _SEAM_OWNERS[key]
    start = item.stash.get(_SEAMS, None) or (None, ())
    override = sys.modules["callpyback._decorator"]._OVERRIDE
    left = []
    source = now[0]
    if source is not None and source is not start[0] and not _owned(source):
        override.set_time_source(start[0])
        left.append(f"a time source in force ({source!r}: use_time_source() or mock_time())")
    for observer in now[1]:
        if not any(observer is o for o in start[1]) and not _owned(observer):
            owner = getattr(observer, "_owner", None)  # a capture's recorder
            left.append(f"a capture recording ({owner if owner is not None else observer!r})")
            if owner is not None and hasattr(owner, "stop"):
                owner.stop()
            else:
                override.remove_observer(observer)
    if not left:
        return None
    return (
        f"callpyback: {item.nodeid} left {' and '.join(left)} after it ended. Use them as `with` "
        "blocks or the callpyback_capture / callpyback_clock fixtures. Undone now, so the next "
        "tests do not inherit them."
    )


# --- the session report -----------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session) -> None:
    report = session.config.stash.get(_REPORT, None)
    if report is None:
        return
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller prints
        workeroutput["callpyback_report"] = report.data()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller: collect a worker's part of the report."""
    report = node.config.stash.get(_REPORT, None)
    part = getattr(node, "workeroutput", {}).get("callpyback_report")
    if report is not None and part is not None:
        report.parts.append(part)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None or getattr(config, "workeroutput", None) is not None:
        return
    from callpyback.testing._pytest import merge_reports, render, write

    parts = report.parts or [report.data()]
    run = merge_reports(parts)
    report.stop()
    if config.getoption("callpyback_report"):
        terminalreporter.write_sep("=", "callpyback report")
        terminalreporter.write(render(run, "text", len(parts)))
    path = config.getoption("callpyback_report_file")
    if path:
        fmt = write(run, path)
        terminalreporter.write_line(f"callpyback: {fmt} report written to {path}")
