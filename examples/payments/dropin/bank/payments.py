"""Plain payment functions; `callpyback run` audits them from callpyback.toml."""

from __future__ import annotations

from decimal import Decimal


def transfer(account: str, to_account: str, amount: Decimal, currency: str = "EUR") -> str:
    return f"moved {amount} {currency} from {account} to {to_account}"


def balance(account: str) -> Decimal:
    return Decimal("100.00")  # not matched by the pipeline: never audited
