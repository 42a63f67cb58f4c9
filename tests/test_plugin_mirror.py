"""A plugin that declares it mirrors its granted folder one to one (WIT ``paging.mirrors-folder``,
blocksync.plugins.mirror): the ``files`` plugin. The host lists the folder and finds the paths
neither side changed since their base itself (the stat cache, the file's sha256, the block's
newest content), and the plugin's ``reconcile`` gets only the others; a change on either side
of any path still reaches it. A plugin that does not declare it (the same plugin built with
``mirrors_folder = False``) is reconciled as before: every path. Real wasmtime, real builds."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocksync.errors import PluginRefused
from blocksync.fs.disk import file_stat
from blocksync.index.statcache import NOT_CLEAN, RACY_NS, Seen, StatCache
from blocksync.plugins.batch import SyncBatch
from blocksync.plugins.host import hostfuncs, runtime
from blocksync.plugins.mirror import Mirror

from . import test_plugin_paging as paging
from .plugin_builds import FIXTURES, built_plugin, built_plugins

KEY, OWNER, label, calls_of = paging.KEY, paging.OWNER, paging.label, paging.calls_of

#: host-side opens of files while a test records (None: not recording); the guest's WASI
#: reads happen inside wasmtime and are not seen here
_opened: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes)):
        _opened.append(os.path.basename(os.fsdecode(args[0])))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ``files`` plugin, and the same plugin declaring nothing (``not_mirroring``)."""
    found = built_plugins(["files"])
    plain = tmp_path_factory.mktemp("not_mirroring") / "files"
    shutil.copytree(FIXTURES / "files", plain, ignore=shutil.ignore_patterns("__pycache__"))
    app = plain / "app.py"
    source = app.read_text(encoding="utf-8")
    assert "    mirrors_folder = True\n" in source
    app.write_text(source.replace("    mirrors_folder = True\n", ""), encoding="utf-8")
    found["not_mirroring"] = built_plugin(plain)
    return found


@pytest.fixture
def rig(tmp_path: Path, built: dict[str, Path]) -> Iterator[paging.Rig]:
    yield from paging.reconcile_tests.checked(paging.Rig(tmp_path, built["files"]))


def _settle() -> None:
    """Wait until the files written so far are older than the stat cache's racy window."""
    time.sleep(RACY_NS / 1e9 + 0.1)


def _opened_by(run: object) -> list[str]:
    global _opened
    _opened = []
    try:
        assert callable(run)
        run()
    finally:
        opened, _opened = _opened, None
    return sorted(name for name in opened if name.endswith(".md"))


def test_unchanged_paths_never_reach_reconcile_and_changes_on_either_side_do(
    rig: paging.Rig,
) -> None:
    assert rig.source.bridge.mirrors_folder()
    paths = sorted(rig.files(25))
    rig.ws.reconcile()
    calls = calls_of(rig.source)
    again = rig.ws.reconcile().sources[0]
    assert again.error is None and again.unchanged == 25 and not again.resolved
    assert calls == []  # nothing changed: no reconcile call at all
    rig.write(paths[0], "disk edit\n")
    rig.ws.blocks.update(OWNER, label(paths[12]), "agent edit\n")
    (rig.root / paths[24]).unlink()
    rig.write("zz/new.md", "new\n")
    report = rig.ws.reconcile().sources[0]
    assert report.error is None and report.unchanged == 22
    assert calls == [sorted([paths[0], paths[12], paths[24], "zz/new.md"])]
    assert sorted(report.resolved) == sorted(
        [
            (paths[0], "disk->agent"),
            (paths[12], "agent->disk"),
            (paths[24], "delete-block"),
            ("zz/new.md", "disk->agent"),
        ]
    )
    assert rig.block(paths[0]) == rig.read(paths[0]) == "disk edit\n"
    assert rig.block(paths[12]) == rig.read(paths[12]) == "agent edit\n"
    assert rig.block(paths[24]) is None and rig.block("zz/new.md") == "new\n"
    calls.clear()
    assert rig.ws.reconcile().sources[0].unchanged == 25 and calls == []


