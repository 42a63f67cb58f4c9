"""merge3 against the real ``git merge-file``: clean exactly when git is clean, to the same bytes,
with git's conflict count, above all on repetitive text (few distinct lines, long runs of one
line), where which copy of a line an edit touches decides whether two edits overlap."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocksync.store import merge
from blocksync.store.merge import MergeResult, merge3

from .conftest import examples

# no NUL: git merge-file calls such files binary and refuses them
FEW = st.sampled_from(["a", "b", "", "x\r", "=======", "é", "\ud800"])
NASTY = st.sampled_from(
    [
        "",
        "a",
        "b",
        "x\r",
        "<<<<<<< ours",
        "=======",
        ">>>>>>> theirs",
        "é",
        " ",
        "\ud800",
        "same",
        "{",
        "}",
    ]
)
PROPERTY = settings(max_examples=examples(200), deadline=None)


def git_merge_file(base: str, ours: str, theirs: str) -> tuple[int, bytes]:
    """``git merge-file -p ours base theirs``: exit code (conflicts, at most 127) and output."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, text in (("base", base), ("ours", ours), ("theirs", theirs)):
            (folder / name).write_bytes(text.encode("utf-8", "surrogatepass"))
        git = subprocess.run(
            ["git", "merge-file", "-p", "ours", "base", "theirs"],
            cwd=folder,
            capture_output=True,
            check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": tmp, "GIT_CONFIG_NOSYSTEM": "1"},
        )
    assert git.returncode >= 0, git.stderr
    return git.returncode, git.stdout


def assert_agrees_with_git(base: str, ours: str, theirs: str) -> MergeResult:
    result = merge3(base, ours, theirs)
    code, output = git_merge_file(base, ours, theirs)
    assert (result.clean, min(result.conflicts, 127)) == (code == 0, code), (result, output)
    if result.clean:
        assert result.text is not None
        assert result.text.encode("utf-8", "surrogatepass") == output
    return result


def text(lines: list[str], final_newline: bool) -> str:
    body = "\n".join(lines)
    return body + "\n" if lines and final_newline else body


@st.composite
def runs(draw: st.DrawFn) -> list[str]:
    """A repetitive file: a few runs, each of one line repeated up to 40 times."""
    out: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        out += [draw(FEW)] * draw(st.integers(1, 40))
    return out


@st.composite
def edited(draw: st.DrawFn, base: list[str], lines: st.SearchStrategy[str]) -> list[str]:
    """A few replacements, insertions and deletions, at the start, the end or anywhere."""
    out = list(base)
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["start", "end", "anywhere"]))
        i = {"start": 0, "end": len(out)}.get(where) or draw(st.integers(0, len(out)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        new = draw(st.lists(lines, min_size=1, max_size=3))
        if kind == "insert" or not out:
            out[i:i] = new
        else:
            i = min(i, len(out) - 1)
            span = draw(st.integers(1, 3))
            out[i : i + span] = new if kind == "replace" else []
    return out


@st.composite
def triples(
    draw: st.DrawFn, base_lines: st.SearchStrategy[list[str]], lines: st.SearchStrategy[str]
) -> tuple[str, str, str]:
    base = draw(base_lines)
    ours, theirs = draw(edited(base, lines)), draw(edited(base, lines))
    return (
        text(base, draw(st.booleans())),
        text(ours, draw(st.booleans())),
        text(theirs, draw(st.booleans())),
    )


@PROPERTY
@given(triples(runs(), FEW))
def test_repetitive_text_merges_as_git_merges_it(t: tuple[str, str, str]) -> None:
    assert_agrees_with_git(*t)


@PROPERTY
@given(triples(st.lists(NASTY, max_size=30), NASTY))
def test_few_distinct_lines_merge_as_git_merges_them(t: tuple[str, str, str]) -> None:
    assert_agrees_with_git(*t)


@PROPERTY
@given(triples(st.lists(st.text(max_size=4), max_size=20), st.text(max_size=4)))
def test_random_text_merges_as_git_merges_it(t: tuple[str, str, str]) -> None:
    if "\x00" in "".join(t):
        return  # git refuses NUL as binary
    assert_agrees_with_git(*t)


@PROPERTY
@given(
    st.lists(FEW, max_size=30),
    st.lists(FEW, max_size=30),
    st.lists(FEW, max_size=30),
    st.booleans(),
)
def test_unrelated_texts_merge_as_git_merges_them(
    base: list[str], ours: list[str], theirs: list[str], newline: bool
) -> None:
    assert_agrees_with_git(text(base, newline), text(ours, newline), text(theirs, not newline))


@pytest.mark.parametrize("n", [3, 5, 100, 5000])
def test_first_and_last_line_of_identical_lines_merge_cleanly(n: int) -> None:
    """The reported case: disjoint edits at both ends of a file of identical lines."""
    base = "same\n" * n
    ours = "FIRST\n" + "same\n" * (n - 1)
    theirs = "same\n" * (n - 1) + "LAST\n"
    result = assert_agrees_with_git(base, ours, theirs)
    assert result.text == "FIRST\n" + "same\n" * (n - 2) + "LAST\n"


@pytest.mark.parametrize(
    "base, ours, theirs",
    [
        ("", "", ""),
        ("", "a\n", ""),
        ("", "a\n", "b\n"),
        ("", "a\n", "a\n"),
        ("a\n", "", "a\n"),
        ("a\n", "", "b\n"),
        ("a\r\nb\r\nc\r\nd\r\n", "A\r\nb\r\nc\r\nd\r\n", "a\r\nb\r\nc\r\nD\r\n"),
        ("a\r\nb\r\n", "a\nb\r\n", "a\r\nb\n"),
        ("a\r\nb\r\n", "a\nb\r\n", "a\r\nb\r\nc"),
        ("x\n", "<<<<<<< ours\nx\n", "x\n>>>>>>> theirs\n"),
        ("=======\n=======\n", "<<<<<<<\n=======\n=======\n", "=======\n=======\n>>>>>>>\n"),
        ("=======\n", "<<<<<<<\n", ">>>>>>>\n"),
        ("a", "a\nb", "a"),
        ("a", "b", "a\n"),
        ("a\nb", "a\nb\n", "A\nb"),
        ("a\nb\nc\nd\ne\nf\n", "1\nb\nc\nd\ne\n2\n", "3\nb\nc\nd\ne\n4\n"),  # two conflicts
        ("a\nb\nc\nd\ne\nf\n", "1\nb\n-\n-\ne\n2\n", "3\nb\n+\n+\ne\n4\n"),  # joined by git
    ],
)
def test_edge_cases_merge_as_git_merges_them(base: str, ours: str, theirs: str) -> None:
    assert_agrees_with_git(base, ours, theirs)


def test_conflicts_still_conflict_and_identical_edits_merge() -> None:
    base = "same\n" * 10
    assert not assert_agrees_with_git(base, "X\n" + base[5:], "Y\n" + base[5:]).clean
    same = "same\n" * 4 + "new\n" + "same\n" * 6
    assert assert_agrees_with_git(base, same, same).text == same


def test_past_its_budget_a_merge_is_one_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge too costly to search (here: a budget of 50 steps) loses nothing: it is reported as
    a conflict, never as a clean merge that git would not make."""
    base = "".join(f"{i % 3}\n" for i in range(60))
    ours = "".join(f"{i % 4}\n" for i in range(60))
    theirs = base + "end\n"
    monkeypatch.setattr(merge, "_WORK_CAP", 50)
    assert merge3(base, ours, theirs) == MergeResult(None, 1)
    monkeypatch.undo()
    assert_agrees_with_git(base, ours, theirs)
