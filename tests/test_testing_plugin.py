"""The pytest plugin, run for real: pytester runs suites in a child pytest that loads the
plugin through the installed ``pytest11`` entry point (nothing here registers it by hand)."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from typing import Any

import pytest

pytest_plugins = ["pytester"]

SHOP_TOML = """\
version = 1

[error_handlers.retry_net]
type = "retry"
exceptions = ["ConnectionError"]
attempts = 4
backoff = 1.0
multiplier = 2.0
jitter = "none"

[error_handlers.breaker]
type = "circuit_breaker"
name = "gateway"
failure_threshold = 2
recovery_timeout = 30.0

[[pipelines]]
name = "payments"
match = ["shop.payments:*"]
observers = ["metrics"]
error_handlers = ["retry_net"]

[[pipelines]]
name = "gateway"
match = ["shop.gateway:*"]
error_handlers = ["breaker"]
"""

PAYMENTS = """\
state = {"failures_left": 0}


def charge(amount):
    if state["failures_left"]:
        state["failures_left"] -= 1
        raise ConnectionError("gateway down")
    return {"charged": amount}
"""

GATEWAY = """\
def ping(up):
    if not up:
        raise ConnectionError("unreachable")
    return "pong"
"""


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project: package ``shop`` and its callpyback.toml (the tests are added per test)."""
    pytester.makepyfile(
        **{"shop/__init__.py": "", "shop/payments.py": PAYMENTS, "shop/gateway.py": GATEWAY}
    )
    pytester.makefile(".toml", callpyback=SHOP_TOML)
    pytester.syspathinsert()
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # Other pytest plugins of the environment stay out of the child's way: pytest-benchmark
    # (when installed) warns under xdist, which -W error makes an INTERNALERROR.
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:benchmark", "-W", "error", "--strict-markers", *args
    )


def test_fixtures_are_listed_and_p_no_callpyback_removes_them(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--fixtures")
    for name in ("callpyback_capture", "callpyback_clock", "callpyback_config"):
        assert any(line.startswith(name) for line in result.outlines), name
    pytester.makepyfile(test_x="def test_x(callpyback_capture):\n    pass\n")
    off = run(pytester, "-p", "no:callpyback")
    off.assert_outcomes(errors=1)
    off.stdout.fnmatch_lines(["*fixture 'callpyback_capture' not found*"])
    markers = run(pytester, "--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.callpyback(config):*"])


