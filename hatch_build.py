"""Build hook: ship ``callpyback-autoinstall.pth`` at the top of site-packages.

The file is inert unless ``CALLPYBACK_AUTOINSTALL`` is set (see docs/auto-instrumentation.md).
Editable wheels get it too (hatchling's ``force_include_editable``): a plain
``[tool.hatch.build.targets.wheel.force-include]`` table only reaches regular wheels.
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PTH_SOURCE = "callpyback/autoinstrument/callpyback-autoinstall.pth"
PTH_TARGET = "callpyback-autoinstall.pth"


class AutoinstallPthHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        key = "force_include_editable" if version == "editable" else "force_include"
        build_data.setdefault(key, {})[PTH_SOURCE] = PTH_TARGET
