"""Hypothesis, stateful: a breaker on the Redis backend agrees with the in-process breaker.

Two breakers with the same settings see the same sequence of operations: calls that succeed
or fail, trial calls admitted and held, then finished (success, failure, cancellation), waits
past the recovery timeout, manual open/close and reset.  The in-process one runs on a mock
clock advanced by each wait; the Redis one on the server's clock, for real (the waits sleep),
so recovery timeouts are sub-second and examples few.  After every step they must agree on the
state, the consecutive failures and how often they opened; every call's outcome must agree
(ran, failed, or rejected, and as what).
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Iterator, List, Tuple

import pytest
from callpyback_redis import RedisBackend
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from redis_support import RedisServer

import callpyback as cpb
from callpyback import state
from callpyback.handlers import CircuitBreakerHandler, CircuitOpenError

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

RECOVERY = 0.4  # seconds: real, on the Redis side
_names = itertools.count()
SERVER: List[RedisServer] = []


@pytest.fixture(autouse=True)
def _server(shared_server: RedisServer) -> Iterator[None]:
    SERVER[:] = [shared_server]
    yield
    SERVER.clear()


class RedisAgreesWithMemory(RuleBasedStateMachine):
    @initialize(
        use_rate=st.booleans(),
        threshold=st.integers(1, 4),
        rate=st.sampled_from([0.5, 1.0]),
        window=st.integers(1, 5),
        minimum=st.integers(1, 5),
        max_calls=st.integers(1, 3),
        successes=st.integers(1, 3),
    )
    def setup(self, use_rate, threshold, rate, window, minimum, max_calls, successes):
        options: Any = {
            "recovery_timeout": RECOVERY,
            "half_open_max_calls": max_calls,
            "success_threshold": successes,
        }
        if use_rate:
            options.update(
                failure_rate=rate, window_size=window, minimum_calls=min(minimum, window)
            )
        else:
            options.update(failure_threshold=threshold)
        self.plain = not use_rate
        self.backend = RedisBackend(
            SERVER[0].url, namespace=f"model-{next(_names)}", poll_interval=0.2, timeout=1.0
        )
        state.use(self.backend, breakers=["redis-*"])
        n = next(_names)
        self.clock = cpb.MockTimeSource()
        self.memory = CircuitBreakerHandler(f"memory-{n}", **options)
        self.redis = CircuitBreakerHandler(f"redis-{n}", **options)
        assert self.memory.breaker.backend is state.MEMORY
        assert self.redis.breaker.backend is self.backend
        self.fails = False
        self.ran = {"memory": 0, "redis": 0}
        self.calls = {}
        for which, handler in (("memory", self.memory), ("redis", self.redis)):

            def body(which: str = which) -> str:
                self.ran[which] += 1
                if self.fails:
                    raise ConnectionError("down")
                return "ok"

            self.calls[which] = cpb.CallPyBack(error_handlers=[handler], time_source=self.clock)(
                body
            )
        self.held: List[Tuple[Any, Any]] = []  # (memory token, redis token) of trials in flight

    def teardown(self) -> None:
        if hasattr(self, "backend"):
            state.use(state.MEMORY)
            self.backend.close()

    def _outcome(self, which: str) -> str:
        before = self.ran[which]
        try:
            self.calls[which]()
            outcome = "ok"
        except CircuitOpenError as exc:
            outcome = f"rejected:{exc.state.value}"
        except ConnectionError:
            outcome = "failed"
        assert self.ran[which] - before == (0 if outcome.startswith("rejected") else 1)
        return outcome

    @rule(fails=st.booleans())
    def call(self, fails: bool) -> None:
        self.fails = fails
        assert self._outcome("memory") == self._outcome("redis")

    @rule()
    def begin_trial(self) -> None:
        results = []
        for breaker, clock in ((self.memory.breaker, self.clock), (self.redis.breaker, None)):
            try:
                token, trial = breaker.admit(clock)
                results.append((token, trial))
            except CircuitOpenError as exc:
                results.append((None, exc.state.value))
        (m_token, m_kind), (r_token, r_kind) = results
        assert m_kind == r_kind
        if m_kind is True:
            self.held.append((m_token, r_token))

    @precondition(lambda self: bool(getattr(self, "held", None)))
    @rule(data=st.data(), outcome=st.sampled_from(["success", "failure", "cancel"]))
    def finish_trial(self, data: Any, outcome: str) -> None:
        m_token, r_token = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        for breaker, token, clock in (
            (self.memory.breaker, m_token, self.clock),
            (self.redis.breaker, r_token, None),
        ):
            if outcome == "success":
                breaker.on_success(token, clock or cpb.SystemTimeSource())
            elif outcome == "failure":
                breaker.on_failure(
                    token, ConnectionError("trial down"), clock or cpb.SystemTimeSource()
                )
            else:
                breaker.release(token)

    @rule()
    def wait_past_recovery(self) -> None:
        self.clock.advance(RECOVERY + 0.05)
        time.sleep(RECOVERY + 0.05)

    @rule()
    def force_open(self) -> None:
        self.memory.breaker.open(self.clock)
        self.redis.breaker.open()

    @rule()
    def force_close(self) -> None:
        self.memory.breaker.close()
        self.redis.breaker.close()

    @rule()
    def reset(self) -> None:
        self.memory.reset()
        self.redis.reset()
        # In-process generations restart at 0 after a reset, so an old trial's token could
        # match a new generation there (not on Redis): the trials in flight are forgotten.
        self.held.clear()

    @invariant()
    def agree(self) -> None:
        if not hasattr(self, "memory"):
            return
        m, r = self.memory.breaker, self.redis.breaker
        # Private fields, not .state/.stats: reading those moves an in-process breaker whose
        # timeout passed to half-open, so observing would change the model.
        assert r._state is m._state
        assert r._opened == m._opened
        if self.plain:
            assert r._failures == m._failures
        assert r.hot.idle == m.hot.idle


TestRedisAgreesWithMemory = RedisAgreesWithMemory.TestCase
TestRedisAgreesWithMemory.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
