"""The ``[report]`` and ``[export.prometheus]`` tables, ``CALLPYBACK_REPORT``, and the one
precedence rule for ``callpyback run``: command line > environment > ``callpyback.toml`` >
default.

A report's file goes with its format: ``--report-file`` always applies; otherwise the file comes
from the same place as the format (``CALLPYBACK_REPORT=html:out.html``, or the ``[report]``
table), and json/html default to ``callpyback-report.json``/``.html`` in the working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ConfigurationError

__all__ = [
    "REPORT_ENV",
    "ExportTable",
    "MetricsChoice",
    "PrometheusTable",
    "ReportChoice",
    "ReportTable",
    "choose_metrics",
    "choose_report",
]

#: ``CALLPYBACK_REPORT=FORMAT[:PATH]`` (``text``, ``json``, ``html``, or ``off``).
REPORT_ENV = "CALLPYBACK_REPORT"
#: prometheus_client's own switch for multiprocess mode: the directory every process writes to.
PROMETHEUS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

FORMATS = ("text", "json", "html")
_DEFAULT_FILES = {"json": "callpyback-report.json", "html": "callpyback-report.html"}


class ReportTable(BaseModel):
    """``[report]``: write a run report when ``callpyback run`` ends."""

    model_config = ConfigDict(extra="forbid")

    format: Optional[Literal["text", "json", "html", "off"]] = Field(
        default=None, description="text (stderr unless a file is given), json or html; off"
    )
    file: Optional[str] = Field(
        default=None,
        min_length=1,
        description="where to write it (relative to the directory callpyback run starts in)",
    )


class PrometheusTable(BaseModel):
    """``[export.prometheus]``: serve ``/metrics`` while ``callpyback run`` runs the program."""

    model_config = ConfigDict(extra="forbid")

    port: int = Field(default=9464, ge=0, le=65535, description="0 picks a free port")
    addr: str = Field(default="127.0.0.1", min_length=1, description="the address to bind")
    multiprocess: bool = Field(
        default=False,
        description="aggregate worker processes (prometheus_client's multiprocess mode)",
    )
    buckets: Optional[List[float]] = Field(
        default=None, description="histogram upper bounds in seconds (+Inf is added)"
    )

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, value: Optional[List[float]]) -> Optional[List[float]]:
        if value is not None:
            from ._prometheus import check_buckets

            check_buckets(value)
        return value


class ExportTable(BaseModel):
    """``[export]``: exporters the core runs (``[export.prometheus]``)."""

    model_config = ConfigDict(extra="forbid")

    prometheus: Optional[PrometheusTable] = None


@dataclass(frozen=True)
class ReportChoice:
    format: str
    path: Optional[str]  # absolute; None: text on stderr
    source: str  # where the choice came from, for messages


def parse_report_env(value: str) -> Tuple[Optional[str], Optional[str]]:
    """``FORMAT[:PATH]`` -> (format, path); an empty value is unset."""
    value = value.strip()
    if not value:
        return None, None
    fmt, _, path = value.partition(":")
    fmt = fmt.strip().lower()
    if fmt not in (*FORMATS, "off"):
        raise ConfigurationError(
            f"{REPORT_ENV}={value!r}: the format must be text, json, html or off, optionally "
            f"followed by :PATH (for example {REPORT_ENV}=html:report.html)"
        )
    return fmt, (path or None)


def _infer(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return {".json": "json", ".html": "html", ".htm": "html"}.get(ext, "text")


def choose_report(
    cli_format: Optional[str],
    cli_file: Optional[str],
    environ: Any,
    table: Optional[ReportTable],
    cwd: Optional[str] = None,
) -> Optional[ReportChoice]:
    """What to write at exit, or None; a path that cannot be written is refused now."""
    env_format, env_file = parse_report_env(environ.get(REPORT_ENV, ""))
    candidates: List[Tuple[str, Optional[str], Optional[str]]] = [
        ("--report", cli_format, None),
        (REPORT_ENV, env_format, env_file),
        (
            "[report] in callpyback.toml",
            table.format if table is not None else None,
            table.file if table is not None else None,
        ),
    ]
    fmt: Optional[str] = None
    file: Optional[str] = None
    source = ""
    for where, f, path in candidates:
        if f is not None:
            fmt, file, source = f, path, where
            break
    if fmt is None:
        # No format anywhere: a file alone (on the command line or in the table) says it.
        if cli_file:
            fmt, source = _infer(cli_file), "--report-file"
        elif table is not None and table.file:
            fmt, file, source = _infer(table.file), table.file, "[report] file in callpyback.toml"
        else:
            return None
    if fmt == "off":
        return None
    if cli_file:
        file, source = cli_file, "--report-file"
    if file is None and fmt in _DEFAULT_FILES:
        file = _DEFAULT_FILES[fmt]
    if file is None:
        return ReportChoice(fmt, None, source)
    path = os.path.abspath(os.path.join(cwd or os.getcwd(), os.path.expanduser(file)))
    _check_writable(path, source)
    return ReportChoice(fmt, path, source)


def _check_writable(path: str, source: str) -> None:
    where = os.path.dirname(path)
    if os.path.isdir(path):
        raise ConfigurationError(f"{source}: {path!r} is a directory; name a file to write")
    if not os.path.isdir(where):
        raise ConfigurationError(
            f"{source}: cannot write the report to {path!r}: the directory {where!r} does not "
            "exist; create it, or choose another file"
        )
    if not os.access(where, os.W_OK):
        raise ConfigurationError(
            f"{source}: cannot write the report to {path!r}: the directory {where!r} is not "
            "writable"
        )


@dataclass(frozen=True)
class MetricsChoice:
    port: int
    addr: str
    buckets: Tuple[float, ...]
    multiprocess: bool
    multiprocess_dir: Optional[str]  # None with multiprocess: make a fresh temporary one
    source: str


def choose_metrics(
    cli_port: Optional[int],
    cli_addr: Optional[str],
    cli_multiprocess: bool,
    environ: Any,
    table: Optional[ExportTable],
) -> Optional[MetricsChoice]:
    """Whether and where to serve ``/metrics``, or None."""
    from ._prometheus import DEFAULT_BUCKETS

    prom = table.prometheus if table is not None else None
    if cli_port is None and cli_addr is None and not cli_multiprocess and prom is None:
        return None
    source = "--metrics-port" if cli_port is not None else "[export.prometheus]"
    port = cli_port if cli_port is not None else (prom.port if prom else 9464)
    addr = cli_addr or (prom.addr if prom else "127.0.0.1")
    buckets = tuple(prom.buckets) if prom and prom.buckets else DEFAULT_BUCKETS
    env_dir = environ.get(PROMETHEUS_DIR_ENV) or None
    multiprocess = cli_multiprocess or bool(prom and prom.multiprocess) or env_dir is not None
    if env_dir is not None and not os.path.isdir(env_dir):
        raise ConfigurationError(
            f"{PROMETHEUS_DIR_ENV}={env_dir!r} is not a directory; create it (empty) first, or "
            f"unset it to let callpyback make one"
        )
    return MetricsChoice(port, addr, buckets, multiprocess, env_dir, source)
