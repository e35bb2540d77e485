"""The documentation site builds strictly and offline, and its links hold.

The site is built once per test session, from the checkout, the way README.md says
(``python -m sphinx -W --keep-going``), in a fresh output directory (so every page is read and
every warning is seen), with any network use sent to a closed port. Then its HTML is checked:
every internal link and anchor resolves, nothing is loaded from elsewhere, every page of
``docs/`` is part of the site, and every public name is in its inventory.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple
from urllib.parse import unquote, urlsplit

import pytest

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("**/*.md") if "_build" not in p.parts)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("site") / "html"
    dead = "http://127.0.0.1:9"  # nothing listens there: any download fails at once
    env = dict(
        os.environ,
        http_proxy=dead,
        https_proxy=dead,
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        no_proxy="",
        NO_PROXY="",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    return out, proc


def test_site_builds_with_warnings_as_errors(
    site: Tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """``sphinx -W --keep-going`` succeeds and says nothing: no warning of any kind."""
    out, proc = site
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert proc.stderr.strip() == "", proc.stderr[-6000:]
    assert (out / "index.html").is_file()


def test_every_page_is_in_the_site(site: Tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """Each Markdown page of docs/ became a page of the site (and so is in the navigation:
    Sphinx warns about a page in no toctree, which -W makes an error)."""
    out, _ = site
    missing = [
        str(p) for p in PAGES if not (out / p.relative_to(DOCS).with_suffix(".html")).is_file()
    ]
    assert missing == []


class _Page(HTMLParser):
    """The ids of a page, its links, and what it loads."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: Set[str] = set()
        self.links: List[str] = []
        self.loads: List[str] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(str(a[key]))
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        if tag in ("script", "img", "iframe", "source", "video", "audio") and a.get("src"):
            self.loads.append(str(a["src"]))
        if tag == "link" and a.get("href"):
            self.loads.append(str(a["href"]))
            if "stylesheet" in (a.get("rel") or "") or "icon" in (a.get("rel") or ""):
                self.links.append(str(a["href"]))


def _pages(out: Path) -> Dict[Path, _Page]:
    parsed = {}
    for html in out.glob("**/*.html"):
        if "_static" in html.parts or "_sources" in html.parts:
            continue
        page = _Page()
        page.feed(html.read_text(encoding="utf-8"))
        parsed[html] = page
    return parsed


