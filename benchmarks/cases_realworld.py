"""Whole programs with every function of a real package observed (group "realworld").

``sqlformat`` on a large generated SQL file and ``python -m markdown`` on a large generated
document, plainly and under ``callpyback run`` with one ``metrics`` pipeline matching every
function of the package.  The figure is the ratio of CPU time (the child's user + system time)
instrumented / plain, the minimum of several runs of each, alternated; outputs must be
identical.  Needs the bench extra (``pip install -e '.[bench]'``: sqlparse, markdown).
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, List, Tuple

from _harness import Case

CONFIG = """
version = 1
[observers.metrics]
type = "metrics"
[[pipelines]]
match = ["{package}"]
observers = ["metrics"]
"""


def _sql(statements: int) -> str:
    rng = random.Random(7)
    tables = ["orders", "customers", "payments", "items", "stock"]
    out = []
    for i in range(statements):
        t = rng.choice(tables)
        out.append(
            f"select a.id, b.name, sum(c.amount) as total from {t} a join customers b on "
            f"a.customer_id = b.id left join payments c on c.order_id = a.id where a.created > "
            f"'2026-0{1 + i % 9}-01' and b.region in ('eu', 'us') group by a.id, b.name having "
            f"sum(c.amount) > {i % 100} order by total desc limit {10 + i % 5};"
        )
        if i % 7 == 0:
            out.append(
                f"insert into {t} (id, name, price) values ({i}, 'item {i}', {i * 1.5:.2f});"
            )
    return "\n".join(out) + "\n"


def _markdown(sections: int) -> str:
    out = []
    for i in range(sections):
        out.append(f"# Section {i}\n")
        out.append(
            f"Some *emphasis*, some **strong** text, `code {i}`, a [link](http://example.com/{i})"
            " and an auto link <http://example.org>.\n"
        )
        out.append("- item one\n- item two with `code`\n  - nested item\n- item three\n")
        out.append(f"> a quote {i}\n> continued\n")
        out.append("    indented code block\n    second line\n")
        out.append("1. first\n2. second\n3. third\n")
        out.append(f"| a | b |\n|---|---|\n| {i} | {i * 2} |\n")
    return "\n".join(out)


def _cpu_of(argv: List[str], cwd: Path, env: dict[str, str]) -> Tuple[float, bytes]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, out


def _program(package: str, plain: List[str], rounds: int = 5) -> Callable[[], List[float]]:
    def measure() -> List[float]:
        try:
            __import__(package)
        except ImportError:
            print(f"    {package} not installed: pip install -e '.[bench]'")
            return [float("nan")]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "callpyback.toml").write_text(CONFIG.format(package=package))
            env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK")}
            if package == "sqlparse":
                (work / "input.sql").write_text(_sql(2_000))
            else:
                (work / "input.md").write_text(_markdown(600))
            observed = [
                sys.executable,
                "-m",
                "callpyback",
                "run",
                "-c",
                "callpyback.toml",
                "-m",
                *plain,
            ]
            plain_argv = [sys.executable, "-m", *plain]
            _, expected = _cpu_of(plain_argv, work, env)  # warm caches, .pyc files
            ratios = []
            plains, observeds = [], []
            for _ in range(rounds):
                p, out_p = _cpu_of(plain_argv, work, env)
                o, out_o = _cpu_of(observed, work, env)
                if out_o != expected or out_p != expected:
                    raise AssertionError(f"{package}: the instrumented output differs")
                plains.append(p)
                observeds.append(o)
                ratios.append(o / p)
            print(
                f"    {package}: CPU {min(plains):.2f} s plain, {min(observeds):.2f} s observed "
                f"(min of {rounds}); outputs identical"
            )
            return [min(observeds) / min(plains), *ratios]

    return measure


CASES = [
    Case(
        "sqlformat a large SQL file, every sqlparse function observed (CPU)",
        lambda: _program(
            "sqlparse", ["sqlparse", "--reindent", "--keywords", "upper", "input.sql"]
        ),
        kind="custom",
        group="realworld",
        target=2.0,
        note="instrumented / plain CPU time; first sample: ratio of minima",
    ),
    Case(
        "python -m markdown a large document, every markdown function observed (CPU)",
        lambda: _program("markdown", ["markdown", "-x", "tables", "input.md"]),
        kind="custom",
        group="realworld",
        target=2.0,
        note="instrumented / plain CPU time; first sample: ratio of minima",
    ),
]
