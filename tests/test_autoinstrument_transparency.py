"""Transparency: instrument every function of more-itertools (a real PyPI library with generators,
classes, methods, class/static methods) and check results and exceptions are unchanged."""

from __future__ import annotations

import json
import textwrap

from tests.autoinstrument_support import ROOT, run_python

CALLS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])

CALLS = {
    "chunked": lambda mi: list(mi.chunked(range(7), 3)),
    "windowed": lambda mi: list(mi.windowed(range(5), 3)),
    "peekable": lambda mi: (lambda p: (p.peek(), p[1], list(p)))(mi.peekable([1, 2, 3])),
    "peekable-empty": lambda mi: mi.peekable([]).peek(),
    "seekable": lambda mi: (lambda s: (next(s), next(s), s.seek(0), list(s)))(mi.seekable("abc")),
    "bucket": lambda mi: (lambda b: (sorted(b), list(b["a"])))(
        mi.bucket(["a1", "b1", "a2"], key=lambda x: x[0])
    ),
    "numeric_range": lambda mi: (
        list(mi.numeric_range(0, 1, 0.25)), mi.numeric_range(10)[3], 4 in mi.numeric_range(10)
    ),
    "first-empty": lambda mi: mi.first([]),
    "first-default": lambda mi: mi.first([], "d"),
    "one-too-many": lambda mi: mi.one([1, 2]),
    "only": lambda mi: mi.only([7]),
    "nth": lambda mi: mi.nth(range(10), 3),
    "flatten": lambda mi: list(mi.flatten([[1], [2, 3]])),
    "collapse": lambda mi: list(mi.collapse([1, [2, [3, (4,)]]])),
    "partition": lambda mi: [list(x) for x in mi.partition(lambda v: v % 2, range(6))],
    "unique_everseen": lambda mi: list(mi.unique_everseen("AAAABBBCCDAABBB")),
    "split_at": lambda mi: list(mi.split_at("abcdcba", lambda c: c == "b")),
    "always_iterable": lambda mi: (list(mi.always_iterable(None)), list(mi.always_iterable("ab"))),
    "interleave_longest": lambda mi: list(mi.interleave_longest([1, 2, 3], [4, 5])),
    "run_length": lambda mi: (
        list(mi.run_length.encode("aaab")), list(mi.run_length.decode([("a", 2)]))
    ),
    "sliced-strict": lambda mi: list(mi.sliced([1, 2, 3], 2, strict=True)),
    "islice_extended": lambda mi: list(mi.islice_extended(range(10))[-3:]),
    "SequenceView": lambda mi: (list(mi.SequenceView([1, 2, 3])[::-1]), len(mi.SequenceView([1]))),
    "countable": lambda mi: (lambda c: (list(c), c.items_seen))(mi.countable("abc")),
    "ichunked": lambda mi: [list(c) for c in mi.ichunked(range(5), 2)],
    "spy": lambda mi: (lambda h, it: (h, list(it)))(*mi.spy(range(5), 2)),
    "zip_equal": lambda mi: list(mi.zip_equal([1, 2], [3])),
    "padded": lambda mi: list(mi.padded([1, 2], None, 4)),
    "sort_together": lambda mi: mi.sort_together([(3, 1, 2), "cab"]),
    "difference": lambda mi: list(mi.difference([1, 3, 6, 10])),
    "locate": lambda mi: list(mi.locate([0, 1, 1, 0])),
    "map_reduce": lambda mi: dict(mi.map_reduce("abbccc", lambda c: c, lambda c: 1, sum)),
    "powerset": lambda mi: list(mi.powerset([1, 2])),
    "take": lambda mi: mi.take(2, range(9)),
    "tail": lambda mi: list(mi.tail(2, range(9))),
    "grouper-strict": lambda mi: list(mi.grouper("abcde", 2, incomplete="strict")),
    "roundrobin": lambda mi: list(mi.roundrobin("ab", "cde")),
    "iter_except": lambda mi: list(mi.iter_except([1, 2].pop, IndexError)),
    "consecutive_groups": lambda mi: [list(g) for g in mi.consecutive_groups([1, 2, 4, 5, 7])],
    "distinct_permutations": lambda mi: sorted(mi.distinct_permutations([1, 1, 2])),
    "circular_shifts": lambda mi: list(mi.circular_shifts(range(3))),
    "exactly_n": lambda mi: mi.exactly_n([True, False, True], 2),
    "minmax": lambda mi: mi.minmax([3, 1, 2]),
    "minmax-empty": lambda mi: mi.minmax([]),
    "strictly_n": lambda mi: list(mi.strictly_n("ab", 3)),
    "time_limited": lambda mi: list(mi.time_limited(60, range(3))),
    "callback_iter": lambda mi: (lambda c: (list(c), c.done))(
        mi.callback_iter(lambda callback: [callback(i) for i in range(2)] and None)
    ),
}


def outcome(fn, mi):
    try:
        value = fn(mi)
    except Exception as exc:
        return ["raised", type(exc).__name__, str(exc)]
    return ["returned", repr(value)]


import more_itertools as plain_mi
baseline = {name: outcome(fn, plain_mi) for name, fn in CALLS.items()}
for name in [n for n in sys.modules if n == "more_itertools" or n.startswith("more_itertools.")]:
    del sys.modules[name]

from tests.autoinstrument_support import PatternSelector
import callpyback.autoinstrument as auto
from callpyback import instrumented_by

selector = PatternSelector("more_itertools")
auto.install(selector)
import more_itertools as mi
assert mi is not plain_mi
instrumented = {name: outcome(fn, mi) for name, fn in CALLS.items()}
report = auto.report()
print(json.dumps({
    "baseline": baseline,
    "instrumented": instrumented,
    "wrapped": len(report.wrapped),
    "failed": [str(e) for e in report.failed],
    "observed": len(selector.calls),
    "peekable_wrapped": instrumented_by(mi.peekable.peek) is not None,
    "encode_static": type(mi.run_length.__dict__["encode"]).__name__,
}))
"""


def test_every_more_itertools_function_instrumented_gives_the_same_results_and_errors(tmp_path):
    """Results and exceptions (type and message) are identical with and without the hook."""
    script = tmp_path / "transparency.py"
    script.write_text(textwrap.dedent(CALLS))
    proc = run_python([str(script), str(ROOT)])
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["failed"] == []
    assert data["wrapped"] > 150  # every function, method and class/static method of the library
    assert data["peekable_wrapped"] and data["encode_static"] == "staticmethod"
    assert data["observed"] > len(data["baseline"])
    raised = [name for name, out in data["baseline"].items() if out[0] == "raised"]
    assert len(raised) >= 5  # the comparison covers error paths too
    for name, expected in data["baseline"].items():
        assert data["instrumented"][name] == expected, name
