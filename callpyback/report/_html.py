"""The run report as one self-contained HTML file.

No network: the styles and the small sorting script are inline, fonts are the system's, and the
histograms are inline SVG drawn here from each target's own latency histogram (log-scaled
time axis), so the page reads the same with JavaScript off.  Every name is escaped (targets
contain ``<locals>``).
"""

from __future__ import annotations

import math
import time
from html import escape
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._collect import FunctionReport, RunReport
from ._text import duration, headline

__all__ = ["render_html"]

#: Histogram bars per decade of latency (the observer's own buckets are ~115 per decade at 1 %).
BINS_PER_DECADE = 10

_CSS = """
:root { color-scheme: light; --fg: #1b1f24; --muted: #5b6570; --line: #d5dbe1; --bar: #3b73b9;
        --hi: #f3f6f9; --p50: #1f8a4c; --p99: #c2410c; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
p.meta, figcaption .meta { color: var(--muted); margin: 2px 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { text-align: right; position: sticky; top: 0; background: #fff; }
th.text, td.text { text-align: left; }
td { text-align: right; }
td.target { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
tbody tr:hover { background: var(--hi); }
th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0;
            cursor: pointer; color: inherit; }
th[aria-sort="descending"] button::after { content: " \\25BE"; }
th[aria-sort="ascending"] button::after { content: " \\25B4"; }
.empty { color: var(--muted); }
figure { margin: 0 0 18px; }
figcaption { font-family: ui-monospace, Menlo, monospace; font-size: 13px; }
svg { display: block; max-width: 100%; height: auto; }
svg .bar { fill: var(--bar); }
svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .tick { fill: var(--muted); font: 10px system-ui, sans-serif; }
svg .p50 { stroke: var(--p50); stroke-dasharray: 3 2; }
svg .p99 { stroke: var(--p99); stroke-dasharray: 3 2; }
"""

# Sort the table by a header's column; ``#sort=KEY`` or ``#sort=KEY-asc`` picks the first sort.
_JS = """
(function () {
  var table = document.getElementById("functions");
  if (!table) { return; }
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  function sortBy(index, ascending) {
    var numeric = heads[index].getAttribute("data-type") === "number";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index].getAttribute("data-value");
      var y = b.cells[index].getAttribute("data-value");
      var r;
      if (numeric) {
        x = x === "" ? -Infinity : parseFloat(x);
        y = y === "" ? -Infinity : parseFloat(y);
        r = x - y;
      } else {
        r = x < y ? -1 : x > y ? 1 : 0;
      }
      return ascending ? r : -r;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    heads[index].setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(heads, function (th, index) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    button.addEventListener("click", function () {
      var now = th.getAttribute("aria-sort");
      var numeric = th.getAttribute("data-type") === "number";
      sortBy(index, now ? now === "descending" : !numeric);
    });
  });
  var wanted = /^#sort=([a-z0-9_]+?)(-asc)?$/.exec(window.location.hash);
  if (wanted) {
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].getAttribute("data-key") === wanted[1]) { sortBy(i, !!wanted[2]); }
    }
  }
})();
"""

#: (key, header, numeric, how to read the row, how to show it)
_Column = Tuple[str, str, bool, Any, Any]


def _int(value: Optional[int]) -> str:
    return "-" if value is None else str(value)


_COLUMNS: Tuple[_Column, ...] = (
    ("target", "target", False, lambda r: r.target, None),
    ("pipeline", "pipeline", False, lambda r: r.pipeline or "", None),
    ("calls", "calls", True, lambda r: r.calls, _int),
    ("successes", "ok", True, lambda r: r.successes, _int),
    ("failures", "failed", True, lambda r: r.failures, _int),
    ("recoveries", "recovered", True, lambda r: r.recoveries, _int),
    ("retries", "retries", True, lambda r: r.retries, _int),
    ("cancelled", "cancelled", True, lambda r: r.cancelled, _int),
    ("interrupted", "interrupted", True, lambda r: r.interrupted, _int),
    ("total", "total", True, lambda r: r.total_seconds if r.calls else None, duration),
    ("mean", "mean", True, lambda r: r.mean_seconds, duration),
    ("p50", "p50", True, lambda r: r.p50_seconds, duration),
    ("p90", "p90", True, lambda r: r.p90_seconds, duration),
    ("p99", "p99", True, lambda r: r.p99_seconds, duration),
    ("max", "max", True, lambda r: r.max_seconds, duration),
)


def _row(index: int, row: FunctionReport) -> str:
    cells = []
    for key, _, numeric, read, show in _COLUMNS:
        value = read(row)
        if key == "target":
            text = f'<a href="#h-{index}">{escape(value)}</a>'
            cells.append(f'<td class="text target" data-value="{escape(value)}">{text}</td>')
        elif not numeric:
            shown = escape(value or "-")
            cells.append(f'<td class="text" data-value="{escape(value)}">{shown}</td>')
        else:
            data = "" if value is None else repr(float(value))
            cells.append(f'<td data-value="{data}">{escape(show(value))}</td>')
    return f'<tr id="f-{index}">{"".join(cells)}</tr>'


