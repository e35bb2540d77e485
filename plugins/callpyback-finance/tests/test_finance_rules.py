"""finance.limits and finance.velocity: pre-call guards that block (raise) or flag."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, List

import pytest
from callpyback_finance import (
    LimitExceededError,
    TransactionBlockedError,
    VelocityExceededError,
)

import callpyback as cpb


def guarded(handlers: List[Any], clock: Any, observers: Any = ()) -> Any:
    return cpb.CallPyBack(observers=list(observers), error_handlers=handlers, time_source=clock)


def test_limit_blocks_before_the_function_runs(create: Callable[..., Any], clock: Any) -> None:
    limits = create("error_handler", "finance.limits", max_amount="1000.00")
    ran: list = []

    @guarded([limits], clock)
    def transfer(account: str, amount: Decimal) -> str:
        ran.append(amount)
        return "ok"

    assert transfer("A", Decimal("1000.00")) == "ok"
    with pytest.raises(LimitExceededError) as info:
        transfer("A", Decimal("1000.01"))
    assert ran == [Decimal("1000.00")]
    err = info.value
    assert isinstance(err, TransactionBlockedError)
    assert err.rule == "finance.limits" and err.target.endswith("transfer")
    assert err.details["amount"] == Decimal("1000.01") and err.details["limit"] == Decimal(
        "1000.00"
    )
    assert str(err).startswith("finance.limits: amount 1000.01 is over the limit 1000.00")


def test_per_currency_limits(create: Callable[..., Any], clock: Any) -> None:
    limits = create(
        "error_handler", "finance.limits", max_amount=1000, per_currency={"jpy": 150000}
    )

    @guarded([limits], clock)
    def pay(account: str, amount: int, currency: str = "EUR") -> None: ...

    pay("A", 100000, currency="JPY")
    with pytest.raises(LimitExceededError, match="over the limit 150000 JPY"):
        pay("A", 150001, currency="JPY")
    with pytest.raises(LimitExceededError, match="over the limit 1000 EUR"):
        pay("A", 1001)


@pytest.mark.parametrize("amount", [None, "lots", float("nan"), True])
def test_unreadable_amount_is_not_waved_through(
    create: Callable[..., Any], clock: Any, amount: Any
) -> None:
    limits = create("error_handler", "finance.limits", max_amount=10)

    @guarded([limits], clock)
    def pay(account: str, amount: Any = None) -> None: ...

    with pytest.raises(LimitExceededError, match="cannot check the limit"):
        pay("A", amount)


def test_a_block_is_final_even_with_a_default_return(
    create: Callable[..., Any], clock: Any
) -> None:
    """The rule's handle() re-raises its own refusal before a later handler can recover it."""
    limits = create("error_handler", "finance.limits", max_amount=10)
    anything = cpb.DefaultErrorHandler("recovered", (Exception,))

    @guarded([limits, anything], clock)
    def pay(account: str, amount: int) -> str:
        raise RuntimeError("gateway down")

    assert pay("A", 5) == "recovered"  # an ordinary failure is still recovered
    with pytest.raises(LimitExceededError):
        pay("A", 50)


def test_a_retried_transaction_is_checked_once(create: Callable[..., Any], clock: Any) -> None:
    velocity = create("error_handler", "finance.velocity", max_transactions=1, window=60)
    attempts: list = []

    class RetryOnce:
        def handle(self, exception: BaseException, context: Any) -> Any:
            return cpb.Retry(0.5) if context.attempt == 1 else None

    @guarded([velocity, RetryOnce()], clock)
    def pay(account: str, amount: int) -> str:
        attempts.append(amount)
        if len(attempts) == 1:
            raise ConnectionError("flaky")
        return "ok"

    assert pay("A", 1) == "ok"  # the retry did not count as a second transaction
    assert attempts == [1, 1]


