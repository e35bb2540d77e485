"""The testing kit: what its seams cost when unused, and what the pytest plugin costs start-up.

* ``seam idle``: an observed call (one ``on_success`` observer) whose pipeline was rebuilt
  through the override seam (a ``capture()`` came and went) against the same pipeline built
  fresh.  The generated code never looks at the seam (it is read when a pipeline is built), so
  the target is <= 1.05x: no measurable difference.
* ``capture active``: the same call while a capture records it, for scale (no target).
* ``capture() enter+exit``: what entering and leaving a capture costs per live observed
  function (every one is recompiled twice), as a ratio to 1 ms; for scale (no target).
* ``pytest run``: pytest running 200 trivial tests with only the plugin loaded against pytest
  alone, runs interleaved, child CPU time; target <= 1.05x.  The note gives both times.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

from _harness import Case, compare, direct, spread_of, target, time_sync

from callpyback import CallPyBack, on_success
from callpyback.testing import capture


def _observed() -> Callable[[], Any]:
    sink: List[Any] = []
    return CallPyBack(observers=[on_success(lambda value: sink.clear())])(target)


def seam_idle() -> List[float]:
    rebuilt = _observed()
    with capture():
        pass  # every live decorator is recompiled twice: with the capture, then without
    fresh = _observed()
    return compare(direct(rebuilt, 1), direct(fresh, 1)).ratios


def capture_active() -> List[float]:
    """Seconds per call with a capture recording, over seconds per call idle, alternating."""
    observed = _observed()
    op = direct(observed, 1)
    ratios = []
    for _ in range(7):
        idle = min(time_sync(op, 2_000) for _ in range(5))
        with capture() as calls:
            active = min(time_sync(op, 2_000) for _ in range(5))
        del calls
        ratios.append(active / idle)
    return ratios


def enter_exit() -> List[float]:
    """Seconds per observed function for one capture's enter and exit (two recompiles)."""
    keep = []
    for i in range(10):
        deco = CallPyBack(observers=[on_success(lambda: None)])
        for _ in range(100):
            keep.append(deco(lambda x, i=i: x + i))
    with capture():
        pass  # the first capture in a process also compiles its templates
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        with capture():
            pass
        times.append((time.perf_counter() - t0) / len(keep))
    ENTER_EXIT.note = (
        f"median {statistics.median(times) * 1e6:.0f} us per function "
        f"({len(keep)} functions in 10 decorators); shown as a ratio to 1 ms"
    )
    del keep
    return [t / 1e-3 for t in times]


def pytest_startup() -> Tuple[float, float]:
    """pytest with only the plugin loaded (``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 -p
    _callpyback_pytest``) against pytest alone: other plugins (hypothesis imports itself at
    start-up) would add their own noise.  200 trivial tests, so per-test hooks count too."""
    root = Path(tempfile.mkdtemp(prefix="cpb_bench_pytest_"))
    (root / "test_many.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('i', range(200))\n"
        "def test_one(i):\n    assert i >= 0\n"
    )
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root)]
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}

    def once(extra: List[str]) -> float:
        # CPU time of the child (user + system): on a shared machine wall time mostly
        # measures the neighbours.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([*base, *extra], cwd=root, env=env, capture_output=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    with_plugin, without = [], []
    once(["-p", "_callpyback_pytest"])  # warm the file cache and .pyc files
    for _ in range(21):
        with_plugin.append(once(["-p", "_callpyback_pytest"]))
        without.append(once([]))
    a, b = min(with_plugin), min(without)
    _, lo, hi = spread_of([x / y for x, y in zip(with_plugin, without)])
    STARTUP.note = (
        f"CPU, best of 21: {a * 1e3:.0f} ms vs {b * 1e3:.0f} ms for pytest alone, 200 tests; "
        f"per-pair ratios p25-p75 {lo:.2f}-{hi:.2f}"
    )
    # The least disturbed run of each, as the harness compares minima.
    return a, b


SEAM = Case(
    "seam idle: rebuilt through the seam / built fresh",
    lambda: seam_idle,
    kind="custom",
    target=1.05,
    group="testing",
)
ACTIVE = Case(
    "capture active / idle (one observer)", lambda: capture_active, kind="custom", group="testing"
)
ENTER_EXIT = Case(
    "capture() enter+exit per observed function / 1 ms",
    lambda: enter_exit,
    kind="custom",
    group="testing",
)
STARTUP = Case(
    "pytest run, plugin loaded / pytest alone",
    lambda: pytest_startup,
    kind="custom",
    target=1.05,
    group="testing",
)

CASES = [SEAM, ACTIVE, ENTER_EXIT, STARTUP]
