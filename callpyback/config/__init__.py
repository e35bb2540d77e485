"""Declarative configuration: ``callpyback.toml`` -> validated pipelines -> decorators.

``load_config()`` finds and validates the file; ``Config.pipeline_for("module:qualname")``
says which pipeline a function gets and ``Config.wrapper_for(module, qualname)`` builds the
decorator for it.  ``configure()`` loads and makes a configuration the process's current one.
See ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

if TYPE_CHECKING:
    from ._config import ComponentRef, Config, PipelineConfig, PipelineMatch
    from ._errors import ConfigError, Problem
    from ._loader import build_config, load_config, load_text
    from ._patterns import Pattern, PatternError

PathLike = Union[str, "os.PathLike[str]"]

# name -> submodule.  Everything loads on first use: the loader imports pydantic and tomllib,
# and the import hook's switches (``_flags``) are read at every interpreter start-up.
_LAZY = {
    "ComponentRef": "_config",
    "Config": "_config",
    "PipelineConfig": "_config",
    "PipelineMatch": "_config",
    "ConfigError": "_errors",
    "Problem": "_errors",
    "Pattern": "_patterns",
    "PatternError": "_patterns",
    "build_config": "_loader",
    "load_config": "_loader",
    "load_text": "_loader",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'callpyback.config' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ComponentRef",
    "Config",
    "ConfigError",
    "Pattern",
    "PatternError",
    "PipelineConfig",
    "PipelineMatch",
    "Problem",
    "build_config",
    "configure",
    "current_config",
    "load_config",
    "load_text",
]

_lock = threading.Lock()
_current: Optional[Config] = None


def configure(
    source: Union[PathLike, Mapping[str, Any], Config, None] = None,
    *,
    registry: Any = None,
    env: Optional[Mapping[str, str]] = None,
    **settings: Any,
) -> Config:
    """Load a configuration and make it the current one (see :func:`current_config`).

    ``source`` is a path (as for :func:`load_config`; None searches as usual), a mapping with
    the structure of ``callpyback.toml``, or an already loaded :class:`Config`.  Keyword
    arguments override ``[settings]`` and the environment, e.g. ``configure(enabled=False)``.
    On error nothing changes: the previous configuration stays current.
    """
    global _current
    from ._config import Config
    from ._errors import ConfigError, Problem

    if isinstance(source, Config):
        if settings:
            raise ConfigError(
                [
                    Problem(
                        "settings cannot be overridden on an already loaded Config",
                        allowed=(
                            "pass a path or a mapping with the settings, "
                            "or load_config(settings=...)"
                        ),
                        given=sorted(settings),
                    )
                ]
            )
        config = source
    elif isinstance(source, Mapping):
        from ._loader import build_config

        config = build_config(
            source, source="<configure()>", settings=settings, registry=registry, env=env
        )
    else:
        from ._loader import load_config

        config = load_config(source, settings=settings, registry=registry, env=env)
    with _lock:
        _current = config
    return config


def current_config() -> Optional[Config]:
    """The configuration set by :func:`configure`, or None."""
    return _current


def _reset() -> None:
    """Forget the current configuration (for ``callpyback.testing.reset()``)."""
    global _current
    with _lock:
        _current = None