def test_the_done_when_example_retry_under_a_mock_clock_against_toml_config(
    shop: pytest.Pytester,
) -> None:
    """``def test_retry(callpyback_capture, callpyback_clock)`` with no setup of its own: the
    session's config (ini ``callpyback_config``) instruments ``shop`` as the tests import it."""
    shop.makeini("[pytest]\ncallpyback_config = callpyback.toml\n")
    shop.makepyfile(
        test_shop="""
        import asyncio, time
        from shop import payments

        def test_retry(callpyback_capture, callpyback_clock):
            payments.state["failures_left"] = 3
            assert payments.charge(5) == {"charged": 5}
            callpyback_capture.assert_called("shop.payments:charge", outcome="success",
                                             attempts=4, pipeline="payments")
            assert callpyback_clock.sleeps == [1.0, 2.0, 4.0]
            assert callpyback_capture[0].duration == 7.0
            started = time.monotonic()
            asyncio.run(asyncio.sleep(0.01))  # no global clock is patched
            assert time.monotonic() > started

        def test_next_test_has_real_time_again():
            payments.state["failures_left"] = 1
            started = time.perf_counter()
            payments.charge(1)  # one real 1 s back-off
            assert time.perf_counter() - started >= 0.9
    """
    )
    result = run(shop, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_retry PASSED*", "*test_next_test_has_real_time_again*"])


def test_isolation_breakers_and_background_queues_do_not_leak(shop: pytest.Pytester) -> None:
    """A breaker opened (and a background queue filled) in one test is gone in the next, in
    both orders; ``callpyback_isolation = false`` turns it off."""
    shop.makeini("[pytest]\ncallpyback_config = callpyback.toml\n")
    shop.makepyfile(
        conftest="""
        import threading
        import callpyback

        GATE = threading.Event()
        SEEN = []

        def slow(value):
            GATE.wait(0.3)
            SEEN.append(value)

        @callpyback.CallPyBack(observers=[callpyback.on_completion(slow, background=True)])
        def queued(x):
            return x
    """
    )
    body = """
        import pytest
        from callpyback import _background
        from callpyback.handlers import get_breaker
        from shop import gateway
        from conftest import queued

        def test_{first}_opens_and_queues():
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    gateway.ping(False)
            assert get_breaker("gateway").state.value == "open"
            for i in range(5):
                queued(i)

        def test_{second}_sees_it_closed_and_drained():
            assert _background.stats()["queued"] == 0
            assert get_breaker("gateway").state.value == "closed"
            assert gateway.ping(True) == "pong"
    """
    forward = textwrap.dedent(body)
    opens, sees = forward.split("\ndef test_{second}")
    backward = (
        opens.split("\ndef test_{first}")[0]
        + "\ndef test_{second}"
        + sees
        + ("\ndef test_{first}" + opens.split("\ndef test_{first}")[1])
    )
    shop.makepyfile(test_order=forward.format(first="a", second="b"))
    run(shop).assert_outcomes(passed=2)
    shop.makepyfile(test_order=backward.format(first="a", second="b"))
    run(shop, "-v").stdout.fnmatch_lines(
        ["*test_b_sees_it_closed_and_drained PASSED*", "*test_a_opens_and_queues PASSED*"]
    )
    shop.makepyfile(test_order=forward.format(first="a", second="b"))
    shop.makeini("[pytest]\ncallpyback_config = callpyback.toml\ncallpyback_isolation = false\n")
    off = run(shop)
    off.assert_outcomes(passed=1, failed=1)
    off.stdout.fnmatch_lines(["FAILED test_order.py::test_b_sees_it_closed_and_drained - *"])


def test_a_leaked_import_hook_fails_its_test_with_a_clear_message(shop: pytest.Pytester) -> None:
    shop.makepyfile(
        test_leak="""
        import pytest
        from callpyback import autoinstrument

        def test_leaks():
            autoinstrument.install("callpyback.toml")

        def test_next_is_clean():
            assert not autoinstrument.is_installed()

        @pytest.fixture
        def hooked():
            autoinstrument.install("callpyback.toml")
            yield

        def test_fixture_leaks(hooked):
            pass

        @pytest.fixture(scope="module")
        def module_hook():
            autoinstrument.install("callpyback.toml")
            yield
            autoinstrument.uninstall()

        def test_module_fixture_1(module_hook):
            assert autoinstrument.is_installed()

        def test_module_fixture_2(module_hook):
            assert autoinstrument.is_installed()

        def test_uses_the_config_fixture(callpyback_config):
            callpyback_config("callpyback.toml")
            assert autoinstrument.is_installed()
    """
    )
    result = run(shop)
    result.assert_outcomes(passed=6, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "callpyback: test_leak.py::test_leaks left the import hook installed (installed by the "
            "test body, config callpyback.toml). A test must uninstall what it installs: use the "
            "callpyback_config fixture or `with callpyback.testing.use_config(...)`, or call "
            "callpyback.autoinstrument.uninstall() in a finally or fixture teardown. It has been "
            "uninstalled now, so the next tests do not inherit it.",
            "*ERROR at teardown of test_fixture_leaks*",
            "callpyback: test_leak.py::test_fixture_leaks left the import hook installed "
            "(installed by the fixture 'hooked' (function scope)*",
        ]
    )


