"""AlertingObserver: windowed error-rate and latency rules, under MockTimeSource."""

from __future__ import annotations

import contextlib
import logging

import pytest

import callpyback as cpb
from callpyback import AlertingObserver, AlertRule, ConfigurationError


def service(clock, observer, **options):
    @cpb.CallPyBack(observers=[observer], time_source=clock, **options)
    def call(fail=False, seconds=0.01):
        clock.advance(seconds)
        if fail:
            raise ConnectionError("upstream down")
        return "ok"

    return call


def run(call, fail=False, seconds=0.01):
    with contextlib.suppress(ConnectionError):
        call(fail=fail, seconds=seconds)


def test_error_rate_fires_once_and_resolves(clock):
    """Above the rate the alert fires once; when the window clears it resolves."""
    fired, resolved = [], []
    rule = AlertRule.error_rate(0.2, window=60, min_calls=10, name="errors")
    obs = AlertingObserver([rule], on_alert=fired.append, on_resolve=resolved.append)
    call = service(clock, obs)
    for _ in range(8):
        run(call)
    for _ in range(2):
        run(call, fail=True)
    assert fired == []  # 2/10 = 20 %, not above 20 %
    run(call, fail=True)  # 3/11
    assert len(fired) == 1
    alert = fired[0]
    assert alert.firing and alert.rule == "errors" and alert.kind == "error_rate"
    assert (alert.calls, alert.bad) == (11, 3) and alert.value == pytest.approx(3 / 11)
    assert alert.function.endswith("service.<locals>.call")
    assert alert.timestamp == clock.now()
    assert "error rate" in alert.message
    for _ in range(3):
        run(call, fail=True)
    assert len(fired) == 1  # still firing: no repeat
    assert obs.active() == [("errors", alert.function)]
    clock.advance(61)  # the whole window goes by
    for _ in range(10):
        run(call)
    assert len(resolved) == 1 and not resolved[0].firing
    assert obs.active() == []


def test_window_slides(clock):
    """Failures older than the window stop counting."""
    fired = []
    obs = AlertingObserver(
        [AlertRule.error_rate(0.5, window=10, min_calls=4)], on_alert=fired.append, resolution=10
    )
    call = service(clock, obs)
    run(call, fail=True)
    run(call, fail=True)
    clock.advance(11)
    run(call)
    run(call)
    run(call, fail=True)
    run(call)
    assert fired == []  # only 1/4 in the window
    run(call, fail=True)
    run(call, fail=True)
    assert fired == []  # 3/6 is not above 50 %
    run(call, fail=True)
    assert len(fired) == 1 and (fired[0].calls, fired[0].bad) == (7, 4)


def test_latency_percentile_rule_is_exact(clock):
    """p90 above 1 s fires exactly when more than 10 % of calls are slower than 1 s."""
    fired = []
    obs = AlertingObserver(
        [AlertRule.latency(1.0, percentile=0.9, window=60, min_calls=10)], on_alert=fired.append
    )
    call = service(clock, obs)
    for _ in range(9):
        call(seconds=0.1)
    call(seconds=2.0)  # 1 of 10 slow: p90 (rank 9) is 0.1 s
    assert fired == []
    call(seconds=2.0)  # 2 of 11 slow: p90 (rank 10) is 2 s
    assert len(fired) == 1
    assert fired[0].kind == "latency" and fired[0].bad == 2 and fired[0].calls == 11
    assert "p90" in fired[0].message


def test_recovered_calls_and_cooldown(clock):
    """count_recovered=False ignores recovered calls; cooldown limits re-firing."""
    fired = []
    rules = [
        AlertRule.error_rate(0.5, min_calls=2, name="all", cooldown=100),
        AlertRule.error_rate(0.5, min_calls=2, name="unrecovered", count_recovered=False),
    ]
    obs = AlertingObserver(rules, on_alert=fired.append)
    call = service(clock, obs, default_return="fallback")
    assert call(fail=True) == "fallback"
    call(fail=True)
    assert [a.rule for a in fired] == ["all"]
    for _ in range(4):
        call()  # resolves "all"
    call(fail=True)
    call(fail=True)
    call(fail=True)
    call(fail=True)
    call(fail=True)
    assert [a.rule for a in fired] == ["all"]  # within cooldown: not fired again
    clock.advance(200)
    call(fail=True)
    call(fail=True)
    assert [a.rule for a in fired] == ["all", "all"]


def test_rules_can_be_limited_to_functions(clock):
    """functions=... scopes a rule; other functions are not evaluated by it."""
    fired = []
    obs = AlertingObserver(
        [AlertRule.error_rate(0.1, min_calls=1, functions=["other_*"])], on_alert=fired.append
    )
    call = service(clock, obs)
    run(call, fail=True)
    assert fired == []


def test_without_callback_alerts_are_logged_and_kept(clock, caplog):
    """With no on_alert, alerts go to the callpyback.alerts logger and to .alerts."""
    obs = AlertingObserver([AlertRule.error_rate(0.0, min_calls=1)])
    call = service(clock, obs)
    with caplog.at_level(logging.WARNING, logger="callpyback.alerts"):
        run(call, fail=True)
    assert "firing" in caplog.records[0].getMessage()
    assert len(obs.alerts) == 1


def test_failing_alert_callback_is_counted(clock, caplog):
    """A broken callback is logged once and counted; the call is unaffected."""

    def broken(alert):
        raise RuntimeError("pager down")

    obs = AlertingObserver([AlertRule.error_rate(0.0, min_calls=1)], on_alert=broken)
    call = service(clock, obs)
    with caplog.at_level(logging.ERROR, logger="callpyback.alerts"):
        run(call, fail=True)
    assert obs.callback_failures == 1 and len(caplog.records) == 1


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: AlertRule("r", "cpu", 1), "kind"),
        (lambda: AlertRule.error_rate(1.5), "fraction below 1"),
        (lambda: AlertRule.latency(1.0, percentile=99), "percentile"),
        (lambda: AlertRule.error_rate(0.1, window=0), "window"),
        (lambda: AlertRule.error_rate(0.1, min_calls=0), "min_calls"),
        (lambda: AlertRule("r", "error_rate", 0.1, percentile=0.5), "latency rules only"),
        (lambda: AlertingObserver([]), "at least one"),
        (
            lambda: AlertingObserver(
                [AlertRule.error_rate(0.1, name="x"), AlertRule.error_rate(0.2, name="x")]
            ),
            "unique",
        ),
        (lambda: AlertingObserver(["rule"]), "AlertRule"),
        (lambda: AlertingObserver([AlertRule.error_rate(0.1)], on_alert=1), "on_alert"),
    ],
)
def test_bad_rules(make, match):
    """Rules and observer options are validated with clear messages."""
    with pytest.raises(ConfigurationError, match=match):
        make()
