"""The plugin as users meet it: installed, found through its entry point, configured by the
``[db]`` table, attached by the import hook with no change to the program."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import pytest

import callpyback
import callpyback.autoinstrument as auto
from callpyback import ConfigError, plugins

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "db"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callpyback.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def clean_env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}


def test_discovered_through_its_entry_point() -> None:
    found = {p.name: p for p in plugins.list_plugins()}["db"]
    assert (found.distribution, found.version, found.status) == ("callpyback-db", "1.0.0", "loaded")
    assert found.entry_point == "db = callpyback_db.plugin"
    assert ("table", "db") in set(found.components)


def test_installed_not_imported_from_the_checkout() -> None:
    """The tests exercise the installed distribution (CI installs it like any plugin)."""
    import callpyback_db

    src = Path(__file__).resolve().parents[1] / "src"
    assert src not in Path(callpyback_db.__file__).resolve().parents


def test_discovery_imports_no_driver_and_no_integration_code() -> None:
    code = (
        "import sys, callpyback.plugins as p\n"
        "r = p.get_registry()\n"
        "print(('table', 'db') in r, 'callpyback_db.plugin' in sys.modules,\n"
        "      'callpyback_db._sqlite' in sys.modules, 'sqlite3' in sys.modules,\n"
        "      'psycopg' in sys.modules)\n"
    )
    # A clean interpreter: not one measured by coverage (its tracer imports modules too).
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["True", "True", "False", "False", "False"]


def test_the_table_is_validated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version = 1
        [db]
        drivers = ["sqlite3", "not a module"]
        raw_txt = true
    """,
    )
    with pytest.raises(ConfigError) as info:
        callpyback.load_config(path)
    text = str(info.value)
    assert "callpyback.toml:4" in text and "db.drivers" in text and "'not a module'" in text
    assert "callpyback.toml:5" in text and "unknown key 'raw_txt'" in text


def test_drivers_are_required(tmp_path: Path) -> None:
    path = write(tmp_path, "version = 1\n[db]\nraw_text = true\n")
    with pytest.raises(ConfigError, match=r"db\.drivers"):
        callpyback.load_config(path)


def test_install_attaches_and_uninstall_restores(tmp_path: Path) -> None:
    original = sqlite3.connect
    path = write(
        tmp_path,
        """
        version = 1
        [db]
        drivers = ["sqlite3"]

        [[pipelines]]
        match = ["db"]
        observers = ["metrics"]
    """,
    )
    auto.install(str(path))
    try:
        assert sqlite3.connect is not original
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (a)")
        conn.execute("INSERT INTO t VALUES (1)")
        config = callpyback.load_config(path)  # the same pipeline, as the plugin sees it
        assert config.pipeline_for("db:INSERT t") is not None
        from callpyback_db.plugin import installed

        (instrumentation,) = installed()
        metrics = instrumentation.tracer.select("db:INSERT t").observers[0]
        assert metrics.get_metrics()["db:INSERT t"]["calls"] == 1
    finally:
        auto.uninstall()
    assert sqlite3.connect is original


def test_without_a_db_pipeline_nothing_is_patched(tmp_path: Path) -> None:
    original = sqlite3.connect
    path = write(
        tmp_path,
        """
        version = 1
        [db]
        drivers = ["sqlite3"]

        [[pipelines]]
        match = ["shop"]
        observers = ["metrics"]
    """,
    )
    auto.install(str(path))
    try:
        assert sqlite3.connect is original
    finally:
        auto.uninstall()


def test_a_driver_that_cannot_be_instrumented_never_stops_the_program(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A module without connect(): one warning, and the import and the program go on."""
    path = write(
        tmp_path,
        """
        version = 1
        [db]
        drivers = ["colorsys"]

        [[pipelines]]
        match = ["db"]
        observers = ["metrics"]
    """,
    )
    sys.modules.pop("colorsys", None)
    with caplog.at_level(logging.WARNING):
        auto.install(str(path))
        try:
            import colorsys

            assert colorsys.rgb_to_hsv(1, 0, 0)[0] == 0
        finally:
            auto.uninstall()
    assert "has no connect() function" in caplog.text


@pytest.fixture
def order_book(tmp_path: Path) -> Path:
    """Run examples/db under `callpyback run`, in a copy; returns the folder."""
    folder = tmp_path / "db"
    shutil.copytree(EXAMPLE, folder)
    run = subprocess.run(
        ["callpyback", "run", "app.py"],
        cwd=folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "3 paid orders, 80.00 in all" in run.stdout
    return folder


def test_every_write_to_orders_is_in_the_tamper_evident_trail(order_book: Path) -> None:
    trail = order_book / "audit" / "orders.jsonl"
    records = [json.loads(line) for line in trail.read_text(encoding="ascii").splitlines()]
    # 6 orders placed, 1 duplicate refused, 3 paid, 1 cancelled, 1 batch of 2 updates
    assert [r["what"] for r in records] == (
        ["db:INSERT orders"] * 7
        + ["db:UPDATE orders"] * 3
        + ["db:DELETE orders"]
        + ["db:UPDATE orders"]
    )
    assert [r["outcome"] for r in records].count("failure") == 1
    refused = next(r for r in records if r["outcome"] == "failure")
    assert refused["exception"]["type"] == "sqlite3.IntegrityError"
    delete = records[10]["fields"]["statement"]
    assert delete["text"] == "DELETE FROM orders WHERE id = ?" and delete["rows"] == 1
    assert records[11]["fields"]["statement"]["batch_size"] == 2
    text = trail.read_text(encoding="ascii")
    assert "4111111111111111" not in text and "events" not in text  # values, other tables
    ok = subprocess.run(
        ["callpyback-finance", "verify", str(trail)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "OK: 12 records, chain intact" in ok.stdout


def test_an_edited_trail_is_caught(order_book: Path) -> None:
    trail = order_book / "audit" / "orders.jsonl"
    lines = trail.read_text(encoding="ascii").splitlines(keepends=True)
    del lines[10]  # hide the DELETE
    trail.write_text("".join(lines), encoding="ascii")
    bad = subprocess.run(
        ["callpyback-finance", "verify", str(trail)], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "record seq 11 is missing" in bad.stderr


def test_the_example_runs_bare_without_callpyback(tmp_path: Path) -> None:
    """The same program under plain python: same output, no trail."""
    folder = tmp_path / "db"
    shutil.copytree(EXAMPLE, folder)
    run = subprocess.run(
        [sys.executable, "app.py"], cwd=folder, env=clean_env(), capture_output=True, text=True
    )
    assert run.returncode == 0 and "3 paid orders, 80.00 in all" in run.stdout
    assert not (folder / "audit").exists()
