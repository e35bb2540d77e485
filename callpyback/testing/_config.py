"""``use_config``: a ``callpyback.toml`` (a file or TOML text) in force while a block runs.

The configuration is validated, the import hook installed with it (plugins attach their
integrations), and on exit the hook is uninstalled, every function it instrumented restored,
and an installation that was there before put back.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

__all__ = ["load", "looks_like_toml", "use_config"]

Source = Union[str, "os.PathLike[str]", Any]


def looks_like_toml(text: str) -> bool:
    """TOML text rather than a path: it has a line break, a key = value or a [table]."""
    stripped = text.strip()
    return "\n" in stripped or "=" in stripped or stripped.startswith("[")


def load(
    source: Source,
    *,
    search: Sequence[Union[str, os.PathLike[str]]] = (),
    **settings: Any,
) -> Any:
    """A :class:`~callpyback.config.Config` from a path, TOML text, or a loaded Config.

    A relative path is looked up in each of ``search`` (directories), then in the current
    directory.
    """
    from ..config import Config, ConfigError, Problem, load_config, load_text

    if isinstance(source, Config):
        return source
    if isinstance(source, str) and looks_like_toml(source):
        return load_text(source, file="<TOML text>", settings=settings or None)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"a callpyback configuration is a path, TOML text or a loaded Config, got {source!r}"
        )
    path = Path(source)
    tried = []
    if not path.is_absolute():
        for directory in search:
            candidate = Path(directory) / path
            tried.append(str(candidate))
            if candidate.is_file():
                path = candidate
                break
    if not path.is_file() and tried:
        raise ConfigError(
            [
                Problem(
                    f"configuration file {str(source)!r} not found",
                    file=str(source),
                    given=str(source),
                    allowed=f"a path to a callpyback.toml; looked in {[*tried, str(Path.cwd())]}",
                )
            ],
            str(source),
        )
    return load_config(path, settings=settings or None)


@contextlib.contextmanager
def use_config(
    source: Source,
    *,
    search: Sequence[Union[str, os.PathLike[str]]] = (),
    **settings: Any,
) -> Iterator[Any]:
    """Install the import hook with ``source`` (a path, TOML text or a Config) for the block::

        with use_config('[[pipelines]]\\nmatch = ["shop.*"]\\nobservers = ["metrics"]'):
            import shop   # instrumented as it imports (or retrofitted if it already was)

    Yields the loaded :class:`~callpyback.config.Config`.  ``settings`` override its
    ``[settings]`` (``use_config(path, enabled=False)``).
    """
    from .. import autoinstrument

    config = load(source, search=search, **settings)
    previous = autoinstrument._current()
    before: Optional[Any] = previous.selector if previous is not None else None
    try:
        autoinstrument.install(config)
        yield config
    finally:
        autoinstrument.uninstall()
        if before is not None:
            autoinstrument.install(before)
