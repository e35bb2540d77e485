"""``finance.limits`` and ``finance.velocity``: transaction rules that block or flag.

Observers cannot stop a call, so the rules are *error handlers* used for their
``before_attempt(context)`` hook, which runs before the function and may raise:

* ``mode="block"`` raises :class:`LimitExceededError` / :class:`VelocityExceededError` (both
  :class:`TransactionBlockedError`) before the function runs.  The rule's ``handle`` re-raises
  its own exception, so when the rule is first in the chain no later handler can retry it or
  recover it with a default value.
* ``mode="flag"`` lets the transaction through, appends a message to
  ``context.metadata["finance.flags"]`` (which ``finance.audit`` records) and logs a warning on
  ``callpyback.finance``.

Only the first attempt of a call is checked: a retry is the same transaction.

``finance.velocity`` counts in a :func:`callpyback.state.window`: in the process by default, or
in the shared backend the ``[state]`` table selects (Redis), so that a per-account limit holds
across every process and machine.
"""

from __future__ import annotations

import functools
import logging
import weakref
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Mapping, Optional, Tuple

from callpyback import state
from callpyback.errors import CallPyBackError
from callpyback.handlers import Raise

from ._fields import FLAGS_KEY

__all__ = [
    "LimitExceededError",
    "LimitGuard",
    "TransactionBlockedError",
    "VelocityExceededError",
    "VelocityGuard",
]

log = logging.getLogger("callpyback.finance")
MODES = ("block", "flag")


class TransactionBlockedError(CallPyBackError):
    """A rule refused a transaction before it ran.  ``rule``, ``target`` and details attached."""

    def __init__(self, message: str, *, rule: str, target: str, **details: Any) -> None:
        super().__init__(message)
        self.rule = rule
        self.target = target
        self.details = details

    def __reduce__(self) -> Any:
        # The keyword-only arguments are not in ``args``: without this, a refusal raised in a
        # process pool's worker could not be unpickled, and it broke the pool.
        rebuild = functools.partial(type(self), rule=self.rule, target=self.target, **self.details)
        return (rebuild, self.args, self.__dict__)


class LimitExceededError(TransactionBlockedError):
    """The amount is over the limit (or could not be read, which is treated the same)."""


class VelocityExceededError(TransactionBlockedError):
    """The account made too many transactions in the window."""


def _amount(value: Any) -> Optional[Decimal]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


_UNSET: Any = object()


