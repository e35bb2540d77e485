"""A real component registry for the config tests: real pydantic option models, real components."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, List, Optional

from pydantic import BaseModel, ConfigDict, Field

from callpyback import BaseObserver, MockTimeSource, Recover, Retry, SystemTimeSource
from callpyback._registry import ComponentSpec, Registry


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordingOptions(_Options):
    label: str = "rec"
    priority: int = 0


class RecordingObserver(BaseObserver):
    """Records (label, state, qualname) of every notification."""

    def __init__(self, label: str = "rec", priority: int = 0) -> None:
        super().__init__(priority=priority, name=label)
        self.label = label
        self.events: List[tuple] = []

    def update(self, context: Any) -> None:
        self.events.append((context.state.name, context.function_info.qualname))


class TimingOptions(_Options):
    threshold: float = Field(0.0, ge=0)


class SlowCallObserver(BaseObserver):
    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__(name="timing", phases=["AFTER_COMPLETION"])
        self.threshold = threshold
        self.slow: List[str] = []

    def update(self, context: Any) -> None:
        if (context.execution_time or 0.0) >= self.threshold:
            self.slow.append(context.function_info.qualname)


class RetryOptions(_Options):
    attempts: int = Field(ge=1)
    delay: float = Field(0.0, ge=0)
    api_token: Optional[str] = None


class RetryHandler:
    def __init__(self, attempts: int, delay: float = 0.0, api_token: Optional[str] = None) -> None:
        self.attempts = attempts
        self.delay = delay
        self.name = "retry"

    def handle(self, exception: BaseException, context: Any) -> Any:
        if context.attempt < self.attempts:
            return Retry(self.delay)
        return None


class FallbackOptions(_Options):
    value: Any = None


class FallbackHandler:
    def __init__(self, value: Any = None) -> None:
        self.value = value

    def handle(self, exception: BaseException, context: Any) -> Any:
        return Recover(self.value)


class MockOptions(_Options):
    initial: float = 0.0


class NoOpExtractor:
    def begin(self, code: Any, names: Any) -> Any:
        return self

    def finish(self) -> dict:
        return {}


def make_registry() -> Registry:
    registry = Registry()
    for spec in (
        ComponentSpec(
            "observer", "recording", RecordingObserver, RecordingOptions, plugin="testkit"
        ),
        ComponentSpec("observer", "timing", SlowCallObserver, TimingOptions, plugin="testkit"),
        ComponentSpec(
            "observer", "metrics", lambda: RecordingObserver("metrics"), None, plugin="testkit"
        ),
        ComponentSpec("error_handler", "retry", RetryHandler, RetryOptions, plugin="testkit"),
        ComponentSpec(
            "error_handler", "fallback", FallbackHandler, FallbackOptions, plugin="testkit"
        ),
        ComponentSpec("time_source", "system", SystemTimeSource, None, plugin="testkit"),
        ComponentSpec("time_source", "mock", MockTimeSource, MockOptions, plugin="testkit"),
        ComponentSpec("variable_extractor", "noop", NoOpExtractor, None, plugin="testkit"),
    ):
        registry.add(spec)
    return registry


def write(tmp_path: Path, text: str, name: str = "callpyback.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path
