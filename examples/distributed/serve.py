"""Run one of the two services: ``callpyback run serve.py orders|stock [PORT]``.

Each is a plain WSGI app served by ``wsgiref`` on 127.0.0.1, wrapped in OpenTelemetry's WSGI
middleware (the server span, extracted from the caller's ``traceparent``); the orders service's
outgoing calls go through ``urllib``, instrumented by OpenTelemetry (the client span, injected).
It prints ``READY <port>`` once listening, and exits cleanly on SIGTERM (so the exporters
flush).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import urllib.parse
from wsgiref.simple_server import WSGIRequestHandler, make_server

from opentelemetry.instrumentation.urllib import URLLibInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from shop import orders, stock


def respond(start_response, status, body):
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def orders_app(environ, start_response):
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if environ["PATH_INFO"] != "/orders":
        return respond(start_response, "404 Not Found", {"error": "no such route"})
    result = orders.place_order(query["item"][0], query.get("tenant", ["unknown"])[0])
    return respond(start_response, "200 OK", result)


def stock_app(environ, start_response):
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if environ["PATH_INFO"] != "/reserve":
        return respond(start_response, "404 Not Found", {"error": "no such route"})
    return respond(start_response, "200 OK", stock.reserve(query["item"][0]))


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


def main(argv):
    name = argv[0]
    port = int(argv[1]) if len(argv) > 1 else 0
    app = {"orders": orders_app, "stock": stock_app}[name]
    URLLibInstrumentor().instrument()
    server = make_server(
        "127.0.0.1", port, OpenTelemetryMiddleware(app), handler_class=QuietHandler
    )
    # SIGTERM stops the server between requests; then the program ends normally and the
    # exporters flush at exit.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker = threading.Thread(target=server.serve_forever, name=f"{name}-server")
    worker.start()
    print("READY", server.server_port, flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.shutdown()
        worker.join()
        server.server_close()


if __name__ == "__main__":
    main(sys.argv[1:])
