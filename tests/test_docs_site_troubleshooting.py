"""The troubleshooting guide covers what the CLI and the import hook really print.

Every message the ``callpyback`` command, the import hook, its bootstrap and the plugin loader
can print or log for a user to act on is found in the code (``print(..., file=sys.stderr)``,
``parser.error(...)``, the hook's ``_warn(...)``, ``logger.warning(...)``), and its fixed text
must appear in docs/troubleshooting.md, where the sessions are run and compared with the real
output by tests/test_docs_snippets.py. A message that is only a carrier for an exception's own
text (``callpyback run: {exc}``) has no fixed text of its own: the guide shows the exceptions
it carries (configuration problems, components that cannot be built). A message left out of the
guide on purpose is listed in ``NOT_IN_GUIDE`` with the reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import callpyback

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "troubleshooting.md"
# The package that is tested (the checkout's, or the installed wheel's in .ci/matrix.sh).
PACKAGE = Path(callpyback.__file__).resolve().parent
SOURCES = sorted(
    [
        *(PACKAGE / "cli").glob("*.py"),
        *(PACKAGE / "autoinstrument").glob("*.py"),
        PACKAGE / "plugins.py",
    ]
)
#: The shortest fixed text that identifies a message (shorter ones are prefixes like
#: ``"callpyback run: "``, shared by many messages).
SHORTEST = 16

#: Messages that are not for the guide, and why (their fixed text, as the code has it).
NOT_IN_GUIDE = {
    "callpyback: serving Prometheus metrics at ": "information, not a problem: the URL to "
    "scrape (docs/reports.md shows it)",
}


def _literal_parts(node: ast.expr) -> List[str]:
    """The fixed text of a message expression, split where values are put in."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.split(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfi]", node.value)
    if isinstance(node, ast.JoinedStr):
        parts, current = [], ""
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                current += value.value
            else:
                parts.append(current)
                current = ""
        parts.append(current)
        return parts
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal_parts(node.left) + _literal_parts(node.right)
    return []


def _message(call: ast.Call) -> Optional[ast.expr]:
    """The message argument of a call that reports to the user, or None."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if not call.args:
        return None
    if name == "print":
        to_stderr = any(
            k.arg == "file" and isinstance(k.value, ast.Attribute) and k.value.attr == "stderr"
            for k in call.keywords
        )
        return call.args[0] if to_stderr else None
    if name in ("error", "warning", "_warn"):
        return call.args[0]
    return None


def messages(paths: List[Path]) -> Iterator[Tuple[str, int, List[str]]]:
    """(file, line, fixed parts) of every user-facing message in the given sources."""
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                arg = _message(node)
                if arg is not None:
                    parts = [p for p in _literal_parts(arg) if p.strip()]
                    shown = (
                        path.relative_to(PACKAGE.parent)
                        if path.is_relative_to(PACKAGE.parent)
                        else path.name
                    )
                    yield str(shown), node.lineno, parts


def _flat(text: str) -> str:
    return " ".join(text.split())


def uncovered(paths: List[Path], guide: str) -> List[str]:
    flat = _flat(guide)
    missing = []
    for where, line, parts in messages(paths):
        fixed = [p for p in parts if len(p.strip()) >= SHORTEST]
        if not fixed:
            continue  # a carrier of an exception's own text
        if "".join(parts) in NOT_IN_GUIDE or parts[0] in NOT_IN_GUIDE:
            continue
        absent = [p for p in fixed if _flat(p) not in flat]
        if absent:
            missing.append(f"{where}:{line}: {absent}")
    return missing


def test_every_message_is_in_the_guide() -> None:
    """Each message's fixed text is shown in docs/troubleshooting.md (with cause and fix)."""
    assert len(SOURCES) > 10 and all(p.is_file() for p in SOURCES)
    assert uncovered(SOURCES, GUIDE.read_text(encoding="utf-8")) == []


def test_the_exemptions_are_still_in_the_code() -> None:
    """NOT_IN_GUIDE names messages that exist (a stale entry would hide nothing, silently)."""
    found = {"".join(parts) for _, _, parts in messages(SOURCES)} | {
        parts[0] for _, _, parts in messages(SOURCES) if parts
    }
    assert [m for m in NOT_IN_GUIDE if m not in found] == []


def test_the_scan_finds_messages_and_misses(tmp_path: Path) -> None:
    """The scan sees f-strings, %-formats and concatenations, and reports one the guide lacks."""
    src = tmp_path / "cli.py"
    src.write_text(
        "import sys, logging\n"
        "def f(path, exc):\n"
        "    print(f'callpyback run: cannot open {path!r}: it is gone', file=sys.stderr)\n"
        "    print('to stdout, not a problem')\n"
        "    logging.getLogger('x').warning('plugin %s matches no installed plugin', path)\n"
        "    print(f'callpyback run: {exc}', file=sys.stderr)\n"
    )
    guide = "callpyback run: cannot open 'x': it is gone"
    assert uncovered([src], guide) == ["cli.py:5: [' matches no installed plugin']"]
    assert len(list(messages([src]))) == 3
