"""``finance.audit``: one tamper-evident record per observed transaction.

Built on the core's :class:`callpyback.observers.AuditObserver` through its two seams:
:meth:`~FinanceAuditObserver.build_record` extends the core record (who, what, when, outcome,
redacted arguments and exception) with the transaction: amounts, currency, parties and the flags
the rules raised; :meth:`~FinanceAuditObserver.write_record` appends it to a hash-chained trail
(:class:`~callpyback_finance.chain.AuditTrail`) instead of the core's plain file, because a chain
needs the previous record's hash read under a lock shared with other processes.
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from callpyback.errors import ConfigurationError
from callpyback.observers.audit import AuditObserver
from callpyback.observers.redaction import Redactor
from callpyback.states import ExecutionState

from ._fields import DEFAULT_PARTY_FIELDS, FLAGS_KEY
from .chain import AuditTrail, AuditTrailError

__all__ = [
    "DEFAULT_PARTY_FIELDS",
    "FLAGS_KEY",
    "FinanceAuditObserver",
    "FinanceRedactor",
]

#: Sensitive argument names added to the core Redactor's defaults (passwords, tokens, card
#: numbers, CVV, PIN, IBAN, ...).
FINANCE_KEYS: Tuple[str, ...] = ("pan", "account_number", "routing_number", "security_code")
REDACTION_MODES = ("mask", "hash", "remove")


class FinanceRedactor(Redactor):
    """The core :class:`~callpyback.observers.Redactor`, with value-aware masks for named fields.

    * ``mask``: keep the last four characters (``"************4242"``), enough to tell cards apart,
      when they are at most a quarter of the value (shorter values are masked whole);
    * ``hash``: ``"sha256:<hex>"``, an HMAC with ``key``, so equal values can be correlated
      without being recoverable (without a key, short values such as card numbers can be
      brute-forced from a plain hash: set one);
    * ``remove``: ``"[REDACTED]"``.

    Free text (error messages, reprs) is still cleaned by the core's patterns (Luhn-checked card
    numbers, bearer tokens, ...).
    """

    def __init__(
        self, keys: Iterable[str] = (), mode: str = "mask", key: Optional[str] = None
    ) -> None:
        if mode not in REDACTION_MODES:
            raise ValueError(f"redaction must be one of {REDACTION_MODES}, got {mode!r}")
        super().__init__(keys=[*FINANCE_KEYS, *keys])
        self.mode = mode
        # Not "_key": the core Redactor has a _key() method, used when it walks nested mappings.
        self._hmac_key = key.encode("utf-8") if key else b""

    def value(self, value: Any) -> str:
        """The redacted form of one sensitive value."""
        text = str(value)
        if self.mode == "mask":
            # The last four only when they are at most a quarter of the value: a CVV or a short
            # secret is masked whole, never mostly revealed.
            return self.partial(text)
        if self.mode == "hash":
            digest = hmac.new(self._hmac_key, text.encode("utf-8"), hashlib.sha256).hexdigest()
            return "sha256:" + digest
        return self.mask

    def redact_mapping(self, mapping: Mapping[str, Any]) -> Dict[str, Any]:
        return {
            k: self.value(v) if self.is_sensitive_key(k) else self._plain(v)
            for k, v in mapping.items()
        }

    def _plain(self, value: Any) -> Any:
        # Amounts stay exact: a Decimal is recorded as its digits, not as its repr.
        return str(value) if isinstance(value, Decimal) else self.redact(value)

    def scrub(self, text: str, arguments: Mapping[str, Any]) -> str:
        """``text`` with patterns redacted and sensitive argument values quoted in it masked."""
        for name, value in arguments.items():
            if value is not None and self.is_sensitive_key(name):
                clear = str(value)
                if len(clear) >= 3 and clear in text:
                    text = text.replace(clear, self.value(value))
        return self.redact_text(text)


class FinanceAuditObserver(AuditObserver):
    """Appends one hash-chained record per completed (or interrupted) call to ``path``.

    The record is the core audit record (``timestamp``/``epoch`` from the time source, ``who``
    (the OS user, or the ``who_field`` argument),
    ``what``, ``outcome``, ``duration``, ``attempt``, ``exception``, ``pid``, ``thread``) plus
    ``amounts``, ``currency``, ``parties``, optional ``fields`` and ``flags``, ``trace_id`` and
    ``span_id`` when an OpenTelemetry span is current, and the chain's ``seq``, ``prev`` and
    ``hash``.  ``outcome`` is ``blocked`` when a rule refused the call.
    """

    logger_name = "callpyback.finance"
    subject = "finance.audit"
    failure_verb = "could not append to"

    def __init__(
        self,
        path: str,
        *,
        amount_fields: Sequence[str] = ("amount",),
        currency_field: Optional[str] = "currency",
        party_fields: Sequence[str] = DEFAULT_PARTY_FIELDS,
        fields: Sequence[str] = (),
        include_arguments: bool = False,
        redact: Sequence[str] = (),
        redaction: str = "mask",
        redaction_key: Optional[str] = None,
        durability: str = "fsync",
        who_field: Optional[str] = None,
        priority: int = 0,
        name: str = "finance.audit",
    ) -> None:
        redactor = FinanceRedactor(redact, redaction, redaction_key)
        # Records go through the chain writer, not the core's plain file (see _open_checked).
        self.trail = AuditTrail(path, durability=durability)
        super().__init__(
            path,
            who=_who_from(who_field) if who_field else None,
            include_arguments=include_arguments,
            redactor=redactor,
            fsync=durability == "fsync",
            priority=priority,
            name=name,
        )
        self.finance_redactor = redactor
        self.amount_fields = tuple(amount_fields)
        self.currency_field = currency_field
        self.party_fields = tuple(party_fields)
        self.fields = tuple(fields)

    def _open_checked(self) -> None:
        # The path is checked (and the file created, mode 0640) when the component is built.
        try:
            self.trail.open()
        except OSError as exc:
            raise ConfigurationError(
                f"finance.audit cannot open {str(self.trail.path)!r} for appending: "
                f"{exc.strerror or exc}; check the path and its permissions"
            ) from exc

    def build_record(self, context: Any) -> Dict[str, Any]:
        """The core record of the call plus the transaction; before ``seq``/``prev``/``hash``.

        Values are made JSON-exact (``Decimal`` as its digits) when the record is written.
        """
        record = super().build_record(context)
        arguments = context.arguments
        red = self.finance_redactor

        def pick(names: Iterable[str]) -> Dict[str, Any]:
            return red.redact_mapping({n: arguments[n] for n in names if n in arguments})

        record["outcome"] = _outcome(context, record["outcome"])
        record["amounts"] = pick(self.amount_fields)
        record["parties"] = pick(self.party_fields)
        if self.currency_field and self.currency_field in arguments:
            record["currency"] = arguments[self.currency_field]
        if self.fields:
            record["fields"] = pick(self.fields)
        exc = context.exception
        if exc is not None:
            record["exception"] = {
                "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "message": red.scrub(str(exc), arguments),
            }
        flags = context.metadata.get(FLAGS_KEY)
        if flags:
            record["flags"] = list(flags)
        return record

    def write_record(self, record: Dict[str, Any]) -> Optional[Dict[str, Any]]:  # type: ignore[override]
        """Append ``record`` to the chain; returns it with ``seq``, ``prev`` and ``hash``.

        Like the core observer, an I/O failure never reaches the observed call, and leaves no
        partial record in the file (the chain stays verifiable): it is logged when an outage
        starts and when it ends (with the number of records lost), and counted in
        :attr:`write_errors`.
        """
        try:
            written = self.trail.append(record)
        except (OSError, AuditTrailError) as exc:
            self._report_error(exc)
            return None
        self._report_written()
        return written

    @property
    def path_str(self) -> str:
        return str(self.trail.path)

    def rotate(self) -> None:
        raise NotImplementedError(
            "finance.audit never rotates: a new file would start a new chain; archive the "
            "file and its verified head hash instead"
        )

    def close(self) -> None:
        self.trail.close()

    def __repr__(self) -> str:
        return (
            f"<FinanceAuditObserver path={self.path_str!r} written={self.records_written} "
            f"errors={self.write_errors}>"
        )


def _who_from(field: str) -> Any:
    def who(context: Any) -> Any:
        # The initiator of a transaction is usually an argument (an operator or customer id).
        return context.arguments.get(field)

    return who


def _outcome(context: Any, core: str) -> str:
    from .rules import TransactionBlockedError

    if (
        context.state is not ExecutionState.ERROR
        and not context.cancelled
        and not context.recovered
        and isinstance(context.exception, TransactionBlockedError)
    ):
        return "blocked"
    return core