def test_a_same_size_edit_within_the_racy_window_reaches_reconcile(rig: paging.Rig) -> None:
    # the stat cache holds a row with the file's very stat and its old hash, stamped now: the
    # file changed within the timestamp granularity of that read, so the row is never trusted
    paths = rig.files(5)
    rig.ws.reconcile()
    rig.ws.reconcile()  # the host reads every file once and records it
    file = rig.root / paths[2]
    old = hashlib.sha256(file.read_bytes()).hexdigest()
    text = file.read_text(encoding="utf-8").upper()
    with open(file, "r+b") as out:  # in place: the same inode, the same size
        out.write(text.encode())
    cache = StatCache(rig.ws.index_db, KEY)
    cache.update({paths[2]: Seen(file_stat(os.stat(file)), old)}, StatCache.now())
    calls = calls_of(rig.source)
    report = rig.ws.reconcile().sources[0]
    assert calls == [[paths[2]]] and report.resolved == [(paths[2], "disk->agent")]
    assert rig.block(paths[2]) == text


def test_a_trusted_row_spares_the_hosts_read_and_a_missing_one_costs_it(
    rig: paging.Rig,
) -> None:
    paths = rig.files(5)
    rig.ws.reconcile()
    _settle()
    rig.ws.reconcile()  # rows stamped past the files' racy window
    calls = calls_of(rig.source)
    assert _opened_by(rig.ws.reconcile) == []  # every file vouched for by its row
    rig.ws.index_db.conn.execute("DELETE FROM folder_stats")
    rig.ws.index_db.conn.execute("DELETE FROM folder_clean")  # and its clean paths
    assert _opened_by(rig.ws.reconcile) == sorted(p.rsplit("/", 1)[1] for p in paths)
    assert calls == []  # read, found unchanged: still no reconcile call


def test_file_digests_take_a_trusted_rows_hash_during_a_mirrored_run(rig: paging.Rig) -> None:
    paths = rig.files(3)
    rig.ws.reconcile()
    _settle()
    rig.ws.reconcile()
    host = rig.source.plugin.host
    with Mirror.opened(host, rig.source.bases, rig.ws.blocks) as mirror:
        mirror.load()
        mirror.list()
        mirror.hashing(None)
        digests = {}
        opened = _opened_by(lambda: digests.update(json.loads(host.file_digests(paths))))
    assert opened == [] and host.hashing is None
    assert digests == {p: hashlib.sha256(rig.read(p).encode()).hexdigest() for p in paths}  # type: ignore[union-attr]
    assert _opened_by(lambda: host.file_digests(paths[:1])) == [paths[0].rsplit("/", 1)[1]]


def test_a_first_sync_reads_through_the_host_and_the_run_after_it_reads_no_file(
    rig: paging.Rig,
) -> None:
    """In a first sync the plugin reads its files through the host (``sync.read-files``), once
    each, and the host keeps each file's stat with its hash: the next run tells every unchanged
    file by its stat (before, the plugin read them through WASI and that run hashed them all).
    The rows are what counts here, not the clean row (dropped: the run makes it again from
    them, as after another writer's commit)."""
    paths = rig.files(25)
    _settle()
    assert _opened_by(rig.ws.reconcile) == sorted(p.rsplit("/", 1)[1] for p in paths)
    assert all(rig.block(p) == rig.read(p) for p in paths)
    rig.ws.index_db.conn.execute("DELETE FROM folder_clean")
    calls = calls_of(rig.source)
    assert _opened_by(rig.ws.reconcile) == [] and calls == []


def test_read_files_answers_each_path_as_the_folder_source_reads_it(rig: paging.Rig) -> None:
    rig.write("a.md", "alpha\n")
    rig.write("b.md", "beta\n")
    (rig.root / "bin.md").write_bytes(b"\xff\xfe")
    os.mkfifo(rig.root / "pipe.md")
    (rig.root / "link.md").symlink_to(rig.root / "a.md")
    (rig.root / ".git").mkdir()
    (rig.root / ".git" / "config").write_text("[core]\n", encoding="utf-8")
    asked = ["a.md", "gone.md", "bin.md", "pipe.md", "link.md", "../a.md", ".git/config", "b.md"]
    found = json.loads(rig.source.plugin.host.read_files(asked))
    assert found.pop("a.md") == "alpha\n" and found.pop("b.md") == "beta\n"
    reasons = {path: answer["unreadable"] for path, answer in found.items()}
    assert sorted(reasons) == ["../a.md", ".git/config", "bin.md", "link.md", "pipe.md"]
    assert "not UTF-8" in reasons["bin.md"] and "FIFO" in reasons["pipe.md"]
    assert "symbolic link" in reasons["link.md"] and "version-control" in reasons[".git/config"]


