"""The benchmark harness: ratios to a baseline measured alternately, in short windows.

These machines are shared and noisy: absolute times drift by 2-3x within one run, so every
figure is a ratio to a baseline (normally a ``functools.wraps`` passthrough) measured in the same
process.  Each *round* times the baseline and the case alternately in short windows (about
100 us each; the order shuffled per round), takes the minimum window of each (the least
disturbed), and records their ratio.  The report is the median ratio over rounds with its
p25-p75 spread.  A passthrough measured against a copy of itself reads 1.00x (a case checks).

Case modules (``benchmarks/cases_*.py``) define ``CASES``: a list of :class:`Case`.
"""

from __future__ import annotations

import asyncio
import functools
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

#: Seconds each timing window lasts (calls per window are calibrated to it).
WINDOW = 100e-6


def passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The baseline: the cheapest honest wrapper."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def async_passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    return wrapper


def target(x: int) -> int:
    return x


async def atarget(x: int) -> int:
    return x


class ExecutionResultFloor:
    """The hand-written floor of a timing wrapper, as a plain function (built by ``__new__``)."""

    def __new__(cls, fn: Callable[..., Any], callback: Callable[[Any], Any]) -> Any:  # type: ignore[misc]
        from callpyback import ExecutionResult

        perf = time.perf_counter

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = perf()
            value = fn(*args, **kwargs)
            callback(ExecutionResult(value, perf() - t0))
            return value

        return wrapper


@dataclass
class Case:
    """``build()`` returns an op: a zero-argument callable performing one operation.

    ``kind="async"``: the op returns an awaitable, timed inside one event loop.
    ``kind="custom"``: ``build()`` returns a callable that returns the ratio samples itself
    (a list of ratios), or one ``(value, baseline)`` pair, for figures such as start-up time,
    thread scaling or whole-program CPU time.
    """

    name: str
    build: Callable[[], Callable[[], Any]]
    baseline: str = "sync"  # "sync" / "async" passthrough, or a zero-arg builder of an op
    kind: str = "sync"
    target: Optional[float] = None  # the ratio we promise (<=), if any
    note: str = ""
    group: str = "core"
    extra: dict[str, Any] = field(default_factory=dict)
    base_build: Optional[Callable[[], Callable[[], Any]]] = None


def direct(fn: Callable[..., Any], *args: Any, kind: str = "sync") -> Callable[[], Any]:
    """An op timed as ``fn(*args)`` in a generated loop, with no lambda in between.

    Extra layers (a lambda per call) would add the same constant to case and baseline and make
    ratios look better than they are; this keeps the measured call exactly the user's call.
    """
    ns: dict[str, Any] = {"fn": fn, "args": args, "perf": time.perf_counter}
    if kind == "async":
        src = (
            "async def loop(n):\n"
            "    a = args\n"
            "    t0 = perf()\n"
            "    for _ in range(n):\n"
            f"        await fn({', '.join(f'a[{i}]' for i in range(len(args)))})\n"
            "    return (perf() - t0) / n\n"
        )
    else:
        src = (
            "def loop(n):\n"
            "    t0 = perf()\n"
            "    for _ in range(n):\n"
            f"        fn({', '.join(repr(a) for a in args)})\n"
            "    return (perf() - t0) / n\n"
        )
    exec(src, ns)

    def op() -> Any:
        return fn(*args)

    op.loop = ns["loop"]  # type: ignore[attr-defined]
    op.kind = kind  # type: ignore[attr-defined]
    return op


def _loop_of(op: Callable[[], Any], kind: str) -> Callable[[int], Any]:
    loop = getattr(op, "loop", None)
    if loop is not None:
        return loop  # type: ignore[no-any-return]
    if kind == "async":

        async def aloop(n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                await op()
            return (time.perf_counter() - t0) / n

        return aloop

    def sloop(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            op()
        return (time.perf_counter() - t0) / n

    return sloop


class _Timer:
    """Runs an op's loop for ``n`` calls and returns seconds per call (one event loop if async)."""

    def __init__(self, op: Callable[[], Any], kind: str) -> None:
        self.loop = _loop_of(op, kind)
        self.kind = kind
        self.aio = asyncio.new_event_loop() if kind == "async" else None

    def __call__(self, n: int) -> float:
        if self.aio is not None:
            return float(self.aio.run_until_complete(self.loop(n)))
        return float(self.loop(n))

    def calibrate(self) -> int:
        """Calls per window: about WINDOW seconds of them."""
        self(10)  # warm up (and let the engine compile)
        n = 10
        while True:
            per_call = self(n)
            if per_call * n >= WINDOW / 4 or n >= 1_000_000:
                return max(1, int(WINDOW / max(per_call, 1e-9)))
            n *= 4

    def close(self) -> None:
        if self.aio is not None:
            self.aio.close()


@dataclass
class Result:
    ratios: List[float]
    case_s: float  # the case's best window, seconds per call
    base_s: float

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> Tuple[float, float]:
        if len(self.ratios) < 2:
            return self.median, self.median
        q = statistics.quantiles(self.ratios, n=4, method="inclusive")
        return q[0], q[2]


def compare(
    case_op: Callable[[], Any],
    base_op: Callable[[], Any],
    kind: str = "sync",
    rounds: int = 15,
    windows: int = 8,
) -> Result:
    """The case against the baseline: ``rounds`` ratios of minima over alternating windows."""
    case, base = _Timer(case_op, kind), _Timer(base_op, kind)
    try:
        n_case, n_base = case.calibrate(), base.calibrate()
        ratios: List[float] = []
        best_case = best_base = float("inf")
        rng = random.Random(12345)
        for _ in range(rounds):
            c_min = b_min = float("inf")
            for _ in range(windows):
                pair = [(case, n_case, True), (base, n_base, False)]
                rng.shuffle(pair)
                for timer, n, is_case in pair:
                    t = timer(n)
                    if is_case:
                        c_min = min(c_min, t)
                    else:
                        b_min = min(b_min, t)
            ratios.append(c_min / b_min)
            best_case, best_base = min(best_case, c_min), min(best_base, b_min)
        return Result(ratios, best_case, best_base)
    finally:
        case.close()
        base.close()


def spread_of(samples: Sequence[float]) -> Tuple[float, float, float]:
    """(median, p25, p75) of ratio samples."""
    if len(samples) < 2:
        return samples[0], samples[0], samples[0]
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return statistics.median(samples), q[0], q[2]


def time_sync(op: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``op`` over ``number`` calls (for custom cases)."""
    return float(_loop_of(op, "sync")(number))


def min_ratio_rounds(
    case_op: Callable[[], Any], base_op: Callable[[], Any], rounds: int = 9, windows: int = 6
) -> List[float]:
    """Ratio samples for custom cases comparing two sync ops (the same method as compare)."""
    return compare(case_op, base_op, "sync", rounds, windows).ratios
