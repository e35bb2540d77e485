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

from ._backend import RedisBackend, RedisBreakerState, RedisWindow

__all__ = ["RedisBackend", "RedisBreakerState", "RedisWindow"]
