"""``callpyback run``, ``python -m`` and the ``.pth`` bootstrap: real child processes, real TOML.

Evidence of instrumentation is behavioural: the pipeline's fallback handler turns a ValueError
into -1, which only happens if the function was wrapped.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from tests.autoinstrument_support import ROOT, callpyback_cli, run_python

CONFIG = """
version = 1

[[pipelines]]
match = ["__main__", "helpers", "tool"]
error_handlers = [{type = "fallback", value = -1, exceptions = ["ValueError"]}]
"""

SCRIPT = """
import os, subprocess, sys
import helpers

def risky():
    raise ValueError("boom")

class Greeter:
    def greet(self):
        raise ValueError("no greeting")

print("argv", sys.argv[1:])
print("main", risky(), Greeter().greet())
print("helper", helpers.explode())
print("file", __file__ == os.path.abspath(sys.argv[0]), __name__)
import callpyback.autoinstrument as auto
print("cli main wrapped", "__main__:main" in auto.report().wrapped_targets())
if "--child" in sys.argv:
    child = subprocess.run([sys.executable, "-c", "import helpers; print(helpers.explode())"],
                           capture_output=True, text=True)
    print("child", child.stdout.strip(), child.stderr.strip())
sys.exit(int(os.environ.get("EXIT_WITH", "3")))
"""

HELPERS = """
def explode():
    raise ValueError("helper")
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "callpyback.toml").write_text(CONFIG)
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT))
    (tmp_path / "helpers.py").write_text(textwrap.dedent(HELPERS))
    tool = tmp_path / "tool"
    tool.mkdir()
    (tool / "__init__.py").write_text("")
    (tool / "__main__.py").write_text(
        "import sys\n\ndef main():\n    raise ValueError('pkg main')\n\n"
        "print('pkg', main(), sys.argv[1:], __name__, __spec__.name)\n"
    )
    (tool / "cmd.py").write_text(
        "import sys\n\ndef main():\n    raise ValueError('cmd')\n\n"
        "if __name__ == '__main__':\n"
        "    print('cmd', main(), sys.argv[1:], __spec__.name)\n"
        "    sys.exit(5)\n"
    )
    return tmp_path


def test_run_script_instruments_main_and_imports_and_keeps_argv_and_exit_status(app):
    """Script functions, methods and imported modules are wrapped; argv and exit code as python."""
    proc = callpyback_cli(["run", "script.py", "a", "--flag", "-x"], cwd=app)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.splitlines() == [
        "argv ['a', '--flag', '-x']",
        "main -1 -1",
        "helper -1",
        "file True __main__",
        "cli main wrapped False",  # python -m callpyback's own __main__ is never instrumented
    ]


def test_run_instruments_python_subprocesses_through_the_pth_bootstrap(app):
    """The program's python children inherit CALLPYBACK_AUTOINSTALL and the same config file."""
    proc = callpyback_cli(["run", "script.py", "--child"], cwd=app, env={"EXIT_WITH": "0"})
    assert proc.returncode == 0, proc.stderr
    assert "child -1" in [line.strip() for line in proc.stdout.splitlines()]


