"""Several real processes sharing breakers and windows through one real Redis server."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List

import pytest
from redis_support import RedisServer

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow


def _config(server: RedisServer, namespace: str, **extra: Any) -> Dict[str, Any]:
    config: Dict[str, Any] = {
        "url": server.url,
        "namespace": namespace,
        # Generous: a loaded test machine must not look like an outage (outage tests: 50 ms).
        "backend": {"poll_interval": 0.5, "timeout": 1.0},
    }
    config.update(extra)
    return config


def test_four_processes_open_the_breaker_at_the_summed_threshold(
    shared_server: RedisServer, namespace: str, children: Callable[..., Any]
) -> None:
    """Failures split across 4 processes open the shared breaker at exactly the threshold,
    and every process then rejects (within one poll interval) without running the function."""
    fleet = children(4, _config(shared_server, namespace, breaker={"failure_threshold": 8}))
    for i in range(7):  # 7 failures, round robin: 2, 2, 2, 1
        assert fleet[i % 4].ask({"op": "call", "mode": "fail"}) == ["failed"]
    for child in fleet:
        assert child.ask({"op": "state"})["state"] == "closed"
    assert fleet[3].ask({"op": "call", "mode": "fail"}) == ["failed"]  # the 8th, in total
    for child in fleet:
        elapsed = child.ask({"op": "wait_state", "state": "open", "timeout": 0.5})
        assert elapsed is not None and elapsed < 0.5  # poll_interval
        assert child.ask({"op": "call", "mode": "ok", "n": 3}) == ["rejected"] * 3
    assert sum(child.ask({"op": "state"})["ran"] for child in fleet) == 8


def test_a_success_anywhere_resets_the_consecutive_count(
    shared_server: RedisServer, namespace: str, children: Callable[..., Any]
) -> None:
    """Consecutive means fleet-wide: a success in one process resets the others' streak."""
    a, b = children(2, _config(shared_server, namespace, breaker={"failure_threshold": 3}))
    assert a.ask({"op": "call", "mode": "fail", "n": 2}) == ["failed", "failed"]
    assert b.ask({"op": "wait_state", "state": "closed"}) is not None
    deadline = time.monotonic() + 2
    while b.ask({"op": "state"})["failures"] != 2:  # b learns of a's streak (published)
        assert time.monotonic() < deadline
    assert b.ask({"op": "call", "mode": "ok"}) == ["ok"]
    deadline = time.monotonic() + 2
    while a.ask({"op": "state"})["failures"] != 0:  # ...and a learns of b's success
        assert time.monotonic() < deadline
    assert a.ask({"op": "call", "mode": "fail", "n": 2}) == ["failed", "failed"]
    assert a.ask({"op": "state"})["state"] == "closed"  # 2 since the reset, not 4


def test_half_open_admits_exactly_max_calls_across_eight_processes(
    shared_server: RedisServer, namespace: str, children: Callable[..., Any]
) -> None:
    """8 processes hammer a half-open breaker: exactly half_open_max_calls trials run
    fleet-wide; the rest are rejected; their successes close it for everyone."""
    breaker = {
        "failure_threshold": 1,
        "recovery_timeout": 0.3,
        "half_open_max_calls": 2,
        "success_threshold": 2,
    }
    fleet = children(8, _config(shared_server, namespace, breaker=breaker))
    assert fleet[0].ask({"op": "call", "mode": "fail"}) == ["failed"]
    for child in fleet:
        assert child.ask({"op": "wait_state", "state": "open"}) is not None
    time.sleep(0.35)  # past the recovery timeout, by any clock
    # Trials take 1 s, the hammering lasts 0.5 s: no trial finishes meanwhile.
    for child in fleet:
        child.send({"op": "hammer", "seconds": 0.5, "mode": "ok", "sleep": 1.0, "threads": 3})
    results = [child.receive() for child in fleet]
    assert sum(r["ran"] for r in results) == 2
    assert sum(r["outcomes"].get("rejected", 0) for r in results) > 100
    for child in fleet:
        assert child.ask({"op": "wait_state", "state": "closed", "timeout": 2.0}) is not None


def test_a_trial_lease_held_by_a_dead_process_expires(
    shared_server: RedisServer, namespace: str, children: Callable[..., Any]
) -> None:
    """A process killed mid-trial does not keep the breaker half-open forever: its lease
    expires after lease_ttl and another process gets the trial."""
    breaker = {"failure_threshold": 1, "recovery_timeout": 0.2, "half_open_max_calls": 1}
    config = _config(shared_server, namespace, breaker=breaker)
    config["backend"]["lease_ttl"] = 0.5
    dying, other = children(2, config)
    assert other.ask({"op": "call", "mode": "fail"}) == ["failed"]
    assert dying.ask({"op": "wait_state", "state": "open"}) is not None
    time.sleep(0.25)
    dying.send({"op": "call", "mode": "ok", "sleep": 30.0})  # takes the lease, never returns
    time.sleep(0.1)
    dying.proc.kill()
    assert other.ask({"op": "call", "mode": "ok"}) == ["rejected"]  # the lease is still held
    # Past lease_ttl, and past the poll interval for which "every lease taken" is cached.
    time.sleep(0.8)
    assert other.ask({"op": "call", "mode": "ok"}) == ["ok"]  # expired: a new trial, closed
    assert other.ask({"op": "state"})["state"] == "closed"


