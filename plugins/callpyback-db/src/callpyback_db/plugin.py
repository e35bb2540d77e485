"""The plugin: the ``[db]`` table of ``callpyback.toml`` and the hooks that attach it.

```toml
[db]
drivers = ["sqlite3", "psycopg"]     # driver modules; others get the generic DB-API wrapper

[[pipelines]]                          # statements are chosen like functions: db:<summary>
match = ["db"]
observers = ["metrics", "timing"]
```

When the import hook is installed (``callpyback run``), each driver's ``connect`` is replaced
as the driver is imported (``when_imported``); ``callpyback_uninstall`` restores it.  Nothing
here imports a driver or the integration code until a table asks for it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from callpyback.hookspecs import hookimpl

#: The callpyback versions this plugin works with.
CALLPYBACK_REQUIRES = ">=3,<4"

Method = Literal["execute", "executemany", "executescript", "callproc", "commit", "rollback"]
_ALL_METHODS: List[Method] = [
    "execute",
    "executemany",
    "executescript",
    "callproc",
    "commit",
    "rollback",
]


class DbTable(BaseModel):
    """``[db]``: which drivers to observe, and what statements expose to observers."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    enabled: bool = True
    drivers: List[str] = Field(
        min_length=1,
        description="Driver modules to observe: sqlite3, psycopg, or any DB-API 2.0 module "
        "with a connect() function (generic wrapper).",
    )
    raw_text: bool = Field(
        default=False,
        description="Also expose the raw SQL (statement.raw_text); by default observers see "
        "only the sanitized text, with literals replaced by ?.",
    )
    capture_parameters: bool = Field(
        default=False, description="Expose parameter values (statement.parameters)."
    )
    methods: List[Method] = Field(
        default_factory=lambda: list(_ALL_METHODS), description="The DB-API calls to observe."
    )
    systems: Dict[str, str] = Field(
        default_factory=dict,
        description="db.system.name per driver module, for drivers CallPyBack does not know.",
    )
    max_targets: int = Field(
        default=1000, ge=1, description="Distinct statement targets before db:<OPERATION>."
    )

    @field_validator("drivers")
    @classmethod
    def _module_names(cls, value: List[str]) -> List[str]:
        bad = [v for v in value if not all(part.isidentifier() for part in v.split("."))]
        if bad:
            raise ValueError(
                f"drivers are module names such as 'sqlite3' or 'psycopg'; {bad[0]!r} is not one"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"drivers lists a module twice: {value!r}")
        return value


_lock = threading.Lock()
_attached: List[Any] = []  # Instrumentation objects made by callpyback_install
_log = logging.getLogger("callpyback.db")


@hookimpl
def callpyback_register_components(registry: Any) -> None:
    registry.table(
        "db", DbTable, description="Observe database statements (sqlite3, psycopg, DB-API)."
    )


@hookimpl
def callpyback_install(config: Any) -> None:
    table = config.tables.get("db")
    if table is None or not table.enabled:
        return
    if not config.may_match_module("db"):
        # No pipeline selects any db:... target: nothing would be observed, so nothing is
        # patched (and statements cost nothing).
        _log.info("callpyback-db: no pipeline matches db:... targets; drivers left alone")
        return
    from callpyback.autoinstrument import when_imported

    from ._api import attach, selector
    from ._core import Tracer

    select = selector(config)
    for driver in table.drivers:
        tracer = Tracer(
            select,
            system=table.systems.get(driver),
            raw_text=table.raw_text,
            capture_parameters=table.capture_parameters,
            methods=frozenset(table.methods),
            max_targets=table.max_targets,
        )

        def attach_to(module: Any, tracer: Tracer = tracer) -> None:
            instrumentation = attach(module, tracer)
            with _lock:
                _attached.append(instrumentation)

        when_imported(driver, attach_to)


@hookimpl
def callpyback_uninstall() -> None:
    with _lock:
        attached = list(_attached)
        _attached.clear()
    for instrumentation in reversed(attached):
        instrumentation.undo()


def installed() -> List[Any]:
    """The instrumentations ``callpyback_install`` made (for ``callpyback explain`` and tests)."""
    with _lock:
        return list(_attached)
