"""Card payments through a gateway that sometimes drops the connection."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

PRICES = {"tea": 4.5, "mug": 12.0, "kettle": 39.0}


class PaymentDeclined(Exception):
    """The card issuer said no: retrying will not help."""


@dataclass(frozen=True)
class Receipt:
    order_id: int
    amount: float
    attempts_seen_by_gateway: int


class Gateway:
    """Stands in for a remote payment API: a few milliseconds per call, and flaky."""

    def __init__(self, seed: int = 7, failure_rate: float = 0.3) -> None:
        self._random = random.Random(seed)
        self.failure_rate = failure_rate
        self.requests = 0

    def send(self, card: str, amount: float) -> None:
        self.requests += 1
        time.sleep(self._random.uniform(0.0005, 0.003))
        if self._random.random() < self.failure_rate:
            raise ConnectionError("gateway connection reset")
        if card.endswith("0000"):
            raise PaymentDeclined(f"card ending {card[-4:]} declined")


GATEWAY = Gateway()


def quote(items: dict[str, int]) -> float:
    return round(sum(PRICES[sku] * qty for sku, qty in items.items()), 2)


def charge_card(order_id: int, card: str, amount: float) -> Receipt:
    """One call to the gateway; a dropped connection raises ConnectionError (worth a retry)."""
    before = GATEWAY.requests
    GATEWAY.send(card, amount)
    return Receipt(order_id, amount, GATEWAY.requests - before)
