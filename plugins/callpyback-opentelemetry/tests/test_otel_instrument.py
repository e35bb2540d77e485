"""`callpyback run` composed with `opentelemetry-instrument`, in either order: a real Flask app
(instrumented by opentelemetry-instrumentation-flask, SDK configured by opentelemetry-distro
from OTEL_* variables) whose server span is the parent of CallPyBack's spans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest
from otlp_receiver import OtlpReceiver

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SERVER = 2

FILES = {
    "flaskshop/__init__.py": "",
    "flaskshop/logic.py": """
        def load(order_id):
            return {"id": order_id, "total": price(order_id)}

        def price(order_id):
            return order_id * 10
    """,
    "flaskshop/web.py": """
        from flask import Flask, jsonify
        from flaskshop import logic

        app = Flask(__name__)

        @app.route("/orders/<int:order_id>")
        def get_order(order_id):
            return jsonify(logic.load(order_id))
    """,
    "app.py": """
        import json
        from flaskshop.web import app

        with app.test_client() as client:   # the whole WSGI path, through Flask's middleware
            print(json.dumps(client.get("/orders/7").get_json()))
    """,
    # No [otel] sdk: opentelemetry-instrument (the distro) configures the SDK.
    "callpyback.toml": """
        version = 1
        [observers.span]
        type = "otel.span"

        [[pipelines]]
        match = ["flaskshop.*"]
        observers = ["span"]
    """,
}

ORDERS = {
    "instrument-then-callpyback": lambda: [
        str(BIN / "opentelemetry-instrument"),
        sys.executable,
        "-m",
        "callpyback",
        "run",
        "app.py",
    ],
    "callpyback-then-instrument": lambda: [
        sys.executable,
        "-m",
        "callpyback",
        "run",
        str(BIN / "opentelemetry-instrument"),
        sys.executable,
        "app.py",
    ],
}


def program(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_the_framework_server_span_is_the_parent(tmp_path: Path, order: str) -> None:
    """GET /orders/7: Flask's SERVER span > flaskshop.web.get_order > logic.load > logic.price."""
    cwd = program(tmp_path)
    with OtlpReceiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CALLPYBACK_"))}
        env.update(
            PYTHONPATH=str(cwd),
            OTEL_SERVICE_NAME="flaskshop",
            OTEL_TRACES_EXPORTER="otlp_proto_http",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="urllib,urllib3,requests,threading,asyncio,wsgi",
        )
        proc = subprocess.run(
            ORDERS[order](), cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"id": 7, "total": 70}
        got = receiver.received
        assert got.wait_for(lambda r: len(r.spans) >= 4), got.spans
    spans: Dict[str, Dict[str, Any]] = {s["name"]: s for s in got.spans}
    chain: List[str] = [
        "GET /orders/<int:order_id>",
        "flaskshop.web.get_order",
        "flaskshop.logic.load",
        "flaskshop.logic.price",
    ]
    assert set(spans) == set(chain), sorted(spans)
    assert spans[chain[0]]["kind"] == SERVER and spans[chain[0]]["parent_span_id"] is None
    for parent, child in zip(chain, chain[1:]):
        assert spans[child]["parent_span_id"] == spans[parent]["span_id"], (parent, child)
    assert {s["resource"]["service.name"] for s in got.spans} == {"flaskshop"}
