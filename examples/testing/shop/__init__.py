"""A tiny shop whose payments CallPyBack observes through callpyback.toml (no decorator)."""
