"""Import hook: what installing it costs an import.

* ``instrument 1,000 functions``: importing a generated module of 1,000 functions (from its
  ``.pyc``) with a real ``callpyback.toml`` pipeline selecting all of them, vs the same import
  without the hook.  Target: <= 2x.
* the same without ``.pyc`` files (each import compiles the source), for scale.
* ``unmatched import``: importing a module no pattern matches with the hook installed.  Returns
  (extra seconds per import, the 50 us budget), so <= 1.0 meets the target; the note gives the
  absolute figure.
"""

from __future__ import annotations

import gc
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

from _harness import Case

FUNCTIONS = 1_000
BUDGET_S = 50e-6

CONFIG = """
version = 1
[observers.metrics]
type = "metrics"
[[pipelines]]
match = ["{prefix}big"]
observers = ["metrics"]
"""


def _module_source(functions: int) -> str:
    out = ["import functools", ""]
    for i in range(functions):
        if i % 10 == 9:
            out += [f"class C{i}:", "    def m(self, x):", f"        return x + {i}", ""]
        else:
            out += [f"def f{i}(x, y=1):", f"    return x * y + {i}", ""]
    return "\n".join(out)


def _workspace(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="cpb_bench_import_"))
    (root / f"{prefix}big.py").write_text(_module_source(FUNCTIONS))
    for i in range(200):
        (root / f"{prefix}small{i}.py").write_text(f"X = {i}\n\ndef f():\n    return X\n")
    (root / "callpyback.toml").write_text(CONFIG.format(prefix=prefix))
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    return root


def _fresh_import(names: List[str]) -> float:
    for name in names:
        sys.modules.pop(name, None)
    t0 = time.perf_counter()
    for name in names:
        importlib.import_module(name)
    return (time.perf_counter() - t0) / len(names)


def _interleaved(
    names: List[str], config: Any, repeat: int, pyc: bool = True
) -> Tuple[float, float]:
    """Median seconds per import (with the hook, without), repeats interleaved."""
    import callpyback.autoinstrument as auto

    if pyc:
        # Real applications import from .pyc files; make sure they exist even when the
        # environment sets PYTHONDONTWRITEBYTECODE, or the figure would be mostly compile time.
        saved, sys.dont_write_bytecode = sys.dont_write_bytecode, False
        try:
            _fresh_import(names)
        finally:
            sys.dont_write_bytecode = saved
    hooked, plain = [], []
    for _ in range(repeat):
        # Collect the previous round's garbage first, so each import pays only for its own.
        auto.uninstall()
        gc.collect()
        plain.append(_fresh_import(names))
        auto.install(config)
        gc.collect()
        hooked.append(_fresh_import(names))
    auto.uninstall()
    for name in names:
        sys.modules.pop(name, None)
    return statistics.median(hooked), statistics.median(plain)


def _instrument_case() -> Callable[[], Tuple[float, float]]:
    def run() -> Tuple[float, float]:
        from callpyback import load_config

        prefix = "cpbbench_a_"
        root = _workspace(prefix)
        config = load_config(root / "callpyback.toml")
        hooked, plain = _interleaved([f"{prefix}big"], config, repeat=15)
        import callpyback.autoinstrument as auto

        auto.install(config)
        module = importlib.import_module(f"{prefix}big")
        wrapped = sum(hasattr(v, "__callpyback__") for v in vars(module).values())
        auto.uninstall()
        sys.modules.pop(f"{prefix}big", None)
        INSTRUMENT.note = (
            f"{hooked * 1e3:.2f} ms vs {plain * 1e3:.2f} ms plain import "
            f"({wrapped} module-level functions + {FUNCTIONS // 10} methods wrapped)"
        )
        return hooked, plain

    return run


def _source_case() -> Callable[[], Tuple[float, float]]:
    def run() -> Tuple[float, float]:
        from callpyback import load_config

        prefix = "cpbbench_c_"
        root = _workspace(prefix)
        config = load_config(root / "callpyback.toml")
        saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        try:
            hooked, plain = _interleaved([f"{prefix}big"], config, repeat=9, pyc=False)
        finally:
            sys.dont_write_bytecode = saved
        SOURCE.note = f"{hooked * 1e3:.2f} ms vs {plain * 1e3:.2f} ms plain import (compiling)"
        return hooked, plain

    return run


def _unmatched_case() -> Callable[[], Tuple[float, float]]:
    def run() -> Tuple[float, float]:
        from callpyback import load_config

        prefix = "cpbbench_b_"
        root = _workspace(prefix)
        config = load_config(root / "callpyback.toml")  # matches only {prefix}big
        names = [f"{prefix}small{i}" for i in range(200)]
        hooked, plain = _interleaved(names, config, repeat=21)
        extra = max(hooked - plain, 0.0)
        UNMATCHED.note = (
            f"extra {extra * 1e6:.2f} us per import ({hooked * 1e6:.1f} us with the hook vs "
            f"{plain * 1e6:.1f} us without; budget 50 us)"
        )
        return extra, BUDGET_S

    return run


INSTRUMENT = Case(
    name="instrument 1,000 functions at import",
    build=_instrument_case,
    kind="custom",
    target=2.0,
    group="import",
)
SOURCE = Case(
    name="instrument 1,000 functions, no .pyc (compile)",
    build=_source_case,
    kind="custom",
    group="import",
)
UNMATCHED = Case(
    name="unmatched import with the hook installed (/50us)",
    build=_unmatched_case,
    kind="custom",
    target=1.0,
    group="import",
)

CASES = [INSTRUMENT, SOURCE, UNMATCHED]
