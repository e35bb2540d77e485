"""Finding the config, precedence (argument > environment > file > default), substitution."""

from __future__ import annotations

from pathlib import Path

import pytest

import callpyback
from callpyback.cli._render import explain
from callpyback.config import ConfigError, configure, current_config, load_config
from callpyback.config._precedence import choose
from tests.config_helpers import make_registry, write

SIMPLE = """
    version = 1
    [settings]
    max_observer_failures = 7

    [[pipelines]]
    name = "shop"
    match = ["shop"]
    observers = ["metrics"]
    """


def _load(tmp_path: Path, env: dict | None = None, **kw):  # type: ignore[no-untyped-def]
    return load_config(registry=make_registry(), env=env or {}, cwd=tmp_path, **kw)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root (it holds pyproject.toml) with a nested working directory."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "demo"\n', encoding="utf-8")
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    return tmp_path


def test_no_config_anywhere_is_an_empty_config(project: Path) -> None:
    """Without any file the result is a usable, empty Config with default settings."""
    config = _load(project / "src" / "pkg")
    assert config.source == "<defaults>"
    assert config.pipelines == ()
    assert config.settings.enabled is True
    assert config.settings.max_observer_failures == 5
    assert config.pipeline_for("shop:f") is None
    assert config.wrapper_for("shop", "f") is None
    assert config.may_match_module("shop") is False


def test_discovers_file_in_parent_up_to_project_root(project: Path) -> None:
    """callpyback.toml in an ancestor directory (within the project) is found."""
    path = write(project / "src", SIMPLE)
    config = _load(project / "src" / "pkg")
    assert config.source == str(path)
    assert config.settings.max_observer_failures == 7


def test_discovery_stops_at_project_root(tmp_path: Path) -> None:
    """A callpyback.toml above the project root (a dir with pyproject.toml or .git) is ignored."""
    write(tmp_path, SIMPLE)
    inner = tmp_path / "repo"
    (inner / ".git").mkdir(parents=True)
    assert _load(inner).source == "<defaults>"
    other = tmp_path / "proj"
    other.mkdir()
    (other / "pyproject.toml").write_text("[project]\nname='x'\n", encoding="utf-8")
    assert _load(other).source == "<defaults>"


def test_pyproject_tool_table(project: Path) -> None:
    """[tool.callpyback] in pyproject.toml is used, with lines counted in pyproject.toml."""
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.callpyback.settings]\nenabled = false\n\n'
        '[[tool.callpyback.pipelines]]\nmatch = ["shop"]\nobservers = ["metrix"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        _load(project / "src")
    (problem,) = info.value.problems
    assert problem.file == str(project / "pyproject.toml")
    assert problem.line == 9
    assert problem.key == "pipelines[0].observers[0]"


def test_callpyback_toml_wins_over_pyproject_in_same_dir(project: Path) -> None:
    """In one directory, callpyback.toml takes precedence over pyproject.toml."""
    (project / "pyproject.toml").write_text(
        "[tool.callpyback.settings]\nmax_observer_failures = 2\n", encoding="utf-8"
    )
    path = write(project, SIMPLE)
    assert _load(project).source == str(path)


def test_explicit_pyproject_without_table_is_an_error(project: Path) -> None:
    """Pointing at a pyproject.toml that has no [tool.callpyback] says so."""
    with pytest.raises(ConfigError, match=r"no \[tool.callpyback\] table"):
        _load(project, path=project / "pyproject.toml")


def test_explicit_path_beats_env_beats_discovery(project: Path) -> None:
    """The file: argument, else $CALLPYBACK_CONFIG, else discovery."""
    discovered = write(project, SIMPLE)
    from_env = write(project, "[settings]\nmax_observer_failures = 3\n", "env.toml")
    explicit = write(project, "[settings]\nmax_observer_failures = 4\n", "arg.toml")
    env = {"CALLPYBACK_CONFIG": str(from_env)}
    assert _load(project).source == str(discovered)
    assert _load(project, env=env).source == str(from_env)
    assert _load(project, env=env, path=explicit).source == str(explicit)
    assert _load(project, env={"CALLPYBACK_CONFIG": ""}).source == str(discovered)


def test_settings_precedence(project: Path) -> None:
    """Each setting: explicit argument > CALLPYBACK_<KEY> > [settings] > default."""
    write(project, SIMPLE)
    env = {"CALLPYBACK_MAX_OBSERVER_FAILURES": "9", "CALLPYBACK_ENABLE_ASYNC_OBSERVERS": "yes"}
    config = _load(project, env=env)
    assert config.settings.max_observer_failures == 9
    assert config.settings.enable_async_observers is True
    assert config.origins["max_observer_failures"] == "environment CALLPYBACK_MAX_OBSERVER_FAILURES"
    config = _load(project, env=env, settings={"max_observer_failures": 11})
    assert config.settings.max_observer_failures == 11
    assert config.origins["max_observer_failures"] == "argument"
    config = _load(project)
    assert config.settings.max_observer_failures == 7
    assert config.origins["max_observer_failures"] == "file"
    assert "enabled" not in config.origins  # default


