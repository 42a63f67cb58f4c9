"""The data-block conformance suite: the reconcile truth table as scenarios, written once against
a small adapter and run against every file-like data-block source (CONVENTIONS.md item 7, after
dulwich's ``ObjectStoreTests``).

A test module subclasses :class:`FileSourceConformance` and provides a ``source`` fixture
returning a :class:`SourceAdapter`: make and edit files, edit blocks through the store, run
reconcile for some paths (or all), read a file, a block and a base. ``tests/test_conformance.py``
runs it for the native :class:`~blocksync.filesource.FileSource` and for the ``files`` WASM
plugin; ``blocksync plugin check`` can point it at any other plugin with such an adapter.

Every source under test is configured with permission ``admin`` for ``**`` (deletions carry
over) and owns its blocks as agent ``alice``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from blocksync.blocks import BlockStore
from blocksync.errors import BlockNotFound
from blocksync.sources import NeedsResolution, NoChange, ReconcileResult, Resolved

OWNER = "alice"


class SourceAdapter(ABC):
    """One file-like data-block source under test, with its folder and its block store."""

    root: Path
    blocks: BlockStore

    @abstractmethod
    def label(self, path: str) -> str:
        """The block label the source gives the file ``path``."""

    @abstractmethod
    def reconcile(self, paths: list[str] | None) -> list[ReconcileResult]:
        """Reconcile ``paths``; None: every candidate (bound paths and files on disk)."""

    @abstractmethod
    def base(self, path: str) -> str | None:
        """The path's sync base; None if it has none."""

    # -- shared helpers ----------------------------------------------------------------------

    def write_file(self, path: str, text: str) -> None:
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(text.encode("utf-8"))

    def read_file(self, path: str) -> str | None:
        file = self.root / path
        return file.read_bytes().decode("utf-8") if file.exists() else None

    def delete_file(self, path: str) -> None:
        (self.root / path).unlink()

    def block(self, path: str) -> str | None:
        try:
            return self.blocks.read(OWNER, self.label(path)).content
        except BlockNotFound:
            return None

    def edit_block(self, path: str, text: str) -> None:
        self.blocks.update(OWNER, self.label(path), text, author="agent:alice")

    def delete_block(self, path: str) -> None:
        self.blocks.delete(OWNER, self.label(path), author="agent:alice")

    def synced(self, path: str, text: str) -> None:
        """A file, its block and its base all holding ``text``."""
        self.write_file(path, text)
        assert self.reconcile([path]) == [Resolved(path, "disk->agent")]
        assert (self.block(path), self.base(path)) == (text, text)


def _sorted(results: list[ReconcileResult]) -> list[ReconcileResult]:
    return sorted(results, key=lambda r: r.path)