def _bins(row: FunctionReport) -> Dict[int, int]:
    """Counts per bar: bin ``b`` holds latencies in ``[10**(b/B), 10**((b+1)/B))``."""
    histogram = row.histogram
    bins: Dict[int, int] = {}
    if histogram is None:
        return bins
    gamma = histogram.gamma
    lowest: Optional[int] = None
    zero = 0
    for upper, count in histogram.buckets():
        if upper <= 0:
            zero += count  # durations under 1 ns: drawn in the lowest bar
            continue
        middle = 2 * upper / (gamma + 1)  # the value the histogram reports for this bucket
        b = math.floor(math.log10(middle) * BINS_PER_DECADE)
        bins[b] = bins.get(b, 0) + count
        lowest = b if lowest is None else min(lowest, b)
    if zero:
        key = lowest if lowest is not None else -9 * BINS_PER_DECADE
        bins[key] = bins.get(key, 0) + zero
    return bins


def _svg(row: FunctionReport) -> str:
    bins = _bins(row)
    if not bins:
        return '<p class="empty">no durations recorded</p>'
    # Whole decades on the axis, so ticks fall on 1 us, 10 us, 1 ms...
    lo = math.floor(min(bins) / BINS_PER_DECADE) * BINS_PER_DECADE
    hi = (math.floor(max(bins) / BINS_PER_DECADE) + 1) * BINS_PER_DECADE
    width, height, left, bottom, top, right = 640, 130, 44, 18, 8, 28
    plot_w, plot_h = width - left - right, height - bottom - top
    step = plot_w / (hi - lo)
    peak = max(bins.values())
    parts: List[str] = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="latency histogram of {escape(row.target)}">'
    ]
    for b in sorted(bins):
        n = bins[b]
        h = max(1.0, plot_h * n / peak)
        x = left + (b - lo) * step
        y = top + plot_h - h
        low, high = 10 ** (b / BINS_PER_DECADE), 10 ** ((b + 1) / BINS_PER_DECADE)
        parts.append(
            f'<rect class="bar" x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}"><title>{duration(low)} to {duration(high)}: {n} '
            f"call{'s' if n != 1 else ''}</title></rect>"
        )
    base = top + plot_h
    parts.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}"/>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base}"/>')
    parts.append(f'<text class="tick" x="{left - 4}" y="{top + 8}" text-anchor="end">{peak}</text>')
    parts.append(f'<text class="tick" x="{left - 4}" y="{base}" text-anchor="end">0</text>')
    for decade in range(lo, hi + 1, BINS_PER_DECADE):
        x = left + (decade - lo) * step
        label = duration(10 ** (decade / BINS_PER_DECADE))
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 3}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{base + 14}" text-anchor="middle">{label}</text>'
        )
    for name, value in (("p50", row.p50_seconds), ("p99", row.p99_seconds)):
        if value and value > 0:
            x = left + (math.log10(value) * BINS_PER_DECADE - lo) * step
            parts.append(
                f'<line class="{name}" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{base}">'
                f"<title>{name} {duration(value)}</title></line>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _figure(index: int, row: FunctionReport) -> str:
    facts = (
        f"{row.calls} calls, p50 {duration(row.p50_seconds)}, p99 {duration(row.p99_seconds)}, "
        f"max {duration(row.max_seconds)}"
    )
    return (
        f'<figure id="h-{index}"><figcaption>{escape(row.target)} '
        f'<span class="meta">{escape(facts)} (green: p50, orange: p99)</span></figcaption>'
        f"{_svg(row)}</figure>"
    )


def _meta(report: RunReport) -> List[str]:
    lines = [time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.created))]
    if report.argv:
        lines.append("program: " + " ".join(report.argv))
    if report.duration_seconds is not None:
        lines.append(f"ran {duration(report.duration_seconds)}")
    if report.exit_status is not None:
        lines.append(f"exit status {report.exit_status} ({report.ended_by or 'exit'})")
    return lines


def _head(key: str, header: str, numeric: bool) -> str:
    attrs = f'data-key="{key}" data-type="{"number" if numeric else "text"}"'
    if not numeric:
        attrs += ' class="text"'
    if key == "total":  # the order the rows are written in
        attrs += ' aria-sort="descending"'
    return f"<th {attrs}>{escape(header)}</th>"


def render_html(report: RunReport) -> str:
    """The whole page: a summary, the sortable table, and one histogram per target."""
    rows: Sequence[FunctionReport] = [f for f in report.functions if f.calls]
    heads = "".join(_head(key, header, numeric) for key, header, numeric, _, _ in _COLUMNS)
    body = "".join(_row(i, r) for i, r in enumerate(rows, 1))
    figures = "".join(_figure(i, r) for i, r in enumerate(rows, 1))
    meta = "".join(f'<p class="meta">{escape(line)}</p>' for line in _meta(report))
    if rows:
        content = (
            f'<table id="functions"><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>'
            f'<h2>Latency per target</h2><section id="histograms">{figures}</section>'
        )
    else:
        content = '<p class="empty" id="nothing">Nothing was observed.</p>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>callpyback run report</title><style>{_CSS}</style></head><body>"
        f'<h1>callpyback run report</h1><p id="headline">{escape(headline(report))}</p>{meta}'
        f"{content}<script>{_JS}</script></body></html>\n"
    )
