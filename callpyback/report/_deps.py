"""Optional dependencies of the outputs: one clear message, with the install command."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import CallPyBackError

__all__ = ["MissingDependencyError", "require"]

#: module -> the requirement to install (kept in step with the ``report`` extra in pyproject)
REQUIREMENTS = {"prometheus_client": "prometheus_client>=0.17", "rich": "rich>=13"}


class MissingDependencyError(CallPyBackError, ImportError):
    """A feature needs an optional package that is not installed."""


def require(module: str, feature: str) -> Any:
    """Import ``module`` for ``feature``, or say exactly what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        requirement = REQUIREMENTS.get(module, module)
        raise MissingDependencyError(
            f"{feature} needs {module}, which is not installed: pip install '{requirement}' "
            "(or, from a CallPyBack checkout, pip install '.[report]' for every output)"
        ) from exc
