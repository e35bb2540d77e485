"""``callpyback top``: the numbers it derives from an exposition, and the live view itself
under tmux (a real terminal) against a real program under ``callpyback run --metrics-port``."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from callpyback.cli.top import Sample, State, normalise_url, parse, quantile, rows, sort_rows
from tests.report_support import Program, clean_env, free_port

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

PROGRAM = """
import sys, threading, time

def fast():
    return 1

def slow():
    time.sleep(0.02)

def bad():
    time.sleep(0.002)
    raise ValueError("bad")

def loop():
    while True:
        for _ in range(20):
            fast()
        slow()
        try:
            bad()
        except ValueError:
            pass

threading.Thread(target=loop, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
"""

CONFIG = """
version = 1
[observers.metrics]
type = "metrics"
[[pipelines]]
name = "all"
match = ["__main__:fast", "__main__:slow", "__main__:bad"]
observers = ["metrics"]
"""

EXPOSITION = """\
# TYPE callpyback_calls_total counter
callpyback_calls_total{outcome="success",target="a:f"} 90.0
callpyback_calls_total{outcome="failure",target="a:f"} 8.0
callpyback_calls_total{outcome="interrupted",target="a:f"} 2.0
callpyback_calls_total{outcome="success",target="a:g"} 10.0
# TYPE callpyback_calls_in_flight gauge
callpyback_calls_in_flight{target="a:f"} 3.0
callpyback_calls_in_flight{target="a:g"} 0.0
# TYPE callpyback_call_duration_seconds histogram
callpyback_call_duration_seconds_bucket{le="0.001",target="a:f"} 50.0
callpyback_call_duration_seconds_bucket{le="0.01",target="a:f"} 100.0
callpyback_call_duration_seconds_bucket{le="+Inf",target="a:f"} 100.0
callpyback_call_duration_seconds_count{target="a:f"} 100.0
callpyback_call_duration_seconds_sum{target="a:f"} 0.3
callpyback_call_duration_seconds_bucket{le="0.001",target="a:g"} 0.0
callpyback_call_duration_seconds_bucket{le="0.01",target="a:g"} 0.0
callpyback_call_duration_seconds_bucket{le="+Inf",target="a:g"} 10.0
callpyback_call_duration_seconds_count{target="a:g"} 10.0
callpyback_call_duration_seconds_sum{target="a:g"} 200.0
"""


# --- the numbers ------------------------------------------------------------------------------


def test_parse_reads_calls_errors_in_flight_and_buckets() -> None:
    parsed = parse(EXPOSITION)
    assert parsed is not None
    f = parsed["a:f"]
    assert (f.calls, f.errors, f.in_flight, f.sum) == (100, 10, 3, 0.3)
    assert f.buckets == [(0.001, 50), (0.01, 100), (float("inf"), 100)]
    assert parse("# TYPE other_total counter\nother_total 1\n") is None


def test_quantiles_interpolate_within_a_bucket_as_histogram_quantile_does() -> None:
    buckets = [(0.001, 50.0), (0.01, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.001)
    assert quantile(0.25, buckets) == pytest.approx(0.0005)
    assert quantile(0.99, buckets) == pytest.approx(0.001 + 0.009 * 49 / 50)
    # In the +Inf bucket: the highest finite bound, as Prometheus answers.
    assert quantile(0.5, [(0.01, 0.0), (float("inf"), 10.0)]) == 0.01
    assert quantile(0.5, [(0.01, 0.0), (float("inf"), 0.0)]) is None


def test_rates_and_quantiles_are_over_the_interval() -> None:
    """calls/s and errors/s from the difference of two scrapes; p50/p99 of that interval's
    calls only; a counter that went down (a restarted program) starts afresh."""
    before = {"t": Sample(100, 10, 1, [(0.001, 100), (0.01, 100), (float("inf"), 100)], 0.05)}
    now = {"t": Sample(150, 20, 2, [(0.001, 100), (0.01, 150), (float("inf"), 150)], 0.3)}
    [row] = rows(now, before, 2.0)
    assert (row.calls_rate, row.errors_rate, row.in_flight, row.calls) == (25, 5, 2, 150)
    assert row.p50 is not None and 0.001 < row.p50 <= 0.01  # the new calls were all slower
    [first] = rows(now, None, None)
    assert (first.calls_rate, first.p50) == (None, pytest.approx(0.00075))  # all 150 calls
    restarted = {"t": Sample(5, 0, 0, [(0.001, 5), (0.01, 5), (float("inf"), 5)], 0.001)}
    [again] = rows(restarted, now, 1.0)
    assert again.calls_rate == 5


def test_sorting_puts_missing_values_last_in_both_directions() -> None:
    items = rows(
        {
            "a": Sample(10, 0, 0, [(1.0, 10), (float("inf"), 10)]),
            "b": Sample(20, 0, 0, [(1.0, 20), (float("inf"), 20)]),
            "c": Sample(0, 0, 0, []),
        },
        None,
        None,
    )
    assert [r.target for r in sort_rows(items, "calls", False)] == ["b", "a", "c"]
    assert [r.target for r in sort_rows(items, "calls", True)] == ["c", "a", "b"]
    assert [r.target for r in sort_rows(items, "p99", False)][-1] == "c"
    assert [r.target for r in sort_rows(items, "p99", True)][-1] == "c"
    assert [r.target for r in sort_rows(items, "target", False)] == ["a", "b", "c"]


def test_keys_change_the_sort_and_its_direction() -> None:
    state = State("u", 1.0, "p99", "callpyback")
    assert state.key("2") and state.sort == "calls_rate" and state.descending
    assert state.key("2") and not state.descending  # the same key again: reversed
    assert state.key("1") and state.sort == "target" and not state.descending
    assert state.key("r") and state.descending
    assert not state.key("x") and not state.key("9")


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("9464", "http://127.0.0.1:9464/metrics"),
        ("host:1234", "http://host:1234/metrics"),
        ("http://10.0.0.5:9464", "http://10.0.0.5:9464/metrics"),
        ("http://h:1/custom", "http://h:1/custom"),
    ],
)
def test_short_urls(given: str, url: str) -> None:
    assert normalise_url(given) == url


def test_the_interval_is_at_least_a_quarter_second() -> None:
    """At most 4 redraws a second: a shorter interval is refused."""
    proc = subprocess.run(
        [sys.executable, "-m", "callpyback", "top", "--interval", "0.1"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert proc.returncode == 2 and "at least 0.25" in proc.stderr


# --- against a real program -------------------------------------------------------------------


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Program]:
    """The looping program above under callpyback run --metrics-port 0."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "callpyback.toml").write_text(textwrap.dedent(CONFIG))
    with Program(["--metrics-port", "0", "prog.py"], tmp_path) as running:
        running.url()
        running.wait_for(lambda line: line == "ready\n")
        yield running
        running.release()
        running.stop()


def test_not_on_a_terminal_it_prints_plain_tables(program: Program) -> None:
    """Piped: one plain table per interval, no escape sequences; -n stops it."""
    proc = subprocess.run(
        [sys.executable, "-m", "callpyback", "top", program.url(), "-n", "3", "-i", "0.25"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout
    frames = [f for f in proc.stdout.split("\n\n") if f.strip()]
    assert len(frames) == 3
    last = frames[-1].splitlines()
    assert last[0].startswith(f"callpyback top  {program.url()}")
    assert last[1].split() == [
        "target",
        "calls/s",
        "errors/s",
        "p50",
        "p99",
        "in",
        "flight",
        "calls",
    ]
    table = {line.split()[0]: line.split()[1:] for line in last[2:]}
    assert set(table) == {"__main__:fast", "__main__:slow", "__main__:bad"}
    assert float(table["__main__:bad"][1]) > 0  # errors/s
    assert float(table["__main__:fast"][1]) == 0
    assert next(iter(table)) == "__main__:slow"  # sorted by p99, slowest first


# --- the live view under tmux -----------------------------------------------------------------


class Tmux:
    """A private tmux server (its own socket) with one 120x30 pane running a shell."""

    def __init__(self, tmp: Path) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed: .ci/setup.d/report.sh installs it")
        self.socket = f"cpb-top-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp
        self.run("new-session", "-d", "-x", "120", "-y", "30", "-s", "top", "sh")

    def run(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env({"TERM": "xterm-256color"}),
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def type(self, command: str) -> None:
        self.run("send-keys", "-t", "top", command, "Enter")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "top", *keys)

    def screen(self, escapes: bool = False) -> str:
        return self.run("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "top")

    def show(self, fmt: str) -> str:
        return self.run("display-message", "-p", "-t", "top", fmt).strip()

    def until(self, test: Callable[[str], bool], timeout: float = 30, **kw: bool) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(**kw)
            if test(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the pane never showed it:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    session = Tmux(tmp_path)
    try:
        yield session
    finally:
        session.close()


def top_command(*args: str, env: str = "") -> str:
    python = shlex.quote(sys.executable)
    quoted = " ".join(shlex.quote(a) for a in args)
    return f"{env} {python} -m callpyback top {quoted}; echo EXIT=$?"


def exited(screen: str) -> bool:
    """The shell printed the status line (not just the command we typed, which contains it)."""
    return any(line.startswith("EXIT=") for line in screen.splitlines())


def status(screen: str) -> str:
    return next(line for line in screen.splitlines() if line.startswith("EXIT="))


def table_rows(screen: str) -> List[str]:
    return [line.split()[0] for line in screen.splitlines() if line.strip().startswith("__main__")]


def test_live_view_sorts_on_keys_and_restores_the_terminal(tmux: Tmux, program: Program) -> None:
    """Header and rows sorted by p99; `2` re-sorts by calls/s; `q` quits with status 0, out of
    the alternate screen, cursor visible."""
    tmux.type(top_command(program.url(), "--interval", "0.25"))
    screen = tmux.until(lambda s: len(table_rows(s)) == 3 and "calls/s [2]" in s)
    assert tmux.show("#{alternate_on}") == "1"
    assert f"callpyback top  {program.url()}" in screen
    assert "sorted by p99 (5, descending)" in screen
    assert table_rows(screen)[0] == "__main__:slow"
    tmux.keys("2")
    screen = tmux.until(lambda s: "sorted by calls/s (2, descending)" in s)
    screen = tmux.until(lambda s: table_rows(s)[:1] == ["__main__:fast"])
    tmux.keys("2")
    tmux.until(lambda s: "sorted by calls/s (2, ascending)" in s)
    tmux.keys("q")
    screen = tmux.until(exited)
    assert status(screen) == "EXIT=0"
    assert tmux.show("#{alternate_on}") == "0"
    assert tmux.show("#{cursor_flag}") == "1"
    assert "callpyback top  http" not in screen  # the view went with the alternate screen


def test_ctrl_c_quits_too(tmux: Tmux, program: Program) -> None:
    tmux.type(top_command(program.url(), "--interval", "0.25"))
    tmux.until(lambda s: len(table_rows(s)) == 3)
    tmux.keys("C-c")
    screen = tmux.until(exited)
    assert status(screen) == "EXIT=0" and "Traceback" not in screen
    assert tmux.show("#{alternate_on}") == "0" and tmux.show("#{cursor_flag}") == "1"


def test_an_unreachable_endpoint_is_said_and_retried(tmux: Tmux, tmp_path: Path) -> None:
    """Nothing listens yet: a clear message; once the program serves the port, rows appear."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    tmux.type(top_command(url, "--interval", "0.25"))
    screen = tmux.until(lambda s: "cannot reach" in s)
    text = " ".join(screen.split())
    assert f"cannot reach {url} (ConnectionRefusedError" in text
    assert "retrying every 0.25s" in text
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "callpyback.toml").write_text(textwrap.dedent(CONFIG))
    with Program(["--metrics-port", str(port), "prog.py"], tmp_path) as running:
        running.wait_for(lambda line: line == "ready\n")
        screen = tmux.until(lambda s: len(table_rows(s)) == 3)
        assert "cannot reach" not in screen
        tmux.keys("q")
        assert status(tmux.until(exited)) == "EXIT=0"
        running.release()
        running.stop()


def test_no_color_is_honoured(tmux: Tmux, program: Program) -> None:
    """Rows with errors are red, unless NO_COLOR is set."""
    red = ("\x1b[31m", "\x1b[91m", "\x1b[38;5;1m", "\x1b[38;5;9m")
    tmux.type(top_command(program.url(), "--interval", "0.25"))
    tmux.until(lambda s: any(r in s for r in red), escapes=True)
    tmux.keys("q")
    assert status(tmux.until(exited)) == "EXIT=0"
    tmux.type("clear")
    tmux.type(top_command(program.url(), "--interval", "0.25", env="NO_COLOR=1"))
    tmux.until(lambda s: len(table_rows(s)) == 3 and "errors/s" in s)
    time.sleep(0.6)  # a few more refreshes, with errors in each interval
    screen = tmux.screen(escapes=True)
    assert "__main__:bad" in screen and not any(r in screen for r in red)
    tmux.keys("q")
    assert status(tmux.until(exited)) == "EXIT=0"


def test_a_missing_rich_is_one_clear_message(tmux: Tmux) -> None:
    """On a terminal without rich: the install command, status 2."""
    code = (
        "import sys; sys.modules['rich'] = None; from callpyback.cli import main; "
        "sys.exit(main(['top']))"
    )
    tmux.type(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}; echo EXIT=$?")
    screen = tmux.until(exited)
    text = " ".join(screen.split())
    assert "callpyback top: callpyback top needs rich, which is not installed: pip install " in text
    assert "'rich>=13'" in text and status(screen) == "EXIT=2"
