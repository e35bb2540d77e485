"""Every exception class CallPyBack and its finance plugin define survives pickling.

An exception that cannot be unpickled breaks whatever carries it between processes: one blocked
transfer in a ``ProcessPoolExecutor`` worker turned the whole pool into ``BrokenProcessPool``.
The walk below finds the classes by importing every module, so a new exception class without an
example here fails the completeness test.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import pickle
import pkgutil
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

import callpyback


def _walk() -> Dict[str, type]:
    import callpyback_finance

    found: Dict[str, type] = {}
    for package in (callpyback, callpyback_finance):
        names = [package.__name__]
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
        for name in names:
            module = importlib.import_module(name)
            for value in vars(module).values():
                if (
                    inspect.isclass(value)
                    and issubclass(value, BaseException)
                    and value.__module__ == name
                ):
                    found[f"{name}.{value.__qualname__}"] = value
    return found


def _options_error() -> BaseException:
    """What the registry raises for bad component options (a ConfigError and pydantic's
    ValidationError at once)."""
    from callpyback.plugins import get_registry

    try:
        get_registry().create("observer", "timing", {"threshold": -1})
    except Exception as exc:
        return exc
    raise AssertionError("bad options were accepted")


def _state_unavailable() -> BaseException:
    from callpyback.state import StateUnavailableError

    return StateUnavailableError("redis://127.0.0.1:6390: timed out after 0.05s")


def _examples() -> Dict[str, Callable[[], BaseException]]:
    from callpyback_finance.chain import AuditTrailError
    from callpyback_finance.rules import (
        LimitExceededError,
        TransactionBlockedError,
        VelocityExceededError,
    )

    from callpyback import errors
    from callpyback._registry import DuplicateComponentError, UnknownComponentError
    from callpyback.autoinstrument._instrument import InstrumentationWarning
    from callpyback.autoinstrument._main import ProgramNotFound
    from callpyback.autoinstrument._selector import SelectorError
    from callpyback.config._assembly import ComponentBuildWarning
    from callpyback.config._errors import ConfigError, Problem
    from callpyback.config._exceptions import ExceptionNameError
    from callpyback.config._patterns import PatternError
    from callpyback.handlers._breaker import BreakerState, CircuitOpenError
    from callpyback.handlers._timeout import CallTimeoutError, _InnerTimeout
    from callpyback.observers.redaction import RedactedError
    from callpyback.report._deps import MissingDependencyError
    from callpyback.report._prometheus import MetricsPortError
    from callpyback.report._runtime import Terminated

    return {
        "callpyback.errors.CallPyBackError": lambda: errors.CallPyBackError("it broke"),
        "callpyback.config._assembly.ComponentBuildWarning": lambda: ComponentBuildWarning(
            "observer 'audit' (audit) could not be built; running without it"
        ),
        "callpyback.config._exceptions.ExceptionNameError": lambda: ExceptionNameError(
            "'ValueErorr' is not an exception; did you mean 'ValueError'?",
            "'ValueErorr' is not an exception",
            ["ValueError"],
            "a built-in exception such as 'ValueError'",
        ),
        "callpyback.config._models.ComponentOptionsError": _options_error,
        "callpyback.autoinstrument._selector.SelectorError": lambda: SelectorError(
            "selector PatternSelector('shop') raised SystemExit(2) for shop:checkout"
        ),
        "callpyback.observers.redaction.RedactedError": lambda: RedactedError(
            "card [REDACTED] declined", "PaymentError('card [REDACTED] declined')"
        ),
        "callpyback.errors.ConfigurationError": lambda: errors.ConfigurationError(
            "AuditObserver path must be a file path, got ''"
        ),
        "callpyback.errors.CallPyBackWarning": lambda: errors.CallPyBackWarning("careful"),
        "callpyback.errors.ObserverFailureWarning": lambda: errors.ObserverFailureWarning(
            "observer 'audit' raised OSError"
        ),
        "callpyback.errors.ObserverDisabledWarning": lambda: errors.ObserverDisabledWarning(
            "observer 'audit' was disabled after 5 failures"
        ),
        "callpyback._registry.UnknownComponentError": lambda: UnknownComponentError(
            "observer", "metrix", ["metrics", "timing"], ["callpyback", "finance"]
        ),
        "callpyback._registry.DuplicateComponentError": lambda: DuplicateComponentError(
            "observer 'audit' is registered by both 'a' and 'b'"
        ),
        "callpyback.autoinstrument._instrument.InstrumentationWarning": lambda: (
            InstrumentationWarning("could not instrument shop.payments: boom")
        ),
        "callpyback.autoinstrument._main.ProgramNotFound": lambda: ProgramNotFound(
            "No module named 'nope'"
        ),
        "callpyback.config._errors.ConfigError": lambda: ConfigError(
            [
                Problem(
                    "unknown key", ("settings", "enabld"), "cb.toml", 3, suggestions=["enabled"]
                ),
                Problem("must be > 0", ("settings", "max_observer_failures"), "cb.toml", 4, -1),
            ],
            "cb.toml",
        ),
        "callpyback.config._patterns.PatternError": lambda: PatternError(
            "unclosed '[' in the module part of 'shop.[a'"
        ),
        "callpyback.handlers._breaker.CircuitOpenError": lambda: CircuitOpenError(
            "payments", BreakerState.OPEN, 12.5
        ),
        "callpyback.state.StateUnavailableError": lambda: _state_unavailable(),
        "callpyback.handlers._timeout.CallTimeoutError": lambda: CallTimeoutError(
            "shop.payments:charge", 2.0, False
        ),
        "callpyback.handlers._timeout._InnerTimeout": lambda: _InnerTimeout(
            TimeoutError(errno.ETIMEDOUT, "the function's own timeout")
        ),
        "callpyback.report._deps.MissingDependencyError": lambda: MissingDependencyError(
            "callpyback top needs rich, which is not installed: pip install 'rich>=13'"
        ),
        "callpyback.report._prometheus.MetricsPortError": lambda: MetricsPortError(
            "cannot serve /metrics on 127.0.0.1:9464: the address is already in use"
        ),
        "callpyback.report._runtime.Terminated": lambda: Terminated(),
        "callpyback_finance.chain.AuditTrailError": lambda: AuditTrailError(
            "the last record of 'trail.jsonl' is not an audit record"
        ),
        "callpyback_finance.rules.TransactionBlockedError": lambda: TransactionBlockedError(
            "finance.rules: refused (shop:pay)", rule="finance.rules", target="shop:pay"
        ),
        "callpyback_finance.rules.LimitExceededError": lambda: LimitExceededError(
            "finance.limits: amount 25000 EUR is over the limit 10000 EUR (shop:transfer)",
            rule="finance.limits",
            target="shop:transfer",
            amount=Decimal("25000"),
            limit=Decimal("10000"),
            currency="EUR",
        ),
        "callpyback_finance.rules.VelocityExceededError": lambda: VelocityExceededError(
            "finance.velocity: account 'ACC-1' made 4 transactions within 60s (shop:pay)",
            rule="finance.velocity",
            target="shop:pay",
            account="ACC-1",
            window=60.0,
            max_transactions=3,
        ),
    }


def test_every_exception_class_has_an_example() -> None:
    """The walk finds each class defined in callpyback and callpyback_finance; none is missed."""
    assert sorted(_walk()) == sorted(_examples())


def _state(exc: BaseException) -> Dict[str, Any]:
    return {k: v for k, v in vars(exc).items() if not k.startswith("__")}


@pytest.mark.parametrize("name", sorted(_examples()))
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_round_trips_through_pickle(name: str, protocol: int) -> None:
    """Type, args, message and attributes are the same after pickle.dumps/loads."""
    original = _examples()[name]()
    if hasattr(original, "add_note"):  # Python 3.11+: notes travel in __dict__ too
        original.add_note("noted on the way")
    copy = pickle.loads(pickle.dumps(original, protocol=protocol))
    assert type(copy) is type(original)
    assert copy.args == original.args
    assert str(copy) == str(original)
    assert repr(_state(copy)) == repr(_state(original))
    assert getattr(copy, "__notes__", None) == getattr(original, "__notes__", None)


BANK = """
from decimal import Decimal
import callpyback
from callpyback_finance import LimitGuard


@callpyback.CallPyBack(error_handlers=[LimitGuard(Decimal("10000"))])
def transfer(account, amount):
    return f"sent {amount} from {account}"
"""

POOL = """
import multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
sys.path.insert(0, sys.argv[1])
import bank

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            pool.submit(bank.transfer, "ACC-1", Decimal("25000")).result()
        except Exception as exc:
            print(type(exc).__name__, exc.rule, exc.details["amount"])
        print(pool.submit(bank.transfer, "ACC-1", Decimal("10")).result())
"""


def test_a_blocked_transfer_does_not_break_a_process_pool(tmp_path: Path) -> None:
    """A LimitExceededError raised in a worker reaches the caller as itself; the pool goes on."""
    (tmp_path / "bank.py").write_text(BANK, encoding="utf-8")
    script = tmp_path / "pool.py"
    script.write_text(textwrap.dedent(POOL), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "LimitExceededError finance.limits 25000",
        "sent 10 from ACC-1",
    ]