def _broken_links(out: Path) -> Iterator[str]:
    pages = _pages(out)
    for html, page in pages.items():
        for href in page.links:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("mailto:"):
                continue  # a link to elsewhere: not ours to check offline
            target = html if not parts.path else (html.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                yield f"{html.relative_to(out)}: {href} (no such file)"
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if fragment not in ids:
                    yield f"{html.relative_to(out)}: {href} (no such anchor)"


def test_internal_links_and_anchors_resolve(
    site: Tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """Every link inside the site points at a file that exists, and at an anchor on it."""
    out, proc = site
    assert proc.returncode == 0
    assert list(_broken_links(out)) == []


def test_link_checker_finds_broken_links(tmp_path: Path) -> None:
    """The checker itself reports a missing page and a missing anchor."""
    (tmp_path / "a.html").write_text(
        '<p id="here"><a href="b.html">x</a><a href="a.html#here">y</a><a href="#gone">z</a>'
        '<a href="https://example.org/">ext</a></p>'
    )
    assert sorted(_broken_links(tmp_path)) == [
        "a.html: #gone (no such anchor)",
        "a.html: b.html (no such file)",
    ]


def test_nothing_is_loaded_from_the_network(
    site: Tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """No page loads a script, stylesheet, font or image from another host, and no stylesheet
    imports one: the site works offline, as built."""
    out, _ = site
    remote = re.compile(r"^(https?:)?//", re.I)
    loads = [
        f"{html.relative_to(out)}: {src}"
        for html, page in _pages(out).items()
        for src in page.loads
        if remote.match(src)
    ]
    assert loads == []
    for css in out.glob("_static/**/*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), css
        assert not re.search(r"@import\s+(url\()?\s*['\"]?(https?:)?//", text), css


def test_every_public_name_is_in_the_inventory(
    site: Tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """What tests/test_api_reference.py finds in the reference pages, autodoc really documented:
    each documented target is an object of the built site's inventory."""
    from sphinx.util.inventory import InventoryFile

    from tests.test_api_reference import DOCUMENTED

    out, proc = site
    assert proc.returncode == 0
    with open(out / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    names = {
        name for kind, entries in inventory.items() if kind.startswith("py:") for name in entries
    }
    missing = [target for target in DOCUMENTED if target not in names]
    assert missing == []
    assert importlib.import_module("callpyback").CallPyBack is not None


def _signatures(out: Path) -> Dict[str, str]:
    """The text of every documented object's signature line, by its id."""
    found = {}
    entry = re.compile(r'<dt class="sig sig-object py" id="([^"]+)">(.*?)</dt>', re.S)
    for html in out.glob("api/*.html"):
        for m in entry.finditer(html.read_text(encoding="utf-8")):
            found[m.group(1)] = " ".join(unescape(re.sub(r"<[^>]+>", "", m.group(2))).split())
    return found


def test_signatures_are_the_real_ones(site: Tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """No class or function is documented as ``(*args, **kwargs)`` when that is not how it is
    called (autodoc reads ``CallPyBack.__new__``, a Protocol's unused constructor): the
    decorator shows its keyword arguments, a Protocol no call at all."""
    out, proc = site
    assert proc.returncode == 0
    signatures = _signatures(out)
    variadic = re.compile(r"\(\*args(: \w+)?, \*\*kwargs(: \w+)?\)¶?$")
    assert [s for s in signatures.values() if variadic.search(s)] == []
    # (Python 3.9's typing shows "observers: Any | None = None")
    decorator = signatures["callpyback.CallPyBack"]
    assert re.search(r"\(observers: [^,]+ = None, \*, variable_names: ", decorator), decorator
    protocol = signatures["callpyback.typing.Observer"]
    assert protocol.rstrip("¶") == "class callpyback.typing.Observer"


def read_png(path: Path) -> Tuple[int, int, List[bytes]]:
    """Width, height and unfiltered RGB(A) rows of an 8-bit PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks)), width * bpp
    rows: List[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind_ = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind_ == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind_ == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif kind_ == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + (left + prev[i]) // 2) & 255
        elif kind_ == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    if bpp == 4:  # drop the alpha channel
        rows = [bytes(b for i, b in enumerate(r) if i % 4 < 3) for r in rows]
    return width, height, rows


def looks_styled(width: int, rows: List[bytes]) -> str:
    """Why a screenshot is not the themed page ("" if it is): the sidebar has a background of
    its own (the stylesheet loaded), and both the sidebar and the content show text."""
    from collections import Counter

    def region(x0: int, x1: int) -> Tuple[Tuple[int, ...], int]:
        colours: Counter[Tuple[int, ...]] = Counter()
        for row in rows[len(rows) // 8 :]:
            for x in range(x0, x1, 2):
                colours[tuple(row[3 * x : 3 * x + 3])] += 1
        background = colours.most_common(1)[0][0]
        ink = sum(
            n
            for colour, n in colours.items()
            if sum(abs(a - b) for a, b in zip(colour, background)) > 200
        )
        return background, ink

    side_bg, side_text = region(width // 50, width // 5)
    main_bg, main_text = region(width // 3, width * 4 // 5)
    if side_bg == main_bg:
        return f"one background everywhere {side_bg}: the theme's stylesheet did not apply"
    if side_text < 200 or main_text < 2000:
        return f"too little text drawn (sidebar {side_text}, content {main_text} pixels of ink)"
    return ""


def test_the_themed_site_renders_in_a_browser(
    site: Tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """Headless Chromium, with every network request sent to a closed port, draws the front
    page and an API page as themed pages with their text: the local stylesheets and fonts are
    all the site needs (the PNGs are kept in the test's temporary directory to look at)."""
    out, proc = site
    assert proc.returncode == 0
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed: .ci/setup.d/report.sh installs it (apt chromium)"
    for page in ("index.html", "api/core.html"):
        png = tmp_path / (page.replace("/", "-") + ".png")
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",  # no update or sync requests either
                "--disable-component-update",
                "--hide-scrollbars",
                "--proxy-server=http://127.0.0.1:9",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=1024,768",
                f"--screenshot={png}",
                (out / page).as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        width, height, rows = read_png(png)
        assert (width, height) == (1024, 768)
        assert looks_styled(width, rows) == "", (page, png)


def test_the_render_check_can_fail() -> None:
    """An unstyled page (one background) and an empty one are told apart from the site."""
    white, black = b"\xff\xff\xff", b"\x00\x00\x00"
    text_rows = [(white * 5 + black * 5) * 20 for _ in range(40)]
    assert "did not apply" in looks_styled(200, text_rows)
    sidebar = [b"\xf0\xf0\xf0" * 40 + white * 160 for _ in range(40)]
    assert "too little text" in looks_styled(200, sidebar)


def _mini_site(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "src"
    (src / "more").mkdir(parents=True)
    extensions = ["myst_parser", "callpyback_docs"]
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        f"extensions = {extensions!r}\nhtml_theme = 'furo'\n"
    )
    (src / "index.md").write_text("# Home\n\n```{toctree}\n:caption: Listed\n\nlisted\n```\n")
    (src / "listed.md").write_text("# Listed\n\n```{toctree}\n\nIn a subfolder <more/deep>\n```\n")
    (src / "more" / "deep.md").write_text("# Deep\n")
    (src / "new.md").write_text("# A page no toctree lists\n")
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(src), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_page_outside_the_navigation_goes_under_other_pages(tmp_path: Path) -> None:
    """A page no toctree lists (a branch's new page, merged before the navigation names it)
    does not fail the strict build: the site's extension lists it under "Other pages"; pages
    listed by nested toctrees, with titles, stay where they are. (No source names "Other
    pages": the extension made that section.)"""
    proc = _mini_site(tmp_path)
    assert proc.returncode == 0, proc.stderr
    front = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    start = front.index("Other pages")
    nav = front[start : front.index("</ul>", start)]  # that section of the navigation
    assert 'href="new.html"' in nav and "deep.html" not in nav and "listed.html" not in nav


def test_every_page_has_its_place_in_the_navigation(
    site: Tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """The site's own pages are all in the wiki's sections today: "Other pages" is empty (a
    page merged there is placed in docs/index.md's sections, then this holds again)."""
    out, proc = site
    assert proc.returncode == 0
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from callpyback_docs import listed_pages
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    pages = {p.relative_to(DOCS).with_suffix("").as_posix() for p in PAGES}
    unplaced = sorted(pages - listed_pages(DOCS))
    assert unplaced == [], f"add these pages to a section (toctree) of docs/index.md: {unplaced}"
    assert "Other pages" not in (out / "index.html").read_text(encoding="utf-8")


def test_prose_is_not_read_as_a_type(site: Tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """A docstring whose first line is "What it is: ..." stays prose (napoleon, not used, made
    "What it is" the datum's type), and no entry of the reference shows a "Type" field."""
    out, proc = site
    assert proc.returncode == 0
    page = (out / "api" / "state.html").read_text(encoding="utf-8")
    entry = page[page.index('id="callpyback.state.OutagePolicy"') :]
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", entry[:3000])).split())
    assert "¶ What a shared backend does while its store is unreachable:" in text
    field = re.compile(r'<dt class="field-(odd|even)">Type')
    typed = [p.name for p in out.glob("api/*.html") if field.search(p.read_text(encoding="utf-8"))]
    assert typed == []


def test_tests_the_pages_name_exist() -> None:
    """A page that says "tested by tests/test_x.py" names a test file that exists (the claim
    that an example is run, or a behaviour checked, stays true when tests move)."""
    named = re.compile(r"`((?:tests|plugins/[\w.-]+/tests|benchmarks)/[\w/.-]+\.py)(?:::\w+)?`")
    claims = {
        (page.relative_to(ROOT).as_posix(), path)
        for page in [*PAGES, ROOT / "README.md"]
        for path in named.findall(page.read_text(encoding="utf-8"))
    }
    assert len(claims) > 10  # the pages do name their tests
    assert sorted(c for c in claims if not (ROOT / c[1]).is_file()) == []


def test_readme_links_resolve() -> None:
    """README.md's links to files of the repository (the docs pages, examples) exist."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    missing = [
        link
        for link in links
        if not urlsplit(link).scheme and not (ROOT / unquote(urlsplit(link).path)).exists()
    ]
    assert missing == []
