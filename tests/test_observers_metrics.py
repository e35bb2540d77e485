"""MetricsObserver and the streaming histogram behind it."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import callpyback as cpb
from callpyback import ConfigurationError, MetricsObserver, Retry
from callpyback._histogram import MAX_VALUE, Histogram
from callpyback.observers.metrics import FunctionStats


class RetryTwice:
    """Retries the first two failures of each call, then lets the failure through."""

    def handle(self, exception, context):
        return Retry(0.0) if context.attempt < 3 else None


def exact_quantile(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# --- histogram --------------------------------------------------------------------------------


def test_histogram_quantiles_are_within_the_relative_accuracy():
    """Every quantile is within 1 % of the exact nearest-rank quantile, on a skewed sample."""
    rng = random.Random(7)
    values = [rng.lognormvariate(-6, 2) for _ in range(20_000)]
    hist = Histogram(0.01)
    for v in values:
        hist.add(v)
    for q in (0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0):
        got = hist.quantile(q)
        want = exact_quantile(values, q)
        assert abs(got - want) <= 0.01 * want + 1e-15, (q, got, want)
    assert hist.count == len(values)
    assert hist.max == max(values) and hist.min == min(values)
    assert hist.mean == pytest.approx(sum(values) / len(values))


def test_histogram_memory_is_bounded_whatever_is_recorded():
    """Values spanning 30 orders of magnitude still use a bounded number of buckets."""
    hist = Histogram(0.01)
    rng = random.Random(1)
    for _ in range(50_000):
        hist.add(10 ** rng.uniform(-15, 15))
    bound = math.ceil(math.log(MAX_VALUE / 1e-9) / math.log(hist.gamma)) + 2
    assert hist.bucket_count <= bound
    assert hist.count == 50_000
    assert hist.quantile(1.0) == hist.max  # clamped values still report the true max


def test_histogram_zero_and_negative_values_and_merge():
    """Zero, negative and tiny values land in the zero bucket; merging adds everything."""
    a, b = Histogram(), Histogram()
    for v in (0.0, -1.0, 1e-12):
        a.add(v)
    b.add(2.0)
    a.merge(b)
    assert a.count == 4
    assert a.quantile(0.5) == -1.0 or a.quantile(0.5) <= 1e-9
    assert a.quantile(1.0) == 2.0
    with pytest.raises(ConfigurationError, match="different accuracy"):
        a.merge(Histogram(0.05))


@pytest.mark.parametrize("bad", [0, 0.5, -1, "x", None])
def test_histogram_rejects_bad_accuracy(bad):
    """relative_accuracy must be in (0, 0.5)."""
    with pytest.raises(ConfigurationError, match="relative_accuracy"):
        Histogram(bad)


# --- counts -----------------------------------------------------------------------------------


def test_counts_successes_failures_and_latency(clock):
    """Each outcome is counted once, and latency comes from the decorator's time source."""
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics], time_source=clock)
    def work(seconds, fail=False):
        clock.advance(seconds)
        if fail:
            raise ValueError("nope")
        return seconds

    for i in range(1, 101):
        with contextlib.suppress(ValueError):
            work(float(i), fail=i % 10 == 0)
    m = metrics.get_metrics()[
        f"{__name__}:test_counts_successes_failures_and_latency.<locals>.work"
    ]
    assert (m["calls"], m["successes"], m["failures"], m["recoveries"]) == (100, 90, 10, 0)
    assert m["in_flight"] == 0 and m["max_in_flight"] == 1
    lat = m["latency"]
    assert lat["count"] == 100 and lat["min"] == 1.0 and lat["max"] == 100.0
    assert lat["mean"] == pytest.approx(50.5)
    assert lat["p50"] == pytest.approx(50, rel=0.01)
    assert lat["p90"] == pytest.approx(90, rel=0.01)
    assert lat["p99"] == pytest.approx(99, rel=0.01)