def test_read_files_stops_at_its_budget_and_the_plugin_asks_again(
    rig: paging.Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer holds a few megabytes of text at most (the guest parses it in its memory):
    the paths past that come back null, at least one file is read per call, and the plugin
    asks again for the others, so a first sync takes every file."""
    paths = sorted(rig.files(12))
    monkeypatch.setattr(hostfuncs, "READ_BUDGET", 1)
    host = rig.source.plugin.host
    assert json.loads(host.read_files(paths[:3])) == {
        paths[0]: "file 0\n",
        **dict.fromkeys(paths[1:3]),
    }
    report = rig.ws.reconcile().sources[0]
    assert report.error is None and sorted(report.resolved) == [(p, "disk->agent") for p in paths]
    assert all(rig.block(p) == rig.read(p) for p in paths)


def test_a_plugin_that_does_not_declare_it_gets_every_path(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    rig = paging.Rig(tmp_path, built["not_mirroring"])
    try:
        assert rig.source.bridge.paged() and not rig.source.bridge.mirrors_folder()
        paths = sorted(rig.files(12))
        rig.ws.reconcile()
        calls = calls_of(rig.source)
        rig.write(paths[3], "disk edit\n")
        report = rig.ws.reconcile().sources[0]
        assert report.error is None and report.resolved == [(paths[3], "disk->agent")]
        assert calls == [paths[:10], paths[10:]]  # every path, in pages, as before
        for path in paths[:9]:
            (rig.root / path).unlink()
        refused = rig.ws.reconcile().sources[0]
        assert refused.error is not None and "9 of its 12 synced paths" in refused.error
    finally:
        rig.ws.close()


def test_a_component_without_the_function_is_accepted(rig: paging.Rig) -> None:
    """A plugin built before ``mirrors-folder`` existed exports ``paging`` without it: the host
    loads it (the function is optional: not declared); a wrong signature is still refused."""
    info = rig.source.plugin.info
    older = dataclasses.replace(
        info,
        signatures={
            **info.signatures,
            "paging": {k: v for k, v in info.signatures["paging"].items() if k != "mirrors-folder"},
        },
    )
    runtime.check(older, "files")
    wrong = {**info.signatures["paging"], "mirrors-folder": "() -> string"}
    broken = dataclasses.replace(info, signatures={**info.signatures, "paging": wrong})
    with pytest.raises(PluginRefused, match="paging.mirrors-folder has type"):
        runtime.check(broken, "files")


def test_the_host_writes_the_plugins_files_and_a_read_only_grant_writes_none(
    tmp_path: Path, built: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The files plugin's writes go through the host (sync.write-file): with the folder granted
    read-only, a file's change still reaches its block, and a block's change is left for the
    next run (the plugin logs why), the file untouched: not a failed call."""
    rig = paging.Rig(tmp_path, built["files"], dir_mode="read-only")
    try:
        paths = sorted(rig.files(3))
        assert rig.ws.reconcile().sources[0].error is None
        rig.write(paths[0], "disk edit\n")
        rig.ws.blocks.update(OWNER, label(paths[1]), "agent edit\n")
        report = rig.ws.reconcile().sources[0]
        assert report.error is None and report.resolved == [(paths[0], "disk->agent")]
        assert f"{paths[1]}: left for the next run" in caplog.text and "read-only" in caplog.text
        assert rig.block(paths[0]) == "disk edit\n" and rig.read(paths[1]) == "file 1\n"
        assert rig.block(paths[1]) == "agent edit\n" and rig.base(paths[1]) == "file 1\n"
        assert not [p for p in rig.root.rglob("*") if p.name.startswith(".blocksync-")]
    finally:
        rig.ws.close()


# -- the clean row: a nothing-changed run is a stat walk and one row, and hides no change ------


def _clean_row(rig: paging.Rig) -> dict[str, tuple[int, ...]]:
    found = rig.source.bases.stat_cache().clean()
    assert found is not None
    return found.bound


@pytest.fixture
def clean_rig(tmp_path: Path, built: dict[str, Path]) -> Iterator[tuple[paging.Rig, list[str]]]:
    """Five synced files, all clean in the plugin's clean row with their very stats."""
    rig = paging.Rig(tmp_path, built["files"])
    try:
        paths = sorted(rig.files(5))
        assert rig.ws.reconcile().sources[0].error is None
        assert set(_clean_row(rig).values()) == {NOT_CLEAN}  # what the plugin read is its own
        _settle()  # still for long enough: the host's own read of each finds it clean
        assert rig.ws.reconcile().sources[0].error is None
        assert _clean_row(rig) == {p: file_stat(os.stat(rig.root / p)) for p in paths}
        yield rig, paths
    finally:
        rig.ws.close()


def _quiet(rig: paging.Rig) -> None:
    """A run that finds nothing changed: no file opened, no reconcile call."""
    calls = calls_of(rig.source)
    report = rig.ws.reconcile().sources[0]
    assert report.error is None and not report.resolved and calls == []


def test_a_first_sync_leaves_the_paths_it_took_in_clean(rig: paging.Rig) -> None:
    """A path a first sync took in (its file as the host read it is now its block and its
    base, checked on the index, not taken from the plugin's word) is clean at once with that
    file's stat: the next run is a stat walk. A path it did not settle (a conflict) is not."""
    paths = sorted(rig.files(4))
    rig.ws.blocks.create(OWNER, label(paths[1]), rig.read(paths[1]) or "")  # identical
    rig.ws.blocks.create(OWNER, label(paths[2]), "another text\n")  # a conflict
    _settle()
    report = rig.ws.reconcile().sources[0]
    assert report.error is None and report.needs_resolution == [paths[2]]
    stats = {p: file_stat(os.stat(rig.root / p)) for p in paths}
    assert _clean_row(rig) == {
        paths[0]: stats[paths[0]],
        paths[1]: stats[paths[1]],
        paths[3]: stats[paths[3]],
    }
    rig.ws.index_db.conn.execute("DELETE FROM folder_stats")  # a stat walk reads no row
    calls = calls_of(rig.source)
    assert paths[2] == "d1/f001.md"
    assert _opened_by(rig.ws.reconcile) == ["f001.md"] and calls == [[paths[2]]]  # its read


def test_a_clean_row_spares_every_row_per_path(clean_rig: tuple[paging.Rig, list[str]]) -> None:
    rig, paths = clean_rig
    rig.ws.index_db.conn.execute("DELETE FROM folder_stats")  # the rows are not what it reads
    calls = calls_of(rig.source)
    outcome = rig.source.reconcile_outcome()
    assert sorted(outcome.unchanged) == paths and outcome.decided == [] and calls == []
    assert _opened_by(rig.ws.reconcile) == []
    assert rig.ws.index_db.conn.execute("SELECT count(*) FROM folder_stats").fetchone()[0] == 0


def test_a_racy_file_is_not_clean_and_a_same_size_edit_of_it_is_seen(
    clean_rig: tuple[paging.Rig, list[str]],
) -> None:
    # written a moment before the runs that read it: on a file system with coarse
    # timestamps an edit within the same tick keeps its stat, so that stat is never clean
    rig, paths = clean_rig
    rig.write(paths[1], "FILE 1\n")
    rig.ws.reconcile()
    rig.ws.reconcile()
    assert _clean_row(rig)[paths[1]][0] == -1  # not clean: racy when it was read
    with open(rig.root / paths[1], "r+b") as out:  # in place: the same inode, the same size
        out.write(b"file 1\n")
    calls = calls_of(rig.source)
    report = rig.ws.reconcile().sources[0]
    assert calls == [[paths[1]]] and report.resolved == [(paths[1], "disk->agent")]
    assert rig.block(paths[1]) == "file 1\n"


def test_a_clean_stat_from_the_future_is_not_trusted(
    clean_rig: tuple[paging.Rig, list[str]],
) -> None:
    # the file changed in place and a row claims its new stat clean, written "later" (the
    # clock moved back since): the row is not trusted, the file reaches the plugin
    rig, paths = clean_rig
    with open(rig.root / paths[2], "r+b") as out:
        out.write(b"FILE 2\n")
    cache = rig.source.bases.stat_cache()
    clean = cache.clean()
    assert clean is not None
    clean.bound[paths[2]] = file_stat(os.stat(rig.root / paths[2]))
    clean.stamp = StatCache.now() + 3600 * 10**9
    cache.save_clean(clean)
    report = rig.ws.reconcile().sources[0]
    assert report.resolved == [(paths[2], "disk->agent")] and rig.block(paths[2]) == "FILE 2\n"


def test_an_agent_edit_of_a_clean_paths_block_is_seen(
    clean_rig: tuple[paging.Rig, list[str]],
) -> None:
    rig, paths = clean_rig
    rig.ws.blocks.update(OWNER, label(paths[3]), "agent edit\n")  # main moves; the file does not
    calls = calls_of(rig.source)
    report = rig.ws.reconcile().sources[0]
    assert calls == [[paths[3]]] and report.resolved == [(paths[3], "agent->disk")]
    assert rig.read(paths[3]) == "agent edit\n" and report.unchanged == 4
    assert _clean_row(rig)[paths[3]][0] == -1  # written by the plugin: not clean yet
    _quiet(rig)


def test_a_base_changed_by_another_writer_is_seen(
    clean_rig: tuple[paging.Rig, list[str]],
) -> None:
    # another writer of the bases: both sides now differ from the base and agree, so the
    # base advances; a stale clean row would say "unchanged" and leave it behind
    rig, paths = clean_rig
    with rig.source.bases.bases.update("elsewhere", "test") as tx:
        tx.set_base(paths[0], OWNER, label(paths[0]), "an older base\n")
    calls = calls_of(rig.source)
    report = rig.ws.reconcile().sources[0]
    assert calls == [[paths[0]]] and report.resolved == [(paths[0], "identical")]
    assert rig.base(paths[0]) == "file 0\n"
    _quiet(rig)


def test_a_deleted_and_a_new_file_are_seen(clean_rig: tuple[paging.Rig, list[str]]) -> None:
    rig, paths = clean_rig
    (rig.root / paths[4]).unlink()
    rig.write("new.md", "new\n")
    calls = calls_of(rig.source)
    report = rig.ws.reconcile().sources[0]
    assert calls == [sorted(["new.md", paths[4]])]
    assert sorted(report.resolved) == sorted(
        [("new.md", "disk->agent"), (paths[4], "delete-block")]
    )
    assert rig.block(paths[4]) is None and rig.block("new.md") == "new\n"
    assert paths[4] not in _clean_row(rig) and "new.md" in _clean_row(rig)
    _quiet(rig)


def test_a_file_replaced_by_a_rename_is_seen(clean_rig: tuple[paging.Rig, list[str]]) -> None:
    # another inode with the old size and mtime: not the stat the row holds
    rig, paths = clean_rig
    file = rig.root / paths[1]
    before = os.stat(file)
    other = file.with_name("other.tmp")
    other.write_bytes(b"FILE 1\n")
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, file)
    report = rig.ws.reconcile().sources[0]
    assert report.resolved == [(paths[1], "disk->agent")] and rig.block(paths[1]) == "FILE 1\n"


