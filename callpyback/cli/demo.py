"""``callpyback demo``: a quick start that shows what observers see."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run a short demo and print what the observers saw",
        description="Decorate a few functions with observers and error handling, call them, "
        "and print every notification.\n\nexample:\n  callpyback demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from callpyback import CallPyBack, on_call, on_completion, on_failure, on_success

    def show(label: str) -> Any:
        def observer(context: Any) -> None:
            outcome = context.result
            detail = "" if outcome is None else f" -> {outcome!r}"
            print(f"  [{label:>10}] {context.function_info.qualname}{detail}")

        return observer

    observe = CallPyBack(
        observers=[
            on_call(
                lambda arguments, function: print(
                    f"  [   on_call] {function.__qualname__}{dict(arguments)}"
                )
            ),
            on_success(show("on_success")),
            on_failure(show("on_failure")),
            on_completion(show("completed")),
        ]
    )

    @observe
    def add(a: int, b: int = 2) -> int:
        return a + b

    @observe
    def divide(a: float, b: float) -> float:
        return a / b

    safe = CallPyBack(
        observers=observe.observers,
        default_return=float("nan"),
        exception_classes=[ZeroDivisionError],
    )

    @safe
    def safe_divide(a: float, b: float) -> float:
        return a / b

    print("add(1):")
    print(f"  returned {add(1)!r}")
    print("divide(1, 0):")
    try:
        divide(1, 0)
    except ZeroDivisionError as exc:
        print(f"  raised {exc!r}, unchanged")
    print("safe_divide(1, 0) with default_return=nan for ZeroDivisionError:")
    print(f"  returned {safe_divide(1, 0)!r}")
    return 0
