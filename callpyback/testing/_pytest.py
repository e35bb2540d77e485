"""What the pytest plugin (``_callpyback_pytest``) does once a test asks for it.

The plugin module itself stays tiny and imports nothing of CallPyBack at pytest start-up; the
fixtures' and the ``--callpyback-report`` machinery live here and load on first use.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Dict, Iterable, List, Set

from .._decorator import _OVERRIDE
from ..observers.metrics import MetricsObserver
from ._config import use_config

__all__ = ["ConfigFixture", "SessionReport", "merge_reports"]


class ConfigFixture:
    """``callpyback_config``: call it with a ``callpyback.toml`` path or TOML text.

    The import hook is installed with it for the rest of the test (modules already imported
    are retrofitted), and uninstalled, with every instrumented function restored, when the
    test ends.  A relative path is looked up next to the test file, then in the rootdir, then
    in the current directory.  Calling it again replaces the configuration.
    """

    def __init__(self, request: Any) -> None:
        self._request = request
        self._stack = contextlib.ExitStack()
        #: The loaded :class:`~callpyback.config.Config` (None until called).
        self.config: Any = None

    def __call__(self, source: Any, **settings: Any) -> Any:
        self.close()
        request = self._request
        search = [request.path.parent, request.config.rootpath]
        self.config = self._stack.enter_context(use_config(source, search=search, **settings))
        return self.config

    @property
    def report(self) -> Any:
        """What the import hook wrapped, skipped and failed (``autoinstrument.report()``)."""
        from .. import autoinstrument

        return autoinstrument.report()

    def close(self) -> None:
        stack, self._stack = self._stack, contextlib.ExitStack()
        self.config = None
        stack.close()

    def __repr__(self) -> str:
        source = getattr(self.config, "source", None)
        return f"<callpyback_config {source or 'not loaded'}>"


class SessionConfig:
    """``--callpyback-config`` / ini ``callpyback_config``: the import hook installed with one
    configuration for the whole session (from ``pytest_configure``, before collection imports
    the code under test), uninstalled at ``pytest_unconfigure``."""

    def __init__(self, source: Any, search: List[Any]) -> None:
        self._stack = contextlib.ExitStack()
        self.config = self._stack.enter_context(use_config(source, search=search))

    def close(self) -> None:
        self._stack.close()


def apply_marker(fixture: ConfigFixture, marker: Any) -> None:
    """``@pytest.mark.callpyback(config=...)``: load the marker's configuration."""
    kwargs = dict(marker.kwargs)
    args = list(marker.args)
    config = kwargs.pop("config", None)
    if args and config is None:
        config = args.pop(0)
    if args or kwargs:
        extra = [repr(a) for a in args] + [f"{k}=" for k in sorted(kwargs)]
        raise TypeError(
            f"@pytest.mark.callpyback takes config='path or TOML text'; got {', '.join(extra)}"
        )
    if config is not None:
        fixture(config)


# --- the session's run report (--callpyback-report) -------------------------------------------


class _SessionMetrics(MetricsObserver):
    """A metrics observer on every pipeline for the whole session (through the override seam),
    so the report covers every observed call, whatever observers the pipelines have."""

    def __init__(self) -> None:
        super().__init__(track_in_flight=False, name="callpyback.pytest-report")
        self.pipelines: Dict[str, Set[str]] = {}
        self.infos: Set[Any] = set()

    def _stats_for(self, info: Any) -> Any:
        self.infos.add(info)
        if info.pipeline:
            self.pipelines.setdefault(info.target, set()).add(info.pipeline)
        return super()._stats_for(info)


class SessionReport:
    """Attached at ``pytest_configure``; read at the end of the session (in each xdist worker,
    merged by the controller)."""

    def __init__(self) -> None:
        self.observer = _SessionMetrics()
        #: The workers' data, on an xdist controller.
        self.parts: List[Dict[str, Any]] = []
        _OVERRIDE.add_observer(self.observer)

    def stop(self) -> None:
        _OVERRIDE.remove_observer(self.observer)

    def data(self) -> Dict[str, Any]:
        """Plain data (what an xdist worker sends its controller)."""
        from .. import _background

        _background.flush(5.0)  # a background pipeline's last calls
        observer = self.observer
        rows: Dict[str, Any] = {}
        for target, stats in observer.get_metrics().items():
            histogram = observer.histogram(target)
            rows[target] = {
                "counts": {k: v for k, v in stats.items() if isinstance(v, int)},
                "histogram": None if histogram is None else _histogram_data(histogram),
                "pipelines": sorted(observer.pipelines.get(target, ())),
            }
        return {"rows": rows, "wrapped": len(observer.infos)}


