"""A small, real OTLP/HTTP receiver for tests: ``http.server`` on 127.0.0.1, protobuf decoded
with ``opentelemetry-proto`` (the idea of opentelemetry-python's private OtlpProtoTestServer).

It accepts ``POST /v1/traces`` and ``POST /v1/metrics`` (``application/x-protobuf``, optionally
gzip-compressed) and keeps what it decoded, flattened into plain records, thread-safely.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind == "array_value":
        return [_value(v) for v in value.values]
    return value


def _attributes(pairs: Any) -> Dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class Received:
    """What the receiver has decoded so far."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: List[Dict[str, Any]] = []
        self.metrics: List[Dict[str, Any]] = []
        self.requests = 0

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 15.0) -> bool:
        """Poll until ``predicate(self)`` holds (exports are asynchronous), or give up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        with self.lock:
            return predicate(self)


class _Handler(BaseHTTPRequestHandler):
    received: Received

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            self._spans(request)
            reply = ExportTraceServiceResponse().SerializeToString()
        elif self.path == "/v1/metrics":
            metrics_request = ExportMetricsServiceRequest.FromString(body)
            self._metrics(metrics_request)
            reply = ExportMetricsServiceResponse().SerializeToString()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def _spans(self, request: Any) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        {
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex() or None,
                            "attributes": _attributes(span.attributes),
                            "status": span.status.code,
                            "events": [e.name for e in span.events],
                        }
                    )
        with self.received.lock:
            self.received.spans.extend(found)
            self.received.requests += 1

    def _metrics(self, request: Any) -> None:
        found = []
        for resource_metrics in request.resource_metrics:
            resource = _attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    points = getattr(metric, kind).data_points if kind else []
                    found.append(
                        {
                            "resource": resource,
                            "name": metric.name,
                            "unit": metric.unit,
                            "kind": kind,
                            "points": [_attributes(p.attributes) for p in points],
                        }
                    )
        with self.received.lock:
            self.received.metrics.extend(found)
            self.received.requests += 1


class OtlpReceiver:
    """``with OtlpReceiver() as receiver:`` a receiver on a free loopback port until the end."""

    def __init__(self) -> None:
        self.received = Received()
        handler = type("Handler", (_Handler,), {"received": self.received})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread: Optional[threading.Thread] = None

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> OtlpReceiver:
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="otlp-receiver", daemon=True
        )
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(5)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
