"""A paged data-block plugin (the WIT's ``paging``: blocksync.plugins.PluginSource): the host lists
the ``files`` plugin's paths, then reconciles them page by page, each page one ``reconcile`` call
whose writes are committed whole (the first pages one by one, then in batches that double).
Pages are made small here (``page_size``) so that a few dozen files make several. Plugins without
``paging`` (``hostile_paths``: a plain DataBlockExtension; ``s3``: ``paged = False``) keep the one
call of the seed. Real git (checked with the git CLI), real SQLite, real wasmtime."""

from __future__ import annotations

import gc
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.errors import AccessDenied
from blocksync.plugins.batch import BATCH_FAULT_STEPS, SyncBatch
from blocksync.plugins.source import PAGE_FAULT_STEPS, PluginSource

from . import test_plugin_reconcile as reconcile_tests
from .conftest import assert_git_fsck
from .plugin_builds import built_plugins
from .stores import refs_of

KEY = "notes"
OWNER = "alice"
PAGE = 10


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return built_plugins(["files", "hostile_paths", "seed_files"])


def label(path: str) -> str:
    return f"file:{KEY}:{path}"


class Rig(reconcile_tests.Rig):
    """test_plugin_reconcile's rig (the same store, folder and helpers) with a small page."""

    def __init__(self, tmp: Path, wasm: Path, **table: Any) -> None:
        super().__init__(tmp, wasm, caps={"fuel": 10**12}, **table)
        self.source.page_size = PAGE

    @property
    def source(self) -> PluginSource:
        source = self.ws.reconciler.source(KEY)
        assert isinstance(source, PluginSource)
        return source

    def files(self, count: int, text: str = "file {i}\n") -> list[str]:
        paths = [f"d{i % 3}/f{i:03}.md" for i in range(count)]
        for i, path in enumerate(paths):
            self.write(path, text.format(i=i))
        return paths

    def subjects(self, ref: str) -> list[str]:
        """The subjects of ``ref``'s commits, oldest first (git log)."""
        out = subprocess.run(
            ["git", "-C", str(self.ws.repo_path), "log", "--reverse", "--format=%s", ref, "--"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.splitlines() if out.returncode == 0 else []


@pytest.fixture
def rig(tmp_path: Path, built: dict[str, Path]) -> Iterator[Rig]:
    yield from reconcile_tests.checked(Rig(tmp_path, built["files"]))


def calls_of(source: PluginSource) -> list[list[str]]:
    """The path lists ``source``'s plugin will be asked to reconcile (a spy on its bridge)."""
    calls: list[list[str]] = []
    reconcile = source.bridge.reconcile

    def spy(paths: list[str]) -> Any:
        calls.append(list(paths))
        return reconcile(paths)

    source.bridge.reconcile = spy  # type: ignore[method-assign]
    return calls


def test_a_first_sync_goes_in_pages_each_committed_blocks_then_bases(rig: Rig) -> None:
    paths = sorted(rig.files(25))
    calls = calls_of(rig.source)
    report = rig.ws.reconcile()
    (source,) = report.sources
    assert source.error is None and sorted(source.resolved) == [(p, "disk->agent") for p in paths]
    assert calls == [paths[:10], paths[10:20], paths[20:]]
    pages = ["(10 of 25 paths)", "(20 of 25 paths)", "(25 of 25 paths)"]
    # three reconcile calls, each committed on its own: blocks, then bases
    assert rig.subjects("main")[-3:] == [f"reconcile {KEY} {p}" for p in pages]
    assert rig.subjects(f"refs/sync/{KEY}") == [f"reconcile {KEY} {p}" for p in pages]
    assert all(rig.block(p) == rig.base(p) == rig.read(p) for p in paths)
    again = rig.ws.reconcile()
    assert again.sources[0].unchanged == 25 and not again.sources[0].resolved
    assert len(rig.subjects(f"refs/sync/{KEY}")) == 3  # nothing changed: nothing committed


def test_a_long_first_sync_commits_batches_that_double(rig: Rig) -> None:
    """Each commit rewrites the fan-out folders its paths touch, which a first sync's page
    nearly all touches: past the first pages, a batch is committed once it holds as many
    paths as the run committed before (10, 10, 20, 40: four commits, not eight), so the
    commits of a run stay logarithmic in its paths. Every page is still its own call."""
    paths = sorted(rig.files(80))
    calls = calls_of(rig.source)
    report = rig.ws.reconcile()
    assert report.sources[0].error is None and len(report.sources[0].resolved) == 80
    assert calls == [paths[i : i + PAGE] for i in range(0, 80, PAGE)]
    batches = [f"reconcile {KEY} ({n} of 80 paths)" for n in (10, 20, 40, 80)]
    assert rig.subjects("main")[-4:] == batches
    assert rig.subjects(f"refs/sync/{KEY}") == batches
    assert all(rig.block(p) == rig.base(p) == rig.read(p) for p in paths)
    assert rig.ws.reconcile().sources[0].unchanged == 80


def test_the_collector_waits_for_the_end_of_a_paged_run(rig: Rig) -> None:
    """The staged pages of a first sync are a heap that only grows: collections amid them
    walk it all and find nothing to free (a fifth of a 30,000-path first sync). The run
    pauses the collector, as the folder source's does, and leaves it on after."""
    rig.files(25)
    enabled: list[bool] = []
    reconcile = rig.source.bridge.reconcile

    def spy(paths: list[str]) -> Any:
        enabled.append(gc.isenabled())
        return reconcile(paths)

    rig.source.bridge.reconcile = spy  # type: ignore[method-assign]
    assert gc.isenabled()
    assert rig.ws.reconcile().sources[0].error is None
    assert enabled == [False, False, False] and gc.isenabled()


def test_pages_mix_listed_and_bound_paths_and_every_direction(rig: Rig) -> None:
    paths = rig.files(25)
    rig.ws.reconcile()
    rig.write(paths[0], "disk edit\n")  # first page
    rig.ws.blocks.update(OWNER, label(paths[12]), "agent edit\n")  # second page
    (rig.root / paths[24]).unlink()  # last page: gone from the listing, still bound
    rig.write("zz/new.md", "new\n")  # listed only
    bases = len(rig.subjects(f"refs/sync/{KEY}"))
    report = rig.ws.reconcile()
    # three pages writing four paths: committed together, as a page's worth
    assert rig.subjects(f"refs/sync/{KEY}")[bases:] == [f"reconcile {KEY} (26 of 26 paths)"]
    assert sorted(report.sources[0].resolved) == sorted(
        [
            (paths[0], "disk->agent"),
            (paths[12], "agent->disk"),
            (paths[24], "delete-block"),
            ("zz/new.md", "disk->agent"),
        ]
    )
    assert rig.block(paths[0]) == "disk edit\n" and rig.read(paths[12]) == "agent edit\n"
    assert rig.block(paths[24]) is None and rig.base(paths[24]) is None
    assert rig.block("zz/new.md") == "new\n" and report.sources[0].unchanged == 22


def test_pages_keep_every_call_within_a_limit_one_call_would_exceed(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    """The per-call limit, as fuel (deterministic, unlike time): 100 new files in one call run
    out of it; in pages of 10 every call stays within it, and all 100 are synced."""
    rig = Rig(tmp_path, built["files"], limits={"fuel": 10_000_000})
    paths = rig.files(100)
    rig.source.page_size = 1000  # one call, as before pages
    one = rig.ws.reconcile().sources[0]
    assert one.error is not None and "ran out of fuel" in one.error
    assert rig.block(paths[0]) is None
    rig.source.page_size = PAGE
    paged = rig.ws.reconcile().sources[0]
    assert paged.error is None and len(paged.resolved) == 100
    assert all(rig.block(p) == rig.read(p) for p in paths)
    rig.ws.close()


def test_a_failing_page_keeps_the_pages_before_it(rig: Rig) -> None:
    paths = rig.files(25)
    committed: list[str] = []

    def fail_after_two_pages(step: str) -> None:
        committed.append(step)
        if committed.count("page-committed") == 2:
            raise RuntimeError("the third page fails")

    rig.source.fault = fail_after_two_pages
    failed = rig.ws.reconcile().sources[0]
    assert failed.error is not None and "the third page fails" in failed.error
    rig.source.fault = None
    kept = [p for p in sorted(paths) if rig.block(p) is not None]
    assert kept == sorted(paths)[:20]  # two pages committed, blocks and bases
    assert all(rig.base(p) == rig.read(p) for p in kept)
    report = rig.ws.reconcile()
    assert sorted(p for p, _ in report.sources[0].resolved) == sorted(paths)[20:]
    assert report.sources[0].unchanged == 20


def test_a_dry_run_decides_every_page_and_writes_nothing(rig: Rig) -> None:
    paths = rig.files(25)
    rig.ws.reconcile()
    rig.write(paths[1], "disk edit\n")
    rig.ws.blocks.update(OWNER, label(paths[21]), "agent edit\n")
    rig.write("new.md", "new\n")
    before = refs_of(rig.ws.repo_path)
    report = rig.ws.reconcile(dry_run=True)
    assert sorted(report.sources[0].resolved) == sorted(
        [(paths[1], "disk->agent"), (paths[21], "agent->disk"), ("new.md", "disk->agent")]
    )
    assert refs_of(rig.ws.repo_path) == before
    assert rig.read(paths[21]) == "file 21\n" and rig.block("new.md") is None


def test_conflicts_in_different_pages_all_reach_the_index(rig: Rig) -> None:
    paths = rig.files(25, text="one\ntwo {i}\nthree\n")
    rig.ws.reconcile()
    for path in (paths[2], paths[13], paths[23]):
        rig.write(path, "one\nTWO on disk\nthree\n")
        rig.ws.blocks.update(OWNER, label(path), "one\nTWO by agent\nthree\n")
    report = rig.ws.reconcile()
    assert sorted(report.sources[0].needs_resolution) == sorted([paths[2], paths[13], paths[23]])
    rows = {c.path: c for c in rig.ws.conflicts.list()}
    assert rows[paths[13]].disk == "one\nTWO on disk\nthree\n"
    assert rows[paths[13]].agent == "one\nTWO by agent\nthree\n"
    assert rig.ws.reconcile().open_conflicts == 3  # the same rows, found again


def test_a_mass_deletion_is_refused_before_any_page_runs(rig: Rig) -> None:
    paths = rig.files(30)
    rig.ws.reconcile()
    for path in paths[:20]:  # two of every three pages' worth, spread over all pages
        (rig.root / path).unlink()
    rig.write(paths[25], "an edit in the last page\n")
    before = refs_of(rig.ws.repo_path, records=False)  # the run log's row moves records
    source = rig.ws.reconcile().sources[0]
    assert source.error is not None and "20 of its 30 synced paths" in source.error
    assert refs_of(rig.ws.repo_path, records=False) == before  # not a single page committed
    assert all(rig.block(p) is not None for p in paths)
    confirmed = rig.ws.reconcile(allow_mass_delete=True).sources[0]
    assert confirmed.error is None
    assert sorted(p for p, r in confirmed.resolved if r == "delete-block") == sorted(paths[:20])
    assert all(rig.block(p) is None for p in paths[:20])


def test_blocks_deleted_en_masse_are_refused_before_any_page_runs(rig: Rig) -> None:
    paths = rig.files(30)
    rig.ws.reconcile()
    for path in paths[5:25]:
        rig.ws.blocks.delete(OWNER, label(path))
    before = refs_of(rig.ws.repo_path, records=False)  # the run log's row moves records
    source = rig.ws.reconcile().sources[0]
    assert source.error is not None and "20 of its 30" in source.error
    assert refs_of(rig.ws.repo_path, records=False) == before
    assert all(rig.read(p) is not None for p in paths)


def test_a_plugin_without_paging_is_reconciled_in_one_call(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    """hostile_paths is a plain DataBlockExtension: it exports `paging` (the SDK does) but says
    it is not paged, so the host makes the seed's one reconcile([]) call, page size or not."""
    rig = Rig(tmp_path, built["hostile_paths"])
    rig.source.page_size = 1
    assert not rig.source.bridge.paged()
    calls = calls_of(rig.source)
    assert rig.ws.reconcile().sources[0].error is None
    assert calls == [[]]  # the WIT's empty list: every path, found by the plugin
    rig.ws.close()


def test_a_plugin_built_without_paging_is_reconciled_in_one_call(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    """seed_files exports `data-block` and `tool` only (no `paging` at all), as a plugin built
    before paging existed: it loads, and is reconciled in the seed's one call."""
    rig = Rig(tmp_path, built["seed_files"])
    assert "paging" not in rig.source.plugin.info.exports and not rig.source.bridge.paged()
    rig.source.page_size = 1
    paths = rig.files(5)
    calls = calls_of(rig.source)
    report = rig.ws.reconcile().sources[0]
    assert report.error is None and len(report.resolved) == 5 and calls == [[]]
    assert all(rig.block(p) == rig.read(p) for p in paths)
    rig.ws.close()


KILL_CHILD = """
import json, os, sys
import blocksync
store, step, page = json.loads(sys.argv[1])
seen = []
def fault(name):
    seen.append(name)
    if name == step and seen.count("page-committed") >= 1:  # past the first commit
        os._exit(9)
with blocksync.open(store) as ws:
    source = ws.reconciler.source("notes")
    source.page_size = page
    source.fault = fault
    ws.reconcile()
print("finished without reaching", step)
"""


@pytest.mark.parametrize("step", PAGE_FAULT_STEPS + BATCH_FAULT_STEPS)
def test_kill_9_during_a_paged_reconcile_converges(rig: Rig, step: str) -> None:
    """Killed after a commit of pages, or inside the next one: the store opens, git fsck is
    clean, committed pages stay, and the next run finishes the rest."""
    synced = [f"a/{i}.md" for i in range(5)]
    for path in synced:
        rig.write(path, "old\n")
    rig.ws.reconcile()
    rig.write(synced[0], "disk edit\n")
    rig.ws.blocks.update(OWNER, label(synced[1]), "agent edit\n")
    new = [f"b/{i:02}.md" for i in range(25)]
    for path in new:
        rig.write(path, f"new {path}\n")
    rig.ws.close()
    child = subprocess.run(
        [sys.executable, "-c", KILL_CHILD, json.dumps([str(rig.store), step, PAGE])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 9, child.stdout + child.stderr
    assert_git_fsck(rig.store / "repo")
    rig.ws = blocksync.open(rig.store, author="human:test")
    rig.source.page_size = PAGE
    # the first page was committed: the host found a/2..a/4 unchanged itself (the plugin
    # mirrors its folder), so it held a/0, a/1 and b/00..b/07, ten paths written
    assert rig.block(synced[0]) == "disk edit\n" and rig.block(new[7]) == f"new {new[7]}\n"
    report = rig.ws.reconcile()
    assert report.sources[0].error is None and report.open_conflicts == 0
    expected = {synced[0]: "disk edit\n", synced[1]: "agent edit\n"}
    expected |= {path: f"new {path}\n" for path in new}
    for path, text in expected.items():
        assert rig.read(path) == text and rig.block(path) == text and rig.base(path) == text
    assert rig.ws.reconcile().sources[0].unchanged == 30


# -- the host functions a paged page uses -----------------------------------------------------


def test_folder_files_and_file_digests_split_folder_digests(rig: Rig) -> None:
    """sync.folder-files lists what folder-digests lists, hashing nothing; sync.file-digests
    hashes the paths asked for only, leaving out those without a file and those outside."""
    rig.write("a.md", "one\n")
    rig.write("sub/b.md", "two\n")
    (rig.root / "link.md").symlink_to(rig.root / "a.md")
    (rig.root / ".git").mkdir()
    (rig.root / ".git" / "config").write_text("x\n")
    host = rig.ws.plugins.get(KEY).host
    assert sorted(json.loads(host.folder_files())) == sorted(json.loads(host.folder_digests()))
    assert sorted(json.loads(host.folder_files())) == ["a.md", "sub/b.md"]
    asked = ["sub/b.md", "gone.md", "link.md", "../store/blocksync.toml", ".git/config"]
    assert json.loads(host.file_digests(asked)) == {
        "sub/b.md": hashlib.sha256(b"two\n").hexdigest(),
        "link.md": None,  # there, but no regular file
    }


def test_block_and_base_writes_in_one_call_keep_their_checks(rig: Rig) -> None:
    """sync.write-blocks / set-bases / read-blocks: many writes in one host call, each with the
    permission and owner checks of its one-at-a-time counterpart; bad JSON is an error."""
    host = rig.ws.plugins.get(KEY).host
    bases = rig.ws.plugins.get(KEY).sync_bases
    assert bases is not None
    host.write_blocks(
        json.dumps(
            [
                {"owner": OWNER, "label": "x", "content": "one\n", "create": True},
                {"owner": OWNER, "label": "y", "content": "two\n", "create": True},
                {"owner": OWNER, "label": "x", "content": "ONE\n"},
                {"owner": OWNER, "label": "y", "content": None},
            ]
        )
    )
    assert json.loads(host.read_blocks(OWNER, ["x", "y"])) == {"x": "ONE\n", "y": None}
    assert json.loads(host.read_blocks(OWNER, [])) == {}
    with pytest.raises(AccessDenied, match="attached only to"):
        host.read_blocks("bob", ["x"])
    with pytest.raises(AccessDenied, match="attached only to"):
        host.write_blocks(json.dumps([{"owner": "bob", "label": "z", "content": "z\n"}]))
    with pytest.raises(AccessDenied, match="JSON"):
        host.write_blocks("[{")
    with pytest.raises(AccessDenied, match="'label' must be text"):
        host.write_blocks(json.dumps([{"owner": OWNER, "content": "z\n"}]))
    bases.set_bases(json.dumps([{"path": "x.md", "owner": OWNER, "label": "x", "content": "b\n"}]))
    assert rig.base("x.md") == "b\n"
    with pytest.raises(AccessDenied, match="attached only to"):
        bases.set_bases(json.dumps([{"path": "z.md", "owner": "bob", "label": "z", "content": ""}]))
    bases.set_bases(json.dumps([{"path": "x.md", "owner": OWNER, "label": "x", "content": None}]))
    assert rig.base("x.md") is None


def test_a_page_of_block_reads_asks_the_index_once(rig: Rig) -> None:
    """sync.read-blocks of a page's labels (a first sync asks for a thousand, most of them
    no block yet) reads the version index once for all of them, in a reconcile's batch and
    outside one (it asked three times per label). In the batch, what a block was read at is
    kept: a write over a newer version is left for the next run."""
    with rig.ws.transaction("fill") as tx:
        for i in range(0, 300, 2):
            tx.create(OWNER, f"b{i:03}", f"{i}\n")
    labels = [f"b{i:03}" for i in range(300)]
    expected = {label: f"{i}\n" if i % 2 == 0 else None for i, label in enumerate(labels)}
    plugin = rig.ws.plugins.get(KEY)
    assert plugin.sync_bases is not None
    statements: list[str] = []
    conn = rig.ws.index_db.conn
    conn.set_trace_callback(statements.append)
    try:
        assert json.loads(plugin.host.read_blocks(OWNER, labels)) == expected
        outside, statements[:] = len(statements), []
        batch = SyncBatch(rig.ws.blocks, plugin.sync_bases.bases, "page", "me", dry_run=False)
        with batch.attached(plugin.host):
            assert json.loads(plugin.host.read_blocks(OWNER, labels)) == expected
            inside = len(statements)
            rig.ws.blocks.update(OWNER, "b000", "an agent meanwhile\n")
            plugin.host.write_blocks(
                json.dumps(
                    [
                        {"owner": OWNER, "label": "b000", "content": "page\n"},
                        {"owner": OWNER, "label": "b002", "content": "page\n"},
                        {"owner": OWNER, "label": "b001", "content": "new\n", "create": True},
                    ]
                )
            )
    finally:
        conn.set_trace_callback(None)
    assert outside <= 5 and inside <= 5, (outside, inside, statements)
    batch.commit()
    assert (OWNER, "b000") in batch.blocks.stale
    assert rig.ws.blocks.read(OWNER, "b000").content == "an agent meanwhile\n"
    assert rig.ws.blocks.read(OWNER, "b002").content == "page\n"
    assert rig.ws.blocks.read(OWNER, "b001").content == "new\n"


def test_a_listing_carries_on_after_a_cursor_an_instance_never_gave(rig: Rig) -> None:
    """A cursor is a path, not a position: an instance that never listed (a fresh one after a
    trap) lists again and continues after it."""
    paths = sorted(rig.files(12))
    assert rig.source.bridge.paged()
    assert rig.source.bridge.list_paths(paths[4]) == (paths[5:], None)
    assert rig.source.bridge.list_paths(None) == (paths, None)
