"""psycopg 3: ``Connection`` and ``AsyncConnection`` (and every cursor class they make) traced
by switching the object's class to a traced subclass, so it stays an instance of the class
the application asked for (including a pool's ``connection_class`` or a custom
``cursor_factory``).

``psycopg.connect`` is ``Connection.connect``; both it and ``AsyncConnection.connect`` are
replaced by classmethods that trace what the original returns.  ``Connection.execute`` goes
through ``cursor()`` and ``__exit__`` through ``commit()``/``rollback()``, so only those and
the cursors' ``execute``/``executemany`` need tracing.  ``Connection.transaction()`` blocks
commit through psycopg internals and are not observed as COMMIT calls; their statements are.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional, Tuple

from ._core import Tracer
from ._generic import trace_connection

__all__ = ["SYSTEM", "namespace_of", "patch", "retype"]

SYSTEM = "postgresql"


def namespace_of(connection: Any) -> Optional[str]:
    """The database name of a psycopg connection."""
    return connection.info.dbname  # type: ignore[no-any-return]


def retype(connection: Any, tracer: Tracer) -> Any:
    return trace_connection(connection, tracer, system=SYSTEM, namespace_of=namespace_of)


def _classmethod(original: Any, tracer: Tracer) -> Any:
    func = original.__func__
    if inspect.iscoroutinefunction(func):

        async def connect_async(cls: Any, *args: Any, **kwargs: Any) -> Any:
            connection = await func(cls, *args, **kwargs)
            return retype(connection, tracer) if tracer.active else connection

        wrapper: Callable[..., Any] = connect_async
    else:

        def connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
            connection = func(cls, *args, **kwargs)
            return retype(connection, tracer) if tracer.active else connection

        wrapper = connect
    wrapper.__name__ = func.__name__
    wrapper.__qualname__ = func.__qualname__
    wrapper.__doc__ = func.__doc__
    wrapper.__wrapped__ = func  # type: ignore[attr-defined]
    wrapper.__callpyback_db__ = tracer  # type: ignore[attr-defined]
    return classmethod(wrapper)


def patch(module: Any, tracer: Tracer) -> Callable[[], None]:
    """Replace ``psycopg.connect`` and the connection classes' ``connect``; returns the undo."""
    done: List[Tuple[Any, str, Any, Any]] = []  # (owner, name, original, ours)
    for cls_name in ("Connection", "AsyncConnection"):
        cls = getattr(module, cls_name, None)
        if cls is None:
            continue
        original = cls.__dict__.get("connect")
        if not isinstance(original, classmethod):
            continue
        ours = _classmethod(original, tracer)
        cls.connect = ours
        done.append((cls, "connect", original, ours))
    connection = getattr(module, "Connection", None)
    if connection is not None and "connect" in module.__dict__:
        original_function = module.__dict__["connect"]
        ours_function = connection.connect  # the bound classmethod, as psycopg itself exports
        module.connect = ours_function
        done.append((module, "connect", original_function, ours_function))

    def undo() -> None:
        tracer.active = False
        for owner, name, original, ours in reversed(done):
            current = owner.__dict__.get(name)
            # Restore only our own layer: a patch someone put on top of ours stays, and ours
            # under it is inert (tracer.active is False).
            if current is ours or (
                getattr(current, "__func__", None) is getattr(ours, "__func__", object())
            ):
                setattr(owner, name, original)

    return undo
