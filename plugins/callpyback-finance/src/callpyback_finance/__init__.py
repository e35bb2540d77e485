"""callpyback-finance: a tamper-evident audit trail and transaction rules for CallPyBack.

Use the components by name in ``callpyback.toml`` (``finance.audit``, ``finance.limits``,
``finance.velocity``) once the package is installed, or build them in code from here.
"""

from __future__ import annotations

from .audit import FinanceAuditObserver, FinanceRedactor
from .chain import GENESIS, AuditTrail, AuditTrailError, VerifyResult, verify_file
from .rules import (
    LimitExceededError,
    LimitGuard,
    TransactionBlockedError,
    VelocityExceededError,
    VelocityGuard,
)

__version__ = "1.0.0"

__all__ = [
    "GENESIS",
    "AuditTrail",
    "AuditTrailError",
    "FinanceAuditObserver",
    "FinanceRedactor",
    "LimitExceededError",
    "LimitGuard",
    "TransactionBlockedError",
    "VelocityExceededError",
    "VelocityGuard",
    "VerifyResult",
    "__version__",
    "verify_file",
]
