"""Variable extraction: this call's locals, of this function only, with profilers left working."""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import textwrap
import threading

import pytest

import callpyback as cpb
from callpyback import ConfigurationError, NoOpVariableExtractor, NullVariable, Retry
from callpyback import TracingVariableExtractor as TVE


@pytest.fixture(autouse=True)
def no_hook_left_behind():
    """Every test must leave the profile and trace slots as it found them."""
    before = (sys.getprofile(), sys.gettrace())
    yield
    assert (sys.getprofile(), sys.gettrace()) == before


def capturing(names, **options):
    """A decorator capturing ``names`` and a list of the local_variables of each call."""
    seen = []
    observer = cpb.on_completion(lambda local_variables: seen.append(dict(local_variables)))
    return cpb.CallPyBack(observers=[observer], variable_names=names, **options), seen


def helper_with_same_names():
    total = "from the helper"
    secret = "helper"
    return total, secret


def test_variable_names_pick_the_tracing_extractor_automatically():
    """variable_names=[...] alone selects TracingVariableExtractor."""
    deco, _ = capturing(["x"])
    assert isinstance(deco.variable_extractor, TVE)
    assert cpb.CallPyBack().variable_extractor is None  # and nobody else pays for it


def test_captures_locals_on_success_and_missing_names_are_null():
    """Requested names present in the call are captured; the others are NullVariable."""
    deco, seen = capturing(["total", "never_set"])

    @deco
    def compute(a, b):
        total = a + b
        helper_with_same_names()  # same names in a nested helper: must not leak
        return total * 2

    assert compute(2, 3) == 10
    assert seen == [{"total": 5, "never_set": NullVariable("never_set")}]
    null = seen[0]["never_set"]
    assert not null and repr(null) == "NullVariable('never_set')" and null.name == "never_set"


def test_captures_locals_on_failure():
    """When the function raises, its locals at the moment of the raise are captured."""
    deco, seen = capturing(["step", "amount"])

    @deco
    def transfer(amount):
        step = "validated"
        step = "debited"  # noqa: F841 - read by the extractor, not by the code
        raise RuntimeError("bank offline")

    with pytest.raises(RuntimeError, match="bank offline"):
        transfer(42)
    assert seen == [{"step": "debited", "amount": 42}]


def test_recursive_call_does_not_mix_levels():
    """A recursive inner call reports its own locals; the outer call keeps its own."""
    deco, seen = capturing(["depth_label"])

    @deco
    def rec(n):
        depth_label = f"level {n}"
        if n:
            rec(n - 1)
        return depth_label

    rec(2)
    # Inner calls complete first.
    assert [s["depth_label"] for s in seen] == ["level 0", "level 1", "level 2"]


def test_unwrapped_recursion_reports_the_outer_frame_only():
    """Recursion through __wrapped__ (not observed) never replaces the outer call's locals."""
    deco, seen = capturing(["label"])

    def rec(n):
        label = f"n={n}"
        if n:
            rec.__wrapped__(n - 1)
        return label

    rec = deco(rec)
    rec(3)
    assert seen == [{"label": "n=3"}]


def test_retry_captures_the_last_attempt():
    """Each attempt is captured afresh; observers see the final one."""

    class RetryOnce:
        def handle(self, exception, context):
            return Retry(0.0) if context.attempt == 1 else None

    attempts = []
    deco, seen = capturing(["attempt_no"], error_handlers=[RetryOnce()])

    @deco
    def flaky():
        attempt_no = len(attempts) + 1
        attempts.append(attempt_no)
        if attempt_no == 1:
            raise OSError("first attempt fails")
        return attempt_no

    assert flaky() == 2
    assert seen == [{"attempt_no": 2}]


def test_generators_and_coroutines():
    """Generators report their final locals; concurrent coroutines each get their own."""
    deco, seen = capturing(["acc"])

    @deco
    def running_sum(n):
        acc = 0
        for i in range(n):
            acc += i
            yield acc

    assert list(running_sum(4)) == [0, 1, 3, 6]
    assert seen == [{"acc": 6}]

    adeco, aseen = capturing(["mine"])

    @adeco
    async def task(i):
        mine = i
        await asyncio.sleep(0.001 * (5 - i))
        mine = i * 100
        return mine

    async def main():
        return await asyncio.gather(*(task(i) for i in range(5)))

    assert asyncio.run(main()) == [0, 100, 200, 300, 400]
    assert sorted(s["mine"] for s in aseen) == [0, 100, 200, 300, 400]


def test_async_generators():
    """An async generator reports its locals as they were when it finished."""
    deco, seen = capturing(["acc"])

    @deco
    async def running(n):
        acc = 0
        for i in range(n):
            acc += i
            await asyncio.sleep(0)
            yield acc

    async def main():
        return [x async for x in running(4)]

    assert asyncio.run(main()) == [0, 1, 3, 6]
    assert seen == [{"acc": 6}]


def test_closure_cell_variables_are_captured():
    """A variable captured by an inner closure (a cell variable) is still read."""
    deco, seen = capturing(["shared"])

    @deco
    def outer():
        shared = [1, 2]

        def inner():
            return len(shared)

        return inner()

    outer()
    assert seen == [{"shared": [1, 2]}]


