"""A bank module with no CallPyBack code in it: callpyback.toml says what to audit."""
