"""Real processes exporting over OTLP/HTTP to a real receiver on 127.0.0.1: spans and metrics
arrive with the resource's service.name; a child process continues the trace through
TRACEPARENT; and with the receiver down the process still exits promptly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from otlp_receiver import OtlpReceiver, free_port

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

PROGRAM = {
    "app/__init__.py": "",
    "app/jobs.py": """
        import subprocess, sys
        from callpyback_opentelemetry import child_environment

        def main():
            prepare(2)
            return spawn()

        def prepare(n):
            return [step(i) for i in range(n)]

        def step(i):
            return i

        def spawn():
            # The trace goes to the child only because we pass it (TRACEPARENT, BAGGAGE).
            return subprocess.run([sys.executable, "child.py"], env=child_environment(),
                                  check=True).returncode

        def child_job():
            return "child done"
    """,
    "run.py": """
        import sys, time
        from app.jobs import main
        main()
        print("END", time.time(), flush=True)
    """,
    "child.py": """
        from app.jobs import child_job
        child_job()
    """,
}

CONFIG = """
    version = 1
    [otel]
    sdk = true
    service_name = "otlp-demo"
    endpoint = "{endpoint}"
    trace_from_environment = true
    {extra}

    [observers.span]
    type = "otel.span"

    [observers.otel_metrics]
    type = "otel.metrics"

    [[pipelines]]
    match = ["app.*"]
    observers = ["span", "otel_metrics"]
"""


def make_program(tmp_path: Path, endpoint: str, extra: str = "") -> Path:
    for name, text in PROGRAM.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    config = textwrap.dedent(CONFIG).format(endpoint=endpoint, extra=extra)
    (tmp_path / "callpyback.toml").write_text(config, encoding="utf-8")
    return tmp_path


def run(cwd: Path, env: Optional[Dict[str, str]] = None, timeout: float = 60) -> Any:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CALLPYBACK_"))}
    base["PYTHONPATH"] = str(cwd)
    return subprocess.run(
        [sys.executable, "-m", "callpyback", "run", "run.py"],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_spans_and_metrics_reach_the_receiver_and_the_child_continues_the_trace(
    tmp_path: Path,
) -> None:
    """One trace across two processes; spans and metrics carry service.name."""
    with OtlpReceiver() as receiver:
        proc = run(make_program(tmp_path, receiver.endpoint))
        assert proc.returncode == 0, proc.stderr
        got = receiver.received
        assert got.wait_for(lambda r: len(r.spans) >= 6 and r.metrics)
    spans = {s["name"]: s for s in got.spans}
    assert set(spans) == {
        "app.jobs.main",
        "app.jobs.prepare",
        "app.jobs.step",
        "app.jobs.spawn",
        "app.jobs.child_job",
    }
    assert {s["resource"]["service.name"] for s in got.spans} == {"otlp-demo"}
    assert len({s["trace_id"] for s in got.spans}) == 1, "the child did not continue the trace"
    assert spans["app.jobs.child_job"]["parent_span_id"] == spans["app.jobs.spawn"]["span_id"]
    assert spans["app.jobs.spawn"]["parent_span_id"] == spans["app.jobs.main"]["span_id"]
    assert spans["app.jobs.main"]["parent_span_id"] is None
    assert spans["app.jobs.step"]["attributes"]["code.function.name"] == "app.jobs.step"
    names = {m["name"] for m in got.metrics}
    assert {"callpyback.call.duration", "callpyback.calls"} <= names
    durations = [m for m in got.metrics if m["name"] == "callpyback.call.duration"]
    assert {(m["unit"], m["resource"]["service.name"]) for m in durations} == {("s", "otlp-demo")}
    measured = {p["code.function.name"] for m in durations for p in m["points"]}
    assert measured == {f"app.jobs.{n}" for n in ("main", "prepare", "step", "spawn", "child_job")}


def test_without_child_environment_the_child_starts_its_own_trace(tmp_path: Path) -> None:
    """OTEL_PROPAGATORS=none: child_environment() carries nothing, so the trace splits."""
    with OtlpReceiver() as receiver:
        proc = run(make_program(tmp_path, receiver.endpoint), {"OTEL_PROPAGATORS": "none"})
        assert proc.returncode == 0, proc.stderr
        got = receiver.received
        assert got.wait_for(lambda r: len(r.spans) >= 6)
    traces = {s["name"]: s["trace_id"] for s in got.spans}
    assert traces["app.jobs.child_job"] != traces["app.jobs.main"]
    assert len(set(traces.values())) == 2


@pytest.mark.parametrize(
    ("env", "extra"),
    [
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "1"}, ""),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "10"}, "shutdown_timeout = 1.0"),
    ],
    ids=["exporter-timeout-1s", "shutdown-timeout-1s"],
)
def test_exit_is_bounded_with_the_receiver_down(
    tmp_path: Path, env: Dict[str, str], extra: str
) -> None:
    """Nobody listening: the program still exits within 3 s of its last line (issue bound)."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    proc = run(make_program(tmp_path, endpoint, extra), env)
    ended = time.time()
    assert proc.returncode == 0, proc.stderr
    marker = [line for line in proc.stdout.splitlines() if line.startswith("END ")]
    assert marker, proc.stdout
    exit_phase = ended - float(marker[0].split()[1])
    assert exit_phase < 3.0, f"exit took {exit_phase:.2f} s; stderr: {proc.stderr[-2000:]}"