def test_marker_and_config_fixture_install_for_the_test_and_report_bad_config(
    shop: pytest.Pytester,
) -> None:
    shop.makepyfile(
        test_marker="""
        import pytest
        from callpyback import autoinstrument
        from shop import payments

        @pytest.mark.callpyback(config="callpyback.toml")
        def test_by_path(callpyback_capture):
            assert autoinstrument.is_installed()
            payments.charge(1)
            callpyback_capture.assert_called("shop.payments:charge", pipeline="payments")

        TEXT = '[[pipelines]]\\nname = "inline"\\nmatch = ["shop.*"]\\nobservers = ["metrics"]\\n'

        @pytest.mark.callpyback(config=TEXT)
        def test_by_text(callpyback_capture):
            payments.charge(2)
            callpyback_capture.assert_called("shop.payments:charge", pipeline="inline")

        def test_uninstalled_after(callpyback_capture):
            assert not autoinstrument.is_installed()
            payments.charge(3)
            callpyback_capture.assert_not_called("shop.payments:charge")

        @pytest.mark.callpyback(config='[[pipelines]]\\nmatch = ["shop.*"]\\nobservrs = []\\n')
        def test_bad_config():
            pass
    """
    )
    result = run(shop)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_bad_config*", "*<TOML text>:3*observrs*did you mean*observers*"]
    )


def test_a_failing_assertion_shows_why_and_the_captured_calls(shop: pytest.Pytester) -> None:
    shop.makeini("[pytest]\ncallpyback_config = callpyback.toml\n")
    shop.makepyfile(
        test_fail="""
        from shop import payments

        def test_expects_a_failure(callpyback_capture, callpyback_clock):
            payments.charge(9)
            callpyback_capture.assert_called("shop.payments:charge", outcome="failure")
    """
    )
    result = run(shop)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    line = "#1 shop.payments:charge(amount=9) success -> {'charged': 9} [1 attempt, 0s, " + (
        "pipeline 'payments']"
    )
    expected = [
        "E       AssertionError: callpyback: no captured calls satisfy "
        "called('shop.payments:charge', outcome='failure')",
        "E       calls of shop.payments:charge (1):",
        f"E         {line}",
        "E             not a match: outcome 'success' (expected 'failure')",
        "-------------------------- Captured callpyback calls ---------------------------",
        f"  {line}",
    ]
    lines = out.splitlines()
    positions = [lines.index(text) for text in expected]  # each present, as one line
    assert positions == sorted(positions)
    assert "_capture.py" not in result.stdout.str()  # our frames are hidden


REPORT_TESTS = """
    import pytest
    from shop import payments

    @pytest.mark.parametrize("n", range(4))
    def test_charges(n, callpyback_clock):
        payments.state["failures_left"] = n % 2
        payments.charge(n)
"""


def test_callpyback_report_prints_the_run_report_of_the_session(shop: pytest.Pytester) -> None:
    shop.makeini("[pytest]\ncallpyback_config = callpyback.toml\n")
    shop.makepyfile(test_report=REPORT_TESTS)
    result = run(shop, "--callpyback-report", "--callpyback-report-file", "out/report.json")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*= callpyback report =*",
            "callpyback report: 1 targets, 4 calls observed during the tests, sorted by *",
            "target*pipeline*calls*ok*failed*recovered*retries*",
            "shop.payments:charge*payments*4*4*0*0*2*",
            "callpyback: json report written to out/report.json",
        ]
    )
    data = json.loads((shop.path / "out" / "report.json").read_text())
    [row] = [f for f in data["functions"] if f["target"] == "shop.payments:charge"]
    assert (row["calls"], row["retries"]) == (4, 2)
    plain = run(shop)
    assert "callpyback report" not in plain.stdout.str()


def test_parallel_with_xdist_isolation_and_a_merged_report(shop: pytest.Pytester) -> None:
    if importlib.util.find_spec("xdist") is None:
        pytest.skip("pytest-xdist is not installed (it is in the test extra)")
    shop.makeini("[pytest]\ncallpyback_config = callpyback.toml\n")
    shop.makepyfile(
        test_report=REPORT_TESTS,
        test_clock="""
        from shop import payments

        def test_retry(callpyback_capture, callpyback_clock):
            payments.state["failures_left"] = 2
            payments.charge(1)
            callpyback_capture.assert_called("shop.payments:charge", attempts=3)
            assert callpyback_clock.sleeps == [1.0, 2.0]
    """,
    )
    result = run(shop, "-p", "xdist", "-n", "2", "--callpyback-report")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "callpyback report: 1 targets, 5 calls observed during the tests in 2 xdist workers*",
            "shop.payments:charge*payments*5*5*0*0*4*",
        ]
    )


