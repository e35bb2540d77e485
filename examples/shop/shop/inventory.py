"""Stock levels and reservations."""

from __future__ import annotations

import threading


class OutOfStockError(Exception):
    """Not enough units of a product to reserve."""


class Inventory:
    def __init__(self, stock: dict[str, int]) -> None:
        self._stock = dict(stock)
        self._lock = threading.Lock()

    def available(self, sku: str) -> int:
        return self._stock.get(sku, 0)

    def reserve(self, sku: str, quantity: int) -> None:
        with self._lock:
            left = self._stock.get(sku, 0)
            if quantity > left:
                raise OutOfStockError(f"{sku}: wanted {quantity}, {left} left")
            self._stock[sku] = left - quantity

    def release(self, sku: str, quantity: int) -> None:
        with self._lock:
            self._stock[sku] = self._stock.get(sku, 0) + quantity
