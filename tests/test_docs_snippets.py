"""Every ```python block in README.md and docs/ runs (a page's blocks share one namespace).

Each page runs in its own interpreter, in a temporary directory, so pages cannot leak state
(installed hooks, plugins, files) into each other or into the test process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md")])
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)

RUNNER = r"""
import json, sys, traceback
blocks = json.loads(sys.stdin.read())
ns = {"__name__": "__main__"}
for line, source in blocks:
    try:
        exec(compile(source, f"{sys.argv[1]}:{line}", "exec"), ns)
    except SystemExit:
        pass
    except BaseException:
        traceback.print_exc()
        print(f"SNIPPET FAILED at {sys.argv[1]} line {line}", file=sys.stderr)
        sys.exit(1)
"""


def blocks_of(page: Path) -> list[tuple[int, str]]:
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


@pytest.mark.parametrize(
    "page", [p for p in PAGES if blocks_of(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_snippets_run(page: Path, tmp_path: Path) -> None:
    """The page's python blocks run top to bottom without error."""
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(page.relative_to(ROOT))],
        input=json.dumps(blocks_of(page)),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_every_page_is_checked() -> None:
    """The README has runnable python blocks (so this test module cannot silently check nothing)."""
    assert blocks_of(ROOT / "README.md")
