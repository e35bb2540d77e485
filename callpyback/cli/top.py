"""``callpyback top``: a live terminal view of a running program's ``/metrics`` endpoint.

It polls the endpoint ``callpyback run --metrics-port`` serves (no protocol of its own), and
shows per target the rates over the last interval (calls/s, errors/s), p50 and p99 of the
calls in that interval (from the histogram's buckets, interpolated as Prometheus'
``histogram_quantile`` does), and the calls in flight.  Built on rich's ``Live``: it redraws
only when a poll or a key press changes something, at most once per ``--interval``.  Not on a
terminal, it prints a plain table per interval instead (no escape sequences).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

DEFAULT_URL = "http://127.0.0.1:9464/metrics"
#: Redraws are capped at 4 per second: faster flickers under tmux and costs the program scrapes.
MIN_INTERVAL = 0.25

#: (key, header, sort key) in column order; keys 1-7 sort by the column of that number.
COLUMNS = (
    ("target", "target"),
    ("calls_rate", "calls/s"),
    ("errors_rate", "errors/s"),
    ("p50", "p50"),
    ("p99", "p99"),
    ("in_flight", "in flight"),
    ("calls", "calls"),
)
SORT_KEYS = [key for key, _ in COLUMNS]
_SORT_NAMES = {
    "target": "target",
    "calls": "calls",
    "calls/s": "calls_rate",
    "rate": "calls_rate",
    "errors": "errors_rate",
    "errors/s": "errors_rate",
    "p50": "p50",
    "p99": "p99",
    "in-flight": "in_flight",
    "inflight": "in_flight",
    "total": "calls",
}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "top",
        help="live view of a running program's /metrics (callpyback run --metrics-port)",
        description="Watch a program that runs under `callpyback run --metrics-port PORT`: per "
        "target, calls/s, errors/s, p50 and p99 over the last interval, and calls in flight.\n\n"
        "keys: 1-7 sort by that column (again: reverse), r reverse, q or Ctrl-C quit.\n"
        "NO_COLOR=1 turns colour off.  Not on a terminal, a plain table is printed per "
        "interval.\n\nexamples:\n  callpyback top\n  callpyback top 9464 --sort calls/s\n"
        "  callpyback top http://10.0.0.5:9464/metrics --interval 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url",
        nargs="?",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"the endpoint (default {DEFAULT_URL}); PORT or HOST:PORT are short for it",
    )
    parser.add_argument(
        "-i",
        "--interval",
        type=_interval,
        default=1.0,
        metavar="SECONDS",
        help=f"seconds between refreshes (default 1, at least {MIN_INTERVAL})",
    )
    parser.add_argument(
        "-s",
        "--sort",
        type=_sort,
        default="p99",
        metavar="KEY",
        help="initial sort: target, calls/s, errors/s, p50, p99 (default), in-flight or calls",
    )
    parser.add_argument(
        "-n",
        "--iterations",
        type=int,
        default=None,
        metavar="N",
        help="stop after N refreshes (default: until q or Ctrl-C)",
    )
    parser.add_argument(
        "--prefix", default="callpyback", help="metric name prefix (default callpyback)"
    )
    parser.set_defaults(func=run)
    return parser


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < MIN_INTERVAL:
        raise argparse.ArgumentTypeError(
            f"the interval is a number of seconds, at least {MIN_INTERVAL}, got {text!r}"
        )
    return value


def _sort(text: str) -> str:
    key = _SORT_NAMES.get(text.strip().lower())
    if key is None:
        raise argparse.ArgumentTypeError(
            f"sort by one of {', '.join(sorted(set(_SORT_NAMES)))}; got {text!r}"
        )
    return key


def normalise_url(text: str) -> str:
    """``9464`` -> ``http://127.0.0.1:9464/metrics``; ``host:9464`` and ``http://host:9464`` too."""
    text = text.strip()
    if text.isdigit():
        return f"http://127.0.0.1:{text}/metrics"
    if "://" not in text:
        text = "http://" + text
    scheme, _, rest = text.partition("://")
    if "/" not in rest:
        rest += "/metrics"
    return f"{scheme}://{rest}"


# --- reading the endpoint ---------------------------------------------------------------------


@dataclass
class Sample:
    """One target at one scrape: cumulative counters and histogram."""

    calls: float = 0.0
    errors: float = 0.0
    in_flight: float = 0.0
    buckets: List[Tuple[float, float]] = field(default_factory=list)  # (le, cumulative)
    sum: float = 0.0


