"""The finance plugin as users meet it: installed, found through its entry point, by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from pydantic import ValidationError

from callpyback import plugins


def test_discovered_through_its_entry_point() -> None:
    """Plugin 'finance' from distribution callpyback-finance 1.0.0 registers three components."""
    found = {p.name: p for p in plugins.list_plugins()}["finance"]
    assert (found.distribution, found.version, found.status) == (
        "callpyback-finance",
        "1.0.0",
        "loaded",
    )
    assert found.entry_point == "finance = callpyback_finance.plugin"
    assert set(found.components) == {
        ("observer", "finance.audit"),
        ("error_handler", "finance.limits"),
        ("error_handler", "finance.velocity"),
    }
    spec = plugins.get_registry().get("observer", "finance.audit")
    assert spec.origin == "finance (distribution callpyback-finance)"


def test_installed_not_imported_from_the_checkout() -> None:
    """The tests exercise the installed distribution, not the source tree."""
    import callpyback_finance

    src = Path(__file__).resolve().parents[1] / "src"
    assert src not in Path(callpyback_finance.__file__).resolve().parents


def test_nothing_is_imported_before_discovery() -> None:
    """Discovery imports only the plugin module; the audit and rules modules load on first use."""
    code = (
        "import sys, callpyback.plugins as p\n"
        "assert 'callpyback_finance' not in sys.modules\n"
        "r = p.get_registry()\n"
        "print(('observer', 'finance.audit') in r, 'callpyback_finance.plugin' in sys.modules,\n"
        "      'callpyback_finance.audit' in sys.modules,\n"
        "      'callpyback.observers.audit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False", "False"]


@pytest.mark.parametrize("entry", ["finance", "callpyback-finance", "callpyback_finance"])
def test_can_be_denied(entry: str) -> None:
    plugins.configure(deny=[entry])
    assert ("observer", "finance.audit") not in plugins.get_registry()


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("finance.audit", {"path": "a.jsonl", "redcat": ["pin"]}, "redcat"),
        ("finance.audit", {}, "path"),
        ("finance.audit", {"path": "a.jsonl", "durability": "sometimes"}, "'fsync' or 'flush'"),
        ("finance.limits", {"max_amount": -5}, "greater than 0"),
        ("finance.limits", {"max_amount": 10, "mode": "warn"}, "'block' or 'flag'"),
        ("finance.velocity", {"max_transactions": 0, "window": 60}, "greater than or equal to 1"),
        ("finance.velocity", {"max_transactions": 3}, "window"),
    ],
)
def test_options_are_validated_by_the_plugins_models(
    create: Callable[..., Any], name: str, options: dict, message: str
) -> None:
    kind = "observer" if name == "finance.audit" else "error_handler"
    with pytest.raises(ValidationError, match=message):
        create(kind, name, **options)