def test_run_with_explicit_config_from_another_directory(app, tmp_path_factory):
    """--config FILE works from any working directory; the script's directory is sys.path[0]."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    proc = callpyback_cli(
        ["run", "--config", str(app / "callpyback.toml"), str(app / "script.py")], cwd=elsewhere
    )
    assert proc.returncode == 3, proc.stderr
    assert "main -1 -1" in proc.stdout


def test_run_dash_m_module_and_package(app):
    """-m pkg.mod and -m pkg (its __main__): argv, __name__, __spec__ and exit code as python."""
    proc = callpyback_cli(["run", "-m", "tool.cmd", "--verbose", "x"], cwd=app)
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout.splitlines() == ["cmd -1 ['--verbose', 'x'] tool.cmd"]
    proc = callpyback_cli(["run", "-m", "tool", "y"], cwd=app)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["pkg -1 ['y'] __main__ tool.__main__"]


def test_run_matches_python_on_errors(app):
    """Uncaught exception: traceback from the program's frames, status 1; SystemExit('msg'): 1."""
    (app / "fail.py").write_text("def go():\n    raise KeyError('nope')\n\ngo()\n")
    proc = callpyback_cli(["run", "fail.py"], cwd=app)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback (most recent call last):")
    assert "KeyError: 'nope'" in proc.stderr
    assert "callpyback/cli" not in proc.stderr and "_main.py" not in proc.stderr
    plain = run_python(["fail.py"], cwd=app)
    assert plain.returncode == 1 and plain.stderr.splitlines()[-1] == proc.stderr.splitlines()[-1]

    (app / "bye.py").write_text("import sys\nsys.exit('goodbye')\n")
    proc = callpyback_cli(["run", "bye.py"], cwd=app)
    assert (proc.returncode, proc.stderr.strip()) == (1, "goodbye")

    proc = callpyback_cli(["run", "-m", "no_such_module_here"], cwd=app)
    assert proc.returncode == 1 and "No module named no_such_module_here" in proc.stderr
    proc = callpyback_cli(["run", "missing.py"], cwd=app)
    assert proc.returncode == 2 and "missing.py" in proc.stderr
    proc = callpyback_cli(["run"], cwd=app)
    assert proc.returncode == 2 and "give a script" in proc.stderr


def test_run_refuses_an_invalid_config_and_runs_nothing(app):
    """A config that fails validation: exit 2, the error names file and key; no program output."""
    (app / "bad.toml").write_text("version = 1\n[[pipelines]]\nmatch = ['x']\nobservers = 3\n")
    proc = callpyback_cli(["run", "--config", "bad.toml", "script.py"], cwd=app)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "bad.toml" in proc.stderr and "observers" in proc.stderr


def test_kill_switch_runs_the_program_uninstrumented(app):
    """CALLPYBACK_DISABLED=1: callpyback run runs the program, with nothing wrapped."""
    proc = callpyback_cli(["run", "script.py"], cwd=app, env={"CALLPYBACK_DISABLED": "1"})
    assert proc.returncode == 1
    assert "ValueError: boom" in proc.stderr


def test_pth_bootstrap_is_inert_unless_asked(app):
    """Without CALLPYBACK_AUTOINSTALL, the .pth imports nothing of callpyback."""
    code = (
        "import sys; print('callpyback' in sys.modules, "
        "any('Instrumenting' in type(f).__name__ for f in sys.meta_path))"
    )
    proc = run_python(["-c", code], cwd=app)
    assert proc.stdout.strip() == "False False", proc.stderr
    both = {"CALLPYBACK_AUTOINSTALL": "1", "CALLPYBACK_DISABLED": "1"}
    proc = run_python(["-c", code], cwd=app, env=both)
    assert proc.stdout.strip().endswith("False"), proc.stderr
    proc = run_python(["-c", code], cwd=app, env={"CALLPYBACK_AUTOINSTALL": "0"})
    assert proc.stdout.strip().endswith("False"), proc.stderr


