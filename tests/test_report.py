"""The run report read in process: what ``callpyback.report.collect()`` finds, and the three
renderings (text, JSON schema 1, self-contained HTML)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from typing import Any, Dict, List

import pytest

import callpyback as cpb
from callpyback import MetricsObserver, MockTimeSource, Retry, TimingObserver, report
from callpyback.report._text import duration


class RetryTwice:
    def handle(self, exception: BaseException, context: Any) -> Any:
        return Retry(0.0) if context.attempt < 3 else None


def rows_of(found: report.RunReport, prefix: str) -> Dict[str, report.FunctionReport]:
    # Other test modules' decorated functions are alive too: look at this test's targets only.
    return {f.target: f for f in found.functions if f.target.startswith(prefix)}


def target(func: Any) -> str:
    return f"{func.__module__}:{func.__qualname__}"


@pytest.fixture
def clock() -> MockTimeSource:
    return MockTimeSource(1_000.0)


def test_every_outcome_is_counted_per_target_with_latency_from_the_same_histogram(
    clock: MockTimeSource,
) -> None:
    """Calls, successes, failures, recoveries, retries, cancelled and interrupted per target;
    total, mean and p50/p90/p99/max equal the observer's own histogram."""
    metrics = MetricsObserver()
    deco = cpb.CallPyBack(observers=[metrics], time_source=clock, name="checkout")
    attempts: List[int] = []

    @deco
    def slow(seconds: float) -> float:
        clock.advance(seconds)
        if seconds > 0.5:
            raise ValueError(seconds)
        return seconds

    @cpb.CallPyBack(observers=[metrics], default_return=-1, time_source=clock, name="lenient")
    def recovered() -> int:
        clock.advance(0.002)
        raise KeyError("x")

    @cpb.CallPyBack(observers=[metrics], error_handlers=[RetryTwice()], time_source=clock)
    def flaky() -> str:
        attempts.append(1)
        clock.advance(0.001)
        if len(attempts) < 3:
            raise OSError("transient")
        return "ok"

    @deco
    def numbers() -> Any:
        yield from range(3)

    @deco
    def interrupt() -> None:
        raise KeyboardInterrupt

    for s in (0.01, 0.02, 0.03, 0.04, 0.9):
        with contextlib.suppress(ValueError):
            slow(s)
    assert recovered() == -1
    assert flaky() == "ok"
    gen = numbers()
    next(gen)
    gen.close()
    with pytest.raises(KeyboardInterrupt):
        interrupt()

    rows = rows_of(report.collect(), f"{__name__}:test_every_outcome")
    s = rows[target(slow)]
    assert (s.calls, s.successes, s.failures, s.pipeline, s.source) == (
        5,
        4,
        1,
        "checkout",
        "metrics",
    )
    hist = metrics.histogram(target(slow))
    assert hist is not None
    p50, p90, p99 = hist.quantiles((0.5, 0.9, 0.99))
    assert (s.p50_seconds, s.p90_seconds, s.p99_seconds) == (p50, p90, p99)
    assert s.total_seconds == pytest.approx(1.0)
    assert s.mean_seconds == pytest.approx(0.2)
    assert s.max_seconds == pytest.approx(0.9)
    assert s.p50_seconds == pytest.approx(0.03, rel=0.01)
    r = rows[target(recovered)]
    assert (r.calls, r.recoveries, r.failures, r.pipeline) == (1, 1, 0, "lenient")
    f = rows[target(flaky)]
    assert (f.calls, f.successes, f.retries, f.pipeline) == (1, 1, 2, None)
    assert rows[target(numbers)].cancelled == 1
    assert rows[target(interrupt)].interrupted == 1
    assert rows[target(interrupt)].errors == 1
    # Sorted by total time, longest first.
    order = [t for t in (f.target for f in report.collect().functions) if t in rows]
    assert order[0] == target(slow)
    totals = [rows[t].total_seconds for t in order]
    assert totals == sorted(totals, reverse=True)


def test_timing_observers_and_integration_targets_appear_too(clock: MockTimeSource) -> None:
    """A target only a TimingObserver sees is reported (no outcome counts); an integration's
    own target (deco.observe) is reported like a function."""
    timing = TimingObserver(threshold=0.05)

    @cpb.CallPyBack(observers=[timing], time_source=clock, name="epochs")
    def epoch(seconds: float) -> None:
        clock.advance(seconds)

    metrics = MetricsObserver()
    web = cpb.CallPyBack(observers=[metrics], time_source=clock, name="web")

    def view() -> str:
        clock.advance(0.004)
        return "page"

    route = web.observe(view, target="http:GET /orders/{id}")
    for s in (0.01, 0.1, 0.2):
        epoch(s)
    route()
    route()
    found = report.collect()
    rows = {f.target: f for f in found.functions}
    e = rows[target(epoch)]
    assert (e.source, e.calls, e.successes, e.slow_calls, e.pipeline) == (
        "timing",
        3,
        None,
        2,
        "epochs",
    )
    assert e.total_seconds == pytest.approx(0.31)
    http = rows["http:GET /orders/{id}"]
    assert (http.calls, http.successes, http.pipeline) == (2, 2, "web")
    assert http.p99_seconds == pytest.approx(0.004, rel=0.01)
    assert timing in report.observers() and metrics in report.metrics_observers()
    assert timing in report.timing_observers()


