"""The pages' claims are checked: every ```python block of README.md and docs/ runs, and what the
pages show as output is what really comes out.

Each page runs in its own interpreter (its blocks share one namespace, top to bottom), with an
empty working directory and its own temporary directory, so pages cannot leak state (installed
hooks, plugins, files) into each other or into the test process, and a page that wrote into the
working directory (where a reader would run it: their project) fails.

What a page may say to this harness, in HTML comments (invisible on the site and on a code host):

- ``<!-- skip: REASON -->`` before a python block: the block is not run, for the reason given
  (it needs a server the docs tests do not start, say). A skip without a reason fails.
- ``<!-- excerpt: PATH -->`` before a block: the block quotes the file ``PATH`` (from the
  repository root); its lines must appear there in order (``...`` lines stand for omitted ones).
- ``<!-- no-snippets: REASON -->`` anywhere: the page runs no block, on purpose. A page that
  runs no block without saying why fails, and so does one that says so but runs some.

Output, checked after the page ran:

- a ```text block that directly follows a python block (nothing but blank lines between) is what
  that block printed on stdout;
- a ```text block whose first line starts with ``$ `` is a terminal session: each ``$ command``
  runs in bash, at that point of the page, in the page's current directory, and what it prints
  (stdout and stderr) is what the lines under it show.

In both, ``...`` stands for any text (a temporary path, a hash, rows that vary), and trailing
spaces and blank lines at the ends do not count.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", *(p for p in ROOT.glob("docs/**/*.md") if "_build" not in p.parts)]
)

FENCE = re.compile(
    r"^(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
MARKER = re.compile(r"<!--\s*(?P<kind>[a-z-]+):(?P<arg>.*?)-->", re.S)
KINDS = {"skip", "excerpt", "no-snippets"}
PYTHON = {"python", "py", "python3", "pycon", "ipython"}


@dataclass
class Block:
    """One fenced block of a page, with the marker just before it (if any)."""

    line: int  # line of the first line inside the fence (1-based)
    lang: str
    body: str
    marker: Optional[str] = None
    marker_arg: str = ""
    output_of: Optional[int] = None  # index of the python block this shows the output of
    transcript: bool = False


@dataclass
class Page:
    path: Path
    blocks: List[Block] = field(default_factory=list)
    no_snippets: Optional[str] = None
    problems: List[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    def runnable(self) -> list[int]:
        return [i for i, b in enumerate(self.blocks) if b.lang == "python" and b.marker is None]


def parse(path: Path) -> Page:
    """The page's blocks, markers and the problems a reader of the harness rules would see."""
    text = path.read_text(encoding="utf-8")
    page = Page(path)
    # Markers are read outside fences: a page may show the markers themselves in a block.
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in MARKER.finditer(prose):
        kind, arg = m.group("kind"), " ".join(m.group("arg").split())
        line = prose.count("\n", 0, m.start()) + 1
        if kind not in KINDS:
            page.problems.append(f"line {line}: unknown marker {kind!r} (known: {sorted(KINDS)})")
        elif not arg:
            page.problems.append(f"line {line}: <!-- {kind}: --> needs a reason or a path")
        elif kind == "no-snippets":
            page.no_snippets = arg
    end = 0
    previous: Optional[re.Match[str]] = None
    for m in FENCE.finditer(text):
        lang = (m.group("info").split() or [""])[0].lower()
        block = Block(text.count("\n", 0, m.start()) + 2, lang, m.group("body"))
        gap = text[end : m.start()]
        markers = list(MARKER.finditer(gap))
        if markers and not gap[markers[-1].end() :].strip():
            block.marker = markers[-1].group("kind")
            block.marker_arg = " ".join(markers[-1].group("arg").split())
        if lang == "text" and block.body.startswith("$ "):
            block.transcript = True
        elif lang == "text" and previous is not None and not gap.strip():
            prev = page.blocks[-1]
            if prev.lang == "python":
                if prev.marker is not None:
                    page.problems.append(
                        f"line {block.line}: output block after a block that does not run"
                    )
                block.output_of = len(page.blocks) - 1
        if lang in PYTHON and lang != "python":
            page.problems.append(
                f"line {block.line}: ```{lang} block: the harness runs ```python blocks only"
            )
        if block.marker == "skip" and lang != "python":
            page.problems.append(f"line {block.line}: <!-- skip --> before a ```{lang} block")
        page.blocks.append(block)
        end, previous = m.end(), m
    for n, line_text in enumerate(text.splitlines(), 1):
        if re.match(r"^\s+(```|~~~)\s*(python|py)\b", line_text):
            page.problems.append(f"line {n}: indented python fence (not run): unindent it")
    return page


PARSED = [parse(p) for p in PAGES]