def _histogram_data(histogram: Any) -> List[Any]:
    h = histogram
    return [
        h.relative_accuracy,
        h._zero,
        h.count,
        h.sum,
        h.min if h.count else None,
        h.max if h.count else None,
        sorted(h._buckets.items()),
    ]


def _histogram(data: List[Any]) -> Any:
    from .._histogram import Histogram

    accuracy, zero, count, total, low, high, buckets = data
    h = Histogram(accuracy)
    h._zero = zero
    h.count = count
    h.sum = total
    h.min = math.inf if low is None else low
    h.max = -math.inf if high is None else high
    h._buckets = {int(k): int(n) for k, n in buckets}
    return h


def merge_reports(parts: Iterable[Dict[str, Any]]) -> Any:
    """One :class:`~callpyback.report.RunReport` from the data of one or more processes."""
    from ..report import FunctionReport, RunReport

    rows: Dict[str, Dict[str, Any]] = {}
    wrapped = 0
    for part in parts:
        # Every worker imports the same code: the largest count is the closest to "distinct".
        wrapped = max(wrapped, int(part.get("wrapped", 0)))
        for target, row in part.get("rows", {}).items():
            into = rows.setdefault(target, {"counts": {}, "histogram": None, "pipelines": set()})
            for key, value in row["counts"].items():
                into["counts"][key] = into["counts"].get(key, 0) + value
            if row["histogram"] is not None:
                h = _histogram(row["histogram"])
                if into["histogram"] is None:
                    into["histogram"] = h
                else:
                    into["histogram"].merge(h)
            into["pipelines"].update(row["pipelines"])
    functions = []
    for target, row in rows.items():
        c = row["counts"]
        if c.get("in_flight") is not None:
            c.pop("in_flight")
        report = FunctionReport(
            target=target,
            pipeline=", ".join(sorted(row["pipelines"])) or None,
            source="metrics",
            calls=c.get("calls", 0),
            successes=c.get("successes"),
            failures=c.get("failures"),
            recoveries=c.get("recoveries"),
            retries=c.get("retries"),
            cancelled=c.get("cancelled"),
            interrupted=c.get("interrupted"),
        )
        h = row["histogram"]
        if h is not None:
            summary = h.summary((0.5, 0.9, 0.99))
            report.histogram = h
            report.total_seconds = float(summary["sum"] or 0.0)
            report.mean_seconds = summary["mean"]
            report.min_seconds = summary["min"]
            report.max_seconds = summary["max"]
            report.p50_seconds = summary["p50"]
            report.p90_seconds = summary["p90"]
            report.p99_seconds = summary["p99"]
        functions.append(report)
    functions.sort(key=lambda r: (-r.total_seconds, -r.calls, r.target))
    return RunReport(
        functions=functions,
        wrapped=wrapped,
        # Not known here: the import hook restored what it wrapped when each test ended.
        wrapped_by_hook=0,
        instrumentation_warnings=0,
        observers=1,
    )


def render(report: Any, fmt: str = "text", processes: int = 1) -> str:
    """The run report; as text, with a headline about the test session."""
    from .. import report as report_module

    text = report_module.render(report, fmt)
    if fmt != "text":
        return text
    observed = [f for f in report.functions if f.calls]
    where = f" in {processes} xdist workers" if processes > 1 else ""
    if observed:
        head = (
            f"callpyback report: {len(observed)} targets, {report.calls} calls observed during "
            f"the tests{where}, sorted by total time; {report.wrapped} functions observed by a "
            "pipeline (decorators and the import hook)"
        )
    else:
        head = (
            f"callpyback report: no observed function was called during the tests{where} "
            f"({report.wrapped} functions observed by a pipeline)"
        )
    return "\n".join([head, *text.splitlines()[1:]]) + "\n"


def write(report: Any, path: str) -> str:
    """Write the report to ``path`` (format from the suffix: .json, .html, else text)."""
    from pathlib import Path

    target = Path(path)
    suffix = target.suffix.lower()
    fmt = "json" if suffix == ".json" else "html" if suffix in (".html", ".htm") else "text"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(report, fmt), encoding="utf-8")
    return fmt
