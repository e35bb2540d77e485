"""The transparency corpus (issue 11): real libraries' own test suites, plainly and with every
function of the package observed, compared test by test.

    python -m benchmarks.transparency                    # every library (packaging: a subset)
    python -m benchmarks.transparency --libs six,attrs   # some of them
    python -m benchmarks.transparency --full             # packaging's and pyparsing's whole suites

Needs network access to PyPI the first time (sdists, venvs and test requirements are cached in
``~/.cache/callpyback-corpus``, or ``$CALLPYBACK_CORPUS_CACHE``).  See
``docs/auto-instrumentation.md`` ("What wrapping can change") for the results.
"""

from .corpus import BY_NAME, CI_SUBSET, LIBRARIES, Library
from .runner import CorpusError, Difference, LibraryResult, run_library, table

__all__ = [
    "BY_NAME",
    "CI_SUBSET",
    "LIBRARIES",
    "CorpusError",
    "Difference",
    "Library",
    "LibraryResult",
    "run_library",
    "table",
]
