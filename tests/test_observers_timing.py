"""TimingObserver: thresholds (global and per function), slow-call records and percentiles."""

from __future__ import annotations

import logging

import pytest

import callpyback as cpb
from callpyback import ConfigurationError, TimingObserver


def make(clock, observer):
    deco = cpb.CallPyBack(observers=[observer], time_source=clock)

    @deco
    def fast(seconds):
        clock.advance(seconds)
        return seconds

    @deco
    def report(seconds):
        clock.advance(seconds)
        if seconds > 9:
            raise TimeoutError("way too slow")
        return seconds

    return fast, report


def test_global_threshold_calls_on_slow_with_a_record(clock):
    """Calls at or above the threshold are reported; faster ones are not."""
    slow = []
    timing = TimingObserver(0.5, on_slow=slow.append)
    fast, _ = make(clock, timing)
    for d in (0.1, 0.5, 0.7, 0.2):
        fast(d)
    assert [s.duration for s in slow] == pytest.approx([0.5, 0.7])
    rec = slow[0]
    assert rec.function.endswith(":make.<locals>.fast") and rec.threshold == 0.5
    assert rec.outcome == "success" and rec.attempt == 1 and rec.thread == "MainThread"
    assert timing.slow_calls() == slow


def test_per_function_thresholds_first_match_wins(clock):
    """thresholds maps patterns to their own threshold; others use the global one."""
    slow = []
    timing = TimingObserver(1.0, thresholds={"*.report": 5.0, "report": 0.1}, on_slow=slow.append)
    fast, report = make(clock, timing)
    report(2.0)  # below 5.0: the first matching pattern wins
    report(6.0)
    fast(2.0)
    with pytest.raises(TimeoutError):
        report(10.0)
    assert [(s.function.rsplit(".", 1)[1], s.duration, s.outcome) for s in slow] == [
        ("report", 6.0, "success"),
        ("fast", 2.0, "success"),
        ("report", 10.0, "failure"),
    ]
    stats = timing.get_stats()
    report_stats = next(v for k, v in stats.items() if k.endswith("report"))
    assert report_stats["threshold"] == 5.0 and report_stats["slow_calls"] == 2
    assert report_stats["count"] == 3


def test_slow_calls_are_logged_when_no_callback(clock, caplog):
    """Without on_slow, a warning is logged on callpyback.timing."""
    timing = TimingObserver(0.1)
    fast, _ = make(clock, timing)
    with caplog.at_level(logging.WARNING, logger="callpyback.timing"):
        fast(0.2)
    (rec,) = caplog.records
    assert "slow call" in rec.getMessage() and rec.duration == 0.2


def test_recent_slow_calls_are_bounded(clock):
    """Only the last ``keep`` slow calls are kept, oldest first."""
    timing = TimingObserver(0.0, keep=3, on_slow=lambda s: None)
    fast, _ = make(clock, timing)
    for i in range(10):
        fast(float(i))
    assert [s.duration for s in timing.slow_calls()] == [7.0, 8.0, 9.0]


def test_percentiles_and_reset(clock):
    """Percentiles come from the histogram; reset forgets measurements."""
    timing = TimingObserver(quantiles=(0.5, 0.95))
    fast, _ = make(clock, timing)
    for i in range(1, 101):
        fast(i / 100)
    target = f"{__name__}:make.<locals>.fast"
    p = timing.percentiles(target)
    assert p["count"] == 100
    assert p["p50"] == pytest.approx(0.5, rel=0.01)
    assert p["p95"] == pytest.approx(0.95, rel=0.01)
    assert p["max"] == 1.0
    timing.reset()
    assert timing.percentiles(target)["count"] == 0
    assert timing.percentiles("no:such") == {}


def test_failing_callback_does_not_stop_timing(clock, caplog):
    """on_slow raising is logged once and counted; measurements continue."""

    def broken(record):
        raise RuntimeError("pager down")

    timing = TimingObserver(0.0, on_slow=broken)
    fast, _ = make(clock, timing)
    with caplog.at_level(logging.ERROR, logger="callpyback.timing"):
        for _ in range(3):
            fast(1.0)
    assert timing.callback_failures == 3
    assert len(caplog.records) == 1
    assert timing.get_stats()[f"{__name__}:make.<locals>.fast"]["count"] == 3


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((-1,), {}, "threshold"),
        (("1s",), {}, "threshold"),
        ((), {"thresholds": {"f": -2}}, "thresholds"),
        ((), {"thresholds": {"": 1}}, "patterns"),
        ((), {"on_slow": 3}, "on_slow"),
        ((), {"keep": -1}, "keep"),
        ((), {"quantiles": (1.5,)}, "quantiles"),
    ],
)
def test_bad_options(args, kwargs, match):
    """Options are validated at construction."""
    with pytest.raises(ConfigurationError, match=match):
        TimingObserver(*args, **kwargs)
