"""Declarative configuration: ``callpyback.toml`` -> validated pipelines -> decorators.

``load_config()`` finds and validates the file; ``Config.pipeline_for("module:qualname")``
says which pipeline a function gets and ``Config.wrapper_for(module, qualname)`` builds the
decorator for it.  ``configure()`` loads and makes a configuration the process's current one.
See ``docs/configuration.md``.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Optional, Union

from ._config import ComponentRef, Config, PipelineConfig, PipelineMatch
from ._errors import ConfigError, Problem
from ._loader import PathLike, build_config, load_config, load_text
from ._patterns import Pattern, PatternError

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
    if isinstance(source, Config):
        if settings:
            raise ConfigError([Problem(
                "settings cannot be overridden on an already loaded Config",
                allowed="pass a path or a mapping with the settings, or load_config(settings=...)",
                given=sorted(settings),
            )])
        config = source
    elif isinstance(source, Mapping):
        config = build_config(
            source, source="<configure()>", settings=settings, registry=registry, env=env
        )
    else:
        config = load_config(source, settings=settings, registry=registry, env=env)
    with _lock:
        _current = config
    return config


def current_config() -> Optional[Config]:
    """The configuration set by :func:`configure`, or None."""
    return _current