def test_a_new_process_does_not_reset_the_shared_count(
    shared_server: RedisServer, namespace: str, children: Callable[..., Any]
) -> None:
    """pybreaker#26: a process that starts later joins the count instead of zeroing it."""
    config = _config(shared_server, namespace, breaker={"failure_threshold": 4})
    (first,) = children(1, config)
    assert first.ask({"op": "call", "mode": "fail", "n": 3}) == ["failed"] * 3
    first.stop()
    (late,) = children(1, config)
    assert late.ask({"op": "state"})["failures"] == 3
    assert late.ask({"op": "call", "mode": "fail"}) == ["failed"]
    assert late.ask({"op": "state"})["state"] == "open"


def test_velocity_limit_holds_across_three_processes(
    shared_server: RedisServer, namespace: str, children: Callable[..., Any]
) -> None:
    """finance.velocity 5 per 60 s, 3 processes each trying 4 transfers at once for one
    account: exactly 5 are admitted in total; other accounts are not affected."""
    velocity = {"max_transactions": 5, "window": 60}
    fleet = children(3, _config(shared_server, namespace, velocity=velocity))
    at = time.time() + 0.3
    for child in fleet:
        child.send({"op": "barrier", "at": at})
    for child in fleet:
        child.receive()
    for child in fleet:
        child.send({"op": "transfer", "account": "ACC-1", "n": 4})
    results = [child.receive() for child in fleet]
    assert sum(r["admitted"] for r in results) == 5
    blocked: List[str] = [m for r in results for m in r["blocked"]]
    assert len(blocked) == 7
    assert all("account 'ACC-1' made 6 transactions within 60s" in m for m in blocked)
    assert fleet[0].ask({"op": "transfer", "account": "ACC-2", "n": 1})["admitted"] == 1


def test_clock_skew_between_processes_does_not_change_the_outcome(
    shared_server: RedisServer, namespace: str, children: Callable[..., Any]
) -> None:
    """One process an hour ahead (its time source, time.time and monotonic): it opens the
    breaker, and the other sees the same recovery time; its window events neither expire
    early nor linger (the server's TIME decides)."""
    common = {
        "breaker": {"failure_threshold": 2, "recovery_timeout": 0.6},
        "velocity": {"max_transactions": 3, "window": 0.8},
    }
    ahead, normal = (
        children(1, _config(shared_server, namespace, skew=3600.0, **common))[0],
        children(1, _config(shared_server, namespace, **common))[0],
    )
    assert ahead.ask({"op": "call", "mode": "fail", "n": 2}) == ["failed"] * 2
    assert normal.ask({"op": "wait_state", "state": "open"}) is not None
    assert normal.ask({"op": "call", "mode": "ok"}) == ["rejected"]
    assert ahead.ask({"op": "call", "mode": "ok"}) == ["rejected"]
    time.sleep(0.7)
    assert normal.ask({"op": "call", "mode": "ok"}) == ["ok"]  # the trial closed it
    assert ahead.ask({"op": "wait_state", "state": "closed"}) is not None

    assert ahead.ask({"op": "transfer", "account": "A", "n": 3})["admitted"] == 3
    assert normal.ask({"op": "transfer", "account": "A", "n": 1})["admitted"] == 0
    time.sleep(0.9)  # the window passed on the server's clock, for both
    assert normal.ask({"op": "transfer", "account": "A", "n": 3})["admitted"] == 3
    assert ahead.ask({"op": "transfer", "account": "A", "n": 1})["admitted"] == 0


@pytest.mark.parametrize("policy", ["local", "reject", "allow"])
def test_velocity_outage_policy_is_observed(
    server: RedisServer, namespace: str, children: Callable[..., Any], policy: str
) -> None:
    """With Redis dead, windows_on_outage decides: per-process windows (local_limit), every
    transfer blocked, or every transfer let through."""
    config = _config(server, namespace, velocity={"max_transactions": 5, "window": 60})
    config["backend"].update(windows_on_outage=policy, local_limit=2, retry_interval=5.0)
    fleet = children(2, config)
    server.kill()
    results = [child.ask({"op": "transfer", "account": "ACC-1", "n": 4}) for child in fleet]
    admitted = [r["admitted"] for r in results]
    if policy == "local":
        assert admitted == [2, 2]
    elif policy == "reject":
        assert admitted == [0, 0]
        assert "shared state store is unreachable" in results[0]["blocked"][0]
    else:
        assert admitted == [4, 4]
    assert all(child.ask({"op": "metrics"})["degraded"] == 1 for child in fleet)