def test_recoveries_and_retries_are_counted():
    """A recovered call is a recovery, not a failure; extra attempts are retries."""
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics], default_return=-1)
    def recovered():
        raise KeyError("x")

    attempts = []

    @cpb.CallPyBack(observers=[metrics], error_handlers=[RetryTwice()])
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("transient")
        return "ok"

    assert recovered() == -1
    assert flaky() == "ok"
    r = metrics.get_metrics(recovered.__callpyback__ and f"{__name__}:{recovered.__qualname__}")
    assert (r["calls"], r["recoveries"], r["failures"], r["successes"]) == (1, 1, 0, 0)
    f = metrics.get_metrics(f"{__name__}:{flaky.__qualname__}")
    assert (f["calls"], f["successes"], f["retries"]) == (1, 1, 2)


def test_cancelled_and_interrupted_calls():
    """A generator closed early is cancelled; KeyboardInterrupt is interrupted; neither stays."""
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics])
    def numbers():
        yield from range(10)

    @cpb.CallPyBack(observers=[metrics])
    def interrupt():
        raise KeyboardInterrupt

    gen = numbers()
    next(gen)
    gen.close()
    with pytest.raises(KeyboardInterrupt):
        interrupt()
    g = metrics.get_metrics(f"{__name__}:{numbers.__qualname__}")
    i = metrics.get_metrics(f"{__name__}:{interrupt.__qualname__}")
    assert (g["calls"], g["cancelled"], g["in_flight"]) == (1, 1, 0)
    assert (i["calls"], i["interrupted"], i["in_flight"]) == (1, 1, 0)


def test_in_flight_is_visible_during_the_call():
    """While a call runs, in_flight counts it."""
    metrics = MetricsObserver()
    seen = []

    @cpb.CallPyBack(observers=[metrics])
    def inner():
        seen.append(metrics.get_metrics(f"{__name__}:{inner.__qualname__}")["in_flight"])

    inner()
    assert seen == [1]
    assert metrics.get_metrics(f"{__name__}:{inner.__qualname__}")["in_flight"] == 0


def test_without_in_flight_tracking_only_completion_is_observed():
    """track_in_flight=False subscribes to fewer states and still counts calls."""
    metrics = MetricsObserver(track_in_flight=False)
    assert cpb.ExecutionState.PRE_EXECUTION not in metrics.states

    @cpb.CallPyBack(observers=[metrics])
    def f():
        return 1

    f()
    m = metrics.get_metrics(f"{__name__}:{f.__qualname__}")
    assert m["calls"] == 1 and m["max_in_flight"] == 0


def test_async_calls_are_measured():
    """Coroutines are counted when they really finish, with their real duration."""
    clock = cpb.MockTimeSource()
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics], time_source=clock)
    async def job(n):
        await asyncio.sleep(0)
        clock.advance(n)
        return n

    async def main():
        await asyncio.gather(*(job(1.0) for _ in range(5)))

    asyncio.run(main())
    m = metrics.get_metrics(f"{__name__}:{job.__qualname__}")
    assert m["calls"] == 5 and m["successes"] == 5
    assert m["max_in_flight"] == 5
    assert m["latency"]["count"] == 5


def test_reset_metrics_and_unknown_function():
    """reset_metrics zeroes counts; an unknown function gives an empty dict."""
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics])
    def f():
        return 1

    f()
    f()
    metrics.reset_metrics()
    m = metrics.get_metrics(f"{__name__}:{f.__qualname__}")
    assert m["calls"] == 0 and m["latency"]["count"] == 0
    f()
    assert metrics.get_metrics(f"{__name__}:{f.__qualname__}")["calls"] == 1
    assert metrics.get_metrics("nowhere:nothing") == {}
    assert metrics.histogram("nowhere:nothing") is None
    assert metrics.histogram(f"{__name__}:{f.__qualname__}").count == 1


def test_one_observer_on_two_functions_keeps_them_apart():
    """Statistics are per function target."""
    metrics = MetricsObserver()
    deco = cpb.CallPyBack(observers=[metrics])

    @deco
    def a():
        return 1

    @deco
    def b():
        return 2

    a()
    a()
    b()
    all_metrics = metrics.to_dict()
    assert all_metrics[f"{__name__}:{a.__qualname__}"]["calls"] == 2
    assert all_metrics[f"{__name__}:{b.__qualname__}"]["calls"] == 1


