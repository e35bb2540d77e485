"""A small payments service whose functions are audited by the callpyback-finance plugin.

Run it (after ``pip install ./plugins/callpyback-finance``), then check the trail::

    python examples/payments/payments.py
    callpyback-finance verify audit/transactions.jsonl

The components come from the registry by name, as a ``callpyback.toml`` would name them: the
plugin is found through its entry point, not imported here.
"""

from __future__ import annotations

import itertools
import os
from decimal import Decimal
from typing import Dict

import callpyback as cpb
from callpyback.plugins import get_registry

TRAIL = os.environ.get("PAYMENTS_AUDIT_TRAIL", "audit/transactions.jsonl")

_registry = get_registry()
audited = cpb.CallPyBack(
    observers=[
        _registry.create("observer", "finance.audit", {"path": TRAIL, "fields": ["card_number"]})
    ],
    # The rules come first, so that their refusals are final.
    error_handlers=[
        _registry.create("error_handler", "finance.limits", {"max_amount": "5000"}),
        _registry.create(
            "error_handler", "finance.velocity", {"max_transactions": 3, "window": 60}
        ),
    ],
    name="payments",
)


class InsufficientFundsError(Exception):
    """The paying account cannot cover the amount."""


BALANCES: Dict[str, Decimal] = {"ACC-1": Decimal("2500.00"), "ACC-2": Decimal("100.00")}
_ids = itertools.count(1)


@audited
def charge_card(account: str, amount: Decimal, card_number: str, currency: str = "EUR") -> str:
    """Charge a card on behalf of ``account``; returns a transaction id."""
    BALANCES[account] = BALANCES.get(account, Decimal(0)) + amount
    return f"TX-{next(_ids):05d}"


@audited
def transfer(account: str, to_account: str, amount: Decimal, currency: str = "EUR") -> str:
    """Move ``amount`` from ``account`` to ``to_account``."""
    if BALANCES.get(account, Decimal(0)) < amount:
        raise InsufficientFundsError(f"{account} cannot cover {amount} {currency}")
    BALANCES[account] -= amount
    BALANCES[to_account] = BALANCES.get(to_account, Decimal(0)) + amount
    return f"TX-{next(_ids):05d}"


def main() -> int:
    attempts = [
        (charge_card, ("ACC-1", Decimal("120.00"), "4242424242424242")),
        (transfer, ("ACC-1", "ACC-2", Decimal("75.50"))),
        (transfer, ("ACC-2", "ACC-1", Decimal("900.00"))),  # insufficient funds
        (transfer, ("ACC-1", "ACC-3", Decimal("9000.00"))),  # over the limit: blocked
        (transfer, ("ACC-1", "ACC-2", Decimal("10.00"))),
        (transfer, ("ACC-1", "ACC-2", Decimal("10.00"))),  # 4th in a minute: blocked
    ]
    for func, args in attempts:
        try:
            outcome = func(*args)
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        print(f"{func.__name__:<12} {args[0]}: {outcome}")
    print(f"audit trail: {TRAIL}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
