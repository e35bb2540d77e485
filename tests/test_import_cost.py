"""``import callpyback`` stays cheap: heavy dependencies are imported lazily."""

from __future__ import annotations

import os
import subprocess
import sys


def test_import_does_not_pull_heavy_modules() -> None:
    """pydantic, pluggy, tomllib, concurrent.futures, asyncio and logging are not imported."""
    code = (
        "import sys, callpyback\n"
        "heavy = ['pydantic', 'pluggy', 'tomllib', 'tomli', 'concurrent.futures', 'asyncio',"
        " 'logging', 'importlib.metadata', 'inspect', 'prometheus_client', 'rich']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    # A clean interpreter: not one measured by coverage (its tracer imports modules too).
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""


def test_decorating_and_calling_stays_light() -> None:
    """Using the decorator with callbacks still imports none of them."""
    code = (
        "import sys, callpyback as c\n"
        "f = c.CallPyBack(observers=[c.on_success(lambda value: None)])(lambda x: x)\n"
        "f(1)\n"
        "heavy = ['pydantic', 'pluggy', 'asyncio', 'logging']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    # A clean interpreter: not one measured by coverage (its tracer imports modules too).
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""


def test_the_outputs_import_their_optional_dependencies_only_when_used() -> None:
    """callpyback.report, the CLI's parser (every subcommand, `top` included) and a metrics
    observer at work import neither prometheus_client nor rich."""
    code = (
        "import sys, callpyback as c, callpyback.report as r\n"
        "from callpyback.cli import build_parser\n"
        "build_parser().parse_args(['top', '--interval', '1'])\n"
        "m = c.MetricsObserver()\n"
        "c.CallPyBack(observers=[m])(lambda: 1)()\n"
        "r.render(r.collect(), 'html')\n"
        "print(','.join(x for x in ('prometheus_client', 'rich') if x in sys.modules))\n"
    )
    # A clean interpreter: not one measured by coverage (its tracer imports modules too).
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""


def test_public_names_resolve() -> None:
    """Every name in callpyback.__all__ (eager or lazy) resolves, and every lazy name is listed."""
    import callpyback

    for name in callpyback.__all__:
        assert getattr(callpyback, name) is not None, name
    assert set(callpyback._LAZY) <= set(callpyback.__all__)