def test_a_block_read_by_its_known_blob_never_overwrites_a_newer_version(
    rig: paging.Rig,
) -> None:
    """A mirrored run's batch reads the blocks the host looked up already by their content
    blob (as of the run's start); a write over a version an agent made since is dropped."""
    paths = rig.files(2)
    rig.ws.reconcile()
    source = rig.source
    rig.ws.blocks.catch_up_index()
    labels = [label(p) for p in paths]
    latest = source.bases.index().latest_contents_of(OWNER, labels)
    known = {(OWNER, name): row for name, row in latest.items()}
    rig.ws.blocks.update(OWNER, labels[0], "the agent, meanwhile\n")
    batch = SyncBatch(
        rig.ws.blocks, source.bases.bases, "reconcile", "plugin:x", dry_run=False, known=known
    )
    for i, path in enumerate(paths):
        assert batch.read(OWNER, labels[i]) == f"file {i}\n"  # as of the run's start
        batch.update(OWNER, labels[i], "from disk\n")
        batch.bases.set_base(path, OWNER, labels[i], "from disk\n")
    batch.commit()
    assert batch.moved == {paths[0]}
    assert rig.block(paths[0]) == "the agent, meanwhile\n" and rig.base(paths[0]) == "file 0\n"
    assert rig.block(paths[1]) == rig.base(paths[1]) == "from disk\n"
