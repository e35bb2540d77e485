"""Names shared by the plugin module, the audit observer and the rules (kept import-light so that
discovering the plugin does not import the observer)."""

from __future__ import annotations

from typing import Tuple

#: Arguments recorded as the parties of a transaction, when the function has them.
DEFAULT_PARTY_FIELDS: Tuple[str, ...] = (
    "account",
    "payer",
    "payee",
    "sender",
    "recipient",
    "from_account",
    "to_account",
    "customer",
    "merchant",
    "counterparty",
)
#: ``context.metadata`` key under which the rules leave the flags they raised.
FLAGS_KEY = "finance.flags"
