"""The shop as a FastAPI app, served by uvicorn.

callpyback run examples/web/fastapi_app.py               # serve, run the demo requests, report
callpyback run examples/web/fastapi_app.py --serve 8000  # serve until Ctrl-C / SIGTERM
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading

import _demo
import shop_logic
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

app = FastAPI()


class Payment(BaseModel):
    order_id: int


@app.get("/orders/{order_id}")
async def order(order_id: int):
    try:
        return {"id": order_id, "price": shop_logic.price(order_id)}
    except KeyError:
        raise HTTPException(404) from None


@app.get("/orders/{order_id}/stream")
def order_stream(order_id: int):
    return StreamingResponse(shop_logic.progress(order_id), media_type="text/event-stream")


@app.post("/payments")
def payments(payment: Payment):
    return {"status": shop_logic.charge(shop_logic.price(payment.order_id))}


@app.get("/health")
async def health():
    return PlainTextResponse("ok")


def main() -> None:
    _demo.print_report_at_exit()
    port = _demo.port_argument()
    if port is not None:
        # uvicorn re-raises the SIGTERM it handled once it has shut down: exit cleanly then,
        # so that the report is printed.
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        print(f"serving on http://127.0.0.1:{port}", flush=True)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
        return
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    _demo.drive(f"http://127.0.0.1:{sock.getsockname()[1]}")
    server.should_exit = True
    thread.join()


if __name__ == "__main__":
    main()
