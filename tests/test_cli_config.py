"""The config-related CLI: check, explain, plugins, config show."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from callpyback.cli import main
from callpyback.cli._fmt import Painter, dump_toml, table, use_color

GOOD = """
version = 1
[settings]
max_observer_failures = 3

[error_handlers.zero]
type = "default"
value = 0
exceptions = ["ZeroDivisionError"]

[time_sources.clock]
type = "mock"

[[pipelines]]
name = "pay"
match = ["clipkg.pay"]
exclude = ["clipkg.pay:_*"]
error_handlers = ["zero", {type = "fallback", value = -1, exceptions = ["KeyError"]}]
time_source = "clock"

[[pipelines]]
name = "rest"
match = ["clipkg"]
error_handlers = [{type = "default", value = "${DEFAULT_VALUE:-none}", exceptions = ["OSError"]}]
"""

BAD = """
version = 2
[[pipelines]]
match = ["clipkg"]
error_handlers = ["defualt"]
"""

SOURCE = """
import sys
sys.modules["clipkg_imported_marker"] = sys  # proves whether the module ran

def top(): pass

async def atop(): pass

class Cart:
    def add(self): pass

    @classmethod
    def make(cls): pass

    class Line:
        def price(self): pass

def _hidden(): pass
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with a config and a small package ``clipkg`` on sys.path."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    (tmp_path / "callpyback.toml").write_text(GOOD, encoding="utf-8")
    pkg = tmp_path / "clipkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import sys\nsys.modules['clipkg_init_ran'] = sys\n", encoding="utf-8"
    )
    (pkg / "pay.py").write_text(SOURCE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CALLPYBACK_CONFIG", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("clipkg")]:
        del sys.modules[name]


def test_check_ok(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid config: exit 0 and a summary of its pipelines."""
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert f"ok: {project / 'callpyback.toml'}: 2 pipelines" in out
    assert "pay: clipkg.pay (0 observers, 2 error handlers)" in out


def test_check_bad_file_lists_every_problem(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad config: exit 1, each problem with file:line, key, given, allowed, did you mean.

    The problems are the report: on stdout (``callpyback check | less`` shows them)."""
    bad = project / "bad.toml"
    bad.write_text(BAD, encoding="utf-8")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().out
    assert "2 problems in" in err
    assert f"{bad}:2: version" in err
    assert f"{bad}:5: pipelines[0].error_handlers[0]" in err
    assert "given:   'defualt'" in err
    assert "did you mean 'default'?" in err
    assert "\x1b[" not in err


def test_check_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives machine-readable problems."""
    bad = project / "bad.toml"
    bad.write_text(BAD, encoding="utf-8")
    assert main(["check", str(bad), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False
    assert [p["key"] for p in data["problems"]] == ["version", "pipelines[0].error_handlers[0]"]
    assert data["problems"][0]["line"] == 2
    assert main(["check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pipelines"] == ["pay", "rest"]


def test_check_exit_status_through_console_entry(project: Path) -> None:
    """``python -m callpyback check`` exits 0 / 1 as a real process."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("CALLPYBACK_CONFIG", None)
    ok = subprocess.run(
        [sys.executable, "-m", "callpyback", "check"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    (project / "bad.toml").write_text(BAD, encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, "-m", "callpyback", "check", "bad.toml"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "unsupported configuration version" in bad.stdout


def test_explain_target(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """explain shows the pipeline, the pattern, the rule, and the components in order."""
    assert main(["explain", "clipkg.pay:charge"]) == 0
    out = capsys.readouterr().out
    assert "pipeline: pay (pipelines[0], line 14)" in out
    assert "matched:  'clipkg.pay'" in out
    assert "shadowed: rest also matches 'clipkg'" in out
    assert out.index("1. zero") < out.index("2. fallback")
    assert "mock() [named, [time_sources.clock]]" in out


def test_explain_excluded_falls_through(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An excluded function shows the skipped pipeline and the one it falls to."""
    assert main(["explain", "clipkg.pay:_hidden"]) == 0
    out = capsys.readouterr().out
    assert "skipped:  pay (matched 'clipkg.pay', excluded by 'clipkg.pay:_*')" in out
    assert "pipeline: rest" in out


def test_explain_all_reads_source_without_importing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--all lists every function and method from the AST; user code does not run."""
    assert main(["explain", "--all", "clipkg.pay"]) == 0
    out = capsys.readouterr().out
    assert "clipkg_imported_marker" not in sys.modules
    assert "clipkg_init_ran" not in sys.modules
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("QUALNAME"))
    rows = {line.split()[0]: line.split() for line in lines[header + 2 :] if line.strip()}
    assert set(rows) == {"top", "atop", "Cart.add", "Cart.make", "Cart.Line.price", "_hidden"}
    assert rows["top"][1:3] == ["pay", "clipkg.pay"]
    assert rows["_hidden"][1:3] == ["rest", "clipkg"]
    # the columns are aligned: every row starts its PIPELINE column at the same offset
    col = lines[header].index("PIPELINE")
    assert all(line[col - 2 : col] == "  " for line in lines[header + 2 :] if line.strip())


def test_explain_all_with_import(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--import really imports and lists what the module defines."""
    assert main(["explain", "--all", "clipkg.pay", "--import", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "clipkg_imported_marker" in sys.modules
    assert {r["target"] for r in data} == {
        "clipkg.pay:top",
        "clipkg.pay:atop",
        "clipkg.pay:Cart.add",
        "clipkg.pay:Cart.make",
        "clipkg.pay:Cart.Line.price",
        "clipkg.pay:_hidden",
    }


def test_explain_unknown_module(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A module that cannot be found is reported, with exit status 1."""
    assert main(["explain", "--all", "clipkg.nope"]) == 1
    assert "cannot list the functions of 'clipkg.nope'" in capsys.readouterr().err


def test_explain_needs_a_target(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without TARGET or --all, explain is a usage error."""
    with pytest.raises(SystemExit) as info:
        main(["explain"])
    assert info.value.code == 2


def test_explain_with_bad_config_exits_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config that fails validation is reported by every command that loads it."""
    (project / "bad.toml").write_text(BAD, encoding="utf-8")
    assert main(["explain", "-c", "bad.toml", "clipkg:f"]) == 1
    assert "unsupported configuration version" in capsys.readouterr().err


def test_config_show_redacts_and_shows_origins(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """config show: effective values after precedence and substitution, secrets redacted."""
    (project / "callpyback.toml").write_text(
        GOOD.replace('type = "mock"', 'type = "mock"\n') + "\n", encoding="utf-8"
    )
    monkeypatch.setenv("CALLPYBACK_MAX_OBSERVER_FAILURES", "8")
    monkeypatch.setenv("DEFAULT_VALUE", "fallback-value")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "max_observer_failures = 8  # from environment CALLPYBACK_MAX_OBSERVER_FAILURES" in out
    assert '"fallback-value"' in out
    # the output is TOML that loads again to the same configuration
    doc = tomllib.loads(out)
    assert doc["pipelines"][0]["error_handlers"][0] == "zero"


def test_config_show_secret_values(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secret-looking keys, settings.redact keys and secret env values show as ***."""
    (project / "callpyback.toml").write_text(
        '[settings]\nredact = ["value"]\n'
        '[[pipelines]]\nmatch = ["a"]\n'
        'error_handlers = [{type = "default", value = "${SERVICE_TOKEN}", name = "h"}]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("SERVICE_TOKEN", "hunter2")
    assert main(["config", "show", "--format", "json"]) == 0
    text = capsys.readouterr().out
    assert "hunter2" not in text
    data = json.loads(text)
    assert data["config"]["pipelines"][0]["error_handlers"][0]["value"] == "***"
    assert main(["config", "show", "--no-redact"]) == 0
    assert "hunter2" in capsys.readouterr().out


def test_config_without_action_prints_help(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config"]) == 2
    assert "show" in capsys.readouterr().out


def test_plugins_lists_builtin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """plugins: a table of plugins, then a table of component types; --json too."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PLUGIN ")
    assert "callpyback" in out and "loaded" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["time_source", "mock", "callpyback", "initial"] in [r[:4] for r in rows]
    assert max(len(line) for line in out.splitlines()) < 200
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    builtin = next(p for p in data["plugins"] if p["name"] == "callpyback")
    assert {"kind": "time_source", "name": "system"} in builtin["components"]
    mock = next(c for c in data["components"] if c["name"] == "mock")
    assert mock["options"] == ["initial"]


@pytest.mark.parametrize(
    "command", [["check"], ["explain"], ["plugins"], ["config"], ["config", "show"]]
)
def test_every_command_has_help_with_examples(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--help exits 0 and shows examples."""
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"callpyback {command[0]}" in out


# --- output helpers -------------------------------------------------------------------------
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_tty_and_never_with_no_color() -> None:
    """ANSI colour needs a TTY, and NO_COLOR (non-empty) turns it off."""
    assert use_color(_Tty(), env={}) is True
    assert use_color(io.StringIO(), env={}) is False
    assert use_color(_Tty(), env={"NO_COLOR": "1"}) is False
    assert use_color(_Tty(), env={"NO_COLOR": ""}) is True
    assert Painter(True)("x", "red") == "\x1b[31mx\x1b[0m"
    assert Painter(False)("x", "red") == "x"


def test_table_aligns_columns() -> None:
    """Each column is as wide as its widest cell."""
    text = table(["A", "BB"], [("long cell", 1), ("s", 22)])
    assert text.splitlines() == ["A          BB", "---------  --", "long cell  1", "s          22"]


def test_dump_toml_round_trips() -> None:
    """The TOML writer produces text tomllib reads back to the same data."""
    doc = {
        "version": 1,
        "settings": {"enabled": True, "redact": ["a"]},
        "observers": {"x y": {"type": "t", "opts": {"k": 1.5}}},
        "pipelines": [{"match": ["a"], "observers": ["x", {"type": "t", "q": 'a"b'}]}],
    }
    assert tomllib.loads(dump_toml(doc)) == doc


def test_check_build_reports_factory_failures(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check builds every pipeline, so an unimportable exception class is reported."""
    (project / "callpyback.toml").write_text(
        '[[pipelines]]\nmatch = ["a"]\ndefault_return = 0\n'
        'exception_classes = ["no_such_module_zz.Error"]\n'
        '[[pipelines]]\nmatch = ["b"]\ndefault_return = 0\n'
        'exception_classes = ["other_missing_zz:Error"]\n',
        encoding="utf-8",
    )
    assert main(["check", "--no-build"]) == 0
    capsys.readouterr()
    assert main(["check"]) == 1  # building is the default
    assert main(["check", "--build"]) == 1
    err = capsys.readouterr().out
    assert "2 problems" in err
    assert ":4: pipelines[0].exception_classes" in err
    assert ":8: pipelines[1].exception_classes" in err


# --- the report, its streams and its encodings ------------------------------------------------


def _cli(args: list, cwd: Path, **kw: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}
    env.update({"NO_COLOR": "1", **kw.pop("env", {})})  # type: ignore[arg-type]
    return subprocess.run(
        [sys.executable, "-m", "callpyback", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        **kw,
    )  # type: ignore[call-overload]


def test_check_json_of_a_valid_file_has_the_documented_problems_key(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """{"valid": true, "problems": [], ...}: a tool can always read .problems."""
    assert main(["check", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is True and data["problems"] == [] and data["built"] is True


def test_check_accepts_dash_c_like_every_other_command(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check -c FILE == check FILE; giving two different files is a usage error."""
    bad = project / "bad.toml"
    bad.write_text(BAD, encoding="utf-8")
    assert main(["check", "-c", str(bad)]) == 1
    assert "2 problems in" in capsys.readouterr().out
    assert main(["check", "--config", "callpyback.toml"]) == 0
    with pytest.raises(SystemExit) as info:
        main(["check", "callpyback.toml", "-c", str(bad)])
    assert info.value.code == 2


def test_check_report_goes_through_a_pipe(project: Path) -> None:
    """`callpyback check bad.toml | less` shows the problems: they are on stdout."""
    (project / "bad.toml").write_text(BAD, encoding="utf-8")
    proc = _cli(["check", "bad.toml"], project)
    assert proc.returncode == 1
    assert "2 problems in" in proc.stdout and "did you mean 'default'?" in proc.stdout
    assert proc.stderr == ""


def test_check_of_a_deeply_nested_file_is_a_problem_not_a_traceback(project: Path) -> None:
    (project / "deep.toml").write_text("x = " + "[" * 3000 + "]" * 3000 + "\n", encoding="utf-8")
    proc = _cli(["check", "deep.toml"], project)
    assert proc.returncode == 1
    assert "nested more than 32 levels deep" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["explain", *[f"clipkg.pay:f{i}" for i in range(3000)]],
        ["config", "show", "--format", "json"],
    ],
)
def test_output_piped_into_head_ends_quietly(project: Path, command: list) -> None:
    """The reader closing the pipe early (| head) is no BrokenPipeError traceback."""
    if command[0] == "config":
        filler = "".join(
            f'[observers.o{i}]\ntype = "timing"\nthreshold = 0.{i + 1}\n' for i in range(3000)
        )
        (project / "callpyback.toml").write_text(GOOD + filler, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}
    with subprocess.Popen(
        [sys.executable, "-m", "callpyback", *command],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # what head does after its lines
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
    assert "BrokenPipeError" not in err and "Traceback" not in err, err


def test_explain_prints_on_an_ascii_terminal(project: Path) -> None:
    """Characters the output encoding lacks are escaped, not a UnicodeEncodeError."""
    (project / "callpyback.toml").write_text(
        '[[pipelines]]\nname = "zahlungen"\ndescription = "Zahlungsläufe für Kunden"\n'
        'match = ["clipkg"]\nobservers = ["metrics"]\n',
        encoding="utf-8",
    )
    proc = _cli(["explain", "clipkg.pay:prüfe"], project, env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert "clipkg.pay:pr\\xfcfe" in proc.stdout and "Zahlungsl\\xe4ufe" in proc.stdout


def test_explain_all_through_the_console_script_finds_modules_in_the_working_directory(
    project: Path,
) -> None:
    """The console script's sys.path[0] is its own bin directory; explain looks in the working
    directory too, as python -m callpyback does."""
    script = Path(sys.executable).parent / "callpyback"
    assert script.exists(), "the console script is installed with the package"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}
    assert str(project) not in env.get("PYTHONPATH", "")
    for extra in ([], ["--import"]):
        proc = subprocess.run(
            [str(script), "explain", "--all", "clipkg.pay", *extra],
            cwd=project,
            env={**env, "NO_COLOR": "1"},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        assert "Cart.Line.price" in proc.stdout


def test_explain_all_from_source_says_properties_are_not_wrapped(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hook skips properties, cached_property and singledispatchmethod; so does explain,
    from the source and after --import."""
    (project / "clipkg" / "props.py").write_text(
        textwrap.dedent("""
        import functools

        class Account:
            @property
            def balance(self):
                return 1

            @balance.setter
            def balance(self, value):
                pass

            @functools.cached_property
            def report(self):
                return 2

            def deposit(self):
                pass
        """),
        encoding="utf-8",
    )
    for extra in ([], ["--import"]):
        assert main(["explain", "--all", "clipkg.props", "--json", *extra]) == 0
        records = {r["target"]: r for r in json.loads(capsys.readouterr().out)}
        assert records["clipkg.props:Account.deposit"]["wrapped"] is True
        for name in ("balance", "report"):
            record = records[f"clipkg.props:Account.{name}"]
            assert (
                record["wrapped"] is False and "not wrapped by the import hook" in record["skipped"]
            )
    assert main(["explain", "--all", "clipkg.props"]) == 0
    assert "no: a property, not wrapped" in capsys.readouterr().out
