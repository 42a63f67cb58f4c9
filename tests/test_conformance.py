"""The conformance suite (blocksync.testing) run against both file sources: the native
:class:`~blocksync.sync.folder.source.FileSource`, and the ``files`` WASM plugin (fixtures/plugins/files,
built with componentize-py, configured in blocksync.toml with a granted read-write folder) both
called directly through its :class:`~blocksync.plugins.WasmDataBlock` bridge and driven as the
reconciler drives it (:class:`~blocksync.plugins.PluginSource`); and ``check_plugin`` (what
``blocksync plugin check`` runs) on the files plugin and on a plugin that breaks the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

import blocksync
from blocksync.errors import PluginCallFailed, UsageError
from blocksync.plugins import WasmDataBlock
from blocksync.shared.wit import PermissionLevel, PermissionRule
from blocksync.store.bases import SyncBases
from blocksync.store.gitstore import GitStore
from blocksync.sync.folder.config import FileSourceSpec
from blocksync.sync.folder.source import FileSource
from blocksync.sync.protocol import ReconcileResult
from blocksync.testing import (
    CASES,
    OWNER,
    Case,
    FolderOutside,
    JsonFileOutside,
    Subject,
    check_plugin,
)

from .conftest import assert_git_fsck
from .plugin_builds import built_plugin
from .stores import HOST_CACHE, make_store

KEY = "notes"


class NativeSubject(Subject):
    def __init__(self, ws: blocksync.Workspace, root: Path) -> None:
        self.outside = FolderOutside(root)
        self.blocks = ws.blocks
        spec = FileSourceSpec(
            key=KEY,
            agent=OWNER,
            name="notes",
            paths=(root,),
            permission_rules=(PermissionRule("**", PermissionLevel.ADMIN),),
        )
        self.source = FileSource(spec, ws.blocks)

    def label(self, path: str) -> str:
        return self.source.target(path).label

    def reconcile(self, paths: list[str] | None) -> list[ReconcileResult]:
        return self.source.reconcile_outcome(paths).results

    def base(self, path: str) -> str | None:
        found = self.source.bases.get(path)
        return None if found is None else found[1]

    def close(self) -> None:
        self.source.close()


class BridgeSubject(Subject):
    """The files plugin called directly: each host write its own commit (no batch)."""

    def __init__(self, ws: blocksync.Workspace, root: Path) -> None:
        self.outside = FolderOutside(root)
        self.blocks = ws.blocks
        self.plugin: WasmDataBlock = ws.plugins.data_block(KEY)
        self._git = GitStore(ws.repo_path)
        self.bases = SyncBases(self._git, KEY)

    def label(self, path: str) -> str:
        return f"file:{KEY}:{path}"

    def reconcile(self, paths: list[str] | None) -> list[ReconcileResult]:
        return self.plugin.reconcile([] if paths is None else paths)

    def base(self, path: str) -> str | None:
        found = self.bases.get(path)
        return None if found is None else found[1]

    def close(self) -> None:
        self._git.close()


class ReconcilerSubject(BridgeSubject):
    """The files plugin as the reconciler drives it: PluginSource, one batch of writes a call."""

    def reconcile(self, paths: list[str] | None) -> list[ReconcileResult]:
        return self.ws_source.reconcile_outcome(paths).results

    def __init__(self, ws: blocksync.Workspace, root: Path) -> None:
        super().__init__(ws, root)
        self.ws_source = ws.reconciler.source(KEY)


@pytest.fixture(scope="module")
def files_wasm() -> Path:
    return built_plugin("files")


def plugin_store(tmp_path: Path, files_wasm: Path) -> tuple[Path, Path]:
    root = tmp_path / "notes"
    root.mkdir()
    store = make_store(
        tmp_path / "store",
        {
            KEY: {
                "path": files_wasm,
                "dir": root,
                "dir_mode": "read-write",
                "config": {"owner": OWNER, "tag": KEY, "permission": "admin"},
            },
        },
    )
    return store, root


CASE_IDS = [case.name for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_native_file_source(case: Case, tmp_path: Path) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    with blocksync.init(tmp_path / "store", author="human:test") as ws:
        subject = NativeSubject(ws, root)
        case.run(subject)
        subject.close()
        assert ws.fsck().ok
    assert_git_fsck(tmp_path / "store" / "repo")


@pytest.mark.parametrize("driven", [BridgeSubject, ReconcilerSubject], ids=["bridge", "reconciler"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_files_plugin(
    case: Case, driven: type[BridgeSubject], tmp_path: Path, files_wasm: Path
) -> None:
    store, root = plugin_store(tmp_path, files_wasm)
    with blocksync.open(store, author="human:test") as ws:
        subject = driven(ws, root)
        case.run(subject)
        subject.close()
        assert ws.fsck().ok
    assert_git_fsck(store / "repo")


def test_check_plugin_passes_the_files_plugin(files_wasm: Path) -> None:
    report = check_plugin(files_wasm, cache_folder=HOST_CACHE)
    assert report.outside == "folder" and report.level == "sync"
    assert [(r.name, r.passed, r.detail) for r in report.results] == [
        (name, True, "") for name in CASE_IDS
    ]
    assert report.ok and report.to_json()["ok"] is True


def test_check_plugin_passes_a_plugin_keeping_every_path_in_one_json_file() -> None:
    """fixtures/plugins/json_notes keeps all paths in /data/notes.json: the suite reaches its
    outside side in the shape the table declares, and finds blocks by its label namespace."""
    wasm = built_plugin("json_notes")
    table = {"config": {"owner": OWNER, "permission": "admin"}, "outside": "json:notes.json"}
    report = check_plugin(wasm, table, cache_folder=HOST_CACHE)
    assert report.outside == "json notes.json" and report.level == "sync"
    assert [(r.name, r.detail) for r in report.results if not r.passed] == []
    # a file per path is not its shape: each case fails saying what it did, expected and got
    wrong = check_plugin(wasm, cache_folder=HOST_CACHE)
    first = next(r for r in wrong.results if r.name == "new_file_becomes_a_block")
    assert not first.passed and "expected [" in first.detail and ", got [" in first.detail
    assert "the suite did:\n  1. wrote 'a.md' outside as 'one\\n'" in first.detail
    assert "reconciled every path: []" in first.detail


def test_check_plugin_passes_a_seed_only_plugin_at_the_seed_level() -> None:
    """fixtures/plugins/seed_only never calls `sync`: the host keeps its bases and conflicts."""
    report = check_plugin(built_plugin("seed_only"), cache_folder=HOST_CACHE)
    assert [(r.name, r.detail) for r in report.results if not r.passed] == []
    assert report.level == "seed" and report.to_json()["level"] == "seed"


def test_check_plugin_refuses_an_unknown_outside_shape() -> None:
    table = {"config": {"owner": OWNER}, "outside": "xml:notes.xml"}
    with pytest.raises(UsageError, match="outside = 'xml:notes.xml'"):
        check_plugin(built_plugin("json_notes"), table, cache_folder=HOST_CACHE)


def test_check_plugin_fails_a_plugin_that_breaks_the_rules(tmp_path: Path) -> None:
    """echo_files mirrors files but keeps no bases: most cases fail, each with its reason."""
    report = check_plugin(built_plugin("echo_files"), cache_folder=HOST_CACHE)
    failed = {r.name: r.detail for r in report.results if not r.passed}
    assert not report.ok and failed
    assert all(detail for detail in failed.values())


# -- the files plugin's other data-block functions (the native source's are in test_filesource)


def test_files_plugin_single_block_functions(tmp_path: Path, files_wasm: Path) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "a.md").write_text("one\n", encoding="utf-8")
    store = make_store(
        tmp_path / "store",
        {
            KEY: {
                "path": files_wasm,
                "dir": root,
                "dir_mode": "read-write",
                "config": {"owner": OWNER, "tag": KEY, "permission": "admin"},
            },
        },
    )
    with blocksync.open(store, author="human:test") as ws:
        files = ws.plugins.data_block(KEY)
        assert files.source_id() == f"files:{KEY}"
        assert [(r.pattern, r.permission) for r in files.permission_rules()] == [
            ("**", PermissionLevel.ADMIN)
        ]
        a = files.load("a.md", OWNER)
        assert (a.label, a.agent_id) == (f"file:{KEY}:a.md", OWNER)
        assert a.block_id == ws.blocks.git_path(OWNER, a.label)
        assert ws.blocks.read(OWNER, a.label).content == "one\n"

        b = files.create("sub/b.md", "bee\n", OWNER)
        assert (root / "sub" / "b.md").read_text(encoding="utf-8") == "bee\n"
        assert b.label == f"file:{KEY}:sub/b.md"

        ws.blocks.update(OWNER, a.label, "two\n", author="agent:alice")
        files.save(a)
        assert (root / "a.md").read_text(encoding="utf-8") == "two\n"
        assert [v.version_id for v in files.history(a)] == ["2", "1"]
        assert files.diff(a, None, None) == "--- 1\n+++ 2\n@@ -1 +1 @@\n-one\n+two\n"
        files.rollback(a, "1")
        assert ws.blocks.read(OWNER, a.label).content == "one\n"
        files.save(a)
        assert (root / "a.md").read_text(encoding="utf-8") == "one\n"

        files.delete("sub/b.md")
        assert not (root / "sub" / "b.md").exists()
        assert not ws.blocks.exists(OWNER, b.label)
        with pytest.raises(PluginCallFailed):
            files.load("missing.md", OWNER)
        with pytest.raises(PluginCallFailed):
            files.load("../escape", OWNER)
        with pytest.raises(PluginCallFailed):
            files.load("a.md", "bob")
        assert ws.fsck().ok
    assert_git_fsck(store / "repo")


def test_files_plugin_without_its_folder_refuses_to_reconcile(
    tmp_path: Path, files_wasm: Path
) -> None:
    store = make_store(
        tmp_path / "store",
        {
            KEY: {"path": files_wasm, "config": {"owner": OWNER, "permission": "admin"}},
        },
    )
    with blocksync.open(store, author="human:test") as ws:
        ws.blocks.create(OWNER, "file:wasm:a.md", "kept\n")
        files = ws.plugins.data_block(KEY)
        with pytest.raises(PluginCallFailed) as info:
            files.reconcile([])
        assert "/data is not granted" in info.value.detail
        assert ws.blocks.read(OWNER, "file:wasm:a.md").content == "kept\n"


def test_an_outside_the_suite_cannot_read_fails_the_case_not_the_check(tmp_path: Path) -> None:
    """A plugin writing its JSON file in another format (here JSON lines), or a file that is no
    UTF-8 text, fails the case saying what the suite found: no traceback out of plugin check."""
    outside = JsonFileOutside(tmp_path, "notes.json")
    (tmp_path / "notes.json").write_text('{"a.md": "one\\n"}\n{"b.md": "two\\n"}\n')
    with pytest.raises(AssertionError, match="notes.json holds no JSON object"):
        outside.read("a.md")

    class Folder(NativeSubject):
        def __init__(self, root: Path) -> None:
            self.outside = FolderOutside(root)

    (tmp_path / "latin1.md").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(
        AssertionError, match=r"'latin1.md' outside is no UTF-8 text: b'caf\\xe9\\n'"
    ):
        Folder(tmp_path).text("latin1.md")


def test_a_failing_call_is_the_last_step_the_case_says_it_did() -> None:
    """A plugin configured to write blocks of an agent it is not attached to fails each
    reconcile: the case names the error and, as its last step, the call that raised it."""
    table = {"config": {"owner": "bob", "permission": "admin"}}
    report = check_plugin(built_plugin("seed_only"), table, cache_folder=HOST_CACHE)
    first = report.results[0]
    assert first.name == "new_file_becomes_a_block" and not first.passed
    assert (
        first.detail.startswith("PluginCallFailed: ") and "attached only to alice" in first.detail
    )
    assert first.detail.endswith("\n  3. reconciled every path: it raised the error above")
