"""Start-up under faults: components that cannot be built, code that exits, selectors that
raise.  Real files, real child processes, the real plugin registry.

Start-up never dies silently: it stops with one clear message where the configuration asks for
strictness (``on_build_error = "error"``, the default), and otherwise keeps the program running
and says what it runs without.
"""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
from pathlib import Path

import pytest

from callpyback import autoinstrument, plugins
from callpyback.config import ConfigError, load_config
from tests.autoinstrument_support import PatternSelector, callpyback_cli, run_python

SCRIPT = """
def risky():
    raise ValueError("boom")

print("program ran", risky())
"""


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for name in ("CALLPYBACK_CONFIG", "CALLPYBACK_DISABLED", plugins.ALLOW_ENV, plugins.DENY_ENV):
        monkeypatch.delenv(name, raising=False)
    plugins.reset()
    yield
    autoinstrument.uninstall()
    plugins.reset()


def _project(tmp_path: Path, config: str) -> Path:
    (tmp_path / "callpyback.toml").write_text(textwrap.dedent(config), encoding="utf-8")
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    (tmp_path / "blocker").write_text("a file where the audit trail wants a directory\n")
    return tmp_path


UNBUILDABLE = """
    version = 1
    [settings]
    on_build_error = "{policy}"

    [observers.trail]
    type = "audit"
    path = "blocker/trail.jsonl"      # cannot be created: blocker is a file

    [[pipelines]]
    match = ["__main__"]
    observers = ["trail", "metrics"]
    error_handlers = [{{type = "fallback", value = -1, exceptions = ["ValueError"]}}]
"""


def test_a_component_that_cannot_be_built_fails_check_and_stops_run(tmp_path: Path) -> None:
    """Default policy: check exits 1 naming the component, file, line and key; run stops with
    exit 2 and the same message, and the program does not run unaudited."""
    app = _project(tmp_path, UNBUILDABLE.format(policy="error"))
    check = callpyback_cli(["check"], cwd=app)
    assert check.returncode == 1, check.stdout
    assert f"{app / 'callpyback.toml'}:6: observers.trail" in check.stdout
    assert "could not create observer 'trail' of type 'audit'" in check.stdout
    assert callpyback_cli(["check", "--no-build"], cwd=app).returncode == 0
    run = callpyback_cli(["run", "script.py"], cwd=app)
    assert run.returncode == 2
    assert "program ran" not in run.stdout
    assert "observers.trail" in run.stderr and "could not create observer 'trail'" in run.stderr
    assert run.stderr.count("could not create") == 1


def test_on_build_error_warn_runs_without_the_component_and_says_so_once(tmp_path: Path) -> None:
    """warn: the program runs with the rest of the pipeline (the fallback still recovers), and
    one warning names the component, once, not once per function."""
    app = _project(tmp_path, UNBUILDABLE.format(policy="warn"))
    run = callpyback_cli(["run", "script.py"], cwd=app)
    assert run.returncode == 0, run.stderr
    assert "program ran -1" in run.stdout
    assert run.stderr.count("could not create observer 'trail'") == 1
    assert "runs without it" in run.stderr
    check = callpyback_cli(["check"], cwd=app)
    assert check.returncode == 0
    assert "1 component(s) cannot be built" in check.stdout


def test_build_failure_in_code_is_one_config_error_listing_every_component(tmp_path: Path) -> None:
    """build_all() / install(): every failing component of every pipeline, in one error."""
    (tmp_path / "blocker").write_text("x")
    path = tmp_path / "callpyback.toml"
    path.write_text(
        textwrap.dedent(f"""
        [[pipelines]]
        match = ["a"]
        observers = [{{type = "audit", path = "{(tmp_path / "blocker" / "a.jsonl").as_posix()}"}},
                     {{type = "audit", path = "{(tmp_path / "blocker" / "b.jsonl").as_posix()}"}}]
        error_handlers = [{{type = "retry", attempts = 2, exceptions = ["no_such_mod_zz.E"]}}]
        [[pipelines]]
        match = ["b"]
        default_return = 0
        exception_classes = ["no_such_mod_zz.E", "other_missing_zz:E"]
        """),
        encoding="utf-8",
    )
    config = load_config(path, env={})
    with pytest.raises(ConfigError) as info:
        autoinstrument.install(config)
    keys = [p.key for p in info.value.problems]
    assert keys == [
        "pipelines[0].observers[0]",
        "pipelines[0].observers[1]",
        "pipelines[0].error_handlers[0]",
        "pipelines[1].exception_classes[0]",
        "pipelines[1].exception_classes[1]",
    ]
    assert not autoinstrument.is_installed()
    with pytest.raises(ConfigError):  # remembered: the factories do not run again
        config.wrapper_for("a", "f")


