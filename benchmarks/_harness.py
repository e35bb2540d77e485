"""A tiny benchmark harness: medians of interleaved repeats, ratios to a baseline in the same run.

Case modules (``benchmarks/cases_*.py``) define ``CASES``: a list of :class:`Case`.  Absolute
times on shared machines mean little, so every figure is reported as a ratio to the baseline
(normally a ``functools.wraps`` passthrough wrapper) measured in the same process.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


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


@dataclass
class Case:
    """``build()`` returns a zero-argument callable performing one operation.

    ``kind="async"``: the callable returns an awaitable, timed inside one event loop.
    ``kind="custom"``: ``build()`` returns a callable that itself returns ``(value, baseline)``
    seconds (or any two comparable numbers), for figures such as start-up time or thread scaling.
    """

    name: str
    build: Callable[[], Callable[[], Any]]
    baseline: str = "sync"  # name of a baseline case, or "sync" / "async"
    kind: str = "sync"
    target: Optional[float] = None  # the ratio we promise (<=), if any
    note: str = ""
    group: str = "core"
    extra: dict[str, Any] = field(default_factory=dict)


def direct(fn: Callable[..., Any], *args: Any, kind: str = "sync") -> Callable[[], Any]:
    """An op that the harness times as ``fn(*args)`` in a tight loop, with no lambda in between.

    Extra layers (a lambda per call) would add the same constant to case and baseline and make
    ratios look better than they are; this keeps the measured call exactly the user's call.
    """
    ns: dict[str, Any] = {"fn": fn, "args": args, "perf": time.perf_counter}
    arglist = ", ".join(f"args[{i}]" for i in range(len(args)))
    if kind == "async":
        src = (
            "async def loop(n):\n"
            f"    a = ({arglist}{',' if args else ''})\n"
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
    return op


def time_sync(op: Callable[[], Any], number: int) -> float:
    loop = getattr(op, "loop", None)
    if loop is not None:
        return float(loop(number))
    t0 = time.perf_counter()
    for _ in range(number):
        op()
    return (time.perf_counter() - t0) / number


def time_async(op: Callable[[], Any], number: int) -> float:
    loop = getattr(op, "loop", None)
    if loop is not None:
        return float(asyncio.run(loop(number)))

    async def batch() -> float:
        t0 = time.perf_counter()
        for _ in range(number):
            await op()
        return (time.perf_counter() - t0) / number

    return asyncio.run(batch())


def measure(op: Callable[[], Any], kind: str, number: int) -> float:
    return time_async(op, number) if kind == "async" else time_sync(op, number)


def run_pair(
    case_op: Callable[[], Any], base_op: Callable[[], Any], kind: str, number: int, repeat: int
) -> tuple[float, float, float]:
    """Interleave case and baseline repeats; return (case median s, baseline median s, ratio)."""
    case_times, base_times, ratios = [], [], []
    measure(case_op, kind, max(1, number // 10))  # warm-up
    measure(base_op, kind, max(1, number // 10))
    for _ in range(repeat):
        b = measure(base_op, kind, number)
        c = measure(case_op, kind, number)
        base_times.append(b)
        case_times.append(c)
        ratios.append(c / b)
    return statistics.median(case_times), statistics.median(base_times), statistics.median(ratios)
