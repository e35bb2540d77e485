"""callpyback.toml.example stays valid with the real plugin registry, and documents every key."""

from __future__ import annotations

from pathlib import Path

from callpyback.config import load_config
from callpyback.config._models import SECTIONS, TOP_LEVEL_KEYS, PipelineModel, SettingsModel

EXAMPLE = Path(__file__).resolve().parent.parent / "callpyback.toml.example"


def test_example_loads_with_the_real_registry() -> None:
    """The example validates against the installed plugins (no registry= given)."""
    config = load_config(EXAMPLE, env={})
    names = [p.label for p in config.pipelines]
    assert names == ["payments", "payments-tests", "reports", "opt-out"]
    assert config.pipeline_for("shop.payments.card:pay").pipeline.name == "payments"
    assert config.pipeline_for("shop.payments:_helper") is None
    assert config.pipeline_for("shop.payments.tests.t:test").pipeline.name == "payments-tests"
    assert config.pipeline_for("shop.reports.daily:run").pipeline.name == "reports"


def test_example_pipelines_build_and_run() -> None:
    """Every pipeline of the example builds a decorator that handles real calls."""
    # the mock clock makes the retry back-off in "reports" instant
    config = load_config(EXAMPLE, env={}, settings={"time_source": "test_clock"})
    deco = config.wrapper_for("shop.payments", "charge")
    assert deco is not None

    @deco
    def charge(amount: int, rate: int) -> float:
        currency = "EUR"  # noqa: F841 - captured through `variables`
        return amount / rate

    assert charge(4, 2) == 2
    assert charge(4, 0) == 0  # ZeroDivisionError -> zero_on_bad_input
    reports = config.wrapper_for("shop.reports.weekly", "run")

    calls = []

    @reports
    def run() -> list:
        calls.append(1)
        raise TimeoutError

    assert run() == []
    assert len(calls) == 3  # retry_net: 3 attempts, then default_return
    assert len(reports.time_source.sleeps) == 2
    assert config.wrapper_for("shop.payments.tests", "t") is None  # enabled = false
    assert config.wrapper_for("shop.vendored.x", "f") is None  # empty pipeline


def test_example_mentions_every_key() -> None:
    """Each top-level key, setting and pipeline key appears in the example."""
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = [
        *TOP_LEVEL_KEYS,
        *SettingsModel.model_fields,
        *PipelineModel.model_fields,
        *(f"[{s}." for s in SECTIONS),
    ]
    missing = [k for k in keys if k not in text]
    assert missing == []


def test_toml_blocks_in_the_configuration_docs_are_valid() -> None:
    """Every ```toml block of docs/configuration.md validates with the real registry."""
    import re

    from callpyback.config import load_text

    page = EXAMPLE.parent / "docs" / "configuration.md"
    blocks = re.findall(r"^```toml\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)
    assert blocks
    for block in blocks:
        load_text(block, file="docs/configuration.md", env={})