def test_text_report_columns_and_units(clock: MockTimeSource) -> None:
    """One line per target: pipeline, counts, then durations in a readable unit."""
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics], time_source=clock, name="textual")
    def tick() -> None:
        clock.advance(0.0025)

    tick()
    tick()
    text = report.render(report.collect(), "text")
    lines = text.splitlines()
    assert lines[0].startswith("callpyback report: ")
    assert lines[1].split() == [
        "target", "pipeline", "calls", "ok", "failed", "recovered", "retries", "cancelled",
        "interrupted", "total", "mean", "p50", "p90", "p99", "max",
    ]  # fmt: skip
    line = next(x for x in lines if x.startswith(target(tick)))
    assert line.split()[1:] == [
        "textual", "2", "2", "0", "0", "0", "0", "0", "5.00ms", "2.50ms", "2.50ms", "2.50ms",
        "2.50ms", "2.50ms",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0, "0"),
        (3e-7, "300ns"),
        (9.996e-7, "1000ns"),
        (3.1e-6, "3.10us"),
        (0.0123, "12.3ms"),
        (1.5, "1.50s"),
        (4321.0, "4321s"),
    ],
)
def test_durations_keep_three_significant_figures(seconds: Any, text: str) -> None:
    assert duration(seconds) == text


def test_json_schema_1_has_stable_fields_in_seconds(clock: MockTimeSource) -> None:
    """``schema`` 1: top-level keys and per-function keys are exactly the documented ones."""
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics], time_source=clock, name="js")
    def step() -> None:
        clock.advance(0.25)

    step()
    data = json.loads(report.render(report.collect(), "json"))
    assert data["schema"] == report.SCHEMA == 1
    assert set(data) == {
        "schema", "generator", "created", "duration_seconds", "program", "wrapped",
        "wrapped_by_import_hook", "instrumentation_warnings", "observers", "calls", "functions",
    }  # fmt: skip
    assert set(data["program"]) == {"argv", "pid", "exit_status", "ended_by"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["created"])
    entry = next(f for f in data["functions"] if f["target"] == target(step))
    assert list(entry) == [
        "target", "pipeline", "source", "calls", "successes", "failures", "recoveries",
        "retries", "cancelled", "interrupted", "in_flight", "max_in_flight", "slow_calls",
        "total_seconds", "mean_seconds", "min_seconds", "p50_seconds", "p90_seconds",
        "p99_seconds", "max_seconds", "histogram",
    ]  # fmt: skip
    assert entry["total_seconds"] == pytest.approx(0.25)
    assert entry["p99_seconds"] == pytest.approx(0.25)
    assert entry["slow_calls"] is None and entry["pipeline"] == "js"
    assert entry["histogram"]["relative_accuracy"] == 0.01
    [[upper, count]] = entry["histogram"]["buckets"]
    assert count == 1 and upper / 1.0202 <= 0.25 < upper  # the bucket holding 0.25 s


def test_html_is_one_self_contained_file_with_escaped_names(clock: MockTimeSource) -> None:
    """No URL to fetch (no script src, stylesheet link, font or CDN); ``<locals>`` escaped;
    200 functions stay well under 1 MB."""
    metrics = MetricsObserver()
    deco = cpb.CallPyBack(observers=[metrics], time_source=clock, name="<pipe & co>")
    made = []
    for i in range(200):

        def local(i: int = i) -> None:
            clock.advance(0.0001 * (1 + i % 50))

        local.__qualname__ = f"many.<locals>.f{i}"
        made.append(deco(local))
    for f in made:
        for _ in range(3):
            f()
    html = report.render(report.collect(), "html")
    assert len(html.encode()) < 1_000_000
    assert "://" not in html
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=", html)
    assert "@import" not in html and "url(" not in html
    assert "many.&lt;locals&gt;.f7" in html and "many.<locals>" not in html
    assert "&lt;pipe &amp; co&gt;" in html
    assert html.count('<figure id="h-') >= 200
    assert html.count('<rect class="bar"') >= 200


def test_a_run_with_nothing_observed_says_so() -> None:
    """In a fresh interpreter with no observer: the report says nothing was observed."""
    code = (
        "from callpyback import report\n"
        "r = report.collect()\n"
        "print(report.render(r, 'text'))\n"
        "import json; print(json.loads(report.render(r, 'json'))['functions'])\n"
        "print('nothing' in report.render(r, 'html'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "callpyback report: nothing was observed (no function was wrapped" in out
    assert "[]\nTrue" in out


def test_write_report_replaces_the_file_whole(tmp_path: Any) -> None:
    """write_report() returns the absolute path; text without a path goes to stderr."""
    path = tmp_path / "r.json"
    path.write_text("old")
    written = report.write_report("json", str(path))
    assert written == str(path)
    assert json.loads(path.read_text())["schema"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left
    with pytest.raises(cpb.ConfigurationError, match="format"):
        report.render(report.collect(), "xml")