def parse(text: str, prefix: str = "callpyback") -> Optional[Dict[str, Sample]]:
    """Per target, from an exposition; None when it has no ``<prefix>_calls`` family."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Dict[str, Sample] = {}
    found = False

    def at(labels: Dict[str, str]) -> Sample:
        target = labels.get("target", "")
        sample = out.get(target)
        if sample is None:
            sample = out[target] = Sample()
        return sample

    for family in text_string_to_metric_families(text):
        name = family.name
        if name == f"{prefix}_calls":
            found = True
            for s in family.samples:
                if s.name.endswith("_total"):
                    entry = at(s.labels)
                    entry.calls += s.value
                    if s.labels.get("outcome") in ("failure", "interrupted"):
                        entry.errors += s.value
        elif name == f"{prefix}_calls_in_flight":
            for s in family.samples:
                at(s.labels).in_flight = s.value
        elif name == f"{prefix}_call_duration_seconds":
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    at(s.labels).buckets.append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_sum"):
                    at(s.labels).sum = s.value
    if not found:
        return None
    for sample in out.values():
        sample.buckets.sort()
    return out


def quantile(q: float, buckets: Sequence[Tuple[float, float]]) -> Optional[float]:
    """The q-quantile of cumulative ``(le, count)`` buckets, interpolated within a bucket as
    ``histogram_quantile`` does (the top bucket's lower bound when it lands in +Inf)."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


@dataclass
class Row:
    target: str
    calls: float
    calls_rate: Optional[float]
    errors_rate: Optional[float]
    p50: Optional[float]
    p99: Optional[float]
    in_flight: float


def rows(
    now: Dict[str, Sample], before: Optional[Dict[str, Sample]], seconds: Optional[float]
) -> List[Row]:
    """Rates and quantiles over the interval between two scrapes (totals on the first)."""
    out = []
    for target, cur in now.items():
        prev = before.get(target) if before is not None else None
        if prev is None or seconds is None or seconds <= 0 or cur.calls < prev.calls:
            # The first scrape, a new target, or a restarted program: all it did so far.
            window = cur.buckets
            calls_rate = errors_rate = None
            if before is not None and seconds:
                calls_rate, errors_rate = cur.calls / seconds, cur.errors / seconds
        else:
            calls_rate = (cur.calls - prev.calls) / seconds
            errors_rate = max(0.0, cur.errors - prev.errors) / seconds
            previous = dict(prev.buckets)
            window = [(le, n - previous.get(le, 0.0)) for le, n in cur.buckets]
        out.append(
            Row(
                target,
                cur.calls,
                calls_rate,
                errors_rate,
                quantile(0.5, window),
                quantile(0.99, window),
                cur.in_flight,
            )
        )
    return out


def sort_rows(items: List[Row], key: str, reverse: bool) -> List[Row]:
    if key == "target":
        return sorted(items, key=lambda r: r.target, reverse=reverse)
    # Missing values (no calls in the interval) always go last, whichever the direction.
    present = [r for r in items if getattr(r, key) is not None]
    missing = [r for r in items if getattr(r, key) is None]
    present.sort(key=lambda r: (getattr(r, key), r.target), reverse=not reverse)
    return present + sorted(missing, key=lambda r: r.target)


def fetch(url: str, timeout: float) -> str:
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode("utf-8", "replace")  # type: ignore[no-any-return]


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc)
    return f"{type(reason if reason is not None else exc).__name__}: {text}"


# --- the view ---------------------------------------------------------------------------------


def _cell(key: str, row: Row) -> str:
    from ..report._text import duration

    value = getattr(row, key)
    if key == "target":
        return str(value)
    if value is None:
        return "-"
    if key in ("p50", "p99"):
        return duration(value)
    if key in ("calls_rate", "errors_rate"):
        return f"{value:.1f}"
    return f"{value:.0f}"


class State:
    def __init__(self, url: str, interval: float, sort: str, prefix: str) -> None:
        self.url = url
        self.interval = interval
        self.sort = sort
        self.reverse = False
        self.prefix = prefix
        self.samples: Optional[Dict[str, Sample]] = None
        self.at: Optional[float] = None
        self.rows: List[Row] = []
        self.error: Optional[str] = None
        self.updated: Optional[str] = None

    def poll(self) -> None:
        timeout = max(1.0, min(self.interval, 5.0))
        try:
            parsed = parse(fetch(self.url, timeout), self.prefix)
        except Exception as exc:
            self.error = (
                f"cannot reach {self.url} ({_reason(exc)}); retrying every {self.interval:g}s"
            )
            return
        if parsed is None:
            self.error = (
                f"{self.url} answers, but has no {self.prefix}_calls metrics: is it a "
                "`callpyback run --metrics-port` endpoint? retrying"
            )
            return
        now = time.monotonic()
        seconds = None if self.at is None else now - self.at
        self.rows = rows(parsed, self.samples, seconds)
        self.samples, self.at = parsed, now
        self.error = None
        self.updated = time.strftime("%H:%M:%S")

    def key(self, ch: str) -> bool:
        """Apply a key press; True if the view changed."""
        if ch.isdigit() and 1 <= int(ch) <= len(COLUMNS):
            key = SORT_KEYS[int(ch) - 1]
            self.reverse = not self.reverse if key == self.sort else False
            self.sort = key
            return True
        if ch in ("r", "R"):
            self.reverse = not self.reverse
            return True
        return False

    @property
    def descending(self) -> bool:
        return (self.sort != "target") != self.reverse

    def sorted_rows(self) -> List[Row]:
        return sort_rows(self.rows, self.sort, self.reverse)

    def title(self) -> str:
        header = dict(COLUMNS)[self.sort]
        number = SORT_KEYS.index(self.sort) + 1
        order = "descending" if self.descending else "ascending"
        parts = [
            f"callpyback top  {self.url}",
            f"every {self.interval:g}s",
            f"{len(self.rows)} targets",
            f"sorted by {header} ({number}, {order})",
        ]
        if self.updated:
            parts.append(f"updated {self.updated}")
        return "  |  ".join(parts)


