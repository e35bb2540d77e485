"""Build hook: ship ``callpyback-autoinstall.pth`` at the top of site-packages, and compile the
optional C engine (``callpyback/_speedups.c``).

The file is inert unless ``CALLPYBACK_AUTOINSTALL`` is set (see docs/auto-instrumentation.md).
Editable wheels get it too (hatchling's ``force_include_editable``): a plain
``[tool.hatch.build.targets.wheel.force-include]`` table only reaches regular wheels.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any, Optional

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PTH_SOURCE = "callpyback/autoinstrument/callpyback-autoinstall.pth"
PTH_TARGET = "callpyback-autoinstall.pth"
EXT_NAME = "callpyback._speedups"
EXT_SOURCE = "callpyback/_speedups.c"
#: Set at build time to install the pure-Python engine only (no compiler is looked for).
PURE_ENV = "CALLPYBACK_PURE_PYTHON"


def _say(message: str) -> None:
    print(f"callpyback build: {message}", file=sys.stderr, flush=True)


def compile_speedups(root: str, inplace: bool) -> Optional[str]:
    """Compile the extension with setuptools' ``build_ext`` (the compiler, flags and suffix of
    this interpreter).  Returns the built file (next to the sources when ``inplace``), or None
    when it cannot be built: then the pure-Python engine is installed, and we say why."""
    if sys.implementation.name != "cpython":
        _say(f"no compiled engine for {sys.implementation.name}: pure-Python engine only")
        return None
    if os.environ.get(PURE_ENV, "").strip() not in ("", "0"):
        _say(f"{PURE_ENV} is set: pure-Python engine only")
        return None
    cwd = os.getcwd()
    temp = tempfile.mkdtemp(prefix="callpyback-build-")
    try:
        os.chdir(root)
        from setuptools import Distribution, Extension
        from setuptools.command.build_ext import build_ext

        ext = Extension(EXT_NAME, [EXT_SOURCE], optional=False)
        cmd = build_ext(Distribution({"name": "callpyback", "ext_modules": [ext]}))
        cmd.inplace = inplace
        cmd.build_lib = os.path.join(temp, "lib")
        cmd.build_temp = os.path.join(temp, "tmp")
        cmd.ensure_finalized()
        cmd.run()
        built = os.path.abspath(cmd.get_ext_fullpath(EXT_NAME))
        if not inplace:  # out of the temp dir, which is removed below
            keep = os.path.join(tempfile.mkdtemp(prefix="callpyback-ext-"), os.path.basename(built))
            shutil.copy2(built, keep)
            built = keep
        _say(f"compiled engine built: {os.path.basename(built)}")
        return built
    except BaseException as exc:  # no compiler, no headers: the pure engine still installs
        if isinstance(exc, KeyboardInterrupt):
            raise
        _say(
            f"the compiled engine could not be built ({type(exc).__name__}: {exc}); "
            "installing the pure-Python engine, which is complete"
        )
        return None
    finally:
        os.chdir(cwd)
        shutil.rmtree(temp, ignore_errors=True)


class AutoinstallPthHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        key = "force_include_editable" if version == "editable" else "force_include"
        build_data.setdefault(key, {})[PTH_SOURCE] = PTH_TARGET
        if self.target_name != "wheel":
            return
        # Editable: built next to the sources (the .pth points there; *.so is git-ignored, so a
        # regular wheel never picks up an in-place build of another interpreter).
        built = compile_speedups(self.root, inplace=version == "editable")
        if built is None:
            return
        if version != "editable":
            build_data["force_include"][built] = f"callpyback/{os.path.basename(built)}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