RUNNER = r"""
import contextlib, io, json, os, subprocess, sys, traceback
page, results_path = sys.argv[1], sys.argv[2]
steps = json.loads(sys.stdin.read())
ns = {"__name__": "__main__"}
results = []

def save():
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(results, f)

for step in steps:
    if step["kind"] == "python":
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(step["source"], f"{page}:{step['line']}", "exec"), ns)
        except SystemExit:
            pass
        except BaseException:
            traceback.print_exc()
            print(f"SNIPPET FAILED at {page} line {step['line']}", file=sys.stderr)
            results.append(out.getvalue())
            save()
            sys.exit(1)
        results.append(out.getvalue())
    else:  # one command of a terminal session
        proc = subprocess.run(
            ["bash", "-c", step["source"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        results.append(proc.stdout)
    save()
"""


def transcript_commands(block: Block) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a terminal-session block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        else:
            pairs[-1][1].append(line)
    return [(cmd, "\n".join(out)) for cmd, out in pairs]


def normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip("\n")


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected`` where each ``...`` stands for any text."""
    pattern = ".*?".join(re.escape(part) for part in normalise(expected).split("..."))
    return re.fullmatch(pattern, normalise(actual), re.S) is not None


def run_page(page: Page, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list, list]:
    steps: list[dict[str, object]] = []
    expected: list[tuple[int, str, str]] = []  # (step index, where, expected output)
    for block in page.blocks:
        if block.lang == "python" and block.marker is None:
            steps.append({"kind": "python", "line": block.line, "source": block.body})
        elif block.output_of is not None:
            expected.append((len(steps) - 1, f"output block at line {block.line}", block.body))
        elif block.transcript:
            for cmd, out in transcript_commands(block):
                steps.append({"kind": "shell", "line": block.line, "source": cmd})
                expected.append((len(steps) - 1, f"`$ {cmd}` at line {block.line}", out))
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    results_path = tmp_path / "results.json"
    env = dict(os.environ, TMPDIR=str(tmp), NO_COLOR="1", COLUMNS="80")
    env.pop("CALLPYBACK_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, page.name, str(results_path)],
        input=json.dumps(steps),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    return proc, results, expected


@pytest.mark.parametrize("page", [p for p in PARSED if p.runnable()], ids=lambda p: p.name)
def test_page_snippets_run(page: Page, tmp_path: Path) -> None:
    """The page's python blocks run top to bottom, print what the page shows, and write nothing
    into the working directory."""
    proc, results, expected = run_page(page, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for index, where, want in expected:
        got = results[index]
        assert matches(want, got), (
            f"{page.name}: {where} shows\n{want}\nbut the code printed\n{got}"
        )
    left = sorted(str(p.relative_to(tmp_path / "cwd")) for p in (tmp_path / "cwd").rglob("*"))
    assert left == [], f"{page.name} wrote into the current directory: {left}"


@pytest.mark.parametrize("page", PARSED, ids=lambda p: p.name)
def test_page_runs_something_or_says_why(page: Page) -> None:
    """A page runs at least one block, or says why it runs none; its markers are well formed."""
    assert page.problems == []
    if page.no_snippets is None:
        skipped = [b.line for b in page.blocks if b.marker == "skip"]
        assert page.runnable(), (
            f"{page.name} runs no python block (skipped: {skipped}); add runnable examples or "
            "say why with <!-- no-snippets: REASON -->"
        )
    else:
        assert not page.runnable(), f"{page.name} says no-snippets but runs blocks"


EXCERPTS = [(p, b) for p in PARSED for b in p.blocks if b.marker == "excerpt"]


@pytest.mark.parametrize("page, block", EXCERPTS, ids=[f"{p.name}:{b.line}" for p, b in EXCERPTS])
def test_excerpts_quote_their_file(page: Page, block: Block) -> None:
    """An excerpt's lines appear in the quoted file, in order."""
    source = (ROOT / block.marker_arg).read_text(encoding="utf-8").splitlines()
    position = 0
    for line in block.body.splitlines():
        if not line.strip() or line.strip() == "...":
            continue
        while position < len(source) and source[position].rstrip() != line.rstrip():
            position += 1
        assert position < len(source), (
            f"{page.name} line {block.line}: {line!r} is not in {block.marker_arg} (in order)"
        )
        position += 1


def test_harness_checks_output_and_files(tmp_path: Path) -> None:
    """The harness itself fails a wrong output, a wrong transcript and a write into the cwd."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nprint('hello')\n```\n\n```text\nhullo\n```\n\n"
        "```text\n$ echo one\ntwo\n```\n\n```python\nopen('x', 'w').close()\n```\n"
    )
    parsed = parse(page)
    parsed.path = ROOT / "page.md"  # names are relative to the repository
    proc, results, expected = run_page(parsed, tmp_path)
    assert proc.returncode == 0
    assert [matches(want, results[i]) for i, _, want in expected] == [False, False]
    assert matches("hello", results[0]) and matches("t...o", "two")
    assert [p.name for p in (tmp_path / "cwd").iterdir()] == ["x"]
    skipped = tmp_path / "skipped.md"
    skipped.write_text("<!-- skip: -->\n```python\n1\n```\n```py\n2\n```\n<!-- skpi: x -->\n")
    assert len(parse(skipped).problems) == 3