def test_flag_mode_lets_it_through_and_the_audit_records_why(
    create: Callable[..., Any], clock: Any, trail: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limits = create("error_handler", "finance.limits", max_amount=100, mode="flag")
    velocity = create(
        "error_handler", "finance.velocity", max_transactions=1, window=10, mode="flag"
    )
    audit = create("observer", "finance.audit", path=str(trail))

    @guarded([limits, velocity], clock, observers=[audit])
    def pay(account: str, amount: int) -> str:
        return "paid"

    assert pay("A", 500) == "paid"
    assert pay("A", 5) == "paid"
    first, second = (json.loads(line) for line in trail.read_text(encoding="ascii").splitlines())
    assert first["outcome"] == "success"
    assert first["flags"] == ["finance.limits: amount 500 is over the limit 100"]
    assert second["flags"] == [
        "finance.velocity: account 'A' made 2 transactions within 10s (at most 1 allowed)"
    ]
    assert any("finance.limits flagged" in r.getMessage() for r in caplog.records)


def test_velocity_window_slides_on_the_time_source(create: Callable[..., Any], clock: Any) -> None:
    velocity = create("error_handler", "finance.velocity", max_transactions=3, window=60)

    @guarded([velocity], clock)
    def pay(account: str, amount: int) -> str:
        return "ok"

    for _ in range(3):
        pay("A", 1)
        clock.advance(10)
    with pytest.raises(VelocityExceededError) as info:
        pay("A", 1)  # t=30: three in the last 60 s
    assert "account 'A' made 4 transactions within 60s (at most 3 allowed)" in str(info.value)
    pay("B", 1)  # per account
    clock.advance(30)  # t=60: the first (t=0) left the window
    assert pay("A", 1) == "ok"
    with pytest.raises(VelocityExceededError):
        pay("A", 1)


def test_velocity_needs_the_account(create: Callable[..., Any], clock: Any) -> None:
    velocity = create(
        "error_handler", "finance.velocity", max_transactions=3, window=60, account_field="iban"
    )

    @guarded([velocity], clock)
    def pay(account: str, amount: int) -> None: ...

    with pytest.raises(VelocityExceededError, match="argument 'iban' is missing"):
        pay("A", 1)


def test_velocity_under_threads_admits_exactly_the_maximum(
    create: Callable[..., Any], clock: Any
) -> None:
    """32 threads race for one account's 10 slots: exactly 10 go through."""
    velocity = create("error_handler", "finance.velocity", max_transactions=10, window=60)
    done: list = []
    blocked: list = []

    @guarded([velocity], clock)
    def pay(account: str, amount: int) -> None:
        done.append(amount)

    barrier = threading.Barrier(32)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            pay("A", i)
        except VelocityExceededError:
            blocked.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 10 and len(blocked) == 22


def test_velocity_memory_is_bounded(clock: Any) -> None:
    from callpyback_finance import VelocityGuard

    guard = VelocityGuard(2, 1.0, max_accounts=50)

    @guarded([guard], clock)
    def pay(account: str, amount: int) -> None: ...

    for i in range(500):
        pay(f"acct-{i}", 1)
        clock.advance(0.1)
    assert len(guard.counter.impl._events) <= 51  # the in-process window (callpyback.state)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_amount": 0}, "max_amount must be a positive number"),
        ({"max_amount": 5, "mode": "warn"}, "mode must be one of"),
        ({"max_amount": 5, "per_currency": {"EUR": "x"}}, r"per_currency\['EUR'\]"),
    ],
)
def test_limit_guard_rejects_bad_arguments(kwargs: Any, message: str) -> None:
    from callpyback_finance import LimitGuard

    with pytest.raises(ValueError, match=message):
        LimitGuard(**kwargs)


def test_arguments_are_found_however_they_are_passed(
    create: Callable[..., Any], clock: Any
) -> None:
    """Positional, keyword, default, keyword-only, *args/**kwargs, and methods."""
    limits = create("error_handler", "finance.limits", max_amount=100)
    guard = guarded([limits], clock)

    @guard
    def positional(account: str, amount: int = 500) -> None: ...

    @guard
    def keyword_only(account: str, *, amount: int) -> None: ...

    @guard
    def variadic(*args: Any, **kwargs: Any) -> None: ...

    class Ledger:
        @guard
        def post(self, account: str, amount: int) -> None: ...

    for call in (
        lambda a: positional("A", a),
        lambda a: positional(account="A", amount=a),
        lambda a: keyword_only("A", amount=a),
        lambda a: variadic(account="A", amount=a),
        lambda a: Ledger().post("A", a),
    ):
        call(50)
        with pytest.raises(LimitExceededError):
            call(150)
    with pytest.raises(LimitExceededError, match="amount 500 is over"):
        positional("A")  # the default applies
    with pytest.raises(LimitExceededError, match="cannot check"):
        variadic("A", 50)  # positional through *args has no name
