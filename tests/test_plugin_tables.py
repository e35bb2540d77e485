"""Plugin-owned top-level tables, the install/uninstall hooks and ``when_imported``."""

from __future__ import annotations

import sys
import textwrap
import types
import warnings
from pathlib import Path
from typing import Any, List

import pytest
from pydantic import BaseModel, ConfigDict, Field

import callpyback
import callpyback.autoinstrument as auto
from callpyback import ConfigError, hookimpl, load_config
from callpyback._registry import ComponentSpec
from tests.config_helpers import make_registry, write


class RoutesTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frameworks: List[str] = Field(default_factory=lambda: ["auto"])
    slow_after: float = Field(1.0, gt=0)


def registry_with_table() -> Any:
    registry = make_registry()
    registry.add(ComponentSpec("table", "web", RoutesTable, RoutesTable, plugin="webkit"))
    return registry


def test_a_plugin_table_is_validated_by_its_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version = 1
        [web]
        frameworks = ["flask"]
        slow_after = 0.5
    """,
    )
    config = load_config(path, registry=registry_with_table())
    assert config.tables["web"] == RoutesTable(frameworks=["flask"], slow_after=0.5)


def test_a_bad_value_in_a_plugin_table_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version = 1
        [web]
        slow_after = -1
    """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry_with_table())
    text = str(info.value)
    assert "callpyback.toml:3" in text and "web.slow_after" in text and "-1" in text