def test_warn_policy_in_code_warns_once_per_component(tmp_path: Path) -> None:
    """A named component shared by two pipelines is one warning; the pipelines still build."""
    (tmp_path / "blocker").write_text("x")
    path = tmp_path / "callpyback.toml"
    path.write_text(
        textwrap.dedent(f"""
        [settings]
        on_build_error = "warn"
        [observers.trail]
        type = "audit"
        path = "{(tmp_path / "blocker" / "t.jsonl").as_posix()}"
        [[pipelines]]
        match = ["a"]
        observers = ["trail", "metrics"]
        [[pipelines]]
        match = ["b"]
        observers = ["trail"]
        default_return = 0
        exception_classes = ["no_such_mod_zz.E"]
        """),
        encoding="utf-8",
    )
    from callpyback.config._assembly import ComponentBuildWarning

    config = load_config(path, env={})
    with pytest.warns(ComponentBuildWarning) as caught:
        config.build_all()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert sum("observer 'trail'" in m for m in messages) == 1
    assert any("no_such_mod_zz.E" in m for m in messages)
    a = config.wrapper_for("a", "f")
    assert [type(o).__name__ for o in a.observers] == ["MetricsObserver"]
    b = config.wrapper_for("b", "f")

    @b
    def boom() -> int:
        raise KeyError("x")

    with pytest.raises(KeyError):  # no class could be resolved: no recovery, not "everything"
        boom()


# --- code that exits --------------------------------------------------------------------------

EXITING = "import sys\nsys.exit(3)\n"


def test_system_exit_from_a_config_named_module_is_a_clear_start_up_error(tmp_path: Path) -> None:
    """A module named in exceptions = [...] that exits at import: run says which and where, exit
    2; the .pth bootstrap reports it and lets the program run."""
    app = _project(
        tmp_path,
        """
        [[pipelines]]
        match = ["__main__", "helper"]
        error_handlers = [{type = "fallback", value = -1, exceptions = ["exiter.Oops"]}]
        """,
    )
    (app / "exiter.py").write_text(EXITING)
    (app / "helper.py").write_text("def explode():\n    raise ValueError('helper')\n")
    run = callpyback_cli(["run", "script.py"], cwd=app)
    assert run.returncode == 2
    assert "program ran" not in run.stdout
    assert "pipelines[0].error_handlers[0]" in run.stderr
    assert (
        "importing module 'exiter' for exception 'exiter.Oops' raised SystemExit: 3" in run.stderr
    )
    # Under the .pth bootstrap (CALLPYBACK_AUTOINSTALL=1, as in run's child processes) the
    # pipeline is built when the hook first needs it, with the program's directory on sys.path.
    boot = run_python(
        ["-c", "import helper; print('child ran'); helper.explode()"],
        cwd=app,
        env={"CALLPYBACK_AUTOINSTALL": "1"},
    )
    assert "child ran" in boot.stdout  # the import went on, the program ran
    assert "could not instrument helper:explode" in boot.stderr
    assert "raised SystemExit: 3" in boot.stderr
    assert "ValueError: helper" in boot.stderr