def test_pth_bootstrap_instruments_a_plain_python_process_once(app):
    """CALLPYBACK_AUTOINSTALL=1: installed at start-up; processing the .pth again adds nothing."""
    site_dir = _pth_dir()
    code = textwrap.dedent(
        f"""
        import site, sys
        site.addsitedir({site_dir!r})  # the .pth file is processed a second time
        import callpyback.autoinstrument._bootstrap as b
        b.boot()
        finders = [f for f in sys.meta_path if type(f).__name__ == "InstrumentingFinder"]
        import helpers
        print(len(finders), helpers.explode())
        """
    )
    proc = run_python(["-c", code], cwd=app, env={"CALLPYBACK_AUTOINSTALL": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1 -1"


def test_pth_bootstrap_with_a_broken_config_lets_the_program_run(app):
    """A bad config under the bootstrap: one message on stderr, the program runs uninstrumented."""
    (app / "bad.toml").write_text("version = 99\n")
    proc = run_python(
        ["-c", "print('ran')"],
        cwd=app,
        env={"CALLPYBACK_AUTOINSTALL": "1", "CALLPYBACK_CONFIG": str(app / "bad.toml")},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ran"
    assert "auto-instrumentation not installed" in proc.stderr and "version" in proc.stderr


def test_plain_python_dash_m_with_the_bootstrap_instruments_main(app):
    """runpy gets the code through the wrapping loader's get_code: its functions are wrapped."""
    (app / "callpyback.toml").write_text(CONFIG.replace('"tool"', '"tool.cmd"'))
    proc = run_python(["-m", "tool.cmd", "z"], cwd=app, env={"CALLPYBACK_AUTOINSTALL": "1"})
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout.strip() == "cmd -1 ['z'] tool.cmd"


def _pth_dir() -> str:
    for entry in sys.path:
        if entry and os.path.isfile(os.path.join(entry, "callpyback-autoinstall.pth")):
            return entry
    pytest.fail(
        "callpyback-autoinstall.pth is not installed in any site directory; reinstall with "
        f"pip install -e {ROOT} (the build hook in hatch_build.py ships it)"
    )


def test_shop_demo_runs_instrumented_with_retries_and_reports_at_exit():
    """The README's first command: retries absorb dropped connections; the run report (on
    stderr, from --report text) lists every observed function; the shop prints nothing of it."""
    proc = callpyback_cli(["run", "--report", "text", "examples/shop/app.py"], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "orders paid" in out and "failed: ConnectionError" not in out
    assert "callpyback" not in out  # the shop's own output only
    lines = proc.stderr.splitlines()
    header = next(line for line in lines if line.startswith("target"))
    assert header.split()[:7] == [
        "target",
        "pipeline",
        "calls",
        "ok",
        "failed",
        "recovered",
        "retries",
    ]
    rows = {c[0]: c[1:] for c in (line.split() for line in lines) if c and ":" in c[0]}
    expected = {"__main__:main", "shop.payments:charge_card", "shop.orders:OrderService.place"}
    assert set(rows) >= expected
    assert rows["shop.payments:charge_card"][0] == "payments"
    assert int(rows["shop.payments:charge_card"][5]) > 0  # retries happened
    assert "charge_card failed" in proc.stderr  # the logging observer, after retries
    plain = run_python(["examples/shop/app.py"], cwd=ROOT)  # uninstrumented: no retries, no report
    assert plain.returncode == 0 and "failed: ConnectionError" in plain.stdout
    assert "callpyback report" not in plain.stdout + plain.stderr


def test_pth_bootstrap_reads_its_switches_with_the_one_boolean_parser(app):
    """AUTOINSTALL=y installs; a non-boolean AUTOINSTALL installs nothing, and says why;
    DISABLED=2 (not a boolean) counts as set, like every other reader of the kill switch."""
    code = (
        "import sys; import helpers; print(any('Instrumenting' in type(f).__name__ "
        "for f in sys.meta_path))"
    )
    proc = run_python(["-c", code], cwd=app, env={"CALLPYBACK_AUTOINSTALL": "y"})
    assert proc.stdout.strip() == "True", proc.stderr
    proc = run_python(["-c", code], cwd=app, env={"CALLPYBACK_AUTOINSTALL": "maybe"})
    assert proc.stdout.strip() == "False"
    assert "CALLPYBACK_AUTOINSTALL: 'maybe' is not a boolean" in proc.stderr
    proc = run_python(
        ["-c", code], cwd=app, env={"CALLPYBACK_AUTOINSTALL": "1", "CALLPYBACK_DISABLED": "2"}
    )
    assert proc.stdout.strip() == "False", proc.stderr
