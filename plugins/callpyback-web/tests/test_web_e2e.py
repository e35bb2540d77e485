"""End to end: each example app under `callpyback run`, served on 127.0.0.1 by a real server
(wsgiref for Flask and Django, uvicorn for FastAPI) in its own process, driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "web"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(base: str, method: str, path: str, body: Any = None) -> Tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Authorization": "Bearer e2e-secret-token"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: List[subprocess.Popen] = []

    def start(script: str) -> Tuple[str, Path, subprocess.Popen]:
        port = free_port()
        trail = tmp_path / f"{script}.jsonl"
        env = {**os.environ, "WEB_AUDIT": str(trail), "PYTHONUNBUFFERED": "1"}
        env.pop("CALLPYBACK_CONFIG", None)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callpyback",
                "run",
                str(EXAMPLES / script),
                "--serve",
                str(port),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out, err = proc.communicate(timeout=10)
                    pytest.fail(f"{script} did not start: {out}\n{err}")
                time.sleep(0.1)
        return f"http://127.0.0.1:{port}", trail, proc

    yield start
    for proc in started:  # always stopped, even when a test failed
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), err
    return out


@pytest.mark.parametrize("script", ["flask_app.py", "fastapi_app.py", "django_app.py"])
def test_a_real_server_under_callpyback_run(serve: Any, script: str) -> None:
    pytest.importorskip(script.split("_")[0])
    base, trail, proc = serve(script)
    assert http(base, "GET", "/orders/1")[0] == 200
    status, body = http(base, "GET", "/orders/2/stream")
    assert status == 200 and body.count(b"data: 2 ") == 3
    assert http(base, "POST", "/payments", {"order_id": 3})[0] == 500  # declined: the view raised
    assert http(base, "GET", "/orders/7")[0] == 404
    assert http(base, "GET", "/health")[0] == 200
    out = stop(proc)
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    by_target = [(r["what"], r["outcome"]) for r in records if r["what"].startswith("http:")]
    assert by_target == [
        ("http:GET /orders/{order_id}", "success"),
        ("http:GET /orders/{order_id}/stream", "success"),
        ("http:POST /payments", "failure"),
        ("http:GET /orders/{order_id}", "success"),  # a 404 is not a failure
    ]
    streamed = next(r for r in records if r["what"] == "http:GET /orders/{order_id}/stream")
    assert streamed["duration"] >= 0.15  # three events 50 ms apart: ended when the body was sent
    failed = next(r for r in records if r["what"] == "http:POST /payments")
    assert failed["exception"]["type"] == "RuntimeError"
    assert [c["target"] for c in failed["arguments"]["request"]["children"]] == [
        "shop_logic:price",
        "shop_logic:charge",
    ]
    assert "e2e-secret-token" not in trail.read_text()
    assert "http:GET /orders/{order_id}" in out  # the run report at exit