def test_system_exit_from_a_plugin_factory_is_a_build_problem(tmp_path: Path) -> None:
    """A factory that calls sys.exit() is a located build problem, not the end of the program."""
    from callpyback import hookimpl

    class Exits:
        @hookimpl
        def callpyback_register_components(self, registry):  # type: ignore[no-untyped-def]
            registry.observer("exits.obs", lambda: sys.exit("factory bye"))

    plugins.register_plugin(Exits(), name="exits")
    path = tmp_path / "callpyback.toml"
    path.write_text('[[pipelines]]\nmatch = ["a"]\nobservers = ["exits.obs"]\n', encoding="utf-8")
    config = load_config(path, env={})
    with pytest.raises(ConfigError) as info:
        config.build_all()
    (problem,) = info.value.problems
    assert problem.line == 3 and "SystemExit: factory bye" in problem.message


def test_a_selector_that_exits_never_ends_the_program(tmp_path: Path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """SystemExit from wrapper_for: that function is left alone and reported as failed;
    from may_match_module: the module is left alone, and the selector is named once."""
    (tmp_path / "exitsel_a.py").write_text("def f():\n    return 1\n")
    (tmp_path / "exitsel_b.py").write_text("def g():\n    return 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Exiting(PatternSelector):
        def wrapper_for(self, module, qualname):  # type: ignore[no-untyped-def]
            raise SystemExit(4)

    autoinstrument.install(Exiting("exitsel_a"))
    with pytest.warns(autoinstrument.InstrumentationWarning, match="SystemExit"):
        a = importlib.import_module("exitsel_a")
    assert a.f() == 1
    assert [e.target for e in autoinstrument.report().failed] == ["exitsel_a:f"]

    class ExitingPrecheck(PatternSelector):
        def may_match_module(self, module):  # type: ignore[no-untyped-def]
            if module.startswith("exitsel_"):
                raise SystemExit(5)
            return False

    with caplog.at_level(logging.ERROR, logger="callpyback.autoinstrument"):
        autoinstrument.install(ExitingPrecheck("exitsel_b"))
        b = importlib.import_module("exitsel_b")
    assert b.g() == 2
    assert sum("raised SystemExit(5)" in r.getMessage() for r in caplog.records) == 1
    for name in ("exitsel_a", "exitsel_b"):
        sys.modules.pop(name, None)


# --- read-only commands import nothing ---------------------------------------------------------

MARKED = """
    [error_handlers.net]
    type = "retry"
    attempts = 2
    exceptions = ["marked_exc.Oops"]

    [[pipelines]]
    match = ["app"]
    error_handlers = ["net"]
    default_return = 0
    exception_classes = ["marked_exc.Oops"]
"""


@pytest.mark.parametrize(
    ("command", "imports"),
    [
        (["check", "--no-build"], False),
        (["explain", "app:f"], False),
        (["explain", "--all", "app"], False),
        (["config", "show"], False),
        (["config", "show", "--format", "json"], False),
        (["check"], True),  # building imports them: that is the point of building
    ],
)
def test_read_only_commands_import_nothing_named_in_the_config(
    tmp_path: Path, command: list, imports: bool
) -> None:
    """Modules named by exceptions = [...] and exception_classes run their code only when the
    components are built."""
    app = _project(tmp_path, MARKED)
    (app / "marked_exc.py").write_text(
        "open('imported.flag', 'w').close()\nclass Oops(Exception):\n    pass\n"
    )
    (app / "app.py").write_text("def f():\n    return 1\n")
    proc = callpyback_cli(command, cwd=app)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (app / "imported.flag").exists() is imports


def test_on_build_error_from_the_environment(tmp_path: Path) -> None:
    """CALLPYBACK_ON_BUILD_ERROR overrides the file; a wrong value names the variable."""
    path = tmp_path / "callpyback.toml"
    path.write_text('[settings]\non_build_error = "error"\n', encoding="utf-8")
    assert (
        load_config(path, env={"CALLPYBACK_ON_BUILD_ERROR": "warn"}).settings.on_build_error
        == "warn"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"CALLPYBACK_ON_BUILD_ERROR": "ignore"})
    (problem,) = info.value.problems
    assert problem.file == "<environment CALLPYBACK_ON_BUILD_ERROR>"
    assert problem.allowed == "'error' or 'warn'"
