"""The plugin: owns the ``[state]`` table of ``callpyback.toml`` and applies it at install.

``callpyback run`` and ``callpyback.autoinstrument.install()`` call :func:`callpyback_install`
once the import hook is in place (pipelines, and so breakers, may already be built: selecting
a backend re-binds them).  A program that loads its configuration without the import hook calls
:func:`install_state` itself.
"""

from __future__ import annotations

from typing import Any, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from callpyback import state
from callpyback.hookspecs import hookimpl

#: The callpyback versions this plugin works with; callpyback refuses the plugin otherwise.
CALLPYBACK_REQUIRES = ">=3,<4"

_Policy = Literal["local", "reject", "allow"]


class StateTable(BaseModel):
    """``[state]``: where circuit breakers and ``finance.velocity`` windows keep their state."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    backend: Literal["memory", "redis"] = Field(
        default="memory", description="memory: each process its own; redis: shared."
    )
    url: Optional[str] = Field(default=None, description="redis://host:6379/0 (needed for redis)")
    namespace: str = Field(default="callpyback", pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    breakers: List[str] = Field(default_factory=lambda: ["*"], description="Shared breakers.")
    windows: List[str] = Field(default_factory=lambda: ["*"], description="Shared windows.")
    exclude: List[str] = Field(default_factory=list, description="Never shared (patterns).")
    on_outage: _Policy = "local"
    windows_on_outage: _Policy = "local"
    local_limit: Optional[int] = Field(default=None, ge=1)
    timeout: float = Field(default=0.05, gt=0, le=1.0, description="Seconds, per Redis call.")
    poll_interval: float = Field(default=1.0, gt=0, le=60)
    retry_interval: float = Field(default=1.0, gt=0, le=300)
    lease_ttl: float = Field(default=30.0, gt=0)
    key_ttl: float = Field(default=86400.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is None:
            if info.data.get("backend") == "redis":
                raise ValueError(
                    'backend = "redis" needs a url, e.g. url = "${REDIS_URL}" or '
                    '"redis://127.0.0.1:6379/0"'
                )
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("the url must start with redis://, rediss:// or unix://")
        return value

    @field_validator("breakers", "windows", "exclude")
    @classmethod
    def _patterns(cls, value: List[str]) -> List[str]:
        for item in value:
            if not item:
                raise ValueError("an empty pattern matches nothing; use '*' for every name")
        return value


def backend_from_table(table: StateTable) -> Any:
    """The backend a ``[state]`` table describes (not yet selected)."""
    if table.backend == "memory":
        return state.MEMORY
    from ._backend import RedisBackend

    return RedisBackend(
        table.url,
        namespace=table.namespace,
        timeout=table.timeout,
        poll_interval=table.poll_interval,
        retry_interval=table.retry_interval,
        lease_ttl=table.lease_ttl,
        key_ttl=table.key_ttl,
        on_outage=table.on_outage,
        windows_on_outage=table.windows_on_outage,
        local_limit=table.local_limit,
    )


_installed: List[Any] = []  # the backend install_state() selected, to close it later


def install_state(config_or_table: Any) -> Any:
    """Select the backend of a ``[state]`` table (or of a config's), re-binding live breakers
    and windows; the one a previous call installed is closed.  Returns the backend."""
    table = config_or_table
    if not isinstance(table, StateTable):
        table = getattr(config_or_table, "tables", {}).get("state")
        if table is None:
            return state.current()
    backend = backend_from_table(table)
    state.use(backend, breakers=table.breakers, windows=table.windows, exclude=table.exclude)
    _close_installed(keep=backend)
    _installed.append(backend)
    return backend


def uninstall_state() -> None:
    """Back to in-process state; close the backend :func:`install_state` selected."""
    if _installed:
        state.use(state.MEMORY)
        _close_installed()


def _close_installed(keep: Any = None) -> None:
    while _installed and _installed[0] is not keep:
        _installed.pop(0).close()


@hookimpl
def callpyback_register_components(registry: Any) -> None:
    registry.table(
        "state",
        StateTable,
        description="Where circuit breakers and windows keep state: memory, or shared on Redis.",
    )


@hookimpl
def callpyback_install(config: Any) -> None:
    if "state" in config.tables:
        install_state(config)


@hookimpl
def callpyback_uninstall() -> None:
    uninstall_state()
