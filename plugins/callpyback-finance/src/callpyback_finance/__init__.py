"""callpyback-finance: a tamper-evident audit trail and transaction rules for CallPyBack.

Use the components by name in ``callpyback.toml`` (``finance.audit``, ``finance.limits``,
``finance.velocity``) once the package is installed, or build them in code from here.  Names
are imported on first use, so discovering the plugin imports only its ``plugin`` module.
"""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0"

_LAZY = {
    "FinanceAuditObserver": "audit",
    "FinanceRedactor": "audit",
    "GENESIS": "chain",
    "AuditTrail": "chain",
    "AuditTrailError": "chain",
    "VerifyResult": "chain",
    "verify_file": "chain",
    "LimitExceededError": "rules",
    "LimitGuard": "rules",
    "TransactionBlockedError": "rules",
    "VelocityExceededError": "rules",
    "VelocityGuard": "rules",
}

__all__ = sorted(["__version__", *_LAZY])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