def test_an_unknown_table_is_refused_with_a_suggestion_among_plugin_tables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version = 1
        [webb]
        frameworks = ["flask"]
    """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry_with_table())
    assert "unknown top-level key 'webb'" in str(info.value)
    assert "did you mean 'web'" in str(info.value).lower()


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: str
    pipeline: str = "default"


class NestedTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slow_after: float = 1.0
    routes: List[Route] = Field(default_factory=list)


def test_an_unknown_key_in_a_plugin_table_gets_the_allowed_keys_and_a_suggestion(
    tmp_path: Path,
) -> None:
    registry = make_registry()
    registry.add(ComponentSpec("table", "web", NestedTable, NestedTable, plugin="webkit"))
    path = write(
        tmp_path,
        """
        version = 1
        [web]
        slow_afte = 2.0

        [[web.routes]]
        pattern = "/a"

        [[web.routes]]
        patern = "/b"
    """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    text = str(info.value)
    assert "unknown key 'slow_afte' in [web]" in text
    assert "did you mean 'slow_after'" in text.lower()
    assert "callpyback.toml:3" in text
    # In an item of an array of tables: that item's model, its line, its index in the path.
    assert "unknown key 'patern' in [web.routes]" in text
    assert "did you mean 'pattern'" in text.lower()
    assert "web.routes[1].patern" in text or "web.routes.1.patern" in text
    assert "callpyback.toml:9" in text


def test_the_installed_web_plugin_table_suggests_its_keys(tmp_path: Path) -> None:
    # The real callpyback-web distribution, discovered through its entry point.
    path = write(tmp_path, "version = 1\n[web]\nframework = ['flask']\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "unknown key 'framework' in [web]" in str(info.value)
    assert "did you mean 'frameworks'" in str(info.value).lower()


class StoreTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^redis://")
    password: int = 0


def test_a_bad_value_never_shows_a_password(tmp_path: Path) -> None:
    registry = make_registry()
    registry.add(ComponentSpec("table", "store", StoreTable, StoreTable, plugin="kv"))
    path = write(
        tmp_path,
        """
        version = 1
        [store]
        url = "rediss://admin:hunter2@cache.internal:6380/0"
        password = "hunter2"
    """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    text = str(info.value)
    assert "hunter2" not in text
    assert "rediss://admin:***@cache.internal:6380/0" in text  # the rest stays, to locate it
    assert "store.password" in text and "'***'" in text
    assert "hunter2" not in repr([p.as_dict() for p in info.value.problems])


def test_without_the_plugin_the_table_is_unknown(tmp_path: Path) -> None:
    path = write(tmp_path, "version = 1\n[web]\nframeworks = []\n")
    with pytest.raises(ConfigError, match="unknown top-level key 'web'"):
        load_config(path, registry=make_registry())


def test_install_and_uninstall_hooks_see_the_config(tmp_path: Path, monkeypatch: Any) -> None:
    """callpyback_install(config) runs once the hook is installed, callpyback_uninstall after
    it is removed; a plugin failing there is logged and the program goes on."""
    calls: List[Any] = []

    class Plugin:
        @hookimpl
        def callpyback_register_components(self, registry: Any) -> None:
            registry.table("tabletest", RoutesTable)

        @hookimpl
        def callpyback_install(self, config: Any) -> None:
            calls.append(("install", config.tables.get("tabletest")))

        @hookimpl
        def callpyback_uninstall(self) -> None:
            calls.append(("uninstall", None))

    class Broken:
        @hookimpl
        def callpyback_install(self, config: Any) -> None:
            raise RuntimeError("cannot attach")

    from callpyback import plugins

    plugins.reset()
    plugins.register_plugin(Plugin(), "tabletest")
    plugins.register_plugin(Broken(), "brokentest")
    try:
        path = write(tmp_path, 'version = 1\n[tabletest]\nframeworks = ["django"]\n')
        auto.install(load_config(path))
        auto.uninstall()
    finally:
        plugins.reset()
    assert calls == [("install", RoutesTable(frameworks=["django"])), ("uninstall", None)]


def test_when_imported_runs_after_the_module_or_at_once(tmp_path: Path) -> None:
    (tmp_path / "cpb_watched_mod.py").write_text("VALUE = 41\n")
    sys.path.insert(0, str(tmp_path))
    seen: List[Any] = []
    try:
        from tests.autoinstrument_support import PatternSelector

        auto.install(PatternSelector("nothing.matches.this"))
        auto.when_imported("cpb_watched_mod", lambda m: seen.append(m.VALUE + 1))
        assert seen == []
        import cpb_watched_mod  # noqa: F401

        assert seen == [42]
        auto.when_imported("cpb_watched_mod", lambda m: seen.append("again"))
        assert seen == [42, "again"]  # already imported: at once

        def broken(module: Any) -> None:
            raise RuntimeError("integration bug")

        (tmp_path / "cpb_watched_two.py").write_text("X = 1\n")
        auto.when_imported("cpb_watched_two", broken)
        import cpb_watched_two

        assert cpb_watched_two.X == 1  # the import went on
    finally:
        auto.uninstall()
        sys.path.remove(str(tmp_path))
        for name in ("cpb_watched_mod", "cpb_watched_two"):
            sys.modules.pop(name, None)


def test_a_module_level_warning_lands_at_the_importer(tmp_path: Path) -> None:
    """warnings.warn(..., stacklevel=2) at module level points at the import statement, as
    without the hook (our loader's frame is skipped like the import system's)."""
    (tmp_path / "cpb_warns_mod.py").write_text(
        textwrap.dedent("""
        import warnings
        warnings.warn("old module", DeprecationWarning, stacklevel=2)
        def f():
            return 1
    """)
    )
    sys.path.insert(0, str(tmp_path))
    try:
        from tests.autoinstrument_support import PatternSelector

        auto.install(PatternSelector("cpb_warns_mod"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import cpb_warns_mod  # the line the warning must point at

        assert callpyback.instrumented_by(cpb_warns_mod.f) is not None
        (warning,) = [w for w in caught if "old module" in str(w.message)]
        assert warning.filename == __file__
    finally:
        auto.uninstall()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cpb_warns_mod", None)


def test_a_call_time_warning_lands_at_the_caller_of_the_observed_function() -> None:
    def old_api() -> int:
        warnings.warn("use new_api", DeprecationWarning, stacklevel=2)
        return 1

    for observed in (callpyback.CallPyBack(observers=[lambda: None])(old_api), _in_place(old_api)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            observed()  # the line the warning must point at
        (warning,) = caught
        assert warning.filename == __file__ and warning.lineno == _line_of("observed()  # the")


def _in_place(func: Any) -> Any:
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__)
    callpyback.CallPyBack(observers=[lambda: None]).instrument_in_place(copy)
    return copy


def _line_of(marker: str) -> int:
    for number, line in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if marker in line and "_line_of" not in line:
            return number
    raise AssertionError(marker)
