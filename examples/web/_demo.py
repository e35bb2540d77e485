"""What the three demos share: the requests of the demo run, and the report printed at exit."""

from __future__ import annotations

import atexit
import json
import signal
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

REQUESTS = [
    ("GET", "/orders/1", None),
    ("GET", "/orders/2", None),
    ("GET", "/orders/7", None),  # unknown order: 404
    ("GET", "/orders/1/stream", None),
    ("POST", "/payments", {"order_id": 1}),
    ("POST", "/payments", {"order_id": 3}),  # declined: the view raises, a 500
    ("GET", "/health", None),
    ("GET", "/no/such/page", None),
]


def serve_until_sigterm(server: Any) -> None:
    """Serve a wsgiref server until SIGTERM (or Ctrl-C), then return normally.

    Not ``sys.exit`` in the handler: a SIGTERM arriving while wsgiref writes a response raises
    SystemExit inside ``BaseHandler.run``, whose bare ``except`` logs and swallows it, and the
    server would serve on.  ``shutdown()`` from another thread ends ``serve_forever`` cleanly.
    """

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def drive(base: str) -> None:
    for method, path, body in REQUESTS:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": "Bearer demo-secret"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        print(f"{method:4} {path:20} -> {status} {len(text)} bytes")


def print_report_at_exit() -> None:
    """Until `callpyback run --report text` exists, print the metrics table here."""

    def report() -> None:
        try:
            from callpyback.autoinstrument import is_installed, summary_table
        except ImportError:
            return
        if is_installed():
            print("\ncallpyback run report (per route template and function):")
            print(summary_table())
            sys.stdout.flush()

    atexit.register(report)


def port_argument() -> int | None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        return int(sys.argv[2])
    return None
