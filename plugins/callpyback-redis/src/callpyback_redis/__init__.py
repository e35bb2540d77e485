"""CallPyBack on Redis: circuit breakers and ``finance.velocity`` windows shared by every process.

Select it in ``callpyback.toml``::

    [state]
    backend = "redis"
    url = "${REDIS_URL}"
    namespace = "myservice"

or in code with ``callpyback.state.use(RedisBackend("redis://localhost:6379/0"))``.  See
``docs/shared-state.md``.  Importing it starts nothing: the background threads start when the
first breaker or window binds.  The ``[state]`` table's model and ``install_state`` are in
:mod:`callpyback_redis.plugin` (which imports pydantic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._backend import RedisBackend, RedisBreakerState, RedisWindow

__all__ = ["RedisBackend", "RedisBreakerState", "RedisWindow"]


def __getattr__(name: str) -> Any:
    # Lazy: plugin discovery imports ``callpyback_redis.plugin``, hence this package; the
    # ``redis`` client (which itself imports OpenTelemetry when installed) waits until a backend
    # is actually wanted, so discovering plugins stays cheap and imports nothing foreign.
    if name in __all__:
        from . import _backend

        return getattr(_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
