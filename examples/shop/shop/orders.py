"""Placing an order: reserve stock, charge the card, give the stock back if payment fails."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .inventory import Inventory, OutOfStockError
from .payments import PaymentDeclined, Receipt, charge_card, quote

_ids = itertools.count(1)


@dataclass
class Order:
    items: dict[str, int]
    card: str
    id: int = field(default_factory=lambda: next(_ids))
    status: str = "new"
    receipt: Receipt | None = None


class OrderService:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    def place(self, order: Order) -> Order:
        reserved: list[tuple[str, int]] = []
        try:
            for sku, qty in order.items.items():
                self.inventory.reserve(sku, qty)
                reserved.append((sku, qty))
            order.receipt = charge_card(order.id, order.card, quote(order.items))
        except (OutOfStockError, PaymentDeclined, ConnectionError) as exc:
            for sku, qty in reserved:
                self.inventory.release(sku, qty)
            order.status = f"failed: {type(exc).__name__}"
            return order
        order.status = "paid"
        return order
