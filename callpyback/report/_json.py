"""The run report as JSON: a versioned schema with stable field names (see docs/reports.md)."""

from __future__ import annotations

import json
import math
import time
from typing import Any, Dict, List, Optional

from ._collect import FunctionReport, RunReport

__all__ = ["SCHEMA", "as_dict", "render_json"]

#: Bumped only when a field changes meaning or goes away; new fields may appear within a version.
SCHEMA = 1

_FIELDS = (
    "target",
    "pipeline",
    "source",
    "calls",
    "successes",
    "failures",
    "recoveries",
    "retries",
    "cancelled",
    "interrupted",
    "in_flight",
    "max_in_flight",
    "slow_calls",
    "total_seconds",
    "mean_seconds",
    "min_seconds",
    "p50_seconds",
    "p90_seconds",
    "p99_seconds",
    "max_seconds",
)


def _finite(value: Any) -> Any:
    # JSON has no NaN or infinity; a histogram never produces them, but stay valid regardless.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _function(row: FunctionReport) -> Dict[str, Any]:
    out: Dict[str, Any] = {name: _finite(getattr(row, name)) for name in _FIELDS}
    histogram = row.histogram
    buckets: List[List[float]] = []
    accuracy: Optional[float] = None
    if histogram is not None:
        accuracy = histogram.relative_accuracy
        # Six significant digits are far finer than a bucket (1 % wide) and keep files small.
        buckets = [[float(f"{bound:.6g}"), count] for bound, count in histogram.buckets()]
    out["histogram"] = {"relative_accuracy": accuracy, "buckets": buckets}
    return out


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def as_dict(report: RunReport) -> Dict[str, Any]:
    """The report as JSON-ready data (``schema`` 1)."""
    from .. import __version__

    return {
        "schema": SCHEMA,
        "generator": f"callpyback {__version__}",
        "created": _iso(report.created),
        "duration_seconds": report.duration_seconds,
        "program": {
            "argv": report.argv,
            "pid": report.pid,
            "exit_status": report.exit_status,
            "ended_by": report.ended_by,
        },
        "wrapped": report.wrapped,
        "wrapped_by_import_hook": report.wrapped_by_hook,
        "instrumentation_warnings": report.instrumentation_warnings,
        "observers": report.observers,
        "calls": report.calls,
        "functions": [_function(f) for f in report.functions],
    }


def render_json(report: RunReport) -> str:
    """Compact (one line per function), so a 10,000-target report stays a few megabytes."""
    data = as_dict(report)
    functions = data.pop("functions")
    head = json.dumps(data, indent=2, allow_nan=False)
    rows = ",\n".join(
        "    " + json.dumps(f, separators=(",", ":"), allow_nan=False) for f in functions
    )
    body = f'  "functions": [\n{rows}\n  ]' if functions else '  "functions": []'
    return head[:-2] + ",\n" + body + "\n}\n"
