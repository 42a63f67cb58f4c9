"""Diffs of versions stay small on repetitive text, bounded on hostile text, and always apply:
``git apply`` of ``unified_diff(old, new)`` to old gives new."""

from __future__ import annotations

import difflib
import random
import subprocess
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from blocksync.shared import linediff
from blocksync.text import unified_diff

from .conftest import examples

FEW = st.sampled_from(["a", "b", "", "x\r", "-", "+", "@@ -1 +1 @@", "\\ x", "é"])
PROPERTY = settings(max_examples=examples(200), deadline=None)


def git_apply(old: str, diff: str) -> str:
    """Apply a unified diff to ``old`` with the real ``git apply`` (outside any repository)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "f").write_bytes(old.encode())
        (folder / "d.patch").write_bytes(diff.encode())
        git = subprocess.run(
            ["git", "apply", "-p1", "d.patch"],
            cwd=folder,
            capture_output=True,
            check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": tmp, "GIT_CONFIG_NOSYSTEM": "1"},
        )
        assert git.returncode == 0, (git.stderr, diff)
        return (folder / "f").read_bytes().decode()


def assert_round_trip(old: str, new: str) -> str:
    diff = unified_diff(old, new, "a/f", "b/f")
    assert (diff == "") == (old == new)
    if diff:
        assert git_apply(old, diff) == new
    return diff


def apply_script(old: list[str], new: list[str], script: list[linediff.Change]) -> list[str]:
    """Rebuild ``new`` from ``old`` and an edit script, checking that every kept line is equal."""
    out: list[str] = []
    i = 0
    for c in script:
        assert c.chg1 or c.chg2
        assert old[i : c.i1] == new[len(out) : len(out) + c.i1 - i]
        out += old[i : c.i1] + new[c.i2 : c.i2 + c.chg2]
        i = c.i1 + c.chg1
    return out + old[i:]


def versions(lines: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda body, newline: "\n".join(body) + ("\n" if body and newline else ""),
        st.lists(lines, max_size=40),
        st.booleans(),
    )


@st.composite
def runs(draw: st.DrawFn) -> str:
    body: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        body += [draw(FEW)] * draw(st.integers(1, 60))
    return "\n".join(body) + draw(st.sampled_from(["", "\n"]))


def test_a_one_line_change_among_500000_identical_lines_is_one_small_hunk() -> None:
    old = "same\n" * 500_000
    new = "same\n" * 250_000 + "changed\n" + "same\n" * 249_999
    assert unified_diff(old, new, "a", "b") == (
        "--- a\n+++ b\n@@ -249998,7 +249998,7 @@\n"
        + " same\n" * 3
        + "-same\n+changed\n"
        + " same\n" * 3
    )


def test_an_insertion_into_identical_lines_is_one_small_hunk() -> None:
    old = "same\n" * 200_000
    diff = unified_diff(old, "same\n" * 100_000 + "new\n" + "same\n" * 100_000, "a", "b")
    assert len(diff.splitlines()) == 10 and diff.count("\n+new\n") == 1


def test_the_format_is_difflib_format() -> None:
    assert unified_diff("a\nb\nc\n", "a\nB\nc\nd", "x@1", "x@2") == (
        "--- x@1\n+++ x@2\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n\\ No newline at end of file\n"
    )
    assert unified_diff("", "a\n", "x", "y") == "--- x\n+++ y\n@@ -0,0 +1 @@\n+a\n"
    assert unified_diff("a\n", "", "x", "y") == "--- x\n+++ y\n@@ -1 +0,0 @@\n-a\n"
    assert unified_diff("a\n", "a\n", "x", "y") == unified_diff("", "", "x", "y") == ""


@PROPERTY
@given(
    st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=6), unique=True, max_size=30),
    st.data(),
)
def test_one_edited_region_reads_as_difflib_prints_it(
    lines: list[str], data: st.DataObject
) -> None:
    """With distinct lines and one edited region the alignment is unique, so the whole output,
    hunk headers and context included, must be difflib's."""
    i = data.draw(st.integers(0, len(lines)))
    j = data.draw(st.integers(i, len(lines)))
    new = lines[:i] + data.draw(st.lists(st.sampled_from(["X", "Y", "Z"]), unique=True)) + lines[j:]
    context = data.draw(st.integers(0, 4))
    old_text, new_text = ("".join(line + "\n" for line in v) for v in (lines, new))
    want = "".join(
        difflib.unified_diff(
            old_text.splitlines(True), new_text.splitlines(True), "o", "n", n=context
        )
    )
    assert unified_diff(old_text, new_text, "o", "n", context) == want


@PROPERTY
@given(runs(), runs())
def test_repetitive_diffs_apply_with_git_apply(old: str, new: str) -> None:
    assert_round_trip(old, new)


@PROPERTY
@given(versions(FEW), versions(FEW))
def test_diffs_of_few_distinct_lines_apply_with_git_apply(old: str, new: str) -> None:
    assert_round_trip(old, new)


@PROPERTY
@given(
    versions(
        st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\x00"), max_size=5
        )
    ),
    st.data(),
)
def test_diffs_of_random_edits_apply_with_git_apply(old: str, data: st.DataObject) -> None:
    lines = old.split("\n")
    i = data.draw(st.integers(0, len(lines)))
    new = data.draw(st.lists(st.sampled_from(["new", "", "\r"])))
    lines[i : i + data.draw(st.integers(0, 3))] = new
    assert_round_trip(old, "\n".join(lines))


@PROPERTY
@given(
    st.lists(FEW, max_size=60),
    st.lists(FEW, max_size=60),
    st.integers(0, 200),
    st.sampled_from([linediff.myers, linediff.histogram]),
)
def test_any_budget_gives_a_correct_edit_script(
    old: list[str], new: list[str], steps: int, algorithm: object
) -> None:
    """Past the budget the rest is one coarse replacement each: still exactly old -> new."""
    assert callable(algorithm)
    budget = linediff.Budget(steps)
    script = algorithm(old, new, budget)
    assert apply_script(old, new, script) == new
    if not budget.spent:  # finished within the budget: the same answer as without one
        assert script == algorithm(old, new)


def test_a_hostile_diff_stays_bounded_and_still_applies() -> None:
    """Two unrelated 40,000-line texts of 400 repeated lines: a full search takes ~50 million
    steps (13 s); past the budget the rest is one replacement, and the diff still applies."""
    rng = random.Random(0)
    old, new = ("".join(f"{rng.randrange(400)}\n" for _ in range(40_000)) for _ in range(2))
    diff = assert_round_trip(old, new)
    assert len(diff.splitlines()) <= 3 + 80_000
