"""verify: the first broken or missing record, by line; the console script's exit status."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import List

import pytest
from callpyback_finance import AuditTrail, verify_file
from callpyback_finance.chain import canonical, record_hash
from hypothesis import assume, given, settings
from hypothesis import strategies as st


@pytest.fixture
def chain(trail: Path) -> Path:
    writer = AuditTrail(trail, durability="flush")
    for i in range(1, 6):
        writer.append({"amounts": {"amount": str(i * 100)}, "parties": {"account": f"A{i}"}})
    writer.close()
    return trail


def lines(path: Path) -> List[str]:
    return path.read_text(encoding="ascii").splitlines(keepends=True)


def write(path: Path, new: List[str]) -> None:
    path.write_text("".join(new), encoding="ascii")


def test_intact_chain(chain: Path) -> None:
    result = verify_file(chain)
    assert result.ok and result.records == 5 and result.line is None
    assert result.head == json.loads(lines(chain)[-1])["hash"]
    assert str(result).startswith("OK: 5 records, chain intact, head ")


def test_empty_file_is_an_intact_empty_chain(trail: Path) -> None:
    trail.parent.mkdir(parents=True)
    trail.touch()
    assert verify_file(trail).ok


def test_modified_record(chain: Path) -> None:
    new = lines(chain)
    new[2] = new[2].replace('"amount":"300"', '"amount":"3"')
    write(chain, new)
    result = verify_file(chain)
    assert not result.ok and result.line == 3 and result.records == 5
    assert result.problem == "line 3: record seq 3 does not match its hash: it was modified"


def test_modified_record_with_a_recomputed_hash(chain: Path) -> None:
    """Re-hashing a forged record breaks the link to it from the next line."""
    new = lines(chain)
    forged = json.loads(new[2])
    forged["amounts"]["amount"] = "3"
    forged["hash"] = record_hash(forged)
    new[2] = canonical(forged) + "\n"
    write(chain, new)
    result = verify_file(chain)
    assert result.line == 4
    assert "does not chain to line 3" in (result.problem or "")


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ([1], "line 2: record seq 2 is missing (found seq 3)"),
        ([1, 2, 3], "line 2: records seq 2 to 4 are missing (found seq 5)"),
        ([0], "line 1: record seq 1 is missing (found seq 2)"),
    ],
)
def test_removed_records(chain: Path, drop: List[int], message: str) -> None:
    write(chain, [line for i, line in enumerate(lines(chain)) if i not in drop])
    assert (verify_file(chain).problem or "").startswith(message)


def test_reordered_records(chain: Path) -> None:
    new = lines(chain)
    new[1], new[2] = new[2], new[1]
    write(chain, new)
    result = verify_file(chain)
    assert result.problem == (
        "line 2: record seq 2 is missing (found seq 3): records were removed or reordered"
    )
    new = lines(chain)
    new[1], new[2] = new[2], new[1]
    new.insert(3, new[1])  # a replayed record
    write(chain, new)
    assert verify_file(chain).problem == (
        "line 4: expected seq 4, found 2: records were duplicated or reordered"
    )


def test_reformatted_record_with_equal_values(chain: Path) -> None:
    """Bytes that parse to the same values are still an edit: the line must be canonical."""
    new = lines(chain)
    new[1] = new[1].replace('"seq":2', '"seq": 2')
    write(chain, new)
    assert verify_file(chain).problem == (
        "line 2: record seq 2 is not in the canonical form it was written in: the line was edited"
    )


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        ("\n", "empty line"),
        ("{oops\n", "not a JSON record"),
        ('{"seq": 3}\n', "not an audit record"),
    ],
)
def test_garbage_lines(chain: Path, garbage: str, message: str) -> None:
    new = lines(chain)
    new.insert(2, garbage)
    write(chain, new)
    result = verify_file(chain)
    assert result.line == 3 and message in (result.problem or "")


def test_truncated_last_record(chain: Path) -> None:
    """A cut-short last line is a write in progress or interrupted: skipped, like cut records."""
    data = chain.read_bytes()
    chain.write_bytes(data[:-20])
    result = verify_file(chain)
    assert result.ok and result.records == 4 and result.skipped == (5,)
    assert "skipped 1 partial record" in str(result) and "(line 5)" in str(result)
    counted = verify_file(chain, expected_count=5)
    assert not counted.ok and "expected at least 5 records, found 4" in (counted.problem or "")
    head, _, tail = data[:-20].rpartition(b"\n")
    chain.write_bytes(head + b"\n[" + tail)  # a last line that is not even the start of one
    assert verify_file(chain).problem == (
        "line 5: incomplete last line, and not the start of a record"
    )


def test_records_cut_off_the_end_need_an_anchor(chain: Path) -> None:
    """Records dropped from the end leave a valid chain; an earlier head or count shows it."""
    head = verify_file(chain).head
    write(chain, lines(chain)[:3])
    assert verify_file(chain).ok
    assert "expected at least 5 records, found 3" in (
        verify_file(chain, expected_count=5).problem or ""
    )
    cut = verify_file(chain, expected_head=head)
    assert not cut.ok and "is not in the file" in (cut.problem or "")
    first_head = json.loads(lines(chain)[0])["hash"]
    assert verify_file(chain, expected_head=first_head).ok  # the file grew since: fine


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["callpyback-finance", *args], capture_output=True, text=True)


def test_console_script_exit_status(chain: Path) -> None:
    ok = run_cli("verify", str(chain))
    assert ok.returncode == 0 and "OK: 5 records" in ok.stdout
    new = lines(chain)
    del new[3]
    write(chain, new)
    bad = run_cli("verify", str(chain))
    assert bad.returncode == 1
    assert "BROKEN: line 4: record seq 4 is missing (found seq 5)" in bad.stderr
    missing = run_cli("verify", str(chain.with_name("nope.jsonl")))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    assert run_cli("verify", str(chain), "--count", "5").returncode == 1


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=8),
    data=st.data(),
)
def test_any_single_edit_is_reported_at_its_line(count: int, data: st.DataObject) -> None:
    """Property: changing one character of any record is reported at exactly that line."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trail.jsonl"
        writer = AuditTrail(path, durability="flush")
        for i in range(count):
            writer.append({"amounts": {"amount": str(i)}, "memo": "x" * i, "duration": i / 4})
        writer.close()
        original = lines(path)
        line = data.draw(st.integers(min_value=0, max_value=count - 1), label="line")
        text = original[line].rstrip("\n")
        at = data.draw(st.integers(min_value=0, max_value=len(text) - 1), label="at")
        char = data.draw(st.characters(min_codepoint=32, max_codepoint=126), label="char")
        assume(char != text[at])
        edited = list(original)
        edited[line] = text[:at] + char + text[at + 1 :] + "\n"
        write(path, edited)
        result = verify_file(path)
        assert not result.ok
        assert result.line == line + 1, (result.problem, edited[line])


@settings(max_examples=40, deadline=None)
@given(count=st.integers(min_value=2, max_value=8), data=st.data())
def test_any_removal_or_swap_is_reported(count: int, data: st.DataObject) -> None:
    """Property: removing a record (not the last) or swapping two is reported where it starts."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trail.jsonl"
        writer = AuditTrail(path, durability="flush")
        for i in range(count):
            writer.append({"n": i})
        writer.close()
        original = lines(path)
        first = data.draw(st.integers(min_value=0, max_value=count - 2), label="first")
        if data.draw(st.booleans(), label="swap"):
            second = data.draw(st.integers(min_value=first + 1, max_value=count - 1))
            edited = list(original)
            edited[first], edited[second] = edited[second], edited[first]
        else:
            edited = original[:first] + original[first + 1 :]
        write(path, edited)
        result = verify_file(path)
        assert not result.ok and result.line == first + 1, result.problem
