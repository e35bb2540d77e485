"""The config and the import hook together: a real file, a real package, real imports."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from callpyback import instrumented_by
from callpyback.config import load_config
from tests.config_helpers import RecordingObserver, make_registry, write

PACKAGE = {
    "__init__.py": "",
    "payments.py": (
        "def charge(amount):\n"
        "    return amount * 2\n"
        "\n"
        "def _helper():\n"
        "    return 'internal'\n"
        "\n"
        "class Cart:\n"
        "    def add(self, item):\n"
        "        return [item]\n"
    ),
    "reports.py": "def build():\n    raise TimeoutError('slow backend')\n",
}

CONFIG = """
[observers.seen]
type = "recording"
label = "seen"

[[pipelines]]
name = "payments"
match = ["cfghookpkg.payments"]
exclude = ["cfghookpkg.payments:_*"]
observers = ["seen"]

[[pipelines]]
name = "reports"
match = ["cfghookpkg.reports:build"]
observers = ["seen"]
default_return = "cached report"
exception_classes = ["TimeoutError"]
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cfghookpkg"
    root.mkdir()
    for name, text in PACKAGE.items():
        (root / name).write_text(text, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    from callpyback import autoinstrument

    autoinstrument.uninstall()
    for name in [m for m in sys.modules if m.startswith("cfghookpkg")]:
        del sys.modules[name]


def test_import_hook_applies_the_configured_pipelines(package: Path) -> None:
    """Functions are wrapped per the first matching pipeline; excluded ones stay plain."""
    from callpyback import autoinstrument

    config = load_config(write(package, CONFIG), registry=make_registry(), env={})
    assert config.may_match_module("cfghookpkg.payments")
    assert not config.may_match_module("cfghookpkg")
    autoinstrument.install(config)
    payments = importlib.import_module("cfghookpkg.payments")
    reports = importlib.import_module("cfghookpkg.reports")

    assert payments.charge(21) == 42
    assert payments.Cart().add("x") == ["x"]
    assert payments._helper() == "internal"
    assert instrumented_by(payments._helper) is None
    assert reports.build() == "cached report"

    seen = config.assembly.instance(config.components["observer"]["seen"])
    assert isinstance(seen, RecordingObserver)
    completed = [q for state, q in seen.events if state == "COMPLETED"]
    assert completed == ["charge", "Cart.add", "build"]
    # one decorator per pipeline, the named observer shared between them
    assert instrumented_by(payments.charge) is instrumented_by(payments.Cart.add)
    assert instrumented_by(reports.build) is not instrumented_by(payments.charge)
