"""examples/testing: the tests docs/testing.md shows (run by tests/test_examples_testing.py)."""

import json

import pytest
from shop import gateway, payments

from callpyback.testing import called


def test_retry_backs_off_on_the_mock_clock(callpyback_capture, callpyback_clock):
    gateway.FAILURES["left"] = 3
    assert payments.charge("acc-1", 20, "4111111111111111")["status"] == "accepted"
    callpyback_capture.assert_called(
        "shop.gateway:send", outcome="success", attempts=4, pipeline="gateway"
    )
    assert callpyback_clock.sleeps == [1.0, 2.0, 4.0]  # and the test took no time
    [charge] = callpyback_capture.for_target("shop.payments:charge")
    assert (charge.outcome, charge.attempts, charge.duration) == ("success", 1, 7.0)


def test_a_bad_amount_is_not_retried(callpyback_capture):
    with pytest.raises(ValueError):
        payments.charge("acc-1", -5, "4111111111111111")
    callpyback_capture.assert_called(
        "shop.payments:charge", outcome="failure", exception=ValueError, match="must be positive"
    )
    callpyback_capture.assert_not_called("shop.gateway:send")


def test_the_audit_record(callpyback_config, callpyback_clock, tmp_path):
    trail = tmp_path / "audit.jsonl"
    callpyback_config(f"""
        version = 1
        [observers.audit]
        type = "audit"
        path = "{trail}"
        redact = ["card_number"]

        [[pipelines]]
        match = ["shop.payments:charge"]
        observers = ["audit"]
    """)
    callpyback_clock.set_time(1_767_225_600.0)  # 2026-01-01T00:00:00Z
    payments.charge("acc-2", 35, "4111111111111111")
    [record] = [json.loads(line) for line in trail.read_text().splitlines()]
    assert record["what"] == "shop.payments:charge"
    assert record["outcome"] == "success"
    assert record["timestamp"] == "2026-01-01T00:00:00+00:00"
    assert record["arguments"]["card_number"] != "4111111111111111"  # redacted
    assert record["arguments"]["amount"] == 35


VELOCITY = """
version = 1
[error_handlers.velocity]
type = "finance.velocity"       # a plugin's component (callpyback-finance), by its TOML name
max_transactions = 2
window = 60
account_field = "account"

[[pipelines]]
match = ["shop.payments:charge"]
error_handlers = ["velocity"]
"""


@pytest.mark.callpyback(config=VELOCITY)
def test_a_plugin_rule_through_toml(callpyback_capture, callpyback_clock):
    from callpyback_finance import VelocityExceededError

    payments.charge("acc-3", 1, "4111111111111111")
    payments.charge("acc-3", 1, "4111111111111111")
    with pytest.raises(VelocityExceededError):
        payments.charge("acc-3", 1, "4111111111111111")
    callpyback_clock.advance(61)  # the window slides on the mock clock
    payments.charge("acc-3", 1, "4111111111111111")
    callpyback_capture.assert_called(
        called("shop.payments:charge", outcome="success")
        >> called("shop.payments:charge", outcome="success")
        >> called("shop.payments:charge", outcome="failure", exception=VelocityExceededError)
        >> called("shop.payments:charge", outcome="success")
    )
