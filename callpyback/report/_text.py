"""The run report as a plain-text table (what ``--report text`` prints on stderr)."""

from __future__ import annotations

from typing import List, Optional, Sequence

from ._collect import FunctionReport, RunReport

__all__ = ["duration", "render_text"]

_COLUMNS = (
    # header, right-aligned
    ("target", False),
    ("pipeline", False),
    ("calls", True),
    ("ok", True),
    ("failed", True),
    ("recovered", True),
    ("retries", True),
    ("cancelled", True),
    ("interrupted", True),
    ("total", True),
    ("mean", True),
    ("p50", True),
    ("p90", True),
    ("p99", True),
    ("max", True),
)


def duration(seconds: Optional[float]) -> str:
    """Seconds in a unit that keeps three significant figures: ``812ns``, ``3.10us``, ``1.20s``."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    unit, value = "ns", seconds / 1e-9
    for name, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            unit, value = name, seconds / scale
            break
    text = f"{value:#.3g}".rstrip(".")  # keeps trailing zeros: 13.0ms, 3.10ms
    if "e" in text:  # 1000 and up, or a value that rounds to it
        text = f"{value:.0f}"
    return f"{text}{unit}"


def _count(value: Optional[int]) -> str:
    return "-" if value is None else str(value)


def _cells(row: FunctionReport) -> List[str]:
    return [
        row.target,
        row.pipeline or "-",
        str(row.calls),
        _count(row.successes),
        _count(row.failures),
        _count(row.recoveries),
        _count(row.retries),
        _count(row.cancelled),
        _count(row.interrupted),
        duration(row.total_seconds if row.calls else None),
        duration(row.mean_seconds),
        duration(row.p50_seconds),
        duration(row.p90_seconds),
        duration(row.p99_seconds),
        duration(row.max_seconds),
    ]


def headline(report: RunReport) -> str:
    observed = [f for f in report.functions if f.calls]
    warnings = report.instrumentation_warnings
    tail = (
        f"{report.wrapped} functions wrapped ({report.wrapped_by_hook} by the import hook), "
        f"{warnings} instrumentation warning{'s' if warnings != 1 else ''}"
    )
    if not observed:
        if not report.wrapped:
            why = "no function was wrapped: no pattern of the config matched, no decorator is used"
        elif not report.observers:
            why = "no metrics or timing observer is attached"
        else:
            why = "no observed function was called"
        return (
            f"callpyback report: nothing was observed ({why}); {tail}. "
            "`callpyback explain module:function` says what the config selects."
        )
    return (
        f"callpyback report: {len(observed)} targets, {report.calls} calls, "
        f"sorted by total time; {tail}"
    )


def _table(rows: Sequence[Sequence[str]]) -> List[str]:
    header = [name for name, _ in _COLUMNS]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for (_, right), cell, width in zip(_COLUMNS, cells, widths):
            out.append(cell.rjust(width) if right else cell.ljust(width))
        return "  ".join(out).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_text(report: RunReport) -> str:
    """The headline, then one line per observed target (durations per call, ``total`` summed)."""
    lines = [headline(report)]
    rows = [_cells(f) for f in report.functions if f.calls]
    if rows:
        lines += _table(rows)
    return "\n".join(lines) + "\n"
