"""A tiny shop: inventory, payments through a flaky gateway, and order placement."""
