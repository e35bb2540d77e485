"""``finance.audit``: one tamper-evident record per observed transaction.

The observer runs when a call completes (or is interrupted).  :meth:`FinanceAuditObserver.build_record`
turns the call into a record (outcome, amounts, parties, flags raised by the rules, redacted as
configured) and :meth:`FinanceAuditObserver.write_record` appends it to the hash-chained trail.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from callpyback import BaseObserver, ExecutionState

from .chain import AuditTrail, jsonable

__all__ = [
    "DEFAULT_PARTY_FIELDS",
    "DEFAULT_REDACT",
    "FLAGS_KEY",
    "FinanceAuditObserver",
    "Redaction",
]

#: Arguments recorded as the parties of a transaction, when the function has them.
DEFAULT_PARTY_FIELDS: Tuple[str, ...] = (
    "account", "payer", "payee", "sender", "recipient", "from_account", "to_account",
    "customer", "merchant", "counterparty",
)
#: Arguments whose values never reach the trail in clear.
DEFAULT_REDACT: Tuple[str, ...] = (
    "card_number", "pan", "cvv", "cvc", "pin", "password", "secret", "token", "iban",
    "account_number",
)
#: ``context.metadata`` key under which the rules leave the flags they raised.
FLAGS_KEY = "finance.flags"
REDACTION_MODES = ("mask", "hash", "remove")


class Redaction:
    """Replaces the values of sensitive fields (matched by name, case-insensitively).

    * ``mask``: keep the last four characters (``"************4242"``), enough to tell cards apart;
    * ``hash``: ``"sha256:<hex>"``, an HMAC with ``key`` so equal values can be correlated
      without being recoverable (without a key, short values such as card numbers can be
      brute-forced from a plain hash: set one);
    * ``remove``: ``"[REDACTED]"``.
    """

    def __init__(
        self, fields: Iterable[str], mode: str = "mask", key: Optional[str] = None
    ) -> None:
        if mode not in REDACTION_MODES:
            raise ValueError(f"redaction must be one of {REDACTION_MODES}, got {mode!r}")
        self.fields = frozenset(f.lower() for f in fields)
        self.mode = mode
        self._key = key.encode("utf-8") if key else b""

    def applies(self, name: str) -> bool:
        return name.lower() in self.fields

    def value(self, value: Any) -> str:
        text = str(value)
        if self.mode == "mask":
            keep = text[-4:] if len(text) > 4 else ""
            return "*" * (len(text) - len(keep)) + keep
        if self.mode == "hash":
            return "sha256:" + hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()
        return "[REDACTED]"

    def mapping(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        return {k: self.value(v) if self.applies(k) else v for k, v in values.items()}

    def scrub(self, text: str, arguments: Mapping[str, Any]) -> str:
        """Remove sensitive argument values quoted inside ``text`` (an error message)."""
        for name, value in arguments.items():
            if self.applies(name) and value is not None:
                clear = str(value)
                if len(clear) >= 3 and clear in text:
                    text = text.replace(clear, self.value(value))
        return text


class FinanceAuditObserver(BaseObserver):
    """Appends one hash-chained record per completed (or interrupted) call to ``path``."""

    def __init__(
        self,
        path: str,
        *,
        amount_fields: Sequence[str] = ("amount",),
        currency_field: Optional[str] = "currency",
        party_fields: Sequence[str] = DEFAULT_PARTY_FIELDS,
        fields: Sequence[str] = (),
        include_arguments: bool = False,
        redact: Sequence[str] = DEFAULT_REDACT,
        redaction: str = "mask",
        redaction_key: Optional[str] = None,
        durability: str = "fsync",
        priority: int = 0,
        name: str = "finance.audit",
    ) -> None:
        super().__init__(
            priority=priority, name=name, states=[ExecutionState.COMPLETED, ExecutionState.ERROR]
        )
        self.trail = AuditTrail(path, durability=durability)
        self.amount_fields = tuple(amount_fields)
        self.currency_field = currency_field
        self.party_fields = tuple(party_fields)
        self.fields = tuple(fields)
        self.include_arguments = include_arguments
        self.redaction = Redaction(redact, redaction, redaction_key)

    @property
    def path(self) -> str:
        return str(self.trail.path)

    def update(self, context: Any) -> None:
        self.write_record(self.build_record(context))

    def build_record(self, context: Any) -> Dict[str, Any]:
        """The record for one call, before ``seq``/``prev``/``hash`` are added."""
        arguments = context.arguments
        red = self.redaction

        def pick(names: Iterable[str]) -> Dict[str, Any]:
            return {n: arguments[n] for n in names if n in arguments}

        record: Dict[str, Any] = {
            "ts": context.timestamp,
            "target": context.function_info.target,
            "outcome": _outcome(context),
            "attempts": context.attempt,
            "duration": context.execution_time,
            "amounts": red.mapping(pick(self.amount_fields)),
            "parties": red.mapping(pick(self.party_fields)),
        }
        if self.currency_field and self.currency_field in arguments:
            record["currency"] = arguments[self.currency_field]
        if self.fields:
            record["fields"] = red.mapping(pick(self.fields))
        if self.include_arguments:
            record["arguments"] = red.mapping(dict(arguments))
        exc = context.exception
        if exc is not None:
            record["error"] = {
                "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "message": red.scrub(str(exc), arguments),
            }
        if context.recovered:
            record["recovered_by"] = context.recovered_by
        flags = context.metadata.get(FLAGS_KEY)
        if flags:
            record["flags"] = list(flags)
        return jsonable(record)  # type: ignore[no-any-return]

    def write_record(self, record: Mapping[str, Any]) -> Dict[str, Any]:
        """Append ``record`` to the trail; returns it with ``seq``, ``prev`` and ``hash``."""
        return self.trail.append(record)

    def close(self) -> None:
        self.trail.close()


def _outcome(context: Any) -> str:
    from .rules import TransactionBlockedError

    if context.state is ExecutionState.ERROR:
        return "interrupted"
    if context.cancelled:
        return "cancelled"
    if context.recovered:
        return "recovered"
    exc = context.exception
    if exc is None:
        return "success"
    return "blocked" if isinstance(exc, TransactionBlockedError) else "failure"
