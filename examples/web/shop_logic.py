"""The demo shop's logic, shared by the three apps (observed by the "api" pipeline)."""

from __future__ import annotations

import time

PRICES = {1: 12.5, 2: 3.0, 3: 99.0}


def price(order_id: int) -> float:
    if order_id not in PRICES:
        raise KeyError(order_id)
    return PRICES[order_id]


def charge(amount: float) -> str:
    if amount > 50:
        raise RuntimeError("card declined")
    time.sleep(0.01)
    return "paid"


def progress(order_id: int):  # a streaming body: three events, 50 ms apart
    for step in ("packed", "shipped", "delivered"):
        time.sleep(0.05)
        yield f"data: {order_id} {step}\n\n"
