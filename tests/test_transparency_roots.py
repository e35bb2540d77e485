"""Each root cause of visible instrumentation (issue 11), reproduced in isolation."""

from __future__ import annotations

import inspect
import pickle
import sys
import traceback
import types
from pathlib import Path
from typing import Any, List

import pytest

import callpyback
import callpyback.autoinstrument as auto
from callpyback import CallPyBack, MetricsObserver, instrumented_by
from tests.autoinstrument_support import PatternSelector


def both(func: Any) -> List[Any]:
    """The same function observed both ways: a decorator's wrapper, and in place."""
    wrapped = CallPyBack(observers=[MetricsObserver()])(func)
    copy = types.FunctionType(
        func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__qualname__ = func.__qualname__
    copy.__annotations__ = func.__annotations__
    CallPyBack(observers=[MetricsObserver()]).instrument_in_place(copy)
    return [wrapped, copy]


def runs_compiled(observed: Any) -> bool:
    """Whether a Python-to-Python call of ``observed`` runs the C engine (docs/performance.md)."""
    from callpyback import _cengine

    sp = _cengine.speedups()
    if sp is None or sp.plan_of(observed) is None:
        return False
    # In place, the function keeps its code: 3.11 runs it for calls made from Python.
    return type(observed) is sp.ObservedFunction or sys.version_info[:2] != (3, 11)


def caller_globals_name() -> str:
    return sys._getframe(1).f_globals["__name__"]  # what anyio's lazy importer does


def test_our_frame_has_the_functions_module_globals() -> None:
    """No frame of ours lacks the module's ordinary names (``f_globals["__name__"]``)."""
    for observed in both(caller_globals_name):
        assert observed() == __name__


def test_at_most_one_frame_of_ours_per_call_and_one_traceback_entry() -> None:
    def fail(x: int) -> int:
        raise ValueError(x)

    for observed in both(fail):
        with pytest.raises(ValueError) as info:
            observed(1)
        entries = traceback.extract_tb(info.value.__traceback__)
        ours = [e for e in entries if e.filename.startswith("<callpyback")]
        # The Python engine's wrapper is one frame; the compiled engine's adds none.
        frames = 0 if runs_compiled(observed) else 1
        assert len(ours) == frames and entries[-1].name == "fail"


def test_arity_errors_are_raised_before_any_frame_of_ours() -> None:
    """The wrapper has the function's exact signature: a wrong call fails at the call site."""

    def one(x: int) -> int:
        return x

    for observed in both(one):
        with pytest.raises(
            TypeError, match=r"one\(\) takes 1 positional argument but 3 were"
        ) as info:
            observed(1, 2, 3)
        assert len(traceback.extract_tb(info.value.__traceback__)) == 1  # only this test's frame


def test_introspection_sees_the_real_signature() -> None:
    def f(a: int, b: int = 2, *args: Any, c: int, d: int = 4, **kw: Any) -> int:
        return a

    expected = inspect.getfullargspec(f)
    for observed in both(f):
        assert inspect.getfullargspec(observed) == expected
        assert str(inspect.signature(observed)) == str(inspect.signature(f))
        assert observed.__code__.co_varnames[:6] == f.__code__.co_varnames[:6]
        assert inspect.getsource(observed).lstrip().startswith("def f(")
        assert observed(1, c=3) == 1


def test_assigning_defaults_takes_effect() -> None:
    def f(x: int = 1, *, y: int = 2) -> Any:
        return (x, y)

    for observed in both(f):
        observed.__defaults__ = (10,)
        observed.__kwdefaults__ = {"y": 20}
        assert observed() == (10, 20)


def test_recursion_depth_costs_at_most_two_frames_per_call() -> None:
    depth = [0]

    def plain(n: int) -> int:
        depth[0] = n
        return plain(n + 1)

    def measure(f: Any) -> int:
        depth[0] = 0
        with pytest.raises(RecursionError):
            f(0)
        return depth[0]

    base = measure(plain)
    for observed in both(plain):
        # ``plain`` recurses through its global name: rebind it to the observed version
        plain.__globals__["plain"] = observed
        try:
            assert measure(observed) >= base // 2 - 5
        finally:
            plain.__globals__["plain"] = plain


FRAMES = """
import sys, inspect

def where_am_i():
    return sys._getframe(1).f_code.co_name

def who_called():
    return inspect.stack()[1].function

def ordinary(x):
    return x
"""


def test_functions_that_inspect_frames_are_skipped_and_explained(tmp_path: Path) -> None:
    (tmp_path / "cpb_frames_mod.py").write_text(FRAMES)
    sys.path.insert(0, str(tmp_path))
    try:
        sel = PatternSelector("cpb_frames_mod")
        auto.install(sel)
        import cpb_frames_mod as m

        assert instrumented_by(m.ordinary) is not None
        assert instrumented_by(m.where_am_i) is None and instrumented_by(m.who_called) is None
        assert "inspects its caller's frame" in auto.explain("cpb_frames_mod:where_am_i")
        assert "_getframe" in auto.explain("cpb_frames_mod:where_am_i")
        assert "inspect.stack" in auto.explain("cpb_frames_mod:who_called")
        auto.uninstall()
        sys.modules.pop("cpb_frames_mod")
        sel = PatternSelector("cpb_frames_mod")
        sel.instrument_frame_inspectors = True  # the setting (settings.instrument_frame_inspectors)
        auto.install(sel)
        import cpb_frames_mod as m2

        assert instrumented_by(m2.where_am_i) is not None
    finally:
        auto.uninstall()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cpb_frames_mod", None)


REGISTRY = """
def do_upper(s):
    return s.upper()

FILTERS = {"upper": do_upper}  # a registry filled before any wrapping
"""


def test_references_taken_before_instrumentation_are_observed(tmp_path: Path) -> None:
    """Registries and route tables holding the function (taken at import, before the hook
    wraps anything) call the observed function, and still pickle by reference."""
    (tmp_path / "cpb_registry_mod.py").write_text(REGISTRY)
    sys.path.insert(0, str(tmp_path))
    try:
        sel = PatternSelector("cpb_registry_mod")
        auto.install(sel)
        import cpb_registry_mod as m

        assert m.FILTERS["upper"]("x") == "X"
        assert sel.calls == ["cpb_registry_mod:do_upper"]
        assert pickle.loads(pickle.dumps(m.FILTERS)) == m.FILTERS
    finally:
        auto.uninstall()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cpb_registry_mod", None)


def test_the_instrument_frame_inspectors_setting_reaches_the_hook(tmp_path: Path) -> None:
    from callpyback import load_config

    path = tmp_path / "callpyback.toml"
    path.write_text(
        "version = 1\n[settings]\ninstrument_frame_inspectors = true\n"
        '[observers.m]\ntype = "metrics"\n[[pipelines]]\nmatch = ["x"]\nobservers = ["m"]\n'
    )
    assert load_config(path).instrument_frame_inspectors is True
    assert callpyback  # the package import is what users do


GETATTR_FRAMES = """
import sys

def autoname():
    # pyparsing's autoname_elements: the frame function is looked up by name
    getframe_fn = getattr(sys, "_getframe", lambda _: None)
    return sorted(getframe_fn(1).f_locals)

def plain(x):
    return x
"""


def test_a_frame_function_looked_up_by_name_is_a_frame_inspector(tmp_path: Path) -> None:
    """``getattr(sys, "_getframe")`` counts like ``sys._getframe`` (pyparsing, corpus)."""
    (tmp_path / "cpb_getattr_frames_mod.py").write_text(GETATTR_FRAMES)
    sys.path.insert(0, str(tmp_path))
    try:
        auto.install(PatternSelector("cpb_getattr_frames_mod"))
        import cpb_getattr_frames_mod as m

        assert instrumented_by(m.plain) is not None
        assert instrumented_by(m.autoname) is None
        assert "_getframe" in auto.explain("cpb_getattr_frames_mod:autoname")

        def caller() -> List[str]:
            grammar = 1  # noqa: F841 - what autoname reads
            return m.autoname()  # type: ignore[no-any-return]

        assert "grammar" in caller()  # the caller's frame, not one of ours
    finally:
        auto.uninstall()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cpb_getattr_frames_mod", None)
