"""The payments example runs with the installed finance plugin; tampering with its audit trail is
caught by the `callpyback-finance verify` console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "payments" / "payments.py"
DROPIN = EXAMPLE.parent / "dropin"


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    """Run the example once in a temporary directory; returns its audit trail."""
    path = tmp_path / "audit" / "transactions.jsonl"
    env = {**os.environ, "PAYMENTS_AUDIT_TRAIL": str(path)}
    run = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "LimitExceededError" in run.stdout and "VelocityExceededError" in run.stdout
    return path


def verify(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["callpyback-finance", "verify", str(path)], capture_output=True, text=True
    )


def test_example_writes_an_intact_trail(trail: Path) -> None:
    records = [json.loads(line) for line in trail.read_text(encoding="ascii").splitlines()]
    assert [r["outcome"] for r in records] == [
        "success",
        "success",
        "failure",
        "blocked",
        "success",
        "blocked",
    ]
    assert records[0]["fields"] == {"card_number": "************4242"}
    assert "4242424242424242" not in trail.read_text(encoding="ascii")
    result = verify(trail)
    assert result.returncode == 0 and "OK: 6 records, chain intact" in result.stdout


def test_tampering_is_caught_with_its_line(trail: Path) -> None:
    lines = trail.read_text(encoding="ascii").splitlines(keepends=True)
    assert '"amount":"75.50"' in lines[1]
    lines[1] = lines[1].replace('"amount":"75.50"', '"amount":"7.50"')
    trail.write_text("".join(lines), encoding="ascii")
    result = verify(trail)
    assert result.returncode == 1
    assert "BROKEN: line 2: record seq 2 does not match its hash: it was modified" in result.stderr


def test_a_deleted_record_is_caught(trail: Path) -> None:
    lines = trail.read_text(encoding="ascii").splitlines(keepends=True)
    del lines[3]  # hide the blocked 9000.00 transfer
    trail.write_text("".join(lines), encoding="ascii")
    result = verify(trail)
    assert result.returncode == 1
    assert "line 4: record seq 4 is missing (found seq 5)" in result.stderr


def test_drop_in_config_audits_a_module_without_decorators(tmp_path: Path) -> None:
    """`callpyback run app.py` applies dropin/callpyback.toml: transfer is audited, balance not."""
    shutil.copytree(DROPIN, tmp_path / "dropin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}
    env.pop("PAYMENTS_AUDIT_TRAIL", None)
    run = subprocess.run(
        ["callpyback", "run", "app.py"],
        cwd=tmp_path / "dropin",
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "LimitExceededError: finance.limits: amount 99999.00 EUR" in run.stdout
    trail = tmp_path / "dropin" / "audit" / "transactions.jsonl"
    records = [json.loads(line) for line in trail.read_text(encoding="ascii").splitlines()]
    assert [(r["what"], r["outcome"]) for r in records] == [
        ("bank.payments:transfer", "success"),
        ("bank.payments:transfer", "blocked"),
    ]
    assert verify(trail).returncode == 0
