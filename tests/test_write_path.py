"""The write path of a changed reconcile (issue 14): temp files written ahead and flushed
together, and what a batch of writes may never lose doing so (a file changed meanwhile, a
signal, a folder moved away)."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import stat
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from dulwich.objects import Blob, ShaFile, Tree
from dulwich.pack import write_pack_index
from dulwich.refs import Ref

import blocksync
from blocksync.errors import RepositoryCorrupt, StaleVersion
from blocksync.fs import flush
from blocksync.fs.disk import DIR_CACHE, Folder, is_temp_name
from blocksync.store import pack
from blocksync.store.bases import Binding, SyncBases
from blocksync.store.gitstore import (
    FILE_MODE,
    PACK_THRESHOLD,
    TREE_MODE,
    GitStore,
    TreeEditor,
    pack_index,
    tree_of,
)

from .conftest import assert_git_fsck


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temps(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if is_temp_name(p.name)]


@pytest.fixture(params=[3, 40], ids=["few", "batch"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, bytes]:
    """Files in several folders: ``few`` stays under flush.BATCH (fsynced one by one), ``batch``
    over it (together)."""
    out = {}
    for i in range(request.param):
        rel = f"d{i % 5}/f{i}.md"
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"old %d\n" % i)
        out[rel] = b"old %d\n" % i
    return out


def test_staged_writes_replace_each_file_and_leave_no_temp(
    tmp_path: Path, files: dict[str, bytes]
) -> None:
    (tmp_path / "d0/f0.md").chmod(0o600)
    new = {rel: b"new " + data for rel, data in files.items()}
    new["d9/brand-new.md"] = b"made\n"
    with Folder(tmp_path) as folder:
        folder.stage(new.items())
        assert all(p.read_bytes() == files[str(p.relative_to(tmp_path))] for p in _files(tmp_path))
        for rel, data in new.items():
            assert folder.write(rel, data, sha(files[rel]) if rel in files else None)
        folder.sync()
        assert temps(tmp_path) == []
    assert {str(p.relative_to(tmp_path)): p.read_bytes() for p in _files(tmp_path)} == new
    assert stat.S_IMODE((tmp_path / "d0/f0.md").stat().st_mode) == 0o600


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not is_temp_name(p.name)]


def test_a_file_changed_after_staging_is_not_overwritten(
    tmp_path: Path, files: dict[str, bytes]
) -> None:
    """Staging writes nothing in place: the write still compares the file with what it
    expects, right before its rename, and the staged temp file goes."""
    with Folder(tmp_path) as folder:
        folder.stage((rel, b"agent\n") for rel in files)
        (tmp_path / "d0/f0.md").write_bytes(b"edited meanwhile\n")
        results = {rel: folder.write(rel, b"agent\n", sha(data)) for rel, data in files.items()}
        folder.sync()
        assert temps(tmp_path) == []
    assert results.pop("d0/f0.md") is False
    assert all(results.values())
    assert (tmp_path / "d0/f0.md").read_bytes() == b"edited meanwhile\n"


def test_staged_files_no_write_took_are_removed(tmp_path: Path, files: dict[str, bytes]) -> None:
    """A run stopped between two writes (a signal), or a write of other bytes than staged:
    nothing of the staged temp files stays."""
    rels = sorted(files)
    with Folder(tmp_path) as folder:
        folder.stage((rel, b"staged\n") for rel in rels)
        assert len(temps(tmp_path)) == len(rels)
        assert folder.write(rels[0], b"other bytes\n", sha(files[rels[0]]))
        folder.sync()
        assert temps(tmp_path) == []
        folder.stage((rel, b"again\n") for rel in rels)
    assert temps(tmp_path) == [], "closing the folder drops them too"
    assert (tmp_path / rels[0]).read_bytes() == b"other bytes\n"
    assert all((tmp_path / rel).read_bytes() == files[rel] for rel in rels[1:])


def test_fsyncs_issued_together_each_reach_their_file_and_report_errors(tmp_path: Path) -> None:
    fds = [os.open(tmp_path / f"f{i}", os.O_WRONLY | os.O_CREAT) for i in range(40)]
    try:
        flush.fsync_all(fds)  # together
        flush.fsync_all(fds[:2])  # one by one
        closed = os.open(tmp_path / "gone", os.O_WRONLY | os.O_CREAT)
        os.close(closed)
        for some in (fds + [closed], [closed]):
            with pytest.raises(OSError):
                flush.fsync_all(some)
    finally:
        for fd in fds:
            os.close(fd)


# -- packs written as a stream ------------------------------------------------------------


def test_a_batch_pack_is_read_back_by_git_and_dulwich(tmp_path: Path) -> None:
    """The pack a large commit writes (streamed object by object, never held whole): every
    size of object header (one byte to several), an empty blob, trees and the commit; real git
    verifies it, and the store reads each object back."""
    repo = tmp_path / "repo"
    GitStore.init_bare(repo, Ref(b"refs/heads/main"))
    git = GitStore(repo)
    sizes = [0, 1, 15, 16, 127, 128, 2047, 2048, 1 << 16, (1 << 20) + 3]
    blobs = [Blob.from_string(bytes(range(256)) * (n // 256) + b"x" * (n % 256)) for n in sizes]
    blobs += [Blob.from_string(b"note %d\n" % i) for i in range(100)]
    root = TreeEditor(git, None)
    for i, blob in enumerate(blobs):
        root.put((b"d%d" % (i % 7), b"f%d" % i), (FILE_MODE, blob.id))
    commit, more = git.commit_objects(root, None, "test:pack", "many objects")
    objects: list[ShaFile] = [*blobs, blobs[0], *more]  # one twice: written once
    assert len(objects) > PACK_THRESHOLD
    git.write(objects)
    assert git.swap_ref(Ref(b"refs/heads/main"), None, commit.id)
    assert not list((repo / "objects").glob("??/*")), "one pack, no loose objects"
    (pack,) = (repo / "objects" / "pack").glob("*.pack")
    verified = subprocess.run(
        ["git", "verify-pack", "-v", str(pack.with_suffix(".idx"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert verified.count(" blob ") == len({b.id for b in blobs})
    assert_git_fsck(repo)
    fresh = GitStore(repo)
    for blob in blobs:
        assert fresh.blob(blob.id) == blob.as_raw_string()


# -- a transaction reads what a block holds from the index, and only what git confirms -------


def _forge(store: Path, sql: str, params: list[str]) -> None:
    with sqlite3.connect(store / "index.db") as db:
        assert db.execute(sql, params).rowcount == 1


def test_a_wrong_index_row_never_becomes_a_blocks_content(tmp_path: Path) -> None:
    """A transaction takes a block's content and metadata from the index's ``heads`` and
    ``metas`` rows instead of reading its folder, but only when the folder those rows make is
    the one main holds, and the metadata fields hash to their blob: an index row that is wrong
    (damaged, forged, or behind) is read past, from git. Each update below keeps what the
    index lies about; trusting it would write the lie as a new version."""
    store = tmp_path / "store"
    with blocksync.init(store) as ws:
        ws.blocks.create("agent", "a", "the real a\n", description="about a")
        ws.blocks.create("agent", "b", "the real b\n", description="about b")
    _forge(
        store,
        "UPDATE heads SET content_blob = (SELECT content_blob FROM heads WHERE label = 'b')"
        " WHERE owner = 'agent' AND label = 'a'",
        [],
    )
    with blocksync.open(store) as ws:
        ws.blocks.update("agent", "a", description="about a, again")  # content kept
        assert ws.blocks.read("agent", "a").content == "the real a\n"
        ws.blocks.create("agent", "c", "c\n")
    _forge(store, "UPDATE metas SET description = 'forged' WHERE blob = ?", [_meta(store, "a")])
    with blocksync.open(store) as ws:
        ws.blocks.update("agent", "a", "new a\n")  # metadata kept
        block = ws.blocks.read("agent", "a")
        assert (block.content, block.description) == ("new a\n", "about a, again")
    assert_git_fsck(store / "repo")


def _meta(store: Path, label: str) -> str:
    with sqlite3.connect(store / "index.db") as db:
        (blob,) = db.execute(
            "SELECT meta_blob FROM heads WHERE owner = 'agent' AND label = ?", [label]
        ).fetchone()
    return str(blob)


# -- packs looked in most recently used first --------------------------------------------------


def _packed_commit(git: GitStore, parent: bytes | None, tag: int) -> tuple[bytes, list[Blob]]:
    """A commit of PACK_THRESHOLD + 1 new blobs, written as one pack, on ``parent``."""
    blobs = [Blob.from_string(b"pack %d note %d\n" % (tag, i)) for i in range(PACK_THRESHOLD + 1)]
    root = TreeEditor(git, git.commit_tree(parent))
    for i, blob in enumerate(blobs):
        root.put((b"p%d" % tag, b"f%d" % i), (FILE_MODE, blob.id))
    commit, more = git.commit_objects(root, parent, "test:pack", f"pack {tag}")
    git.write([*blobs, *more])
    assert git.swap_ref(Ref(b"refs/heads/main"), parent, commit.id)
    return commit.id, blobs


@pytest.mark.parametrize("engine", ["git", "dulwich"])
def test_objects_of_every_pack_are_found_in_any_order_and_after_a_gc(
    tmp_path: Path, engine: pack.Engine
) -> None:
    """Lookups try the pack of the last hit first (as git does): an object of any older pack
    is still found after each reordering, a loose object after every pack, and a handle
    opened before a gc folded its packs away (and pruned nothing it reads) still reads each
    object, from the new pack."""
    repo = tmp_path / "repo"
    GitStore.init_bare(repo, Ref(b"refs/heads/main"))
    git = GitStore(repo)
    head: bytes | None = None
    packs: list[list[Blob]] = []
    for tag in range(5):
        head, blobs = _packed_commit(git, head, tag)
        packs.append(blobs)
    loose = Blob.from_string(b"a loose one\n")
    git.write([loose])
    assert len(list((repo / "objects" / "pack").glob("*.pack"))) == 5
    reader = GitStore(repo)
    for order in ([0, 4, 1, 3, 2, 0], [4, 4, 0, 2, 1]):
        for index in order:
            for blob in packs[index][:: 1 + index]:
                assert reader.blob(blob.id) == blob.as_raw_string()
        assert reader.blob(loose.id) == loose.as_raw_string()
    with pytest.raises(RepositoryCorrupt, match="is missing"):
        reader.blob(b"0" * 40)
    keep = GitStore(repo)
    root = TreeEditor(keep, keep.commit_tree(head))
    root.put((b"loose",), (FILE_MODE, loose.id))
    commit, more = keep.commit_objects(root, head, "test:pack", "loose one kept")
    keep.write(more)
    assert keep.swap_ref(Ref(b"refs/heads/main"), head, commit.id)
    pack.collect(repo, use=engine)
    assert len(list((repo / "objects" / "pack").glob("*.pack"))) == 1, "folded into one"
    for blobs in reversed(packs):
        for blob in blobs:
            assert reader.blob(blob.id) == blob.as_raw_string()
    assert reader.blob(loose.id) == loose.as_raw_string()
    assert_git_fsck(repo)


# -- temp files staged while other work goes on ------------------------------------------------


def test_staging_without_waiting_is_flushed_before_its_writes_and_cleaned_up(
    tmp_path: Path, files: dict[str, bytes]
) -> None:
    """Temp files staged without waiting for their fsyncs: each write takes its own (waited
    for first), a path staged again with the same data keeps its temp file, with other data
    gets a new one, and whatever no write took is removed by sync and by close."""
    new = {rel: b"new " + data for rel, data in files.items()}
    with Folder(tmp_path) as folder:
        folder.stage(new.items(), wait=False)
        staged = set(temps(tmp_path))
        assert len(staged) == len(new)
        folder.stage(new.items(), wait=False)  # the same again: nothing new staged
        assert set(temps(tmp_path)) == staged
        first = next(iter(new))
        new[first] = b"other data\n"
        folder.stage([(first, new[first])], wait=False)
        assert len(temps(tmp_path)) == len(new), "the old temp file of a restaged path goes"
        for rel, data in list(new.items())[:-1]:
            assert folder.write(rel, data, sha(files[rel]))
        folder.sync()
        assert temps(tmp_path) == [], "the last one, never written, is removed"
        last = list(new)[-1]
        folder.stage([(last, new[last])], wait=False)
    assert temps(tmp_path) == [], "close removes what was staged and never written"
    got = {str(p.relative_to(tmp_path)): p.read_bytes() for p in _files(tmp_path)}
    assert got == {**new, last: files[last]}


def test_fsyncs_started_report_their_errors_when_waited_for(tmp_path: Path) -> None:
    fds = [os.open(tmp_path / f"f{i}", os.O_WRONLY | os.O_CREAT) for i in range(40)]
    try:
        flush.start(fds).wait()
        closed = os.open(tmp_path / "gone", os.O_WRONLY | os.O_CREAT)
        os.close(closed)
        for some in (fds + [closed], [closed]):
            pending = flush.start(some)
            with pytest.raises(OSError):
                pending.wait()
    finally:
        for fd in fds:
            os.close(fd)


# -- trees and pack indexes written without dulwich's per-entry paths --------------------------


def test_a_tree_built_from_its_entries_is_the_one_dulwich_parses() -> None:
    """tree_of does not parse back the tree it serialized: the object it hands out must be
    the one dulwich makes of those bytes (id, bytes, entries, git's order of a folder named
    like the head of a file's name)."""
    blob = Blob.from_string(b"x\n").id
    entries = {
        name: (mode, blob)
        for name, mode in [
            (b"x", TREE_MODE),
            (b"x-y", FILE_MODE),
            (b"x.txt", FILE_MODE),
            (b"x0", TREE_MODE),
            (b"a", FILE_MODE),
            ("ü".encode(), FILE_MODE),
        ]
    }
    built = tree_of(entries)
    parsed = Tree.from_raw_string(Tree.type_num, built.as_raw_string())
    assert isinstance(parsed, Tree)
    parsed.check()
    assert built.id == parsed.id
    assert list(built.items()) == list(parsed.items())
    assert [e.path for e in built.items()] == [b"a", b"x-y", b"x.txt", b"x", b"x0", "ü".encode()]
    assert built[b"x"] == (TREE_MODE, blob)
    built.add(b"b", FILE_MODE, blob)  # an edit serializes it again
    parsed.add(b"b", FILE_MODE, blob)
    assert built.id == parsed.id


@pytest.mark.parametrize("count", [0, 1, 300])
def test_a_pack_index_is_the_one_dulwich_writes(count: int) -> None:
    rng = random.Random(count)
    entries = sorted(
        (
            rng.randbytes(20),
            rng.randrange(1 << 31) if i % 3 else (1 << 31) + rng.randrange(1 << 40),
            rng.randrange(1 << 32),
        )
        for i in range(count)
    )
    pack_sha = rng.randbytes(20)
    theirs = BytesIO()
    write_pack_index(theirs, entries, pack_sha)
    assert pack_index(entries, pack_sha) == theirs.getvalue()


def test_heads_preloaded_for_a_batch_still_check_every_change(tmp_path: Path) -> None:
    """A transaction that reads the index rows of its blocks in one query: a stale expected
    version is still refused, a block that does not exist yet is still created, and a block
    another writer changed after the rows were read is decided on as it is then (the commit
    replays on the new head, reading the rows again)."""
    store = tmp_path / "store"
    with blocksync.init(store) as ws:
        for label in ("a", "b", "c"):
            ws.blocks.create("agent", label, f"{label} 1\n")
    with blocksync.open(store) as ws, blocksync.open(store) as other:
        with pytest.raises(StaleVersion), ws.blocks.transaction("batch", "test:batch") as tx:
            tx.preload([("agent", "a"), ("agent", "b"), ("agent", "new")])
            tx.update("agent", "a", "a 2\n", expected_version=1)
            tx.update("agent", "b", "b 2\n", expected_version=7)
        with ws.blocks.transaction("batch", "test:batch", skip_stale=True) as tx:
            tx.preload([("agent", "a"), ("agent", "c"), ("agent", "new")])
            tx.create("agent", "new", "new 1\n")
            tx.update("agent", "a", "a 2\n", expected_version=1)
            other.blocks.update("agent", "c", "c by another writer\n")
            tx.update("agent", "c", "c 2\n", expected_version=1)
        assert tx.stale == {("agent", "c")}
        assert [ws.blocks.read("agent", x).content for x in ("a", "c", "new")] == [
            "a 2\n",
            "c by another writer\n",
            "new 1\n",
        ]
    assert_git_fsck(store / "repo")


# -- the folders' fsyncs run while the bases commit is built -----------------------------------


def test_a_bases_commit_moves_its_ref_only_once_ready_returned(tmp_path: Path) -> None:
    """``ready`` (the folders' fsyncs of a reconcile) is waited for after the commit's objects
    are written and before its ref moves: when it fails, the bases stay where they were."""
    blocksync.init(tmp_path / "store").close()
    git = GitStore(tmp_path / "store" / "repo")
    bases = SyncBases(git, "src")
    seen: list[bytes | None] = []

    def ready() -> None:
        seen.append(bases.head())

    with bases.update("first", "test:bases", ready=ready) as tx:
        tx.set_base("a.md", "agent", "a", "A\n")
    assert seen == [None] and bases.head() is not None
    head = bases.head()

    def failing() -> None:
        raise OSError(5, "the folder could not be made durable")

    with pytest.raises(OSError), bases.update("second", "test:bases", ready=failing) as tx:
        tx.set_base("a.md", "agent", "a", "A2\n")
    assert bases.head() == head
    assert bases.get("a.md") == (Binding("a.md", "agent", "a"), "A\n")
    assert_git_fsck(tmp_path / "store" / "repo")


def test_folder_fsyncs_started_survive_evictions_and_are_waited_for(tmp_path: Path) -> None:
    """Folder fsyncs started without waiting use descriptors of their own: the folder's
    cached ones may be closed meanwhile (more folders than DIR_CACHE); waiting, or closing,
    ends them."""
    data = {f"d{i}/f.md": b"%d\n" % i for i in range(DIR_CACHE + 8)}
    with Folder(tmp_path) as folder:
        for rel, body in data.items():
            assert folder.write(rel, body, None)
        folder.sync(wait=False)
        for i in range(DIR_CACHE + 8):  # every kept descriptor replaced meanwhile
            folder.exists(f"e{i}/x")
            (tmp_path / f"e{i}").mkdir()
            folder.exists(f"e{i}/x")
        folder.synced()
        folder.synced()  # nothing left to wait for
        assert folder.write("d0/g.md", b"g\n", None)
        folder.sync(wait=False)
    assert {rel: (tmp_path / rel).read_bytes() for rel in data} == data
    assert (tmp_path / "d0/g.md").read_bytes() == b"g\n"
