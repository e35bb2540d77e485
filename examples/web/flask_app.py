"""The shop as a Flask app, served by wsgiref.

callpyback run examples/web/flask_app.py               # serve, run the demo requests, report
callpyback run examples/web/flask_app.py --serve 8000  # serve until Ctrl-C / SIGTERM
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import _demo
import shop_logic
from flask import Flask, Response, abort, request

app = Flask(__name__)


@app.get("/orders/<int:order_id>")
def order(order_id: int):
    try:
        return {"id": order_id, "price": shop_logic.price(order_id)}
    except KeyError:
        abort(404)


@app.get("/orders/<int:order_id>/stream")
def order_stream(order_id: int):
    return Response(shop_logic.progress(order_id), mimetype="text/event-stream")


@app.post("/payments")
def payments():
    order_id = request.get_json()["order_id"]
    return {"status": shop_logic.charge(shop_logic.price(order_id))}


@app.get("/health")
def health():
    return "ok"


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    _demo.print_report_at_exit()
    port = _demo.port_argument()
    server = make_server("127.0.0.1", port or 0, app, handler_class=Quiet)
    if port is not None:
        print(f"serving on http://127.0.0.1:{server.server_port}", flush=True)
        _demo.serve_until_sigterm(server)
        return
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _demo.drive(f"http://127.0.0.1:{server.server_port}")
    server.shutdown()


if __name__ == "__main__":
    main()
