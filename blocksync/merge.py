"""Three-way line merge (pure, no I/O): clean only when no change overlaps another.

Built on merge3 through dulwich's merge module. Any region both sides changed differently is a
conflict, adjacent edits included (as ``git merge-file`` does); identical changes on both sides
merge. diff-match-patch's fuzzy ``patch_apply`` is never used to decide a merge: it reports
success while silently dropping an edit or splicing ``red``/``green`` into ``gbluen``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dulwich.merge import make_merge3


@dataclass(frozen=True)
class MergeResult:
    text: str | None  # the merged text when clean, else None
    conflicts: int  # regions both sides changed differently

    @property
    def clean(self) -> bool:
        return self.conflicts == 0


def lines(text: str) -> list[bytes]:
    """Split on "\\n" only, keeping it: CR and other breaks are content, as git sees them."""
    parts = [part + b"\n" for part in text.encode("utf-8", "surrogatepass").split(b"\n")]
    parts[-1] = parts[-1][:-1]
    return parts if parts[-1] else parts[:-1]


def merge3(base: str, ours: str, theirs: str) -> MergeResult:
    """Merge ``ours`` and ``theirs``, two edits of ``base``, line by line."""
    merged: list[bytes] = []
    conflicts = 0
    for group in make_merge3(lines(base), lines(ours), lines(theirs)).merge_groups():
        if group[0] == "conflict":
            conflicts += 1
        else:
            merged.extend(group[1])
    if conflicts:
        return MergeResult(None, conflicts)
    return MergeResult(b"".join(merged).decode("utf-8", "surrogatepass"), 0)
