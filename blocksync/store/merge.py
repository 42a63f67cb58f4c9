"""Three-way line merge (pure, no I/O): git's own ``git merge-file``, ported.

A merge is clean exactly when ``git merge-file`` (git 2.39, default options: Myers diff, zealous
conflict refinement, "merge" style) merges cleanly, and then gives the same bytes; its conflict
count is git's too (git's exit code, which git caps at 127). Any region both sides changed
differently is a conflict, adjacent edits included; identical changes on both sides merge.
diff-match-patch's fuzzy ``patch_apply`` is never used to decide a merge: it reports success
while silently dropping an edit or splicing ``red``/``green`` into ``gbluen``.

Agreeing with git is more than agreeing on which lines changed: in a file of repeated lines,
which copy of a line an edit touches decides whether two edits overlap. So both diffs come from
``blocksync.shared.linediff.myers`` (xdiff's algorithm and heuristics, change compaction included) and
the merge below follows ``xdiff/xmerge.c`` (``xdl_merge`` at ``XDL_MERGE_ZEALOUS_ALNUM``).

Lines split on "\\n" only (CR is content); text without a final newline and text that is not
UTF-8 (lone surrogates, via ``surrogatepass``) merge as the same bytes would in git.

Cost: two diffs against the base, plus one diff inside each conflict; near-linear when the edits
are few (the common case: unchanged ends and runs are skipped, not walked). The worst case is
about O(N^1.5) line comparisons, for big inputs whose many scattered edits sit among repeated
lines (two unrelated 40,000-line texts of 400 distinct lines: ~50 million, 13 s here). The search
is therefore capped (``_WORK_*``: 400 comparisons per input line, at most 40 million): past that
the merge stops and reports one conflict rather than run on. The path then needs resolution,
which loses nothing, though git might have merged it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from blocksync.shared.linediff import Budget, Change, myers

#: the search budget, in line comparisons (a few million a second here): far more than edits of
#: real text need (a 10,000-line file half rewritten on one side takes ~3 million)
_WORK_PER_LINE = 400
_WORK_FLOOR = 2_000_000
_WORK_CAP = 40_000_000

#: xmerge.c's modes: a conflict, one side's change, or a conflict refined into identical changes
_CONFLICT, _OURS, _THEIRS, _SAME = 0, 1, 2, 4
#: git's isalnum: ASCII letters and digits only, whatever the locale
_ALNUM = re.compile(rb"[A-Za-z0-9]")


@dataclass(frozen=True)
class MergeResult:
    text: str | None  # the merged text when clean, else None
    conflicts: int  # regions both sides changed differently (git merge-file's count)

    @property
    def clean(self) -> bool:
        return self.conflicts == 0


def lines(text: str) -> list[bytes]:
    """Split on "\\n" only, keeping it: CR and other breaks are content, as git sees them."""
    parts = [part + b"\n" for part in text.encode("utf-8", "surrogatepass").split(b"\n")]
    parts[-1] = parts[-1][:-1]
    return parts if parts[-1] else parts[:-1]


def merge3(base: str, ours: str, theirs: str) -> MergeResult:
    """Merge ``ours`` and ``theirs``, two edits of ``base``, line by line, as git would."""
    if ours in (base, theirs):  # git's answer without diffing: theirs (so no budget to spend)
        return MergeResult(theirs, 0)
    if theirs == base:
        return MergeResult(ours, 0)
    orig, side1, side2 = lines(base), lines(ours), lines(theirs)
    size = len(orig) + len(side1) + len(side2)
    budget = Budget(min(_WORK_CAP, _WORK_FLOOR + _WORK_PER_LINE * size))
    ours_script = myers(orig, side1, budget)
    theirs_script = myers(orig, side2, budget)
    if budget.spent:
        return MergeResult(None, 1)
    regions = _regions(ours_script, theirs_script, side1, side2, len(orig))
    regions = _refine(regions, side1, side2, budget)
    if budget.spent:
        return MergeResult(None, 1)
    conflicts = _simplified_count(regions, side1)
    if conflicts:
        return MergeResult(None, conflicts)
    return MergeResult(_fill(regions, side1, side2).decode("utf-8", "surrogatepass"), 0)


@dataclass
class _Region:
    """xdmerge_t: base lines [i0, i0+chg0) became side 1's [i1, i1+chg1) and side 2's [i2, ...)."""

    mode: int
    i0: int
    chg0: int
    i1: int
    chg1: int
    i2: int
    chg2: int


def _append(
    regions: list[_Region], mode: int, i0: int, chg0: int, i1: int, chg1: int, i2: int, chg2: int
) -> None:
    """xdl_append_merge: a change touching or overlapping the previous one joins it; if their
    modes differ, the joined region is a conflict."""
    last = regions[-1] if regions else None
    if last and (i1 <= last.i1 + last.chg1 or i2 <= last.i2 + last.chg2):
        if mode != last.mode:
            last.mode = _CONFLICT
        last.chg0 = i0 + chg0 - last.i0
        last.chg1 = i1 + chg1 - last.i1
        last.chg2 = i2 + chg2 - last.i2
    else:
        regions.append(_Region(mode, i0, chg0, i1, chg1, i2, chg2))


def _regions(
    xscr1: list[Change], xscr2: list[Change], side1: list[bytes], side2: list[bytes], n0: int
) -> list[_Region]:
    """xdl_do_merge's walk over both scripts (base coordinates in ``i1``, side in ``i2``)."""
    regions: list[_Region] = []
    a = b = 0
    while a < len(xscr1) and b < len(xscr2):
        x1, x2 = xscr1[a], xscr2[b]
        if x1.i1 + x1.chg1 < x2.i1:
            _append(regions, _OURS, x1.i1, x1.chg1, x1.i2, x1.chg2, x2.i2 - x2.i1 + x1.i1, x1.chg1)
            a += 1
            continue
        if x2.i1 + x2.chg1 < x1.i1:
            _append(
                regions, _THEIRS, x2.i1, x2.chg1, x1.i2 - x1.i1 + x2.i1, x2.chg1, x2.i2, x2.chg2
            )
            b += 1
            continue
        if (
            x1.i1 != x2.i1
            or x1.chg1 != x2.chg1
            or x1.chg2 != x2.chg2
            or side1[x1.i2 : x1.i2 + x1.chg2] != side2[x2.i2 : x2.i2 + x2.chg2]
        ):
            _append_conflict(regions, x1, x2)
        end1 = x1.i1 + x1.chg1
        end2 = x2.i1 + x2.chg1
        if end1 >= end2:
            b += 1
        if end2 >= end1:
            a += 1
    for x1 in xscr1[a:]:
        _append(regions, _OURS, x1.i1, x1.chg1, x1.i2, x1.chg2, x1.i1 + len(side2) - n0, x1.chg1)
    for x2 in xscr2[b:]:
        _append(regions, _THEIRS, x2.i1, x2.chg1, x2.i1 + len(side1) - n0, x2.chg1, x2.i2, x2.chg2)
    return regions