def test_existing_python_profile_function_is_chained_and_restored():
    """A profiler already installed sees every event, including the observed call, and stays."""
    events = []

    def my_profiler(frame, event, arg):
        # The function's own frames (the wrapper's frame carries its name too).
        if event in ("call", "return") and frame.f_code is observed_fn.__wrapped__.__code__:
            events.append(event)

    deco, seen = capturing(["v"])

    @deco
    def observed_fn():
        v = "value"
        return v

    sys.setprofile(my_profiler)
    try:
        observed_fn()
        assert sys.getprofile() is my_profiler
    finally:
        sys.setprofile(None)
    assert events == ["call", "return"]
    assert seen == [{"v": "value"}]


def test_cprofile_keeps_working_and_sees_the_call():
    """Under cProfile the call and its nested helper are profiled and locals still captured."""
    deco, seen = capturing(["total"])
    tracer = sys.gettrace()  # None, or a coverage tool's: it must be the one left in place

    @deco
    def profiled(n):
        total = sum(range(n))
        helper_with_same_names()
        return total

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        profiled(10)
        profiled(20)
        assert sys.gettrace() is tracer  # any temporary hook is gone again
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler).stats
    calls = {func[2]: counts[1] for func, counts in stats.items()}
    assert calls.get("profiled") == 2
    assert calls.get("helper_with_same_names") == 2
    assert seen == [{"total": 45}, {"total": 190}]


def test_existing_trace_function_keeps_tracing():
    """A tracer (debugger, coverage) installed before keeps getting its events."""
    deco, seen = capturing(["v"])
    lines = []

    def tracer(frame, event, arg):
        if frame.f_code.co_name == "traced_fn":
            lines.append(event)
            return tracer
        return None

    @deco
    def traced_fn():
        v = 1
        v += 1
        return v

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        traced_fn()
    finally:
        sys.settrace(old)
    assert lines[0] == "call" and "line" in lines and lines[-1] == "return"
    assert seen == [{"v": 2}]


def test_threads_never_see_each_others_values():
    """Eight threads, each call with its own marker value: every capture matches its call."""
    results = {}
    lock = threading.Lock()

    def record(arguments, local_variables):
        with lock:
            results[(arguments["who"], arguments["i"])] = local_variables["marker"]

    @cpb.CallPyBack(observers=[cpb.on_completion(record)], variable_names=["marker"])
    def work(who, i):
        marker = (who, i)
        helper_with_same_names()
        return marker

    def run(who):
        for i in range(300):
            work(who, i)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 * 300
    assert all(key == value for key, value in results.items())


def test_noop_extractor_and_explicit_extractor():
    """NoOpVariableExtractor captures nothing and names every variable as missing."""
    deco, seen = capturing(["x"], variable_extractor=NoOpVariableExtractor())

    @deco
    def f():
        x = 1
        return x

    f()
    assert seen == [{"x": NullVariable("x")}]


def test_bad_backend_and_bad_extractor_are_rejected():
    """Unknown backends and objects without begin() are configuration errors."""
    with pytest.raises(ConfigurationError, match="backend"):
        TVE(backend="magic")
    if sys.version_info < (3, 12):
        with pytest.raises(ConfigurationError, match=r"3\.12"):
            TVE(backend="monitoring")
    with pytest.raises(ConfigurationError, match="begin"):
        cpb.CallPyBack(variable_extractor=object())


def test_profile_backend_is_the_one_used_before_3_12():
    """On 3.11 and older the profile hook is used; from 3.12 sys.monitoring by default."""
    expected = "monitoring" if sys.version_info >= (3, 12) else "profile"
    assert TVE().backend == expected
    assert TVE(backend="profile").backend == "profile"


SCRIPT = textwrap.dedent(
    """
    import asyncio, cProfile, pstats, sys, threading
    import callpyback as cpb
    hooks = (sys.getprofile(), sys.gettrace())  # None, or a coverage tool's
    seen = []
    deco = cpb.CallPyBack(
        observers=[cpb.on_completion(lambda local_variables: seen.append(dict(local_variables)))],
        variable_names=["x"])
    def helper():
        x = "helper"
        return x
    @deco
    def f(n, fail=False):
        x = n * 2
        helper()
        if fail:
            raise ValueError
        return x
    @deco
    async def af(n):
        x = n
        await asyncio.sleep(0)
        x = n + 1
        return x
    f(1)
    try:
        f(2, fail=True)
    except ValueError:
        pass
    asyncio.run(af(10))
    p = cProfile.Profile(); p.enable(); f(5); p.disable()
    names = {k[2]: v[1] for k, v in pstats.Stats(p).stats.items()}
    assert names.get("f") == 1 and names.get("helper") == 1, names
    assert (sys.getprofile(), sys.gettrace()) == hooks
    print(f.__callpyback__.variable_extractor.backend, [s["x"] for s in seen])
    """
)


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_monitoring_backend_on_newer_pythons(version, tmp_path):
    """Where a 3.12+ interpreter is installed, the sys.monitoring path gives the same results."""
    candidates = (
        [
            f"/root/.pyenv/versions/{v}/bin/python3"
            for v in os.listdir("/root/.pyenv/versions")
            if v.startswith(version + ".")
        ]
        if os.path.isdir("/root/.pyenv/versions")
        else []
    )
    if not candidates:
        pytest.skip(f"no Python {version} interpreter on this machine")
    script = tmp_path / "check.py"
    script.write_text(SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cpb.__file__)))
    out = subprocess.run(
        [candidates[0], str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "monitoring [2, 4, 11, 10]"
