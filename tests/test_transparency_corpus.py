"""The transparency corpus's CI subset: real libraries' own suites, every function observed.

Each library's sdist is downloaded from PyPI (cached in ``~/.cache/callpyback-corpus``), installed
in a venv of its own with this checkout of callpyback, and its test suite run plainly and under
``callpyback run`` with one ``metrics`` pipeline matching every function of the package.  Every
test must have the same outcome both ways, except the differences the corpus documents as
inherent (``docs/auto-instrumentation.md``, "What wrapping can change").  The whole corpus is
``python -m benchmarks.transparency``.
"""

from __future__ import annotations

import pytest

from benchmarks.transparency import BY_NAME, CI_SUBSET, CorpusError, run_library, table


@pytest.mark.slow
@pytest.mark.parametrize("name", CI_SUBSET)
def test_the_suite_has_the_same_outcomes_with_every_function_observed(name: str) -> None:
    """Identical per-test outcomes (as sets of node ids and outcomes), with calls observed."""
    lib = BY_NAME[name]
    try:
        result = run_library(lib)
    except CorpusError as exc:  # no network, a build that failed: say so, never skip
        pytest.fail(f"the corpus could not run {lib.key}:\n{exc}", pytrace=False)
    instrumentation = result.instrumented.instrumentation or {}
    assert instrumentation.get("wrapped", 0) > 20 and instrumentation.get("calls", 0) > 1000
    assert instrumentation.get("failed") == []  # no function the hook could not instrument
    assert result.plain.outcomes, "the plain run collected no test"
    assert set(result.plain.outcomes) == set(result.instrumented.outcomes)
    assert result.unexpected == [], table([result])


def test_a_documented_inherent_difference_is_avoided_by_its_exclusion() -> None:
    """six's one inherent difference (a traceback entry counted) goes away with the
    exclusion the docs give for it."""
    lib = BY_NAME["six"]
    assert lib.inherent and lib.avoid
    try:
        result = run_library(lib, avoid=True)
    except CorpusError as exc:
        pytest.fail(f"the corpus could not run {lib.key}:\n{exc}", pytrace=False)
    assert result.identical, table([result])
