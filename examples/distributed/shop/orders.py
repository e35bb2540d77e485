"""Service A's business logic: placing an order reserves stock in service B over HTTP.

Nothing here knows about tracing: CallPyBack observes these functions (callpyback.toml), the
HTTP client instrumentation injects the W3C trace context into the request, and service B's
server instrumentation extracts it.
"""

from __future__ import annotations

import json
import os
import urllib.request

from opentelemetry import baggage, context


def place_order(item: str, tenant: str) -> dict:
    # A value that must reach the other service travels as W3C baggage, never a header of ours.
    # Baggage is visible in every outgoing request: only what B's allow-list names is recorded.
    ctx = baggage.set_baggage("callpyback.tenant", tenant)
    ctx = baggage.set_baggage("internal.note", "not for spans", context=ctx)
    token = context.attach(ctx)
    try:
        reservation = reserve_stock(item)
    finally:
        context.detach(token)
    return {"item": item, "reservation": reservation}


def reserve_stock(item: str) -> dict:
    url = f"{os.environ['STOCK_URL']}/reserve?item={item}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())
