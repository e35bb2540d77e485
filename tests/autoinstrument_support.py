"""Fixtures for the import-hook tests: real packages written to tmp_path, a tiny selector."""

from __future__ import annotations

import fnmatch
import importlib
import itertools
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from callpyback import CallPyBack, ExecutionState

ROOT = Path(__file__).resolve().parents[1]
_SEQ = itertools.count()


class Recorder:
    """Records the target of every completed (or interrupted) call it observes."""

    def __init__(self) -> None:
        self.calls: List[str] = []

    def update(self, context: Any) -> None:
        if context.state in (ExecutionState.COMPLETED, ExecutionState.ERROR):
            self.calls.append(context.function_info.target)


class PatternSelector:
    """A hand-written selector: ``module`` or ``module:qualname`` fnmatch patterns.

    It implements exactly the protocol the hook relies on (may_match_module, wrapper_for,
    explain, settings.enabled, source), independently of callpyback.config.
    """

    def __init__(self, *patterns: str, decorator: Any = None, enabled: bool = True) -> None:
        self.patterns = patterns
        self.recorder = Recorder()
        if decorator is None:
            decorator = CallPyBack(observers=[self.recorder])
        self.decorator = decorator
        self.settings = types.SimpleNamespace(enabled=enabled)
        self.source = f"PatternSelector{patterns!r}"
        self.asked: List[str] = []

    def _module_ok(self, pattern: str, module: str) -> bool:
        mod = pattern.split(":", 1)[0]
        return fnmatch.fnmatchcase(module, mod) or module.startswith(mod + ".")

    def may_match_module(self, module: str) -> bool:
        return any(self._module_ok(p, module) for p in self.patterns)

    def wrapper_for(self, module: str, qualname: str) -> Any:
        self.asked.append(f"{module}:{qualname}")
        for p in self.patterns:
            qual = p.partition(":")[2]
            if self._module_ok(p, module) and (not qual or fnmatch.fnmatchcase(qualname, qual)):
                return self.decorator
        return None

    def explain(self, target: str) -> str:
        return f"{target} selected by {self.patterns}"

    @property
    def calls(self) -> List[str]:
        return self.recorder.calls


class Packages:
    """Writes real modules under a fresh sys.path entry; names get a unique prefix per test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = f"cpbt{next(_SEQ)}_"

    def name(self, short: str) -> str:
        return self.prefix + short

    def write(self, relpath: str, source: str = "") -> Path:
        """``relpath`` uses ``{p}`` for the unique prefix, e.g. ``"{p}shop/__init__.py"``."""
        path = self.root / relpath.format(p=self.prefix)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).format(p=self.prefix) if source else "")
        importlib.invalidate_caches()
        return path

    def cleanup(self) -> None:
        for name in [n for n in sys.modules if n.startswith(self.prefix)]:
            del sys.modules[name]


def packages_in(tmp_path: Path) -> Iterator[Packages]:
    """Body of the ``packages`` fixture: a fresh sys.path entry, cleaned up afterwards."""
    root = tmp_path / "src"
    root.mkdir()
    sys.path.insert(0, str(root))
    pk = Packages(root)
    try:
        yield pk
    finally:
        pk.cleanup()
        sys.path.remove(str(root))
        importlib.invalidate_caches()


def run_python(
    args: List[str],
    *,
    cwd: Optional[Path] = None,
    env: Optional[Dict[str, str]] = None,
    stdin: Optional[str] = None,
) -> subprocess.CompletedProcess[str]:
    """A child interpreter with a clean callpyback environment (no inherited switches)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}
    child_env.pop("PYTEST_ADDOPTS", None)
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=child_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def callpyback_cli(args: List[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run_python(["-m", "callpyback", *args], **kwargs)
