"""The hooks a CallPyBack plugin can implement (pluggy project ``"callpyback"``).

A plugin is any object (usually a module) whose functions are marked with :data:`hookimpl`::

    from callpyback import hookimpl

    @hookimpl
    def callpyback_register_components(registry):
        registry.observer("acme.audit", AcmeAuditObserver, options=AcmeAuditOptions)

It is found through an entry point in group ``callpyback`` or registered with
:func:`callpyback.register_plugin`.  See ``docs/plugins.md``.

Importing this module imports pluggy, so the core never imports it eagerly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .plugins import ComponentRegistrar

__all__ = [
    "PROJECT_NAME",
    "callpyback_configure",
    "callpyback_install",
    "callpyback_register_components",
    "callpyback_uninstall",
    "hookimpl",
    "hookspec",
]

#: The pluggy project name; also the entry-point group plugins are discovered in.
PROJECT_NAME = "callpyback"

#: Marks the hook specifications below (plugins implement them with ``@hookimpl``).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Mark a plugin's hook implementations with ``@hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def callpyback_register_components(registry: ComponentRegistrar) -> None:
    """Register the plugin's named component factories.

    Called once per plugin, when discovery runs.  ``registry`` stamps every component with
    the plugin's name and distribution; use ``registry.observer(name, factory, options=...)``,
    ``registry.error_handler(...)``, ``registry.time_source(...)`` or
    ``registry.variable_extractor(...)``.  ``options`` is a pydantic model class
    (``extra="forbid"``) that validates the component's options in the config; its fields are
    passed to ``factory`` as keyword arguments.

    Registration is all-or-nothing per plugin: if this hook raises, or one of the names is
    already taken, none of the plugin's components are added and the plugin is reported as
    failed.
    """


@hookspec
def callpyback_configure(config: Any) -> None:
    """See the loaded configuration (the validated config model) before anything is wrapped.

    A plugin that rejects the configuration raises :class:`callpyback.ConfigurationError`;
    that error reaches the user.  Any other exception is logged and the plugin is skipped.
    """


@hookspec
def callpyback_install(config: Any) -> None:
    """The import hook was installed with ``config`` (``callpyback run``, ``install()``).

    The time to attach integrations the configuration asks for: read your table from
    ``config.tables`` (registered with ``registry.table(...)``) and, for example, wait for a
    framework with :func:`callpyback.autoinstrument.when_imported`.  Undo it all in
    :func:`callpyback_uninstall`.  An exception is logged with the plugin's name and the program
    runs without the integration; it never stops the start-up.
    """


@hookspec
def callpyback_uninstall() -> None:
    """The import hook was removed: detach what :func:`callpyback_install` attached."""