def test_env_list_setting_is_comma_separated(project: Path) -> None:
    """CALLPYBACK_REDACT=a,b becomes ["a", "b"]."""
    config = _load(project, env={"CALLPYBACK_REDACT": "card_number, cvv"})
    assert config.settings.redact == ["card_number", "cvv"]


def test_kill_switch_overrides_everything(project: Path) -> None:
    """CALLPYBACK_DISABLED=1 disables even when an argument says enabled."""
    write(project, SIMPLE)
    config = _load(project, env={"CALLPYBACK_DISABLED": "1"}, settings={"enabled": True})
    assert config.settings.enabled is False
    assert "kill switch" in config.origins["enabled"]
    assert config.pipeline_for("shop:f") is not None  # still explainable...
    assert config.wrapper_for("shop", "f") is None  # ...but nothing is applied
    assert "disabled" in explain(config, "shop:f")


def test_choose_is_the_single_precedence_rule() -> None:
    """choose() orders the four sources and reports where the value came from."""
    env = {"V": "env"}
    assert choose("arg", env=env, variable="V", file="file", default="d").origin == "argument"
    assert choose(env=env, variable="V", file="file", default="d").value == "env"
    assert choose(env={}, variable="V", file="file", default="d").origin == "file"
    assert choose(env={"V": ""}, variable="V", default="d").value == "d"


def test_env_substitution(project: Path) -> None:
    """${VAR} and ${VAR:-default} are substituted in strings, also inside arrays and tables."""
    write(
        project,
        """
        [observers.rec]
        type = "recording"
        label = "${LABEL}-${SUFFIX:-x}-$${NOT}"

        [error_handlers.net]
        type = "retry"
        attempts = "${RETRIES:-3}"
        api_token = "${API_TOKEN}"

        [[pipelines]]
        match = ["${APP:-shop}.payments"]
        observers = ["rec"]
        error_handlers = ["net"]
        """,
    )
    config = _load(project, env={"LABEL": "audit", "API_TOKEN": "s3cr3t"})
    rec = config.components["observer"]["rec"]
    assert rec.options == {"label": "audit-x-${NOT}"}
    assert config.components["error_handler"]["net"].options["attempts"] == "3"
    assert config.pipelines[0].match == ("shop.payments",)
    handler = config.assembly.instance(config.components["error_handler"]["net"])
    assert handler.attempts == 3  # the options model converted the substituted string


def test_version_is_optional_and_one_is_accepted(project: Path) -> None:
    """``version`` defaults to 1; 1 is the only supported version."""
    write(project, "[settings]\nenabled = true\n")
    assert _load(project).version == 1
    write(project, "version = 1\n")
    assert _load(project).settings.enabled


def test_configure_sets_current_config_and_keeps_it_on_error(project: Path) -> None:
    """configure() loads and installs a config; a failing configure() changes nothing."""
    config = configure(
        {"pipelines": [{"match": ["shop"], "observers": ["metrics"]}]},
        registry=make_registry(),
        env={},
        max_observer_failures=3,
    )
    assert current_config() is config
    assert config.source == "<configure()>"
    assert config.settings.max_observer_failures == 3
    with pytest.raises(ConfigError):
        configure({"pipelines": [{"match": []}]}, registry=make_registry(), env={})
    assert current_config() is config
    path = write(project, SIMPLE)
    again = configure(path, registry=make_registry(), env={})
    assert current_config() is again and again.source == str(path)
    assert configure(again) is again
    with pytest.raises(ConfigError, match="already loaded"):
        configure(again, enabled=False)


def test_public_names_are_exported_lazily() -> None:
    """The config API is reachable from the package root."""
    assert callpyback.load_config is load_config
    assert callpyback.configure is configure
    assert callpyback.Config.__name__ == "Config"