class FileSourceConformance:
    """The truth table (DESIGN.md, "Reconcile semantics") as scenarios. Subclasses provide the
    ``source`` fixture."""

    def test_new_file_becomes_a_block(self, source: SourceAdapter) -> None:
        source.write_file("a.md", "one\n")
        source.write_file("sub/b.md", "two\n")
        assert _sorted(source.reconcile(None)) == [
            Resolved("a.md", "disk->agent"), Resolved("sub/b.md", "disk->agent"),
        ]
        assert source.block("a.md") == "one\n" and source.block("sub/b.md") == "two\n"
        assert source.base("a.md") == "one\n" and source.base("sub/b.md") == "two\n"

    def test_disk_edit_goes_to_the_block(self, source: SourceAdapter) -> None:
        source.synced("a.md", "one\n")
        source.write_file("a.md", "two\n")
        assert source.reconcile(["a.md"]) == [Resolved("a.md", "disk->agent")]
        assert (source.block("a.md"), source.base("a.md")) == ("two\n", "two\n")

    def test_block_edit_goes_to_the_file(self, source: SourceAdapter) -> None:
        source.synced("a.md", "one\n")
        source.edit_block("a.md", "agent\n")
        assert source.reconcile(["a.md"]) == [Resolved("a.md", "agent->disk")]
        assert (source.read_file("a.md"), source.base("a.md")) == ("agent\n", "agent\n")
        leftovers = [p.name for p in source.root.iterdir() if p.name.endswith(".tmp")]
        assert leftovers == []  # the temp file was renamed into place

    def test_disjoint_edits_are_merged(self, source: SourceAdapter) -> None:
        source.synced("a.md", "a\nb\nc\n")
        source.write_file("a.md", "A\nb\nc\n")
        source.edit_block("a.md", "a\nb\nC\n")
        assert source.reconcile(["a.md"]) == [Resolved("a.md", "merged")]
        merged = "A\nb\nC\n"
        assert (source.read_file("a.md"), source.block("a.md"), source.base("a.md")) == (
            merged, merged, merged,
        )

    def test_overlapping_edits_need_resolution_and_change_nothing(
        self, source: SourceAdapter
    ) -> None:
        source.synced("a.md", "a\nb\nc\n")
        source.write_file("a.md", "X\nb\nc\n")
        source.edit_block("a.md", "Y\nb\nc\n")
        head = source.blocks.head()
        assert source.reconcile(["a.md"]) == [NeedsResolution("a.md", "X\nb\nc\n", "Y\nb\nc\n")]
        assert source.read_file("a.md") == "X\nb\nc\n"
        assert source.block("a.md") == "Y\nb\nc\n"
        assert source.base("a.md") == "a\nb\nc\n"
        assert source.blocks.head() == head
        # and again: still a conflict, still nothing changed
        assert source.reconcile(["a.md"]) == [NeedsResolution("a.md", "X\nb\nc\n", "Y\nb\nc\n")]

    def test_identical_edits_only_advance_the_base(self, source: SourceAdapter) -> None:
        source.synced("a.md", "one\n")
        source.write_file("a.md", "same\n")
        source.edit_block("a.md", "same\n")
        head = source.blocks.head()
        assert source.reconcile(["a.md"]) == [Resolved("a.md", "identical")]
        assert source.base("a.md") == "same\n" and source.blocks.head() == head

    def test_no_base_and_two_different_contents_is_a_conflict(self, source: SourceAdapter) -> None:
        source.blocks.create(OWNER, source.label("a.md"), "agent\n", author="agent:alice")
        source.write_file("a.md", "disk\n")
        assert source.reconcile(["a.md"]) == [NeedsResolution("a.md", "disk\n", "agent\n")]
        assert source.base("a.md") is None

    def test_deleted_file_deletes_the_block_with_admin(self, source: SourceAdapter) -> None:
        source.synced("a.md", "one\n")
        source.delete_file("a.md")
        assert source.reconcile(["a.md"]) == [Resolved("a.md", "delete-block")]
        assert source.block("a.md") is None and source.base("a.md") is None
        assert source.reconcile(None) == []  # nothing bound, nothing on disk

    def test_deleted_block_deletes_the_file_with_admin(self, source: SourceAdapter) -> None:
        source.synced("a.md", "one\n")
        source.delete_block("a.md")
        assert source.reconcile(["a.md"]) == [Resolved("a.md", "delete-source")]
        assert source.read_file("a.md") is None and source.base("a.md") is None

    def test_delete_versus_modify_is_a_conflict(self, source: SourceAdapter) -> None:
        source.synced("a.md", "one\n")
        source.delete_file("a.md")
        source.edit_block("a.md", "agent\n")
        assert source.reconcile(["a.md"]) == [NeedsResolution("a.md", "", "agent\n")]
        assert source.base("a.md") == "one\n"

    def test_a_second_reconcile_reports_only_no_change(self, source: SourceAdapter) -> None:
        source.write_file("a.md", "one\n")
        source.write_file("b.md", "b\n")
        source.reconcile(None)
        source.write_file("a.md", "disk\n")
        source.edit_block("b.md", "agent\n")
        source.write_file("c.md", "new\n")
        first = source.reconcile(None)
        assert all(not isinstance(r, NoChange) for r in first)
        head = source.blocks.head()
        second = source.reconcile(None)
        assert _sorted(second) == [NoChange("a.md"), NoChange("b.md"), NoChange("c.md")]
        assert source.blocks.head() == head
