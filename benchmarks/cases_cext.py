"""The compiled engine (``callpyback._speedups``) against a ``functools.wraps`` passthrough,
next to the pure-Python engine's wrapper for the same pipeline (its twin), group "cext".

    python benchmarks/overhead.py -k cext

Issue 19's targets: empty <= 0.5x, one callback <= 1.5x, MetricsObserver/TimingObserver
<= 2.0x, each further callback observer <= +0.15x.  Without the extension (or with
CALLPYBACK_PURE_PYTHON=1) the "compiled" rows measure the pure engine, and say so in the note.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from _harness import Case, compare, direct, passthrough, target

from callpyback import CallPyBack, MetricsObserver, TimingObserver, _cengine, on_success

ENGINE = _cengine.ENGINE


def _wrap(observers: Callable[[], List[Any]], pure: bool) -> Any:
    wrapper = CallPyBack(observers=observers())(target)
    if pure and _cengine.active():
        return _cengine.speedups().twin_of(wrapper)  # the Python engine's wrapper
    return wrapper


def op(observers: Callable[[], List[Any]], pure: bool = False) -> Callable[[], Callable[[], Any]]:
    return lambda: direct(_wrap(observers, pure), 1)


def per_extra(pure: bool) -> Callable[[], Callable[[], List[float]]]:
    def build() -> Callable[[], List[float]]:
        def measure() -> List[float]:
            base = direct(passthrough(target), 1)
            one = compare(op(lambda: [on_success(lambda result: None)], pure)(), base, rounds=5)
            six = compare(
                op(lambda: [on_success(lambda result: None) for _ in range(6)], pure)(),
                base,
                rounds=5,
            )
            return [(b - a) / 5 for a, b in zip(one.ratios, six.ratios)]

        return measure

    return build


class Point:
    def __init__(self) -> None:
        self.x = 1

    def plain(self, k: int) -> int:
        return self.x + k


def method(pure: bool) -> Callable[[], Callable[[], Any]]:
    def build() -> Callable[[], Any]:
        deco = CallPyBack(observers=[MetricsObserver()])
        wrapped = deco(Point.plain)
        if pure and _cengine.active():
            wrapped = _cengine.speedups().twin_of(wrapped)
        Observed = type("Observed", (Point,), {"plain": wrapped})
        return direct(Observed().plain, 1)

    return build


def method_base() -> Callable[[], Any]:
    P = type("P", (Point,), {"plain": passthrough(Point.plain)})
    return direct(P().plain, 1)


def _cases() -> List[Case]:
    rows: List[Case] = []
    shapes: List[tuple[str, Callable[[], List[Any]], Optional[float]]] = [
        ("empty pipeline", lambda: [], 0.5),
        ("one on_success(lambda result: ...)", lambda: [on_success(lambda result: None)], 1.5),
        ("MetricsObserver", lambda: [MetricsObserver()], 2.0),
        ("TimingObserver", lambda: [TimingObserver()], 2.0),
    ]
    for label, observers, goal in shapes:
        rows.append(
            Case(f"compiled: {label}", op(observers), target=goal, note=ENGINE, group="cext")
        )
        rows.append(Case(f"pure: {label}", op(observers, pure=True), group="cext"))
    rows.append(
        Case(
            "compiled: each further on_success observer (+x)",
            per_extra(False),
            kind="custom",
            target=0.15,
            group="cext",
            note=ENGINE,
        )
    )
    rows.append(
        Case(
            "pure: each further on_success observer (+x)",
            per_extra(True),
            kind="custom",
            group="cext",
        )
    )
    rows.append(
        Case(
            "compiled: method, MetricsObserver",
            method(False),
            base_build=method_base,
            target=2.0,
            group="cext",
            note="vs a passthrough method",
        )
    )
    rows.append(
        Case("pure: method, MetricsObserver", method(True), base_build=method_base, group="cext")
    )
    return rows


CASES = _cases()
