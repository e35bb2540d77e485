"""The shop demo: place 40 orders; some run out of stock, some cards are declined, and the
payment gateway drops one request in three (the retry pipeline absorbs those).

    callpyback run --report text examples/shop/app.py   # instrumented by the callpyback.toml
                                                        # next to it; a report at exit
    python examples/shop/app.py                         # the same program, uninstrumented

The code below knows nothing of callpyback.
"""

from __future__ import annotations

import collections
import logging
import random
import sys

from shop.inventory import Inventory
from shop.orders import Order, OrderService

CARDS = ["4111111111111111", "5500000000000004", "4000000000000000"]  # the last one is declined


def random_order(rng: random.Random) -> Order:
    items = {
        sku: rng.randint(1, 3) for sku in rng.sample(["tea", "mug", "kettle"], rng.randint(1, 2))
    }
    return Order(items=items, card=rng.choice(CARDS))


def main(count: int = 40) -> int:
    rng = random.Random(2024)
    service = OrderService(Inventory({"tea": 40, "mug": 25, "kettle": 6}))
    outcomes = collections.Counter(service.place(random_order(rng)).status for _ in range(count))
    for status, n in sorted(outcomes.items()):
        print(f"{n:3d} orders {status}")
    return 0 if outcomes["paid"] else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 40))
