"""examples/distributed: two real service processes on loopback, one instrumented HTTP call
between them, both exporting OTLP/HTTP to one real receiver.  One trace; with
OTEL_PROPAGATORS=none, two (so nothing but OpenTelemetry's propagation carries it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from otlp_receiver import OtlpReceiver

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "distributed"
SERVER, INTERNAL, CLIENT = 2, 1, 3  # OTLP span kinds


class Service:
    """One `callpyback run serve.py NAME` process, stopped with SIGTERM (so it flushes)."""

    def __init__(self, name: str, env: Dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callpyback", "run", "serve.py", name],
            cwd=EXAMPLE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY"):
            self.stop()
            raise AssertionError(f"{name} did not start: {line!r} {self.stderr}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        self.stderr = ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()


def environment(receiver: OtlpReceiver, service: str, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CALLPYBACK_"))}
    env.update(
        PYTHONPATH=str(EXAMPLE),
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        **extra,
    )
    return env


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def order_through_both(receiver: OtlpReceiver, **extra: str) -> List[Dict[str, Any]]:
    """Start B then A, place one order through A, stop both; the spans the receiver got."""
    stock = Service("stock", environment(receiver, "stock", **extra))
    try:
        orders = Service("orders", environment(receiver, "orders", STOCK_URL=stock.url, **extra))
        try:
            url = f"{orders.url}/orders?item=apple&tenant=acme"
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    answer = json.loads(response.read())
            except OSError as exc:
                orders.stop()
                raise AssertionError(f"{exc}: {orders.stderr}") from None
            assert answer == {"item": "apple", "reservation": {"item": "apple", "reserved": True}}
        finally:
            orders.stop()
    finally:
        stock.stop()
    assert orders.proc.returncode == 0, orders.stderr
    assert stock.proc.returncode == 0, stock.stderr
    got = receiver.received
    assert got.wait_for(lambda r: len(r.spans) >= 7), got.spans
    return got.spans


def by_name(spans: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {f"{s['resource']['service.name']}:{s['name']}": s for s in spans}


def test_one_trace_across_two_services(receiver: OtlpReceiver) -> None:
    """A's server span > A's observed functions > A's client span > B's server span > B's."""
    spans = order_through_both(receiver)
    named = by_name(spans)
    assert set(named) == {
        "orders:GET /orders",
        "orders:shop.orders.place_order",
        "orders:shop.orders.reserve_stock",
        "orders:GET",
        "stock:GET /reserve",
        "stock:shop.stock.reserve",
        "stock:shop.stock.check_level",
    }, sorted(named)
    assert len({s["trace_id"] for s in spans}) == 1
    chain = [
        "orders:GET /orders",
        "orders:shop.orders.place_order",
        "orders:shop.orders.reserve_stock",
        "orders:GET",
        "stock:GET /reserve",
        "stock:shop.stock.reserve",
        "stock:shop.stock.check_level",
    ]
    for parent, child in zip(chain, chain[1:]):
        assert named[child]["parent_span_id"] == named[parent]["span_id"], (parent, child)
    assert [named[n]["kind"] for n in chain] == [
        SERVER,
        INTERNAL,
        INTERNAL,
        CLIENT,
        SERVER,
        INTERNAL,
        INTERNAL,
    ]
    # Allow-listed baggage set in A is an attribute of B's CallPyBack span; the rest is not.
    reserve = named["stock:shop.stock.reserve"]["attributes"]
    assert reserve["callpyback.tenant"] == "acme"
    assert "internal.note" not in reserve


def test_without_propagation_the_trace_splits(receiver: OtlpReceiver) -> None:
    """OTEL_PROPAGATORS=none in both services: one trace per service, nothing else links them."""
    spans = order_through_both(receiver, OTEL_PROPAGATORS="none")
    traces: Dict[str, set] = {}
    for span in spans:
        traces.setdefault(span["resource"]["service.name"], set()).add(span["trace_id"])
    assert {k: len(v) for k, v in traces.items()} == {"orders": 1, "stock": 1}
    assert traces["orders"] != traces["stock"]
    named = by_name(spans)
    assert named["stock:GET /reserve"]["parent_span_id"] is None
    assert "callpyback.tenant" not in named["stock:shop.stock.reserve"]["attributes"]
