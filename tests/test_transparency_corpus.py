"""The transparency corpus's CI subset: real libraries' own suites, every function observed.

Each library's sdist is downloaded from PyPI in the test's set-up (cached in
``~/.cache/callpyback-corpus``, or ``$CALLPYBACK_CORPUS_CACHE``), installed in a venv of its own
with this checkout of callpyback (cached too), and its test suite run plainly and under
``callpyback run`` with one ``metrics`` pipeline matching every function of the package.  Every
test must have the same outcome both ways, except the differences the corpus documents as
inherent (``docs/auto-instrumentation.md``, "What wrapping can change").  The whole corpus is
``python -m benchmarks.transparency`` (see that page, "The transparency corpus").
"""

from __future__ import annotations

import pytest

from benchmarks.transparency import BY_NAME, CorpusError, run_library, table
from benchmarks.transparency.corpus import ci_subset
from benchmarks.transparency.runner import fetch, unpack, venv

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

#: The subset's libraries share one venv (one install of callpyback, not four); on Python 3.9
#: and 3.10 without cachetools (its release needs 3.11).
SHARED = ci_subset()


@pytest.fixture
def prepared(request: pytest.FixtureRequest) -> str:
    """Download (once) the sdists and install (once) the subset's venv."""
    lib = BY_NAME[request.param]
    try:
        venv(lib, unpack(lib, fetch(lib)), SHARED)
    except CorpusError as exc:  # no network, a build that failed: say so, never skip
        pytest.fail(f"the corpus could not prepare {lib.key}:\n{exc}", pytrace=False)
    return lib.name


@pytest.mark.slow
@pytest.mark.parametrize("prepared", [lib.name for lib in SHARED], indirect=True)
def test_the_suite_has_the_same_outcomes_with_every_function_observed(prepared: str) -> None:
    """Identical per-test outcomes (as sets of node ids and outcomes), with calls observed."""
    lib = BY_NAME[prepared]
    try:
        result = run_library(lib, shared=SHARED)
    except CorpusError as exc:
        pytest.fail(f"the corpus could not run {lib.key}:\n{exc}", pytrace=False)
    instrumentation = result.instrumented.instrumentation or {}
    assert instrumentation.get("wrapped", 0) > 20 and instrumentation.get("calls", 0) > 1000
    assert instrumentation.get("failed") == []  # no function the hook could not instrument
    assert result.plain.outcomes, "the plain run collected no test"
    assert set(result.plain.outcomes) == set(result.instrumented.outcomes)
    assert result.unexpected == [], table([result])


@pytest.mark.slow
@pytest.mark.parametrize("prepared", ["six"], indirect=True)
def test_a_documented_inherent_difference_is_avoided_by_its_exclusion(prepared: str) -> None:
    """six's one inherent difference (a traceback entry counted) goes away with the
    exclusion the docs give for it."""
    lib = BY_NAME[prepared]
    assert lib.inherent and lib.avoid
    try:
        result = run_library(lib, avoid=True, shared=SHARED)
    except CorpusError as exc:
        pytest.fail(f"the corpus could not run {lib.key}:\n{exc}", pytrace=False)
    assert result.identical, table([result])


def test_node_ids_made_at_collection_time_are_normalised() -> None:
    """marshmallow parametrises a test with ``datetime.now()``: the runs' ids compare anyway,
    and a normalisation that merges two tests is an error, not a lost test."""
    from benchmarks.transparency.runner import _stable_ids

    lib = BY_NAME["marshmallow"]
    plain = _stable_ids(lib, {"t.py::test[12-01-2026 14:09:54]": "passed"}, "plain")
    later = _stable_ids(lib, {"t.py::test[12-01-2026 14:10:10]": "passed"}, "instrumented")
    assert plain == later == {"t.py::test[12-01-2026 HH:MM:SS]": "passed"}
    with pytest.raises(CorpusError, match="two tests"):
        _stable_ids(lib, {"t[01:02:03]": "passed", "t[04:05:06]": "failed"}, "plain")
    assert _stable_ids(BY_NAME["six"], {"t[01:02:03]": "passed"}, "plain") == {
        "t[01:02:03]": "passed"
    }


def test_the_corpus_venvs_install_the_callpyback_under_test() -> None:
    """The checkout (editable) when the suite tests the checkout; the built wheel when it tests
    the wheel (.ci/matrix.sh, from a tree without the package)."""
    from pathlib import Path

    import callpyback
    from benchmarks.transparency.runner import ROOT, callpyback_source

    source = callpyback_source()
    if Path(callpyback.__file__).resolve().is_relative_to(ROOT):
        assert source == ["-e", str(ROOT)]
    else:
        assert len(source) == 1 and source[0].endswith(".whl") and Path(source[0]).is_file()
