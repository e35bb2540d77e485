"""The plugin itself: what the ``callpyback`` entry point points at.

It registers three components, each with a pydantic options model that forbids unknown keys:
``finance.audit`` (an observer), ``finance.limits`` and ``finance.velocity`` (error handlers used
as pre-call guards).  Factories import their implementation only when a component is built.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from callpyback.hookspecs import hookimpl

from ._fields import DEFAULT_PARTY_FIELDS

#: The callpyback versions this plugin works with; callpyback refuses the plugin otherwise.
CALLPYBACK_REQUIRES = ">=3,<4"


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class AuditOptions(_Options):
    """Options of ``finance.audit``."""

    path: str = Field(description="The JSON-lines trail file (created if missing).")
    amount_fields: List[str] = Field(default_factory=lambda: ["amount"])
    currency_field: Optional[str] = "currency"
    party_fields: List[str] = Field(default_factory=lambda: list(DEFAULT_PARTY_FIELDS))
    fields: List[str] = Field(default_factory=list, description="Other arguments to record.")
    include_arguments: bool = False
    redact: List[str] = Field(
        default_factory=list, description="Argument names to redact, on top of the defaults."
    )
    redaction: Literal["mask", "hash", "remove"] = "mask"
    redaction_key: Optional[str] = None
    durability: Literal["fsync", "flush"] = "fsync"
    who_field: Optional[str] = Field(
        default=None, description="The argument naming who initiated the call (else the OS user)."
    )
    priority: int = 0


class LimitOptions(_Options):
    """Options of ``finance.limits``."""

    max_amount: Decimal = Field(gt=0)
    amount_field: str = "amount"
    currency_field: Optional[str] = "currency"
    per_currency: Dict[str, Decimal] = Field(default_factory=dict)
    mode: Literal["block", "flag"] = "block"


class VelocityOptions(_Options):
    """Options of ``finance.velocity``."""

    max_transactions: int = Field(ge=1)
    window: float = Field(gt=0, description="Seconds.")
    account_field: str = "account"
    mode: Literal["block", "flag"] = "block"
    shared: Optional[bool] = Field(
        default=None,
        description="Count in the shared [state] backend (None: as its patterns say).",
    )


def _audit(**options: Any) -> Any:
    from .audit import FinanceAuditObserver

    return FinanceAuditObserver(**options)


def _limits(**options: Any) -> Any:
    from .rules import LimitGuard

    return LimitGuard(**options)


def _velocity(**options: Any) -> Any:
    from .rules import VelocityGuard

    return VelocityGuard(**options)


@hookimpl
def callpyback_register_components(registry: Any) -> None:
    registry.observer(
        "finance.audit",
        _audit,
        options=AuditOptions,
        description="Hash-chained, append-only audit trail of transactions (JSON lines).",
    )
    registry.error_handler(
        "finance.limits",
        _limits,
        options=LimitOptions,
        description="Block or flag a transaction over an amount limit.",
    )
    registry.error_handler(
        "finance.velocity",
        _velocity,
        options=VelocityOptions,
        description="Block or flag too many transactions per account in a time window.",
    )
