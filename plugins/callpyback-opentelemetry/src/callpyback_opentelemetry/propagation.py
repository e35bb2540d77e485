"""Continuing a trace in a child process, through OpenTelemetry's environment carriers.

The parent injects the current context into the child's environment with the global
propagator (``OTEL_PROPAGATORS``, W3C ``tracecontext,baggage`` by default), which writes
``TRACEPARENT``, ``TRACESTATE`` and ``BAGGAGE`` as the OpenTelemetry environment-carrier
specification names them; the child extracts them at start-up.  No variable of ours is used:
with ``OTEL_PROPAGATORS=none`` nothing crosses.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, MutableMapping, Optional

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter

__all__ = [
    "EnvironmentGetter",
    "EnvironmentSetter",
    "attach_environment_context",
    "child_environment",
    "context_from_environment",
]


def _env_key(key: str) -> str:
    """A propagator's header name as an environment variable: upper case, ``[A-Z0-9_]``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", key).upper() or "_"
    return "_" + name if name[0].isdigit() else name


class EnvironmentGetter(Getter[Mapping[str, str]]):
    """Reads ``traceparent`` as ``TRACEPARENT`` (and so on) from an environment mapping."""

    def get(self, carrier: Mapping[str, str], key: str) -> Optional[List[str]]:
        value = carrier.get(_env_key(key))
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> List[str]:
        return list(carrier)


class EnvironmentSetter(Setter[MutableMapping[str, str]]):
    """Writes ``traceparent`` as ``TRACEPARENT`` (and so on) into an environment mapping."""

    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        carrier[_env_key(key)] = value


_GETTER = EnvironmentGetter()
_SETTER = EnvironmentSetter()
#: What a parent may have written (cleared first, so a grandparent's stale ids never leak).
_CARRIED = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")


def child_environment(
    env: Optional[Mapping[str, str]] = None, context: Any = None
) -> Dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) carrying the current trace to a child process.

    Pass it as ``subprocess.run(..., env=child_environment())``; the child continues the trace
    with ``[otel] trace_from_environment = true`` or :func:`attach_environment_context`.
    """
    carrier = dict(os.environ if env is None else env)
    for key in _CARRIED:
        carrier.pop(key, None)
    propagate.inject(carrier, context=context, setter=_SETTER)
    return carrier


def context_from_environment(env: Optional[Mapping[str, str]] = None) -> Any:
    """The OpenTelemetry context a parent passed in ``env`` (default ``os.environ``)."""
    # An explicit empty context: with OTEL_PROPAGATORS=none the API's extract() would return None.
    return propagate.extract(os.environ if env is None else env, Context(), getter=_GETTER)


def attach_environment_context(env: Optional[Mapping[str, str]] = None) -> Optional[object]:
    """Make the parent's trace current in this thread; returns the token (None if none given).

    For the main thread of a child process at start-up: spans started from here on (by this
    thread, and by threads and tasks that copy its context) continue the parent's trace.
    """
    source = os.environ if env is None else env
    if not any(key in source for key in _CARRIED):
        return None
    return otel_context.attach(context_from_environment(source))
