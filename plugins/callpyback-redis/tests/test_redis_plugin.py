"""The plugin as users meet it: installed, found through its entry point, owning ``[state]``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from redis_support import RedisServer

import callpyback
import callpyback.autoinstrument as auto
from callpyback import ConfigError, load_config, plugins, state
from callpyback.handlers import get_breaker


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callpyback.toml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def test_discovered_through_its_entry_point() -> None:
    """Plugin 'redis' of distribution callpyback-redis 1.0.0 owns the [state] table."""
    found = {p.name: p for p in plugins.list_plugins()}["redis"]
    assert (found.distribution, found.version, found.status) == (
        "callpyback-redis",
        "1.0.0",
        "loaded",
    )
    assert found.entry_point == "redis = callpyback_redis.plugin"
    assert set(found.components) == {("table", "state")}


def test_installed_not_imported_from_the_checkout() -> None:
    """The tests exercise the installed distribution, not the source tree."""
    import callpyback_redis

    src = Path(__file__).resolve().parents[1] / "src"
    assert src not in Path(callpyback_redis.__file__).resolve().parents


def test_discovery_does_not_import_the_redis_client() -> None:
    """Discovering plugins imports the plugin module only: the redis client (and what it pulls
    in, such as OpenTelemetry) waits until a backend is built."""
    import subprocess

    code = (
        "import sys, callpyback.plugins as p\n"
        "r = p.get_registry()\n"
        "print(('table', 'state') in r, 'redis' in sys.modules)\n"
        "from callpyback_redis import RedisBackend\n"
        "print('redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "True"]


@pytest.mark.parametrize(
    ("body", "where", "expected"),
    [
        ('backend = "redis"\ntimeout = 5', "state.timeout", "less than or equal to 1"),
        ('backend = "redis"', "state.url", 'backend = "redis" needs a url'),
        ('backend = "redis"\nurl = "http://cache:6379"', "state.url", "redis://"),
        ('backend = "memcached"', "state.backend", "'memory' or 'redis'"),
        ('backend = "redis"\nurl = "redis://x"\non_outage = "open"', "state.on_outage", "reject"),
        ('namespace = "my service"', "state.namespace", "pattern"),
    ],
)
def test_bad_state_table_names_file_line_key_and_value(
    tmp_path: Path, body: str, where: str, expected: str
) -> None:
    path = _write(tmp_path, "version = 1\n[state]\n" + body + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "callpyback.toml:" in text and where in text and expected in text, text


def test_a_misspelt_key_is_named_at_its_line(tmp_path: Path) -> None:
    """(The loader does not yet suggest keys of a plugin's table: see docs/shared-state.md.)"""
    path = _write(tmp_path, 'version = 1\n[state]\nnamspace = "shop"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "callpyback.toml:3: state.namspace: unknown key 'namspace'" in str(info.value)


CONFIG = """
    version = 1

    [state]
    backend = "redis"
    url = "${REDIS_URL}"
    namespace = "${NAMESPACE}"
    breakers = ["payments*"]
    timeout = 0.5

    [error_handlers.payments]
    type = "circuit_breaker"
    name = "payments-gateway"
    failure_threshold = 2

    [error_handlers.cache]
    type = "circuit_breaker"
    name = "payments-cache"
    shared = false

    [[pipelines]]
    name = "shop"
    match = ["cpb_redis_shop"]
    error_handlers = ["payments", "cache"]
"""


def test_install_selects_redis_and_uninstall_goes_back(
    tmp_path: Path, shared_server: RedisServer, namespace: str, monkeypatch: Any
) -> None:
    """callpyback_install reads [state]: breakers the config built are bound to Redis (as its
    patterns and shared= say), and they count there; uninstall returns to in-process state
    and closes the backend."""
    monkeypatch.setenv("REDIS_URL", shared_server.url)
    monkeypatch.setenv("NAMESPACE", namespace)
    (tmp_path / "cpb_redis_shop.py").write_text(
        "def pay():\n    raise ConnectionError('gateway down')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(_write(tmp_path, CONFIG))
    auto.install(config)
    try:
        backend = state.current()
        assert type(backend).__name__ == "RedisBackend" and backend.namespace == namespace
        assert get_breaker("payments-gateway").backend is backend
        assert get_breaker("payments-cache").backend is state.MEMORY  # shared = false
        import cpb_redis_shop

        assert callpyback.instrumented_by(cpb_redis_shop.pay) is not None
        with pytest.raises(ConnectionError):
            cpb_redis_shop.pay()
        key = f"callpyback:{namespace}:breaker:payments-gateway"
        assert shared_server.client().hget(key, "f") == b"1"
    finally:
        auto.uninstall()
        sys.modules.pop("cpb_redis_shop", None)
    assert state.current() is state.MEMORY
    assert backend._closed and get_breaker("payments-gateway").backend is state.MEMORY


def test_a_config_without_state_leaves_state_alone(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, 'version = 1\n[[pipelines]]\nmatch = ["nothing"]\n'))
    auto.install(config)
    try:
        assert state.current() is state.MEMORY
    finally:
        auto.uninstall()


def test_the_toml_block_of_the_docs_is_valid() -> None:
    """docs/shared-state.md's config validates with the real registry (this plugin's table)."""
    import re

    from callpyback.config import load_text

    page = Path(__file__).resolve().parents[3] / "docs" / "shared-state.md"
    (block,) = re.findall(r"^```toml\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)
    config = load_text(block, file="docs/shared-state.md", env={"REDIS_URL": "redis://h:6379/0"})
    table = config.tables["state"]
    assert (table.backend, table.namespace, table.timeout) == ("redis", "myservice", 0.05)
