"""See what was observed: the run report (text, JSON, HTML) and Prometheus export.

Both read the state of every metrics and timing observer in the process (found through the
decorators that exist, those the import hook applied and those made in code); neither adds
anything to the call path.  ``callpyback run --report html`` and ``--metrics-port`` use this
module; in code::

    from callpyback import report
    print(report.render(report.collect(), "text"))

``prometheus_client`` (Prometheus) is optional: install the ``report`` extra.  See
``docs/reports.md``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Optional

from ._collect import (
    FunctionReport,
    RunReport,
    collect,
    decorators,
    metrics_observers,
    observers,
    timing_observers,
)
from ._deps import MissingDependencyError
from ._json import SCHEMA
from ._prometheus import (
    DEFAULT_BUCKETS,
    CallPyBackCollector,
    MetricsPortError,
    MetricsServer,
    MultiProcessWriter,
    serve,
)

__all__ = [
    "DEFAULT_BUCKETS",
    "FORMATS",
    "SCHEMA",
    "CallPyBackCollector",
    "FunctionReport",
    "MetricsPortError",
    "MetricsServer",
    "MissingDependencyError",
    "MultiProcessWriter",
    "RunReport",
    "collect",
    "decorators",
    "metrics_observers",
    "observers",
    "render",
    "serve",
    "timing_observers",
    "write_report",
]

#: The formats of the run report.
FORMATS = ("text", "json", "html")


def render(report: RunReport, format: str = "text") -> str:
    """The report as ``text``, ``json`` or ``html``."""
    if format == "text":
        from ._text import render_text

        return render_text(report)
    if format == "json":
        from ._json import render_json

        return render_json(report)
    if format == "html":
        from ._html import render_html

        return render_html(report)
    from ..errors import ConfigurationError

    raise ConfigurationError(f"report format must be one of {FORMATS}, got {format!r}")


def write_report(
    format: str = "text", path: Optional[str] = None, *, report: Optional[RunReport] = None
) -> Optional[str]:
    """Write the report (collected now unless given) to ``path``, or text to stderr.

    The file is replaced atomically (a reader never sees half a report).  Returns the absolute
    path written, or None for stderr.
    """
    text = render(report if report is not None else collect(), format)
    if path is None:
        if format != "text":
            path = f"callpyback-report.{format}"
        else:
            sys.stderr.write(text)
            sys.stderr.flush()
            return None
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".callpyback-report-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the report private to its writer
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
