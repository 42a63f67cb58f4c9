"""Paths as a shell gives them (``notes/shopping.md``, ``/srv/notes/a.md``), placed in the
source whose folder holds them, as that source's own path.

A person types the path of a file relative to where they stand, or absolute; a source names
its paths relative to its folder (``shopping.md``; ``1:shopping.md`` in the second root of a
folder source with several). :func:`place` turns the first into the second, lexically (``..``
folded as the shell user reads it) with the folders above the file resolved, as the sources'
own roots are; the file itself is never followed, so a link in the folder stays the link the
source skips.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from blocksync.errors import UsageError

__all__ = ["Folder", "describe", "place"]


@dataclass(frozen=True)
class Folder:
    """A folder whose files are paths of ``source``: a folder source's root (``prefix``
    ``"1:"`` for its second of several) or the ``dir`` granted to a plugin."""

    source: str
    root: Path  # absolute and resolved
    prefix: str = ""


def place(path: str, cwd: Path, folders: Sequence[Folder]) -> tuple[str, str] | None:
    """``(source, source path)`` of ``path`` as a shell gives it (relative to ``cwd``, or
    absolute), or None if it lies in none of ``folders``. The folder itself is no path of
    its source: a :class:`UsageError` saying to name the source instead."""
    given = Path(path)
    full = Path(os.path.normpath(given if given.is_absolute() else cwd / given))
    real = full.parent.resolve() / full.name if full.name else full.resolve()
    holding = [f for f in folders if real.is_relative_to(f.root)]
    if not holding:
        return None
    # the innermost: one source's folder may lie inside another's
    folder = max(holding, key=lambda f: len(f.root.parts))
    if real == folder.root:
        raise UsageError(
            f"{path!r} is the folder of source {folder.source!r}, not a file in it: "
            f"give --source {folder.source} to reconcile all of it"
        )
    return folder.source, folder.prefix + real.relative_to(folder.root).as_posix()


def describe(folders: Sequence[Folder]) -> str:
    """The folders of the sources, for an error message: ``notes (/home/a/notes)``."""
    if not folders:
        return "no source has a folder"
    return "the sources' folders are " + ", ".join(f"{f.source} ({f.root})" for f in folders)
