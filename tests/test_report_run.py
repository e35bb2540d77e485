"""``callpyback run --report``: written at every kind of exit, with the usual precedence, by
real ``callpyback run`` processes on real programs and config files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from tests.autoinstrument_support import ROOT

PROGRAM = """
import sys, time

def work(i):
    if i % 4 == 3:
        raise ValueError(i)
    return i

def numbers():
    yield 1

def hang():
    print("ready", flush=True)
    while True:
        time.sleep(0.05)

def main(mode):
    for i in range(8):
        try:
            work(i)
        except ValueError:
            pass
    if mode == "exit3":
        sys.exit(3)
    if mode == "raise":
        raise RuntimeError("boom")
    if mode == "sigterm":
        hang()
    if mode == "stubborn":  # swallows every exception, SystemExit included
        print("ready", flush=True)
        while True:
            try:
                time.sleep(0.05)
            except BaseException:
                pass
    print("done")

main(sys.argv[1] if len(sys.argv) > 1 else "ok")
"""

CONFIG = """
version = 1
[observers.metrics]
type = "metrics"

[[pipelines]]
name = "prog"
match = ["__main__"]
observers = ["metrics"]
"""


def env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}
    out.pop("PYTEST_ADDOPTS", None)
    out.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out.update(extra or {})
    return out


def run(
    tmp: Path, args: List[str], *, config: str = CONFIG, extra: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    (tmp / "prog.py").write_text(PROGRAM)
    (tmp / "callpyback.toml").write_text(textwrap.dedent(config))
    return subprocess.run(
        [sys.executable, "-m", "callpyback", "run", *args],
        cwd=tmp,
        env=env(extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def functions(path: Path) -> Dict[str, Dict[str, Any]]:
    data = json.loads(path.read_text())
    assert data["schema"] == 1
    return {f["target"]: f for f in data["functions"]}


def test_text_goes_to_stderr_and_the_program_output_is_untouched(tmp_path: Path) -> None:
    """--report text: the table on stderr after the program's own output."""
    proc = run(tmp_path, ["--report", "text", "prog.py"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("callpyback report: 2 targets, 9 calls")
    assert "4 functions wrapped (4 by the import hook), 0 instrumentation warnings" in lines[0]
    work = next(line.split() for line in lines if line.startswith("__main__:work"))
    assert work[1:7] == ["prog", "8", "6", "2", "0", "0"]


def test_json_and_html_default_to_a_file_in_the_working_directory(tmp_path: Path) -> None:
    """json/html with no file: callpyback-report.json/.html here, and it says where."""
    proc = run(tmp_path, ["--report", "json", "prog.py"])
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "callpyback-report.json"
    assert f"callpyback: json report written to {path}" in proc.stderr
    data = json.loads(path.read_text())
    assert data["program"] == {
        "argv": ["prog.py"],
        "pid": data["program"]["pid"],
        "exit_status": 0,
        "ended_by": "exit",
    }
    assert functions(path)["__main__:work"]["failures"] == 2
    proc = run(tmp_path, ["--report", "html", "prog.py"])
    assert proc.returncode == 0, proc.stderr
    assert "__main__:work" in (tmp_path / "callpyback-report.html").read_text()


@pytest.mark.parametrize(
    ("mode", "status", "ended_by"),
    [("exit3", 3, "sys.exit"), ("raise", 1, "exception")],
)
def test_written_at_sys_exit_and_at_an_uncaught_exception(
    tmp_path: Path, mode: str, status: int, ended_by: str
) -> None:
    """The program's exit status and traceback are as without callpyback; the report is there."""
    proc = run(tmp_path, ["--report-file", "out.json", "prog.py", mode])
    assert proc.returncode == status, proc.stderr
    if mode == "raise":
        assert "RuntimeError: boom" in proc.stderr
    data = json.loads((tmp_path / "out.json").read_text())
    assert (data["program"]["exit_status"], data["program"]["ended_by"]) == (status, ended_by)
    rows = functions(tmp_path / "out.json")
    assert rows["__main__:work"]["calls"] == 8
    main = rows["__main__:main"]
    assert (main["failures"], main["interrupted"]) == ((1, 0) if mode == "raise" else (0, 1))


def test_written_on_sigterm_and_the_process_still_dies_by_the_signal(tmp_path: Path) -> None:
    """SIGTERM while an observed call runs: it ends as interrupted, the report is written, and
    the exit status is the signal's (as without callpyback)."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "callpyback.toml").write_text(CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "callpyback", "run", "--report", "json", "prog.py", "sigterm"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM, err
    data = json.loads((tmp_path / "callpyback-report.json").read_text())
    assert (data["program"]["exit_status"], data["program"]["ended_by"]) == (143, "SIGTERM")
    rows = functions(tmp_path / "callpyback-report.json")
    assert rows["__main__:hang"]["interrupted"] == 1
    assert rows["__main__:main"]["interrupted"] == 1
    assert rows["__main__:work"]["calls"] == 8


def test_a_program_that_swallows_the_sigterm_exception_still_ends(tmp_path: Path) -> None:
    """Without callpyback it would have died at once: it gets a few seconds to unwind, then it
    ends anyway, by the signal, with its report."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "callpyback.toml").write_text(CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "callpyback", "run", "--report", "json", "prog.py", "stubborn"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM, err
    assert functions(tmp_path / "callpyback-report.json")["__main__:work"]["calls"] == 8


def test_command_line_over_environment_over_the_table(tmp_path: Path) -> None:
    """--report > CALLPYBACK_REPORT > [report]; a file goes with its format; off turns it off."""
    table = CONFIG + '\n[report]\nformat = "html"\nfile = "from-table.html"\n'
    proc = run(tmp_path, ["prog.py"], config=table)
    assert proc.returncode == 0 and (tmp_path / "from-table.html").is_file(), proc.stderr
    proc = run(tmp_path, ["prog.py"], config=table, extra={"CALLPYBACK_REPORT": "json:env.json"})
    assert (tmp_path / "env.json").is_file() and "env.json" in proc.stderr
    proc = run(
        tmp_path,
        ["--report", "text", "prog.py"],
        config=table,
        extra={"CALLPYBACK_REPORT": "json:env2.json"},
    )
    assert proc.stderr.startswith("callpyback report: 2 targets")
    assert not (tmp_path / "env2.json").exists()
    proc = run(tmp_path, ["--report", "off", "prog.py"], config=table)
    assert "callpyback" not in proc.stderr
    proc = run(tmp_path, ["prog.py"], config=table, extra={"CALLPYBACK_REPORT": "off"})
    assert "callpyback" not in proc.stderr
    # A file alone says the format by its extension.
    proc = run(tmp_path, ["--report-file", "x.html", "prog.py"])
    assert (tmp_path / "x.html").read_text().startswith("<!DOCTYPE html>")


def test_instrumentation_warnings_are_counted(tmp_path: Path) -> None:
    """A function the hook cannot instrument (a generator under a timeout) is one warning."""
    config = CONFIG + (
        '\n[error_handlers.bound]\ntype = "timeout"\nseconds = 5\n\n'
        '[[pipelines]]\nname = "bounded"\nmatch = ["__main__:numbers"]\n'
        'error_handlers = ["bound"]\n'
    )
    config = config.replace('match = ["__main__"]', 'match = ["__main__"]\nexclude = ["*:numbers"]')
    proc = run(tmp_path, ["--report", "text", "prog.py"], config=config)
    assert proc.returncode == 0, proc.stderr
    assert "callpyback could not instrument __main__:numbers" in proc.stderr
    headline = next(x for x in proc.stderr.splitlines() if x.startswith("callpyback report:"))
    assert headline.endswith(", 1 instrumentation warning")


def test_nothing_observed_is_said(tmp_path: Path) -> None:
    """A config that selects nothing: the report says nothing was observed, and why to look."""
    config = CONFIG.replace('match = ["__main__"]', 'match = ["nowhere"]')
    proc = run(tmp_path, ["--report", "text", "prog.py"], config=config)
    assert proc.returncode == 0
    assert proc.stderr.startswith(
        "callpyback report: nothing was observed (no function was wrapped: no pattern of the "
        "config matched, no decorator is used)"
    )
    assert "callpyback explain" in proc.stderr


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        (["--report-file", "missing/r.json"], {}, "--report-file: cannot write the report to"),
        ([], {"CALLPYBACK_REPORT": "xml"}, "CALLPYBACK_REPORT='xml': the format must be"),
        ([], {"CALLPYBACK_REPORT": "html:no/such/dir.html"}, "the directory"),
    ],
)
def test_a_report_that_cannot_be_written_stops_the_start(
    tmp_path: Path, args: List[str], extra: Dict[str, str], message: str
) -> None:
    """Refused before the program runs (nothing would be lost at the end): status 2."""
    proc = run(tmp_path, [*args, "prog.py"], extra=extra)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stdout == ""


def test_a_bad_report_table_names_the_file_the_line_and_the_key(tmp_path: Path) -> None:
    """[report] is validated like the rest of callpyback.toml."""
    config = CONFIG + '\n[report]\nformat = "pdf"\n'
    line = config.splitlines().index('format = "pdf"') + 1
    proc = run(tmp_path, ["prog.py"], config=config)
    assert proc.returncode == 2
    assert f"callpyback.toml:{line}: report.format" in proc.stderr
    assert "'pdf'" in proc.stderr
    proc = run(tmp_path, ["prog.py"], config=CONFIG + "\n[export.prometheus]\nport = 70000\n")
    assert proc.returncode == 2
    assert "export.prometheus.port" in proc.stderr and "70000" in proc.stderr


def test_the_shop_example_mentions_no_callpyback_in_its_code() -> None:
    """The demo's report comes from callpyback run, not from code in the shop."""
    for path in (ROOT / "examples" / "shop").rglob("*.py"):
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        body = code.split('"""', 2)[-1] if code.lstrip().startswith('"""') else code
        assert "callpyback" not in body, path