def _locate(info: Any, name: str) -> Optional[Tuple[Optional[int], Any]]:
    """(position or None, default) of parameter ``name``; None if it must be bound instead."""
    sig = info.signature
    if sig is None:
        return None
    for index, param in enumerate(sig.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            return None  # the name may arrive through *args/**kwargs: bind to be sure
        if param.name == name:
            default = None if param.default is param.empty else param.default
            positional = param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
            return (index if positional else None), default
    return (None, None)  # no such parameter


class _Rule:
    error: type = TransactionBlockedError

    def __init__(self, mode: str, name: str) -> None:
        if mode not in MODES:
            raise ValueError(f"{name}: mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.name = name
        # FunctionInfo -> {argument name: location}: binding every call's arguments through
        # inspect costs microseconds; reading args[i] does not.
        self._where: weakref.WeakKeyDictionary[Any, Dict[str, Any]] = weakref.WeakKeyDictionary()

    def _argument(self, context: Any, name: str) -> Any:
        kwargs = context.kwargs
        if name in kwargs:
            return kwargs[name]
        info = context.function_info
        places = self._where.get(info)
        if places is None:
            places = self._where[info] = {}
        where = places.get(name, _UNSET)
        if where is _UNSET:
            where = places[name] = _locate(info, name)
        if where is None:
            return context.arguments.get(name)
        position, default = where
        args = context.args
        if position is not None and position < len(args):
            return args[position]
        return default

    def handle(self, exception: BaseException, context: Any) -> Optional[Raise]:
        # Our own refusal is final: nothing after us in the chain may retry or recover it.
        if isinstance(exception, self.error) and getattr(exception, "rule", None) == self.name:
            return Raise(exception)
        return None

    def _violation(self, context: Any, message: str, **details: Any) -> None:
        target = context.function_info.target
        if self.mode == "block":
            raise self.error(
                f"{self.name}: {message} ({target})", rule=self.name, target=target, **details
            )
        context.metadata.setdefault(FLAGS_KEY, []).append(f"{self.name}: {message}")
        log.warning("%s flagged %s: %s", self.name, target, message)


class LimitGuard(_Rule):
    """Blocks or flags a transaction whose amount is over ``max_amount``.

    ``per_currency`` overrides the limit for the currency named by the ``currency_field``
    argument.  An amount that is missing or not a number is treated as over the limit: a limit
    that cannot be checked must not pass silently.
    """

    error = LimitExceededError

    def __init__(
        self,
        max_amount: Any,
        *,
        amount_field: str = "amount",
        currency_field: Optional[str] = "currency",
        per_currency: Optional[Mapping[str, Any]] = None,
        mode: str = "block",
        name: str = "finance.limits",
    ) -> None:
        super().__init__(mode, name)
        limit = _amount(max_amount)
        if limit is None or limit <= 0:
            raise ValueError(f"{name}: max_amount must be a positive number, got {max_amount!r}")
        self.max_amount = limit
        self.amount_field = amount_field
        self.currency_field = currency_field
        self.per_currency: Dict[str, Decimal] = {}
        for currency, value in (per_currency or {}).items():
            parsed = _amount(value)
            if parsed is None or parsed <= 0:
                raise ValueError(
                    f"{name}: per_currency[{currency!r}] must be a positive number, got {value!r}"
                )
            self.per_currency[currency.upper()] = parsed

    def before_attempt(self, context: Any) -> None:
        if context.attempt > 1:
            return
        raw = self._argument(context, self.amount_field)
        amount = _amount(raw)
        if amount is None:
            self._violation(
                context,
                f"cannot check the limit: argument {self.amount_field!r} is {raw!r}",
                amount=raw,
                limit=None,
            )
            return
        limit = self.max_amount
        currency = self._argument(context, self.currency_field) if self.currency_field else None
        if isinstance(currency, str) and currency.upper() in self.per_currency:
            limit = self.per_currency[currency.upper()]
        if amount > limit:
            unit = f" {currency}" if isinstance(currency, str) else ""
            self._violation(
                context,
                f"amount {amount}{unit} is over the limit {limit}{unit}",
                amount=amount,
                limit=limit,
                currency=currency,
            )

    def __repr__(self) -> str:
        return f"LimitGuard(max_amount={self.max_amount}, mode={self.mode!r})"


class VelocityGuard(_Rule):
    """Blocks or flags an account's transaction beyond ``max_transactions`` per ``window`` seconds.

    The window slides over the time source's monotonic clock (in the process) or the store's
    clock (shared: see :mod:`callpyback.state`; ``shared`` None follows the ``[state]`` table,
    False keeps this rule's window in the process).  Admitted transactions count (blocked ones
    do not, so a blocked account regains its allowance as the window moves).  While a shared
    store is unreachable, its outage policy decides: a per-process window, a block, or a pass.
    """

    error = VelocityExceededError

    def __init__(
        self,
        max_transactions: int,
        window: float,
        *,
        account_field: str = "account",
        mode: str = "block",
        name: str = "finance.velocity",
        max_accounts: int = 100_000,
        shared: Optional[bool] = None,
    ) -> None:
        super().__init__(mode, name)
        if not isinstance(max_transactions, int) or max_transactions < 1:
            raise ValueError(
                f"{name}: max_transactions must be a positive int, got {max_transactions!r}"
            )
        if not isinstance(window, (int, float)) or window <= 0:
            raise ValueError(f"{name}: window must be a positive number of seconds, got {window!r}")
        self.max_transactions = max_transactions
        self.window = float(window)
        self.account_field = account_field
        self.max_accounts = max_accounts
        self.counter = state.window(
            name, max_transactions, self.window, shared=shared, max_keys=max_accounts
        )

    @property
    def _lock(self) -> Any:
        # The in-process window's lock (the fork tests hold it across fork()).
        return getattr(self.counter.impl, "lock", None)

    def before_attempt(self, context: Any) -> None:
        if context.attempt > 1:
            return
        account = self._argument(context, self.account_field)
        if account is None:
            self._violation(
                context,
                f"cannot check velocity: argument {self.account_field!r} is missing",
                account=None,
            )
            return
        hit = self.counter.hit(account, context.time_source.monotonic(), self.mode == "flag")
        if not hit.over:
            return
        if hit.source == "unchecked":
            self._violation(
                context,
                f"cannot check velocity for account {account!r}: the shared state store is "
                "unreachable and its outage policy is 'reject'",
                account=account,
                window=self.window,
                max_transactions=self.max_transactions,
            )
            return
        seen = hit.events if self.mode == "flag" else hit.events + 1
        self._violation(
            context,
            f"account {account!r} made {seen} "
            f"transactions within {self.window:g}s (at most {self.max_transactions} allowed)",
            account=account,
            window=self.window,
            max_transactions=self.max_transactions,
        )

    def __repr__(self) -> str:
        return (
            f"VelocityGuard(max_transactions={self.max_transactions}, window={self.window:g}, "
            f"mode={self.mode!r})"
        )
