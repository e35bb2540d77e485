"""Property test: the breaker agrees with a tiny reference model on any sequence of calls."""

from __future__ import annotations

import itertools
from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import callpyback as cpb
from callpyback.handlers import CircuitBreakerHandler, CircuitOpenError

_names = itertools.count()


class Model:
    """The documented semantics, written as plainly as possible (sequential calls only)."""

    def __init__(self, threshold, rate, window, minimum, timeout, successes_needed):
        self.threshold, self.rate, self.timeout = threshold, rate, timeout
        self.window = deque(maxlen=window)
        self.minimum, self.successes_needed = minimum, successes_needed
        self.state, self.failures, self.opened_at, self.trial_ok = "closed", 0, 0.0, 0

    def call(self, now: float, fails: bool) -> str:
        if self.state == "open" and now - self.opened_at >= self.timeout:
            self.state, self.trial_ok = "half_open", 0
        if self.state == "open":
            return "rejected"
        if self.state == "closed":
            if self.rate is None:
                self.failures = self.failures + 1 if fails else 0
                trip = self.failures >= self.threshold
            else:
                self.window.append(fails)
                n = len(self.window)
                trip = fails and n >= self.minimum and sum(self.window) / n >= self.rate
            if trip:
                self.state, self.opened_at = "open", now
        elif fails:  # a failed trial
            self.state, self.opened_at = "open", now
        else:
            self.trial_ok += 1
            if self.trial_ok >= self.successes_needed:
                self.state, self.failures = "closed", 0
                self.window.clear()
        return "failed" if fails else "ok"


class BreakerMachine(RuleBasedStateMachine):
    @initialize(
        threshold=st.integers(1, 4),
        use_rate=st.booleans(),
        rate=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
        window=st.integers(1, 6),
        minimum=st.integers(1, 6),
        timeout=st.sampled_from([1.0, 2.5, 10.0]),
        successes_needed=st.integers(1, 3),
    )
    def setup(self, threshold, use_rate, rate, window, minimum, timeout, successes_needed):
        minimum = min(minimum, window)
        self.clock = cpb.MockTimeSource()
        options = (
            {"failure_rate": rate, "window_size": window, "minimum_calls": minimum}
            if use_rate
            else {"failure_threshold": threshold}
        )
        self.handler = CircuitBreakerHandler(
            f"model-{next(_names)}",
            recovery_timeout=timeout,
            success_threshold=successes_needed,
            half_open_max_calls=3,
            **options,
        )
        self.model = Model(
            threshold, rate if use_rate else None, window, minimum, timeout, successes_needed
        )
        self.fails = False
        self.ran = 0

        def call():
            self.ran += 1
            if self.fails:
                raise ConnectionError("down")
            return "ok"

        self.f = cpb.CallPyBack(error_handlers=[self.handler], time_source=self.clock)(call)

    @rule(fails=st.booleans())
    def call(self, fails):
        self.fails = fails
        before = self.ran
        try:
            self.f()
            outcome = "ok"
        except CircuitOpenError:
            outcome = "rejected"
        except ConnectionError:
            outcome = "failed"
        assert outcome == self.model.call(self.clock.monotonic(), fails)
        assert (self.ran - before) == (0 if outcome == "rejected" else 1)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 10.0]))
    def wait(self, seconds):
        self.clock.advance(seconds)

    @invariant()
    def same_state(self):
        if hasattr(self, "handler"):
            # the breaker reports half-open as soon as the timeout passed; the model on next call
            state = self.handler.breaker._state.value
            assert state == self.model.state


TestBreakerModel = BreakerMachine.TestCase
TestBreakerModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
