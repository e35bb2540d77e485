"""Plugins: what discovery costs, and what the finance plugin's components add per call.

Discovery cases are custom: (measured seconds, budget seconds), so the ratio is the fraction of
the budget used.  Per-call cases are ratios to a ``functools.wraps`` passthrough.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Tuple

from _harness import Case, direct


def _fresh_process_case() -> Callable[[], Tuple[float, float]]:
    """First get_registry() in a new interpreter, against importing pydantic there.

    Discovery needs pydantic (the options models) anyway, as does loading any config, so the
    ratio says how much discovery costs beyond that unavoidable import.
    """
    discover = (
        "import time, callpyback\n"
        "t0 = time.perf_counter()\n"
        "import callpyback.plugins as p\n"
        "p.get_registry()\n"
        "print(time.perf_counter() - t0)\n"
    )
    pydantic = (
        "import time, callpyback\n"
        "t0 = time.perf_counter()\n"
        "import pydantic\n"
        "from pydantic import BaseModel\n"
        "print(time.perf_counter() - t0)\n"
    )

    def once(code: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        return float(out)

    def run() -> Tuple[float, float]:
        pairs = [(once(discover), once(pydantic)) for _ in range(7)]
        return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)

    return run


def _rediscovery_case() -> Callable[[], Tuple[float, float]]:
    """reset() + get_registry() with everything imported: the entry-point scan and registration."""

    def run() -> Tuple[float, float]:
        from callpyback import plugins

        samples = []
        for _ in range(20):
            plugins.reset()
            t0 = time.perf_counter()
            plugins.get_registry()
            samples.append(time.perf_counter() - t0)
        plugins.reset()
        return statistics.median(samples), 0.010

    return run


def _registry_lookup() -> Callable[[], Any]:
    from callpyback import plugins

    plugins.get_registry()
    return direct(plugins.get_registry)


def _audited(durability: str) -> Callable[[], Callable[[], Any]]:
    def build() -> Callable[[], Any]:
        import callpyback as cpb
        from callpyback import plugins

        path = Path(tempfile.mkdtemp(prefix="cpb-bench-")) / "trail.jsonl"
        audit = plugins.get_registry().create(
            "observer", "finance.audit", {"path": str(path), "durability": durability}
        )

        @cpb.CallPyBack(observers=[audit])
        def pay(account: str, amount: int) -> int:
            return amount

        return direct(pay, "ACC-1", 1)

    return build


def _guarded() -> Callable[[], Any]:
    import callpyback as cpb
    from callpyback import plugins

    registry = plugins.get_registry()
    rules = [
        registry.create("error_handler", "finance.limits", {"max_amount": 1000}),
        registry.create(
            "error_handler", "finance.velocity", {"max_transactions": 10**9, "window": 60}
        ),
    ]

    @cpb.CallPyBack(error_handlers=rules)
    def pay(account: str, amount: int) -> int:
        return amount

    return direct(pay, "ACC-1", 1)


CASES = [
    Case(
        "plugins first discovery, fresh process (vs importing pydantic)",
        _fresh_process_case,
        kind="custom",
        group="plugins",
        note="pydantic + pluggy imports, options models, entry-point scan, 2 plugins",
    ),
    Case(
        "plugins re-discovery, modules loaded (fraction of 10 ms)",
        _rediscovery_case,
        kind="custom",
        group="plugins",
        note="entry-point scan + registration only",
    ),
    Case(
        "plugins get_registry() after discovery",
        _registry_lookup,
        group="plugins",
        note="one global read",
    ),
    Case(
        "finance.audit per call, durability=flush",
        _audited("flush"),
        group="plugins",
        note="record + SHA-256 + flock + write",
    ),
    Case(
        "finance.audit per call, durability=fsync",
        _audited("fsync"),
        group="plugins",
        note="as above + fsync: depends on the disk",
    ),
    Case(
        "finance.limits + finance.velocity per call",
        _guarded,
        group="plugins",
        note="two pre-call guards, Decimal parse, window deque",
    ),
]
