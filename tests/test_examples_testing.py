"""examples/testing: a project whose tests use the kit with no setup of their own (its
pytest.ini names its callpyback.toml), run as its users run it: ``pytest`` in its directory,
in a child process that loads the plugin through the installed ``pytest11`` entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "testing"
TESTS = [
    "test_retry_backs_off_on_the_mock_clock",
    "test_a_bad_amount_is_not_retried",
    "test_the_audit_record",
    "test_a_plugin_rule_through_toml",
]


def pytest_in_example(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error",
         "--strict-markers", "-v", *args],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_example_suite_passes_in_order_and_in_reverse() -> None:
    """Each test leaves nothing behind for the next (gateway failures aside, which the example
    sets itself): run forwards and backwards, every test passes."""
    ids = [f"tests/test_payments.py::{name}" for name in TESTS]
    for order in (ids, ids[::-1]):
        proc = pytest_in_example(*order)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        passed = [line.split("::")[1].split()[0] for line in proc.stdout.splitlines()
                  if " PASSED" in line]  # fmt: skip
        assert passed == [i.split("::")[1] for i in order]


def test_the_example_fails_when_the_retry_config_is_gone(tmp_path: Path) -> None:
    """The suite really depends on its callpyback.toml: without the retry handler the gateway's
    first failure is the call's failure and the retry test fails, saying why."""
    toml = (EXAMPLE / "callpyback.toml").read_text(encoding="utf-8")
    plain = toml.replace('error_handlers = ["retry_gateway"]\n', "")
    assert plain != toml
    config = tmp_path / "callpyback.toml"
    config.write_text(plain, encoding="utf-8")
    proc = pytest_in_example(
        "--callpyback-config", str(config), "tests/test_payments.py::" + TESTS[0]
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ConnectionError: gateway unreachable" in proc.stdout
    assert "Captured callpyback calls" in proc.stdout


def test_the_pytest_examples_in_docs_are_copies_of_the_example_suite() -> None:
    """docs/testing.md shows pytest tests as excerpts of the example suite (the docs' snippet
    runner does not run them: they need the example project): each is, verbatim, in the suite
    run above."""
    docs = (EXAMPLE.parents[1] / "docs" / "testing.md").read_text(encoding="utf-8")
    suite = (EXAMPLE / "tests" / "test_payments.py").read_text(encoding="utf-8")
    blocks = re.findall(
        r"^<!-- excerpt: examples/testing/tests/test_payments.py -->\n```python\n(.*?)^```",
        docs,
        re.M | re.S,
    )
    assert len(blocks) == 2
    for block in blocks:
        assert block in suite, block
