"""Paths as a shell gives them, placed in the source whose folder holds them (real folders and
links on disk; the function reads no file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocksync.errors import UsageError
from blocksync.sync.shellpaths import Folder, describe, place


@pytest.fixture
def folders(tmp_path: Path) -> list[Folder]:
    for name in ("notes", "notes/inner", "multi/a", "multi/b"):
        (tmp_path / name).mkdir(parents=True)
    root = tmp_path.resolve()
    return [
        Folder("notes", root / "notes"),
        Folder("inner", root / "notes" / "inner"),  # another source's folder inside notes'
        Folder("multi", root / "multi" / "a", "0:"),
        Folder("multi", root / "multi" / "b", "1:"),
    ]


def test_relative_absolute_and_dotted(tmp_path: Path, folders: list[Folder]) -> None:
    assert place("notes/a.md", tmp_path, folders) == ("notes", "a.md")
    assert place(str(tmp_path / "notes" / "sub" / "a.md"), Path("/"), folders) == (
        "notes",
        "sub/a.md",
    )
    assert place("../notes/./x/../a.md", tmp_path / "multi", folders) == ("notes", "a.md")
    assert place("a.md", tmp_path / "notes", folders) == ("notes", "a.md")


def test_the_innermost_folder_and_the_root_prefix(tmp_path: Path, folders: list[Folder]) -> None:
    assert place("notes/inner/a.md", tmp_path, folders) == ("inner", "a.md")
    assert place("multi/b/c/d.md", tmp_path, folders) == ("multi", "1:c/d.md")


def test_folders_above_are_resolved_the_file_is_not(tmp_path: Path, folders: list[Folder]) -> None:
    (tmp_path / "shortcut").symlink_to(tmp_path / "notes")
    assert place("shortcut/a.md", tmp_path, folders) == ("notes", "a.md")
    (tmp_path / "notes" / "link.md").symlink_to("/etc/hosts")
    assert place("notes/link.md", tmp_path, folders) == ("notes", "link.md")  # the link's path


def test_outside_every_folder(tmp_path: Path, folders: list[Folder]) -> None:
    for given in ("/etc/passwd", "../x.md", "notesx/a.md", "multi/c.md"):
        assert place(given, tmp_path, folders) is None, given


def test_a_folder_itself_is_no_file(tmp_path: Path, folders: list[Folder]) -> None:
    with pytest.raises(UsageError, match="--source inner"):
        place("notes/inner/", tmp_path, folders)
    with pytest.raises(UsageError, match="--source notes"):
        place(".", tmp_path / "notes", folders)


def test_describe_names_each_folder(folders: list[Folder]) -> None:
    assert f"inner ({folders[1].root})" in describe(folders)
    assert describe([]) == "no source has a folder"