HELP = (
    "keys: 1 target  2 calls/s  3 errors/s  4 p50  5 p99  6 in flight  7 calls  r reverse  q quit"
)


def plain(state: State) -> str:
    """The view as plain text (no escape sequences), for a pipe or a file."""
    lines = [state.title()]
    if state.error:
        lines.append(state.error)
    table = [[header for _, header in COLUMNS]]
    table += [[_cell(k, r) for k, _ in COLUMNS] for r in state.sorted_rows()]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    for cells in table:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()
        )
    return "\n".join(lines) + "\n"


def _renderable(state: State, height: int) -> Any:
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False, header_style="bold")
    for i, (key, header) in enumerate(COLUMNS, 1):
        label = f"{header} [{i}]"
        if key == state.sort:
            label += " v" if state.descending else " ^"
        table.add_column(
            label,
            justify="left" if key == "target" else "right",
            no_wrap=True,
            overflow="ellipsis",
            ratio=4 if key == "target" else None,
        )
    shown = state.sorted_rows()[: max(1, height - 7)]
    for row in shown:
        style = "red" if row.errors_rate else None
        table.add_row(*(_cell(k, row) for k, _ in COLUMNS), style=style)
    parts: List[Any] = [Text(state.title(), style="bold")]
    if state.error:
        parts.append(Text(state.error, style="bold red"))
    elif not state.rows:
        parts.append(Text("no targets yet: nothing observed has been called"))
    parts.append(table)
    parts.append(Text(HELP, style="dim"))
    return Group(*parts)


class _Keys:
    """Single key presses from the terminal (cbreak mode; Ctrl-C still interrupts)."""

    def __init__(self) -> None:
        self.fd: Optional[int] = None
        self.saved: Any = None

    def __enter__(self) -> _Keys:
        try:
            import termios
            import tty

            fd = sys.stdin.fileno()
            if os.isatty(fd):
                self.saved = termios.tcgetattr(fd)
                tty.setcbreak(fd)
                self.fd = fd
        except (ImportError, OSError, ValueError, AttributeError):  # no terminal keys here
            self.fd = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout: float) -> Optional[str]:
        if self.fd is None:
            time.sleep(max(0.0, timeout))
            return None
        import select

        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return None
        data = os.read(self.fd, 32)
        if not data:
            return None
        return data.decode("utf-8", "replace")


def run(args: argparse.Namespace) -> int:
    from ..report._deps import MissingDependencyError, require

    try:
        require("prometheus_client", "callpyback top")
        if sys.stdout.isatty():
            require("rich", "callpyback top")
    except MissingDependencyError as exc:
        print(f"callpyback top: {exc}", file=sys.stderr)
        return 2
    state = State(normalise_url(args.url), args.interval, args.sort, args.prefix)
    try:
        if sys.stdout.isatty():
            return _live(state, args.iterations)
        return _plain(state, args.iterations)
    except KeyboardInterrupt:
        return 0


def _plain(state: State, iterations: Optional[int]) -> int:
    done = 0
    while iterations is None or done < iterations:
        started = time.monotonic()
        state.poll()
        sys.stdout.write(plain(state) + "\n")
        sys.stdout.flush()
        done += 1
        if iterations is not None and done >= iterations:
            break
        time.sleep(max(0.0, state.interval - (time.monotonic() - started)))
    return 0


def _live(state: State, iterations: Optional[int]) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console(no_color=bool(os.environ.get("NO_COLOR")) or None)
    done = 0
    with (
        _Keys() as keys,
        Live(console=console, auto_refresh=False, screen=True, transient=True) as live,
    ):
        next_poll = time.monotonic()
        while True:
            if time.monotonic() >= next_poll:
                state.poll()
                done += 1
                next_poll = time.monotonic() + state.interval
                live.update(_renderable(state, console.size.height), refresh=True)
                if iterations is not None and done >= iterations:
                    break
            ch = keys.read(next_poll - time.monotonic())
            if ch is None:
                continue
            if "q" in ch or "Q" in ch:
                break
            changed = False
            for c in ch:
                changed = state.key(c) or changed
            if changed:
                live.update(_renderable(state, console.size.height), refresh=True)
    return 0