def test_loading_the_plugin_imports_nothing_of_callpyback(pytester: pytest.Pytester) -> None:
    """A session that never uses CallPyBack never imports it (nor pydantic, nor discovery)."""
    pytester.makepyfile(
        test_light="""
        import sys

        def test_nothing_loaded(request):
            assert request.config.pluginmanager.has_plugin("callpyback")
            loaded = {"callpyback", "pydantic", "callpyback.plugins"} & set(sys.modules)
            assert loaded == set()
    """
    )
    run(pytester).assert_outcomes(passed=1)


def test_the_plugin_is_the_installed_entry_point() -> None:
    """It comes from the callpyback distribution's metadata, not from a conftest here."""
    from importlib.metadata import distribution

    [ep] = [e for e in distribution("callpyback").entry_points if e.group == "pytest11"]
    assert (ep.name, ep.value) == ("callpyback", "_callpyback_pytest")
    module: Any = ep.load()
    assert module is sys.modules["_callpyback_pytest"]


def test_a_capture_or_clock_left_active_fails_its_test_and_is_undone(
    shop: pytest.Pytester,
) -> None:
    """A capture started and never stopped, or a clock never restored, would record or time
    the next tests: the test that left it fails at teardown, and the next one is clean; a
    module-scoped fixture may hold one across its tests."""
    shop.makepyfile(
        test_seams="""
        import time
        import pytest
        from callpyback import CallPyBack
        from callpyback.testing import capture, mock_time

        @CallPyBack()
        def work():
            return 1

        def test_leaves_a_capture():
            capture().start()

        KEPT = []

        def test_leaves_a_clock():
            KEPT.append(mock_time())  # entered, never exited
            KEPT[0].__enter__()

        def test_next_is_clean():
            from callpyback._decorator import _OVERRIDE
            assert _OVERRIDE.time_source is None
            with capture() as calls:
                started = time.perf_counter()
                work()
            assert calls[0].duration < time.perf_counter() - started + 1e-3  # a real clock

        @pytest.fixture(scope="module")
        def module_clock():
            with mock_time() as clock:
                yield clock

        def test_module_clock_1(module_clock):
            with capture() as calls:
                work()
            assert calls[0].duration == 0.0

        def test_module_clock_2(module_clock):
            module_clock.advance(5)
    """
    )
    result = run(shop, "-v")
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_capture*",
            "callpyback: test_seams.py::test_leaves_a_capture left a capture recording "
            "(<Capture active, 0 calls>) after it ended. Use them as `with` blocks or the "
            "callpyback_capture / callpyback_clock fixtures. Undone now, so the next tests do "
            "not inherit them.",
            "*ERROR at teardown of test_leaves_a_clock*",
            "callpyback: test_seams.py::test_leaves_a_clock left a time source in force "
            "(MockTimeSource(*): use_time_source() or mock_time()) after it ended.*",
        ]
    )


def test_assertion_rewriting_survives_a_session_config_that_matches_the_test_module(
    pytester: pytest.Pytester,
) -> None:
    """pytest's AssertionRewritingHook stays in charge of test modules even when a pattern of
    the session's config selects them (pytest#1871): a failing assert still explains itself."""
    toml = 'version = 1\n[[pipelines]]\nmatch = ["test_rw:*"]\nobservers = ["metrics"]\n'
    pytester.makefile(".toml", callpyback=toml)
    pytester.makeini("[pytest]\ncallpyback_config = callpyback.toml\n")
    pytester.makepyfile(
        test_rw="""
        def helper():
            return [1, 2]

        def test_rewritten(callpyback_capture):
            x = helper()
            callpyback_capture.assert_called("test_rw:helper", outcome="success")
            assert x == [1, 3]
    """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E       assert [1, 2] == [1, 3]", "E*At index 1 diff: 2 != 3"])