def _append_conflict(regions: list[_Region], x1: Change, x2: Change) -> None:
    """The region spanning two overlapping changes, in all three files' coordinates."""
    off = x1.i1 - x2.i1
    ffo = off + x1.chg1 - x2.chg1
    i0, i1, i2 = x1.i1, x1.i2, x2.i2
    if off > 0:
        i0 -= off
        i1 -= off
    else:
        i2 += off
    chg0 = x1.i1 + x1.chg1 - i0
    chg1 = x1.i2 + x1.chg2 - i1
    chg2 = x2.i2 + x2.chg2 - i2
    if ffo < 0:
        chg0 -= ffo
        chg1 -= ffo
    else:
        chg2 += ffo
    _append(regions, _CONFLICT, i0, chg0, i1, chg1, i2, chg2)


def _refine(
    regions: list[_Region], side1: list[bytes], side2: list[bytes], budget: Budget
) -> list[_Region]:
    """xdl_refine_conflicts: diff the two sides of each conflict; only the lines that differ
    stay conflicts (each hunk its own), and sides that turn out equal are no conflict at all."""
    refined: list[_Region] = []
    for m in regions:
        if m.mode != _CONFLICT or m.chg1 == 0 or m.chg2 == 0:
            refined.append(m)
            continue
        script = myers(side1[m.i1 : m.i1 + m.chg1], side2[m.i2 : m.i2 + m.chg2], budget)
        if not script:
            m.mode = _SAME
            refined.append(m)
            continue
        for x in script:
            refined.append(
                _Region(_CONFLICT, m.i0, m.chg0, m.i1 + x.i1, x.chg1, m.i2 + x.i2, x.chg2)
            )
    return refined


def _simplified_count(regions: list[_Region], side1: list[bytes]) -> int:
    """How many conflicts git reports: xdl_simplify_non_conflicts joins a conflict to the one
    right before it when at most 3 lines, or only lines without a letter or digit, separate them."""
    count = 0
    previous: _Region | None = None
    for m in regions:
        if m.mode == _CONFLICT:
            joins = False
            if previous is not None and previous.mode == _CONFLICT:
                gap = side1[previous.i1 + previous.chg1 : m.i1]
                joins = len(gap) <= 3 or not any(_ALNUM.search(line) for line in gap)
            count += not joins
        previous = m
    return count


def _fill(regions: list[_Region], side1: list[bytes], side2: list[bytes]) -> bytes:
    """xdl_fill_merge_buffer for a clean merge: side 1 between the changes, each change's side."""
    out: list[bytes] = []
    i = 0
    for m in regions:
        if m.mode == _SAME:
            continue  # both sides made it: side 1's copy is output with the unchanged lines
        out += side1[i : m.i1]
        out += side1[m.i1 : m.i1 + m.chg1] if m.mode == _OURS else side2[m.i2 : m.i2 + m.chg2]
        i = m.i1 + m.chg1
    out += side1[i:]
    return b"".join(out)
