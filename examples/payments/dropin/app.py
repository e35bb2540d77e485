"""Run with `callpyback run app.py` from this directory (after installing callpyback-finance)."""

from __future__ import annotations

from decimal import Decimal

from bank.payments import balance, transfer

print(transfer("ACC-1", "ACC-2", Decimal("10.00")))
print(balance("ACC-1"))
try:
    transfer("ACC-1", "ACC-9", Decimal("99999.00"))
except Exception as exc:  # LimitExceededError, from the finance.limits rule
    print(f"{type(exc).__name__}: {exc}")
