"""The libraries of the transparency corpus (issue 11): what to download, install and run.

Each entry is a release on PyPI whose sdist ships its own test suite.  ``packages`` are the
top-level import names one ``metrics`` pipeline matches (every function of the package);
``exclude`` names test modules that live inside the package.  ``pytest_args`` is the suite as
its own configuration runs it (its ``testpaths``/``addopts`` apply), narrowed where said.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Dict, List, Tuple

TRACEBACK = "a failure's traceback has one more entry per observed function it passed through"


@dataclass(frozen=True)
class Library:
    name: str  # the distribution name on PyPI
    version: str
    packages: Tuple[str, ...]  # top-level import names matched by the pipeline
    requirements: Tuple[str, ...] = ("pytest",)  # the suite's test requirements
    pytest_args: Tuple[str, ...] = ()  # paths and options after ``python -m pytest``
    exclude: Tuple[str, ...] = ()  # test modules inside the package
    note: str = ""  # how the suite run differs from the library's own CI, if it does
    #: pytest_args of the full suite, when the default run is a subset (``--full``)
    full_args: Tuple[str, ...] = ()
    #: the issue's "before" figures: plain, instrumented (as reported there)
    before: Tuple[str, str] = ("", "")
    #: formerly failing (the issue's table) or passing already
    formerly_failing: bool = False
    #: tests whose outcome wrapping must change (docs/auto-instrumentation.md, "What wrapping
    #: can change"): node id -> why.  Any other difference is a bug.
    inherent: Tuple[Tuple[str, str], ...] = ()
    #: the documented way to avoid them: patterns excluded by ``--avoid`` runs
    avoid: Tuple[str, ...] = ()
    #: (regex, replacement) applied to node ids whose parameters the suite makes at collection
    #: time (the current time), so that the two runs' ids compare
    volatile: Tuple[Tuple[str, str], ...] = ()
    #: the release's Requires-Python (its lowest version)
    python: Tuple[int, int] = (3, 9)

    @property
    def supported(self) -> bool:
        """The running interpreter can install this release."""
        return sys.version_info[:2] >= self.python

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


_PYPARSING_PACKRAT = [
    "Test03_EnablePackratParsing",
    "Test04_WithPackrat",
    "Test05_EnableBoundedPackratParsing",
    "Test06_WithBoundedPackrat",
    "Test07_EnableUnboundedPackratParsing",
    "Test08_WithUnboundedPackrat",
    "Test09_WithLeftRecursionParsing",
    "Test10_WithLeftRecursionParsingBoundedMemo",
]

LIBRARIES: List[Library] = [
    Library(
        "attrs",
        "26.1.0",
        ("attr", "attrs"),
        ("pytest", "hypothesis", "pympler", "cloudpickle"),
        before=("1376 passed, 1 failed", "1369 passed, 8 failed"),
        formerly_failing=True,
    ),
    Library(
        "packaging",
        "26.4",
        ("packaging",),
        ("pytest", "hypothesis", "pip", "pretend", "tomli_w"),
        # The specifier, version and range grids are 60,000 of its 64,000 tests; the default
        # run keeps every other module and the markers/requirements parsers.
        pytest_args=(
            "tests",
            "--deselect=tests/test_specifiers.py",
            "--deselect=tests/test_ranges.py",
            "--deselect=tests/test_version.py",
        ),
        full_args=("tests",),
        note="default: tests/ without test_specifiers, test_ranges, test_version (--full: all)",
        before=("64204 passed", "64200 passed, 4 failed"),
        formerly_failing=True,
    ),
    Library(
        "python-dateutil",
        "4.0.0",
        ("dateutil",),
        ("pytest", "pytest-cov", "hypothesis", "freezegun", "attrs"),  # its conftest marks no_cover
        before=("5059 passed, 3 failed", "5053 passed, 9 failed"),
        formerly_failing=True,
    ),
    Library(
        "pyparsing",
        "3.3.3",
        ("pyparsing",),
        ("pytest", "railroad-diagrams", "jinja2"),
        pytest_args=("tests", "-k", " and ".join(f"not {c}" for c in _PYPARSING_PACKRAT)),
        full_args=("tests",),
        note="without the packrat/left-recursion re-runs of Test02 (--full: with them)",
        before=("495 passed", "486 passed, 9 failed"),
        formerly_failing=True,
        inherent=(
            (
                "tests/test_unit.py::Test02_WithoutPackrat::testExceptionExplainVariations",
                f"{TRACEBACK}: explain_exception names the 'self' of every traceback frame, "
                "and ParseResults.__setitem__'s frame of ours has the same 'self'",
            ),
        ),
        avoid=("pyparsing.results:ParseResults.__setitem__",),
    ),
    Library(
        "boltons",
        "26.2.0",
        ("boltons",),
        before=("519 passed", "14 collection errors"),
        formerly_failing=True,
    ),
    Library(
        "jinja2",
        "3.1.6",
        ("jinja2",),
        ("pytest", "trio"),
        before=("909 passed", "907 passed, 2 failed"),
        formerly_failing=True,
        inherent=(
            (
                "tests/test_debug.py::TestDebug::test_runtime_error",
                f"{TRACEBACK}: jinja2 hides the frames of @internalcode functions by their "
                "code objects, and Context.call's frame of ours has our code",
            ),
        ),
        avoid=("jinja2.runtime:Context.call",),
    ),
    Library(
        "six",
        "1.17.0",
        ("six",),
        pytest_args=("test_six.py",),
        before=("198 passed", "197 passed, 1 failed"),
        formerly_failing=True,
        inherent=(
            (
                "test_six.py::test_reraise",
                f"{TRACEBACK}: the test counts entries (tb.tb_next.tb_next) through six.reraise",
            ),
        ),
        avoid=("six:reraise",),
    ),
    Library(
        "tomlkit",
        "0.15.2",
        ("tomlkit",),
        ("pytest", "PyYAML"),
        before=("1203 passed", "1201 passed, 2 failed"),
        formerly_failing=True,
    ),
    Library("toolz", "1.2.0", ("toolz", "tlz"), exclude=("toolz.tests",)),
    Library("more-itertools", "11.2.1", ("more_itertools",), pytest_args=("tests",)),
    Library("markupsafe", "3.0.4", ("markupsafe",)),
    Library("click", "8.5.1", ("click",)),
    Library("sqlparse", "0.6.1", ("sqlparse",), pytest_args=("tests",)),
    Library(
        "humanize",
        "4.17.0",
        ("humanize",),
        ("pytest", "freezegun"),
        pytest_args=("--ignore=tests/test_benchmarks.py",),
        note="without tests/test_benchmarks.py (pytest-benchmark timings)",
    ),
    Library("cachetools", "8.0.2", ("cachetools",)),
    Library(
        "marshmallow",
        "4.4.0",
        ("marshmallow",),
        ("pytest", "simplejson"),
        # test_invalid_datetime_deserialization is parametrised with dt.datetime.now()
        volatile=((r"\d\d:\d\d:\d\d", "HH:MM:SS"),),
    ),
    Library(
        "networkx",
        "3.6.1",
        ("networkx",),
        pytest_args=(
            "networkx/classes",
            "networkx/algorithms/shortest_paths",
            "networkx/algorithms/traversal",
            "networkx/algorithms/components",
            "networkx/algorithms/flow",
            "networkx/generators",
            "networkx/utils",
        ),
        exclude=("networkx.tests", "networkx.**.tests", "networkx.conftest"),
        note="subset: classes, shortest paths, traversal, components, flow, generators, "
        "utils (without numpy/scipy: their tests skip)",
    ),
]

#: Requires-Python of the releases above, where it is not 3.9 or older
_REQUIRES_PYTHON = {
    "cachetools": (3, 11),
    "click": (3, 10),
    "humanize": (3, 11),
    "marshmallow": (3, 11),
    "more-itertools": (3, 11),
    "networkx": (3, 11),
    "packaging": (3, 10),
    "python-dateutil": (3, 11),
    "sqlparse": (3, 10),
}
LIBRARIES = [replace(lib, python=_REQUIRES_PYTHON.get(lib.name, lib.python)) for lib in LIBRARIES]

BY_NAME: Dict[str, Library] = {lib.name: lib for lib in LIBRARIES}

#: The CI subset (tests/test_transparency_corpus.py): small, fast, deterministic suites, three
#: of them formerly failing: six (a documented inherent difference: tracebacks), boltons (frame
#: inspection at import), tomlkit (nesting caps near the recursion limit), and cachetools
#: (decorators, descriptors and locks, passing already).
CI_SUBSET: List[str] = ["six", "cachetools", "boltons", "tomlkit"]


def ci_subset() -> List[Library]:
    """The CI subset's libraries this interpreter can install (cachetools needs 3.11)."""
    return [BY_NAME[name] for name in CI_SUBSET if BY_NAME[name].supported]


__all__ = ["BY_NAME", "CI_SUBSET", "LIBRARIES", "Library", "ci_subset"]
