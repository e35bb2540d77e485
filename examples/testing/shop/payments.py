"""Payments: plain functions; callpyback.toml adds retries and the audit trail."""

from shop import gateway


def charge(account, amount, card_number):
    if amount <= 0:
        raise ValueError(f"amount must be positive, got {amount}")
    return gateway.send(account, amount)
