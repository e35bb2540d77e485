"""The HTML report in a real browser: headless Chromium from Debian's packages (installed by
``.ci/setup.d/report.sh``), asserting on the rendered DOM and taking a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

PROGRAM = """
import time

def fast():
    return 1

def medium():
    time.sleep(0.002)

def slow():
    time.sleep(0.02)

def failing():
    raise ValueError("no")

class Shop:
    def place(self):
        return fast()

for _ in range(40):
    fast()
for _ in range(10):
    medium()
for _ in range(3):
    slow()
for _ in range(5):
    try:
        failing()
    except ValueError:
        pass
Shop().place()
"""

CONFIG = """
version = 1
[observers.metrics]
type = "metrics"
[[pipelines]]
name = "demo <all>"
match = ["__main__"]
observers = ["metrics"]
"""


class Dom(HTMLParser):
    """The table rows (target, {column key: data-value}), header attributes, and svg counts."""

    def __init__(self) -> None:
        super().__init__()
        self.heads: List[Dict[str, Optional[str]]] = []
        self.rows: List[Tuple[str, List[Optional[str]]]] = []
        self.buttons = 0
        self.rects = 0
        self.figures = 0
        self._row: Optional[List[Optional[str]]] = None
        self._in_target = False
        self._target = ""

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        a = dict(attrs)
        if tag == "th":
            self.heads.append(a)
        elif tag == "button":
            self.buttons += 1
        elif tag == "tr" and (a.get("id") or "").startswith("f-"):
            self._row, self._target = [], ""
        elif tag == "td" and self._row is not None:
            self._row.append(a.get("data-value"))
            self._in_target = "target" in (a.get("class") or "")
        elif tag == "rect" and "bar" in (a.get("class") or ""):
            self.rects += 1
        elif tag == "figure":
            self.figures += 1

    def handle_data(self, data: str) -> None:
        if self._in_target:
            self._target += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_target = False
        elif tag == "tr" and self._row is not None:
            self.rows.append((self._target, self._row))
            self._row = None

    def column(self, key: str) -> int:
        return [h.get("data-key") for h in self.heads].index(key)


def chromium(args: List[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            "chromium is not installed: .ci/setup.d/report.sh installs it (apt-get install "
            "chromium); the HTML report is tested in a real browser"
        )
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    profile.mkdir()
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run's report: callpyback run --report html on a small program."""
    tmp = tmp_path_factory.mktemp("html")
    (tmp / "prog.py").write_text(PROGRAM)
    (tmp / "callpyback.toml").write_text(textwrap.dedent(CONFIG))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}
    proc = subprocess.run(
        [sys.executable, "-m", "callpyback", "run", "--report", "html", "prog.py"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return tmp / "callpyback-report.html"


def dom(page: Path, tmp: Path, fragment: str = "", *extra: str) -> Dom:
    proc = chromium([*extra, "--dump-dom", page.as_uri() + fragment], tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parsed = Dom()
    parsed.feed(proc.stdout)
    return parsed


def test_the_page_has_every_target_sorted_by_total_time(page: Path, tmp_path: Path) -> None:
    """Rows are every observed target, longest total first; each has its histogram."""
    d = dom(page, tmp_path)
    targets = [t for t, _ in d.rows]
    assert set(targets) >= {
        "__main__:fast",
        "__main__:medium",
        "__main__:slow",
        "__main__:failing",
        "__main__:Shop.place",
    }
    total = d.column("total")
    totals = [float(cells[total] or 0) for _, cells in d.rows]
    assert totals == sorted(totals, reverse=True)
    assert targets[0] == "__main__:slow"
    assert d.figures == len(d.rows) and d.rects >= len(d.rows)
    failed = d.column("failures")
    assert dict((t, c[failed]) for t, c in d.rows)["__main__:failing"] == "5.0"
    assert d.heads[d.column("pipeline")]
    assert "demo <all>" in page.read_text(encoding="utf-8").replace("&lt;", "<").replace(
        "&gt;", ">"
    )


def test_the_table_sorts_in_the_browser(page: Path, tmp_path: Path) -> None:
    """The inline script ran: headers became buttons, #sort=calls-asc sorted by calls."""
    d = dom(page, tmp_path, "#sort=calls-asc")
    assert d.buttons == len(d.heads)
    calls = d.column("calls")
    values = [float(cells[calls] or 0) for _, cells in d.rows]
    assert values == sorted(values)
    assert d.heads[calls].get("aria-sort") == "ascending"
    assert d.heads[d.column("total")].get("aria-sort") is None
    d = dom(page, tmp_path, "#sort=target")
    names = [t for t, _ in d.rows]
    assert names == sorted(names, reverse=True)


def test_the_page_reads_without_javascript(page: Path, tmp_path: Path) -> None:
    """Without its script (Chromium's --dump-dom needs scripts on, so the copy has none): the
    same rows in total-time order and the histograms; the headers stay plain text."""
    text = page.read_text(encoding="utf-8")
    start, end = text.index("<script>"), text.index("</script>") + len("</script>")
    bare = tmp_path / "bare.html"
    bare.write_text(text[:start] + text[end:], encoding="utf-8")
    d = dom(bare, tmp_path, "#sort=calls-asc")
    assert d.buttons == 0
    assert d.rows and d.rows[0][0] == "__main__:slow"
    assert d.heads[d.column("total")].get("aria-sort") == "descending"
    assert d.rects >= len(d.rows)


def test_a_screenshot_of_the_page(page: Path, tmp_path: Path) -> None:
    """Chromium renders it to a PNG (kept in the test's tmp_path to look at)."""
    shot = tmp_path / "report.png"
    proc = chromium(
        ["--hide-scrollbars", "--window-size=1280,1100", f"--screenshot={shot}", page.as_uri()],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 1100)
    assert len(data) > 20_000  # a page with a table and bars, not a blank one