def test_import_callpyback_stays_cheap() -> None:
    """``import callpyback`` does not import pydantic, tomllib or the config package."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, callpyback; "
        "print(sorted(m for m in ('pydantic', 'tomllib', 'tomli', 'callpyback.config') "
        "if m in sys.modules))"
    )
    # A clean interpreter: not one measured by coverage (its tracer imports modules too).
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


def test_real_registry_is_used_by_default(project: Path) -> None:
    """Without registry=, the plugin registry resolves the built-in component types."""
    write(
        project,
        '[[pipelines]]\nmatch = ["shop"]\ntime_source = "mock"\n'
        'error_handlers = [{type = "default", value = 0, '
        'exceptions = ["RuntimeError"]}]\n',
    )
    config = load_config(env={}, cwd=project)
    assert config.pipelines[0].time_source is not None
    decorator = config.wrapper_for("shop", "f")
    assert decorator is not None

    @decorator
    def boom() -> int:
        raise RuntimeError("x")

    assert boom() == 0


def test_pyproject_that_only_mentions_callpyback_is_not_a_config(project: Path) -> None:
    """A comment or a dependency named callpyback does not make pyproject.toml a config."""
    (project / "pyproject.toml").write_text(
        '# configure with [tool.callpyback] later\n[project]\ndependencies = ["callpyback"]\n',
        encoding="utf-8",
    )
    assert _load(project / "src").source == "<defaults>"


def test_plugin_rejecting_the_config_is_a_config_error(project: Path) -> None:
    """A plugin's callpyback_configure raising ConfigurationError fails the load cleanly."""
    from callpyback import plugins
    from callpyback.errors import ConfigurationError
    from callpyback.hookspecs import hookimpl

    seen = []

    class Strict:
        @hookimpl
        def callpyback_configure(self, config):  # type: ignore[no-untyped-def]
            seen.append(config)
            if config.settings.max_observer_failures > 50:
                raise ConfigurationError("max_observer_failures above 50 is not allowed here")

    plugins.reset()
    try:
        plugins.register_plugin(Strict(), name="strict-test")
        assert _load(project).source == "<defaults>"
        assert seen and seen[-1].source == "<defaults>"
        with pytest.raises(ConfigError, match="a plugin rejected the configuration"):
            _load(project, settings={"max_observer_failures": 99})
    finally:
        plugins.reset()


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${A:-${B}}", {"B": "alpha"}, "alpha"),  # a reference inside a default
        ("${A:-${B:-z}}!", {}, "z!"),
        ("${A:-${UNSET}}", {"A": "set"}, "set"),  # an unused default is never expanded
        ("${EMPTY:-x}", {"EMPTY": ""}, "x"),  # ':-' replaces an empty value, as in sh
        ("[${EMPTY}]", {"EMPTY": ""}, "[]"),  # set but empty, and no default: empty
        ("${A}-$${A}-$5", {"A": "1"}, "1-${A}-$5"),
    ],
)
def test_env_substitution_has_shell_semantics(value: str, env: dict, expected: str) -> None:
    """Nested defaults, ':-' for unset or empty, $${ as a literal ${."""
    from callpyback.config import load_text

    config = load_text(
        f'[observers.r]\ntype = "recording"\nlabel = "{value}"\n', registry=make_registry(), env=env
    )
    assert config.components["observer"]["r"].options == {"label": expected}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("${abc", "environment reference '${abc' is not closed by '}'"),
        ("${A:-${B}", "environment reference '${A:-${B}' is not closed by '}'"),
        ("${A:-${UNSET}}", "environment variable 'UNSET' is not set and has no default"),
    ],
)
def test_env_substitution_errors(value: str, message: str) -> None:
    """An unclosed reference is an error, not a literal; a used default's own reference too."""
    from callpyback.config import load_text

    with pytest.raises(ConfigError) as info:
        load_text(
            f'[observers.r]\ntype = "recording"\nlabel = "{value}"\n',
            file="f.toml",
            registry=make_registry(),
            env={},
        )
    (problem,) = info.value.problems
    assert message in problem.message and problem.key == "observers.r.label"


@pytest.mark.parametrize(
    ("value", "off"),
    [
        ("1", True),
        ("y", True),
        ("YES", True),
        (" on ", True),
        ("2", True),
        ("sure", True),
        ("0", False),
        ("no", False),
        ("n", False),
        ("off", False),
        ("", False),
    ],
)
def test_kill_switch_means_the_same_to_the_hook_and_to_the_config(
    project: Path, monkeypatch: pytest.MonkeyPatch, value: str, off: bool
) -> None:
    """One parser: CALLPYBACK_DISABLED disables install() exactly when it disables wrapper_for.

    A value that is not a boolean word counts as set (the switch must not fail open)."""
    from callpyback import autoinstrument

    write(project, SIMPLE)
    monkeypatch.setenv("CALLPYBACK_DISABLED", value)
    config = _load(project, env={"CALLPYBACK_DISABLED": value})
    assert autoinstrument.disabled() is off
    assert (config.wrapper_for("shop", "f") is None) is off
    assert config.settings.enabled is not off
    if value in ("2", "sure"):
        assert "not a boolean" in config.origins["enabled"]


def test_boolean_settings_from_the_environment_use_the_same_words(project: Path) -> None:
    """CALLPYBACK_ENABLE_ASYNC_OBSERVERS=y is true; =2 is an error naming the variable."""
    assert (
        _load(
            project, env={"CALLPYBACK_ENABLE_ASYNC_OBSERVERS": "y"}
        ).settings.enable_async_observers
        is True
    )
    with pytest.raises(ConfigError) as info:
        _load(project, env={"CALLPYBACK_ENABLE_ASYNC_OBSERVERS": "2"})
    (problem,) = info.value.problems
    assert problem.file == "<environment CALLPYBACK_ENABLE_ASYNC_OBSERVERS>"
