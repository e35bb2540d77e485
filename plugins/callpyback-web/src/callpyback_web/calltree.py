"""``web.calltree``: observed calls made while a request is handled, as the request's tree.

Add it to the pipelines of the functions a request runs (views, services).  Each of their calls
becomes a :class:`Call` in the ``children`` of the call that made it (the innermost observed
call in this pipeline that is running), or of the :class:`~callpyback_web.Request` itself; its
context's ``metadata["web.request_id"]`` names the request.  It uses the public observer
protocol only: ``update`` at PRE_EXECUTION and COMPLETED, and ``enter``/``exit`` around each
stretch of the body, which make the call the parent of what runs inside it.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from callpyback import BaseObserver, ExecutionState

from ._core import current_request

__all__ = ["Call", "CallTreeObserver"]

_NODE: contextvars.ContextVar[Optional[Call]] = contextvars.ContextVar(
    "callpyback_web.call", default=None
)
_KEY = "web.call"


@dataclass(eq=False)
class Call:
    """One observed call inside a request."""

    target: str
    request_id: str
    outcome: Optional[str] = None
    execution_time: Optional[float] = None
    children: List[Call] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "target": self.target,
            "outcome": self.outcome,
            "execution_time": self.execution_time,
            "children": [c.as_dict() for c in self.children],
        }


class CallTreeObserver(BaseObserver):
    """Record each call made during a request under its parent (see the module docstring)."""

    def __init__(self, *, priority: int = 0, name: Optional[str] = None) -> None:
        super().__init__(
            priority=priority,
            name=name or "web.calltree",
            states=[ExecutionState.PRE_EXECUTION, ExecutionState.COMPLETED, ExecutionState.ERROR],
        )

    def update(self, context: Any) -> None:
        if context.state is ExecutionState.PRE_EXECUTION:
            parent: Any = _NODE.get()
            request = current_request()
            if parent is None:
                parent = request
            if parent is None or context.function_info.target.startswith("http:"):
                return  # outside any request (or the request's own call)
            node = Call(
                context.function_info.target,
                parent.request_id if isinstance(parent, Call) else parent.id,
            )
            parent.children.append(node)
            metadata = context.metadata
            metadata[_KEY] = node
            metadata["web.request_id"] = node.request_id
            return
        node = context.metadata.get(_KEY)
        if node is not None:
            node.outcome = context.outcome or "interrupted"
            node.execution_time = context.execution_time

    def enter(self, context: Any) -> Any:
        node = context.metadata.get(_KEY)
        return None if node is None else _NODE.set(node)

    def exit(self, context: Any, token: Any) -> None:
        if token is not None:
            _NODE.reset(token)
