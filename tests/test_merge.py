"""Three-way merge: clean only without overlap, never losing an edit; agrees with git merge-file."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from blocksync.store.merge import merge3

from .conftest import examples

# no NUL here: git merge-file calls such files binary and refuses them (tested on its own below)
NASTY = st.sampled_from(
    ["", "x\r", "<<<<<<< ours", "=======", ">>>>>>> theirs", "é", "same", "other", " "]
)


def test_disjoint_edits_merge_cleanly() -> None:
    assert merge3("a\nb\nc\nd\n", "A\nb\nc\nd\n", "a\nb\nc\nD\n").text == "A\nb\nc\nD\n"


def test_overlap_and_adjacent_edits_conflict() -> None:
    assert merge3("a\nb\nc\n", "X\nb\nc\n", "Y\nb\nc\n").conflicts == 1
    assert merge3("a\nb\nc\n", "A\nb\nc\n", "a\nB\nc\n").conflicts == 1


def test_fuzzy_patching_traps_are_conflicts() -> None:
    # diff-match-patch's patch_apply would splice these into "gbluen" and call it a success
    assert not merge3("red\n", "green\n", "blue\n").clean


def test_identical_edits_and_one_sided_edits() -> None:
    assert merge3("a\n", "b\n", "b\n").text == "b\n"
    assert merge3("a\n", "a\n", "c\n").text == "c\n"
    assert merge3("a", "a\nb", "a").text == "a\nb"  # no trailing newline survives


def test_nul_and_crlf_are_ordinary_content() -> None:
    assert merge3("a\x00\nb\n", "A\x00\nb\n", "a\x00\nB\r\n").conflicts == 1
    assert merge3("a\x00\nb\nc\n", "A\x00\nb\nc\n", "a\x00\nb\nC\r\n").text == "A\x00\nb\nC\r\n"


def _edit(base: list[str], side: str, data: st.DataObject) -> list[str]:
    """Replace or insert a few lines; every new line is unique (repeated lines, where the
    alignment decides the merge, are checked against git in tests/test_merge_git.py)."""
    out = list(base)
    for k in range(data.draw(st.integers(0, 3))):
        fresh = f"{data.draw(NASTY)}~{side}{k}"
        i = data.draw(st.integers(0, len(out)))
        if out and i < len(out) and data.draw(st.booleans()):
            out[i] = fresh
        else:
            out.insert(i, fresh)
    return out


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(NASTY, max_size=6), st.data())
def test_clean_merges_agree_with_git_merge_file(base: list[str], data: st.DataObject) -> None:
    base = [f"{line}~{i}" for i, line in enumerate(base)]  # distinct lines
    ours, theirs = _edit(base, "o", data), _edit(base, "t", data)
    texts = ["".join(line + "\n" for line in version) for version in (base, ours, theirs)]
    result = merge3(*texts)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, text in zip(("base", "ours", "theirs"), texts):
            (folder / name).write_bytes(text.encode())
        git = subprocess.run(
            [
                "git",
                "merge-file",
                "-p",
                str(folder / "ours"),
                str(folder / "base"),
                str(folder / "theirs"),
            ],
            capture_output=True,
            check=False,
        )
    assert result.clean == (git.returncode == 0), (texts, result, git.stdout)
    if result.clean:
        assert result.text == git.stdout.decode()
        for side in texts[1:]:  # nothing lost: every line either side added is in the result
            for line in lines_added(texts[0], side):
                assert line in (result.text or "").split("\n")


def lines_added(base: str, side: str) -> set[str]:
    return set(side.split("\n")) - set(base.split("\n"))