def test_prometheus_exposition_format():
    """to_prometheus() is prometheus_client's exposition: counters, gauges and a histogram,
    label values escaped, parsed back by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = MetricsObserver()

    def weird():
        return 1

    weird.__qualname__ = 'we"ird\\name'
    wrapped = cpb.CallPyBack(observers=[metrics])(weird)
    wrapped()
    text = metrics.to_prometheus(prefix="app")
    assert text.endswith("\n")
    assert "# TYPE app_calls_total counter" in text
    assert "# TYPE app_calls_in_flight gauge" in text
    assert "# TYPE app_call_duration_seconds histogram" in text
    label = f'{__name__}:we\\"ird\\\\name'
    assert f'app_calls_total{{outcome="success",target="{label}"}} 1.0' in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == {
        "app_calls",
        "app_retries",
        "app_calls_in_flight",
        "app_calls_in_flight_max",
        "app_call_duration_seconds",
    }
    count = [s for s in families["app_call_duration_seconds"].samples if s.name.endswith("_count")]
    assert [(s.labels["target"], s.value) for s in count] == [(f'{__name__}:we"ird\\name', 1.0)]
    with pytest.raises(ConfigurationError, match="prefix"):
        metrics.to_prometheus(prefix="1bad-name")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"quantiles": (0.5, 2)}, "quantiles"),
        ({"quantiles": (0,)}, "quantiles"),
        ({"relative_accuracy": 0}, "relative_accuracy"),
        ({"priority": "high"}, "priority"),
    ],
)
def test_bad_options_are_rejected_at_construction(kwargs, match):
    """Options are validated when the observer is made, not at the first call."""
    with pytest.raises(ConfigurationError, match=match):
        MetricsObserver(**kwargs)


def test_counts_are_exact_with_threads():
    """Four threads hammering one function: no count is lost."""
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics])
    def f(i):
        if i % 7 == 0:
            raise ValueError(i)
        return i

    def run():
        for i in range(3000):
            with contextlib.suppress(ValueError):
                f(i)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = metrics.get_metrics(f"{__name__}:{f.__qualname__}")
    failures = 4 * len(range(0, 3000, 7))
    assert m["calls"] == 12_000 and m["failures"] == failures
    assert m["successes"] == 12_000 - failures
    assert m["latency"]["count"] == 12_000 and m["in_flight"] == 0


def test_a_wrapped_function_is_reported_once_it_is_called_not_before() -> None:
    """The engine binds every function it wraps (the import hook wraps thousands): a function
    never called is in no report, a called one is, and a reset keeps it listed with zeros."""
    metrics = MetricsObserver()
    timing = cpb.TimingObserver()
    deco = cpb.CallPyBack(observers=[metrics, timing])
    called = deco(lambda: 1)
    deco(lambda: 2)  # never called
    assert metrics.get_metrics() == {} and timing.get_stats() == {}
    called()
    (target,) = metrics.get_metrics()
    assert list(timing.get_stats()) == [target]
    assert metrics.histogram(target) is not None and timing.histogram(target) is not None
    metrics.reset_metrics()
    assert metrics.get_metrics()[target]["calls"] == 0


class _GeneralFold(FunctionStats):
    """The general fold alone (the loop-free fast paths switched off)."""

    __slots__ = ()

    def _fold_successes(self, batch, starts):
        return False


_events = st.lists(
    st.one_of(
        st.none(),  # a start
        st.floats(0.0, 5.0),  # a first-attempt success and its duration
        st.tuples(st.integers(0, 4), st.one_of(st.none(), st.floats(0.0, 5.0)), st.integers(1, 3)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(_events, min_size=1, max_size=4), in_flight=st.integers(0, 3))
def test_the_fast_folds_agree_with_the_general_one(batches, in_flight) -> None:
    """However events arrive (in any order, with calls started before the batch), folding with
    the loop-free paths gives exactly the counts, peak and histogram of the general fold."""
    fast, slow = FunctionStats("m:f", 0.01), _GeneralFold("m:f", 0.01)
    for stats in (fast, slow):
        stats.in_flight = stats.max_in_flight = in_flight
    for batch in batches:
        for stats in (fast, slow):
            stats.events.extend(batch)
            stats.fold()
    assert fast.snapshot((0.5, 0.99)) == slow.snapshot((0.5, 0.99))
    assert (fast.in_flight, fast.max_in_flight) == (slow.in_flight, slow.max_in_flight)
