"""A tiny numpy classifier: synthetic data, a one-hidden-layer network, a training loop."""
