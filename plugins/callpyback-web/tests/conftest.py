"""Fixtures for the web plugin's tests: real frameworks, real clients, a recording pipeline."""

from __future__ import annotations

from typing import Any, Iterator, List, Optional

import pytest

import callpyback as cpb
from callpyback import plugins


@pytest.fixture(autouse=True)
def _fresh_discovery(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(plugins.ALLOW_ENV, raising=False)
    monkeypatch.delenv(plugins.DENY_ENV, raising=False)
    plugins.reset()
    yield
    import callpyback.autoinstrument as auto

    auto.uninstall()
    plugins.reset()


class Seen:
    """What one observed request call reported at COMPLETED."""

    def __init__(self, context: Any) -> None:
        self.target: str = context.function_info.target
        self.outcome: Optional[str] = context.outcome
        self.exception: Optional[BaseException] = context.exception
        self.execution_time: float = context.execution_time
        self.request: Any = context.arguments["request"]
        self.value: Any = context.value if context.outcome == "success" else None

    @property
    def status(self) -> Optional[int]:
        return self.request.status  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<Seen {self.target} {self.outcome} {self.status} {self.exception!r}>"


class Recorder(cpb.BaseObserver):
    """Records every completed call; request calls as :class:`Seen`."""

    def __init__(self) -> None:
        super().__init__(states=[cpb.ExecutionState.COMPLETED], name="recorder")
        self.calls: List[Seen] = []
        self.functions: List[Any] = []

    def update(self, context: Any) -> None:
        if context.function_info.target.startswith("http:"):
            self.calls.append(Seen(context))
        else:
            self.functions.append(
                (context.function_info.target, context.metadata.get("web.request_id"))
            )

    def only(self) -> Seen:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def clock() -> cpb.MockTimeSource:
    return cpb.MockTimeSource(1_700_000_000.0)


@pytest.fixture
def pipeline(recorder: Recorder, clock: cpb.MockTimeSource) -> cpb.CallPyBack:
    """The request pipeline: the recorder, on a mock clock (durations are what views advance)."""
    return cpb.CallPyBack(observers=[recorder], time_source=clock, name="web-test")
