"""Config: load + validate a 100-pipeline / 500-pattern file, and match one target against it.

Custom cases: each returns (measured seconds, budget seconds), so the ratio reads as the
fraction of the budget used (<= 1.0 meets the issue's target).  Budgets: load + validate
<= 100 ms; matching one ``module:qualname`` <= 20 us median; the module precheck <= 5 us.
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any, Callable, List, Tuple

from _harness import Case

PIPELINES = 100


def generate(pipelines: int = PIPELINES) -> str:
    """A config with ``pipelines`` pipelines of 5 patterns each (literals, globs, regexes)."""
    out = [
        "version = 1",
        "[settings]",
        "max_observer_failures = 5",
        "[time_sources.clock]",
        'type = "mock"',
        "[error_handlers.zero]",
        'type = "default"',
        "value = 0",
        'exceptions = ["ValueError"]',
    ]
    for i in range(pipelines):
        out += [
            "[[pipelines]]",
            f'name = "p{i}"',
            "match = ["
            f'"app{i}.service", "app{i}.api.*:Handler.*", "app{i}.jobs:run_*", '
            f'"team{i % 7}.app{i}.core", "re:app{i}\\\\.report\\\\d+:.*"]',
            f'exclude = ["app{i}.service.tests"]',
            'error_handlers = ["zero", {type = "fallback", value = -1, exceptions = ["KeyError"]}]',
            'time_source = "clock"',
            'variables = ["amount"]',
        ]
    return "\n".join(out) + "\n"


def _median_time(op: Callable[[], Any], repeat: int, number: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            op()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def _load_case() -> Callable[[], Tuple[float, float]]:
    from callpyback.config import load_text
    from callpyback.config._patterns import compile_pattern
    from callpyback.plugins import get_registry

    text = generate()
    registry = get_registry()

    def cold_load() -> None:
        # cold: no compiled pattern or regex survives from the previous load
        compile_pattern.cache_clear()
        re.purge()
        load_text(text, file="bench.toml", registry=registry, env={})

    def run() -> Tuple[float, float]:
        cold_load()  # warm-up: imports, pydantic schema building
        return _median_time(cold_load, 7, 1), 0.100

    return run


def _targets() -> List[Tuple[str, str]]:
    targets = []
    for i in range(0, PIPELINES, 3):
        targets += [
            (f"app{i}.service.orders", "Order.place"),
            (f"app{i}.api.v2", "Handler.get"),
            (f"app{i}.jobs", "run_nightly"),
            (f"app{i}.report7", "build"),
            (f"team{i % 7}.app{i}.core.db", "connect"),
            (f"unrelated{i}.module", "helper"),  # matches nothing: the worst case scan
        ]
    return targets


def _config() -> Any:
    from callpyback.config import load_text
    from callpyback.plugins import get_registry

    return load_text(generate(), file="bench.toml", registry=get_registry(), env={})


def _match_case() -> Callable[[], Tuple[float, float]]:
    def run() -> Tuple[float, float]:
        config = _config()
        matcher = config._matcher  # uncached: the work pipeline_for does on a cache miss
        targets = _targets()

        def one_pass() -> None:
            for module, qualname in targets:
                matcher.match(module, qualname)

        return _median_time(one_pass, 9, 200) / len(targets), 20e-6

    return run


def _pipeline_for_case() -> Callable[[], Tuple[float, float]]:
    def run() -> Tuple[float, float]:
        config = _config()
        targets = [f"{m}:{q}" for m, q in _targets()]

        def one_pass() -> None:
            config._cache.clear()  # measure misses, including building the PipelineMatch
            for target in targets:
                config.pipeline_for(target)

        return _median_time(one_pass, 9, 200) / len(targets), 20e-6

    return run


def _module_case() -> Callable[[], Tuple[float, float]]:
    def run() -> Tuple[float, float]:
        config = _config()
        modules = [m for m, _ in _targets()]

        def one_pass() -> None:
            config._matcher._module_cache.clear()
            for module in modules:
                config.may_match_module(module)

        return _median_time(one_pass, 9, 200) / len(modules), 5e-6

    return run


CASES = [
    Case(
        "config load+validate 100 pipelines/500 patterns (fraction of 100 ms)",
        _load_case,
        kind="custom",
        target=1.0,
        group="config",
        note="real plugin registry; TOML parse, locator, pydantic, options models, patterns",
    ),
    Case(
        "config match one target, uncached (fraction of 20 us)",
        _match_case,
        kind="custom",
        target=1.0,
        group="config",
        note="Matcher.match, mixed hits and misses",
    ),
    Case(
        "config pipeline_for cache miss (fraction of 20 us)",
        _pipeline_for_case,
        kind="custom",
        target=1.0,
        group="config",
        note="public API, cache cleared per pass",
    ),
    Case(
        "config may_match_module uncached (fraction of 5 us)",
        _module_case,
        kind="custom",
        target=1.0,
        group="config",
        note="import-hook precheck",
    ),
]
