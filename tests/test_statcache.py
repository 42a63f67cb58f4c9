"""The stat cache of folder sources (issue 14, item 4): an unchanged run stats its files instead
of reading them, and a cache that is wrong never hides a change.

Each scenario below fools a naive cache that trusts a file's size and mtime (or, for a touched
file, one that takes any new stat as a new content): the file changed within the timestamp
granularity of the read, its mtime put back (the clock moved back), a file replaced by another of
the same size, a file touched but unchanged, a row of a path that is gone, a damaged table.
Whether a file was read is observed for real: every ``open`` of the process raises a Python
audit event (``sys.addaudithook``), counted here by file name.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.fs.disk import Folder, file_stat
from blocksync.index.statcache import (
    CLEAN_BASE_TABLE,
    CLEAN_CHANGES_TABLE,
    CLEAN_TABLE,
    FINE_RACY_NS,
    NOT_CLEAN,
    RACY_NS,
    TABLE,
    Clean,
    Seen,
    StatCache,
    most_changes,
)
from blocksync.shared.wit import PermissionLevel, PermissionRule
from blocksync.sync.folder.config import FileSourceSpec
from blocksync.sync.folder.source import FileSource
from blocksync.sync.protocol import WRITE, NeedsResolution, NoChange, ReconcileMode, Resolved

AGENT = "alice"
KEY = "notes"
NAMES = [f"n{i}.md" for i in range(5)]

#: file names opened while a test records (None: not recording)
_opened: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes)):
        _opened.append(os.path.basename(os.fsdecode(args[0])))


sys.addaudithook(_audit)


class Rig:
    def __init__(self, tmp_path: Path, level: str = "read-write") -> None:
        self.root = tmp_path / "folder"
        self.root.mkdir()
        self.ws = blocksync.init(tmp_path / "store")
        self.spec = FileSourceSpec(
            KEY,
            AGENT,
            "notes",
            (self.root,),
            permission_rules=(PermissionRule("**", PermissionLevel(level)),),
        )

    def run(self, mode: ReconcileMode = WRITE) -> tuple[dict[str, str], list[str]]:
        """One reconcile over every path: path -> result kind, and the files it opened."""
        global _opened
        with FileSource(self.spec, self.ws.blocks) as fs:
            _opened = []
            try:
                outcome = fs.reconcile_outcome(None, mode)
            finally:
                opened, _opened = _opened, None
        assert not outcome.skipped, outcome.skipped
        kinds = {r.path: type(r).__name__ for r in outcome.results}
        return kinds, sorted(set(opened) & set(NAMES + ["ghost.md"]))

    def block(self, name: str) -> str:
        with FileSource(self.spec, self.ws.blocks) as fs:
            ref = fs.block_of(name)
        return self.ws.blocks.read(AGENT, ref.label).content

    def rows(self) -> dict[str, tuple[object, ...]]:
        conn = self.ws.index_db.conn
        rows = conn.execute(f"SELECT * FROM {TABLE} WHERE source = ?", [KEY]).fetchall()
        return {r[1]: tuple(r[2:]) for r in rows}

    def cache(self) -> StatCache:
        return StatCache(self.ws.index_db, KEY)


def _settle() -> None:
    """Wait until every file written so far is older than the racy window of a run starting
    now (the cache trusts no row of a file that changed less than RACY_NS before it was read)."""
    time.sleep(RACY_NS / 1e9 + 0.1)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    for i, name in enumerate(NAMES):
        (made.root / name).write_text(f"note {i}\n")
    kinds, _ = made.run()  # the first sync binds every file
    assert set(kinds.values()) == {"Resolved"}
    _settle()
    kinds, _ = made.run()  # rows of files that were racy at the first sync are re-stamped
    assert set(kinds.values()) == {"NoChange"}
    yield made
    made.ws.close()


def _same_size(path: Path, text: str) -> None:
    """Rewrite ``path`` in place (same inode) with ``text`` of its own size."""
    assert len(text.encode()) == path.stat().st_size
    with open(path, "r+b") as f:
        f.write(text.encode())


def test_an_unchanged_run_opens_no_file(rig: Rig) -> None:
    kinds, opened = rig.run()
    assert set(kinds.values()) == {"NoChange"} and len(kinds) == len(NAMES)
    assert opened == []
    assert set(rig.rows()) == set(NAMES)


def test_a_run_without_the_cache_reads_every_file(rig: Rig) -> None:
    # what the test above would see without the cache: the audit hook does see reads
    rig.ws.index_db.conn.execute(f"DELETE FROM {TABLE}")
    rig.ws.index_db.conn.execute(f"DELETE FROM {CLEAN_TABLE}")  # and its clean paths
    kinds, opened = rig.run()
    assert set(kinds.values()) == {"NoChange"}
    assert opened == NAMES


def test_a_change_within_the_timestamp_granularity_is_seen(rig: Rig) -> None:
    # A run read "note 0" and stat-ed the file; the file changed again in the same clock tick,
    # so its stat now is exactly the one the run recorded with the old hash. A row stamped
    # that close to its file's timestamps is racy: never trusted.
    f = rig.root / "n0.md"
    old = hashlib.sha256(f.read_bytes()).hexdigest()
    _same_size(f, "NOTE 0\n")
    rig.cache().update({"n0.md": Seen(file_stat(os.stat(f)), old)}, StatCache.now())
    kinds, opened = rig.run()
    assert kinds["n0.md"] == "Resolved" and opened == ["n0.md"]
    assert rig.block("n0.md") == "NOTE 0\n"


def test_a_change_with_its_mtime_put_back_is_seen(rig: Rig) -> None:
    # the clock moved back, or a tool restored the old mtime: same size, same mtime, same inode
    f = rig.root / "n1.md"
    before = os.stat(f)
    _same_size(f, "note X\n")
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    now = os.stat(f)
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    kinds, _ = rig.run()
    assert kinds["n1.md"] == "Resolved"
    assert rig.block("n1.md") == "note X\n"


def test_a_row_stamped_in_the_future_is_not_trusted(rig: Rig) -> None:
    # written before the clock moved back: the stamp says nothing about what came after
    f = rig.root / "n2.md"
    old = hashlib.sha256(f.read_bytes()).hexdigest()
    _same_size(f, "note Y\n")
    future = StatCache.now() + 3600 * 10**9
    rig.cache().update({"n2.md": Seen(file_stat(os.stat(f)), old)}, future)
    kinds, _ = rig.run()
    assert kinds["n2.md"] == "Resolved"
    assert rig.block("n2.md") == "note Y\n"


def test_a_file_replaced_by_one_of_the_same_size_is_seen(rig: Rig) -> None:
    f = rig.root / "n3.md"
    before = os.stat(f)
    other = rig.root / "other.tmp"
    other.write_text("note Z\n")
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, f)
    assert (os.stat(f).st_size, os.stat(f).st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    kinds, _ = rig.run()
    assert kinds["n3.md"] == "Resolved"
    assert rig.block("n3.md") == "note Z\n"


def test_a_touched_file_is_read_and_found_unchanged(rig: Rig) -> None:
    f = rig.root / "n4.md"
    with FileSource(rig.spec, rig.ws.blocks) as fs:
        label = fs.block_of("n4.md").label
    version = rig.ws.blocks.read(AGENT, label).version
    os.utime(f)
    kinds, opened = rig.run()
    assert set(kinds.values()) == {"NoChange"}  # no spurious change
    assert opened == ["n4.md"]  # its new stat was a miss: read, and the row re-recorded
    assert rig.rows()["n4.md"][:4] == file_stat(os.stat(f))
    assert rig.ws.blocks.read(AGENT, label).version == version


def test_rows_of_paths_that_are_gone_go_away(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "admin")
    for name in NAMES:
        (rig.root / name).write_text("x\n")
    rig.run()
    (rig.root / "n0.md").unlink()
    # a row for a file that never was, as a cache trusting its rows would report it
    rig.cache().update({"ghost.md": Seen((2, 1, 1, 1), hashlib.sha256(b"x\n").hexdigest())}, 10)
    kinds, _ = rig.run()
    assert kinds["n0.md"] == "Resolved"  # deleted on disk: the block goes (admin)
    assert "ghost.md" not in kinds
    assert set(rig.rows()) == set(NAMES) - {"n0.md"}
    # the same name again, of the same size: a new file, not the cached one
    (rig.root / "n0.md").write_text("y\n")
    kinds, _ = rig.run()
    assert kinds["n0.md"] == "Resolved"
    assert rig.block("n0.md") == "y\n"
    rig.ws.close()


@pytest.mark.parametrize(
    "damage",
    [
        f"DROP TABLE {TABLE}",
        f"UPDATE {TABLE} SET size = 'big', mtime_ns = 1.5",
        f"DROP TABLE {TABLE}; CREATE TABLE {TABLE} (x TEXT)",
    ],
)
def test_a_damaged_or_missing_table_falls_back_to_hashing(rig: Rig, damage: str) -> None:
    # the clean paths (a blob per source) damaged alike
    clean = damage.replace(TABLE, CLEAN_BASE_TABLE).replace(
        "size = 'big', mtime_ns = 1.5", "stats = 'x'"
    )
    rig.ws.index_db.conn.executescript(f"{damage}; {clean}")
    _same_size(rig.root / "n0.md", "NOTE 0\n")
    kinds, opened = rig.run()
    assert kinds["n0.md"] == "Resolved" and opened == NAMES  # every file hashed
    assert set(kinds.values()) == {"Resolved", "NoChange"}
    assert set(rig.rows()) == set(NAMES)  # made again, with the rows of what was read


def test_a_dry_run_uses_the_cache_and_is_not_wrong(rig: Rig) -> None:
    rows = rig.rows()
    f = rig.root / "n1.md"
    before = os.stat(f)
    _same_size(f, "note Q\n")
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    kinds, opened = rig.run(ReconcileMode(dry_run=True))
    assert kinds["n1.md"] == "Resolved" and opened == ["n1.md"]
    assert rig.rows() == rows  # a dry run writes nothing, the cache included
    assert rig.block("n1.md") == "note 1\n"


def test_a_conflict_stays_a_conflict_with_the_cache(rig: Rig) -> None:
    f = rig.root / "n2.md"
    with FileSource(rig.spec, rig.ws.blocks) as fs:
        label = fs.block_of("n2.md").label
    rig.ws.blocks.update(AGENT, label, "agent\n")
    f.write_text("disk\n")
    for _ in range(2):
        kinds, _ = rig.run()
        assert kinds["n2.md"] == NeedsResolution.__name__
    assert kinds["n0.md"] == NoChange.__name__
    assert Resolved.__name__ not in kinds.values()


SECOND = 10**9


def _fine(ns: int) -> int:
    """``ns``, or next to it: never a whole second (a file system keeping finer timestamps)."""
    return ns + 1 if ns % SECOND == 0 else ns


def test_racy_and_future_rows_are_not_trusted(tmp_path: Path) -> None:
    with blocksync.init(tmp_path / "store") as ws:
        cache = StatCache(ws.index_db, KEY)
        now = StatCache.now()
        old = _fine(now - 10 * RACY_NS)
        recent = _fine(now - FINE_RACY_NS // 2)
        cache.update(
            {
                "still.md": Seen((1, old, old, 7), "a"),
                "racy-mtime.md": Seen((1, recent, old, 8), "b"),
                "racy-ctime.md": Seen((1, old, recent, 9), "c"),
            },
            now,
        )
        cache.update({"future.md": Seen((1, old, old, 10), "d")}, now + RACY_NS)
        assert cache.trusted(now + 1) == {"still.md": ((1, old, old, 7), "a")}


def test_the_racy_window_follows_the_file_systems_granularity(tmp_path: Path) -> None:
    # A sub-second mtime comes from a file system keeping fine timestamps: a file still for
    # a few ticks is trusted. A whole-second one may be of a file system keeping seconds (or
    # FAT's two): the same file then stays racy for RACY_NS.
    with blocksync.init(tmp_path / "store") as ws:
        cache = StatCache(ws.index_db, KEY)
        now = StatCache.now()
        old = _fine(now - 10 * RACY_NS)
        fine = _fine(now - 3 * FINE_RACY_NS)
        whole = (now - 3 * FINE_RACY_NS) // SECOND * SECOND  # under a second older still
        cache.update(
            {
                "fine.md": Seen((1, fine, old, 7), "a"),
                "whole-second.md": Seen((1, whole, old, 8), "b"),
                "whole-second-old.md": Seen((1, whole - RACY_NS, old, 9), "c"),
            },
            now,
        )
        assert set(cache.trusted(now)) == {"fine.md", "whole-second-old.md"}


def test_a_file_still_for_a_few_ticks_is_clean_and_a_whole_second_one_is_not(rig: Rig) -> None:
    fine, whole = rig.root / "n4.md", rig.root / "n3.md"
    fine.write_text("note four\n")
    whole.write_text("note three\n")
    os.utime(whole, ns=(0, (StatCache.now() - FINE_RACY_NS) // SECOND * SECOND))
    if os.stat(fine).st_mtime_ns % SECOND == 0:
        pytest.skip("this file system keeps whole-second timestamps")
    kinds, _ = rig.run()
    assert kinds["n4.md"] == kinds["n3.md"] == "Resolved"
    time.sleep(3 * FINE_RACY_NS / 1e9)  # still for a few ticks (both ctimes too)
    kinds, opened = rig.run()  # read again: they were racy when the run above read them
    assert opened == ["n3.md", "n4.md"]
    assert _clean(rig)["n4.md"] == file_stat(os.stat(fine))  # trusted from now on
    assert _clean(rig)["n3.md"][0] == -1  # its mtime could be a second's: not yet
    kinds, opened = rig.run()
    assert set(kinds.values()) == {"NoChange"} and opened == ["n3.md"]


# -- the clean paths: one row per source that calls most paths unchanged by their stat ---------


def _clean(rig: Rig) -> dict[str, tuple[int, ...]]:
    found = rig.cache().clean()
    assert found is not None
    return found.bound


def test_clean_paths_are_kept_and_an_unchanged_run_reads_no_row_per_path(rig: Rig) -> None:
    assert set(_clean(rig)) == set(NAMES)
    assert all(stat == file_stat(os.stat(rig.root / n)) for n, stat in _clean(rig).items())
    rows = rig.rows()
    rig.ws.index_db.conn.execute(f"DELETE FROM {TABLE}")  # the rows are not what it reads
    kinds, opened = rig.run()
    assert set(kinds.values()) == {"NoChange"} and opened == []
    assert rig.rows() == {}  # nothing re-read, nothing re-recorded
    assert rows


def test_a_block_edited_since_is_seen_though_its_file_is_clean(rig: Rig) -> None:
    with FileSource(rig.spec, rig.ws.blocks) as fs:
        label = fs.block_of("n1.md").label
    rig.ws.blocks.update(AGENT, label, "agent wrote\n")  # main moves on; the file does not
    kinds, _ = rig.run()
    assert kinds["n1.md"] == "Resolved"
    assert (rig.root / "n1.md").read_text() == "agent wrote\n"
    assert {kind for name, kind in kinds.items() if name != "n1.md"} == {"NoChange"}


def test_a_base_changed_since_is_seen_though_its_file_is_clean(rig: Rig) -> None:
    # another writer of the bases (a resolution, another machine's pull): both sides now
    # differ from the base, and agree, so the base advances; a stale clean row would say
    # "unchanged" and leave the base behind
    with FileSource(rig.spec, rig.ws.blocks) as fs:
        label = fs.block_of("n2.md").label
        with fs.bases.update("elsewhere", "test") as tx:
            tx.set_base("n2.md", AGENT, label, "an older base\n")
    kinds, opened = rig.run()
    assert kinds["n2.md"] == "Resolved" and opened == ["n2.md"]
    with FileSource(rig.spec, rig.ws.blocks) as fs:
        found = fs.bases.get("n2.md")
    assert found is not None and found[1] == "note 2\n"


def test_a_new_block_named_for_a_new_path_becomes_its_file(rig: Rig) -> None:
    with FileSource(rig.spec, rig.ws.blocks) as fs:
        label = fs.target("new.md").label
    rig.ws.blocks.create(AGENT, label, "from the agent\n")
    kinds, _ = rig.run()
    assert kinds["new.md"] == "Resolved"
    assert (rig.root / "new.md").read_text() == "from the agent\n"


def test_a_file_deleted_while_clean_is_seen(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "admin")
    for i, name in enumerate(NAMES):
        (rig.root / name).write_text(f"note {i}\n")
    rig.run()
    _settle()
    rig.run()
    assert set(_clean(rig)) == set(NAMES)
    (rig.root / "n3.md").unlink()
    kinds, _ = rig.run()
    assert kinds["n3.md"] == "Resolved"
    assert not rig.ws.blocks.exists(AGENT, _label(rig, "n3.md"))
    assert "n3.md" not in _clean(rig)  # its binding went: so did its clean row
    kinds, _ = rig.run()
    assert "n3.md" not in kinds and set(kinds.values()) == {"NoChange"}
    rig.ws.close()


def _label(rig: Rig, name: str) -> str:
    with FileSource(rig.spec, rig.ws.blocks) as fs:
        return fs.target(name).label


def test_clean_paths_stamped_in_the_future_are_not_trusted(rig: Rig) -> None:
    # a file changed in place and its clean stat claimed by a row written "later" (the clock
    # moved back since): the row is not trusted, the file is read
    f = rig.root / "n0.md"
    _same_size(f, "NOTE 0\n")
    clean = rig.cache().clean()
    assert clean is not None
    clean.bound["n0.md"] = file_stat(os.stat(f))
    clean.stamp = StatCache.now() + 3600 * 10**9
    rig.cache().save_clean(clean)
    kinds, _ = rig.run()
    assert kinds["n0.md"] == "Resolved"
    assert rig.block("n0.md") == "NOTE 0\n"


def test_racy_files_are_not_clean_until_they_have_been_still(rig: Rig) -> None:
    f = rig.root / "n4.md"
    f.write_text("note four\n")
    kinds, _ = rig.run()
    assert kinds["n4.md"] == "Resolved"
    kinds, opened = rig.run()  # written a moment ago: racy, so read again
    assert kinds["n4.md"] == "NoChange" and opened == ["n4.md"]
    assert _clean(rig)["n4.md"][0] == -1
    _settle()
    kinds, opened = rig.run()  # still for long enough: read once more, now clean
    assert opened == ["n4.md"] and _clean(rig)["n4.md"] == file_stat(os.stat(f))
    kinds, opened = rig.run()
    assert set(kinds.values()) == {"NoChange"} and opened == []


def test_files_a_first_sync_took_in_are_clean_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for i, name in enumerate(NAMES):
        (rig.root / name).write_text(f"note {i}\n")
    _settle()  # still for long enough before the first sync reads them
    kinds, _ = rig.run()
    assert set(kinds.values()) == {"Resolved"}
    assert _clean(rig) == {n: file_stat(os.stat(rig.root / n)) for n in NAMES}
    # valid for main and the bases as the sync left them (moved over its own commits), so
    # the next run has no change since to read
    clean = rig.cache().clean()
    main = rig.ws.index_db.conn.execute(
        "SELECT value FROM index_meta WHERE key = 'indexed_head'"
    ).fetchone()[0]
    with FileSource(rig.spec, rig.ws.blocks) as fs:
        bases = fs.bases.head()
    assert clean is not None and bases is not None
    assert clean.key[:2] == [main, bases.decode()]
    kinds, opened = rig.run()
    assert set(kinds.values()) == {"NoChange"} and opened == []
    # and a file edited since is still seen
    _same_size(rig.root / "n1.md", "NOTE 1\n")
    kinds, _ = rig.run()
    assert kinds["n1.md"] == "Resolved" and rig.block("n1.md") == "NOTE 1\n"
    rig.ws.close()


def test_a_scan_leaves_out_only_the_stats_it_was_told_and_that_still_hold(tmp_path: Path) -> None:
    """What a run over all paths relies on: a file is left out of the scan's stats only when
    its stat is exactly the known one; a changed, an unknown or a not-clean one is kept."""
    for name in ("same.md", "changed.md", "new.md", "dirty.md"):
        (tmp_path / name).write_text(f"{name}\n")
    known = {name: file_stat(os.stat(tmp_path / name)) for name in ("same.md", "changed.md")}
    known.update({"dirty.md": NOT_CLEAN, "gone.md": (1, 2, 3, 4)})
    (tmp_path / "changed.md").write_text("changed, and longer\n")
    with Folder(tmp_path) as folder:
        listing = folder.scan(stats=True, known=known)
        full = folder.scan(stats=True)
    assert listing.files == ["changed.md", "dirty.md", "new.md", "same.md"]
    assert listing.stats is not None and full.stats is not None
    assert set(listing.stats) == {"changed.md", "dirty.md", "new.md"}
    assert all(listing.stats[name] == full.stats[name] for name in listing.stats)
    assert set(full.stats) == set(full.files)


def _clean_tables(rig: Rig) -> tuple[bytes, dict[str, tuple[object, ...]]]:
    """The saved base's stats blob and the rows of changes since it."""
    conn = rig.ws.index_db.conn
    (stats,) = conn.execute(f"SELECT stats FROM {CLEAN_BASE_TABLE} WHERE source = ?", [KEY])
    changes = conn.execute(f"SELECT * FROM {CLEAN_CHANGES_TABLE} WHERE source = ?", [KEY])
    return stats[0], {row[1]: tuple(row[2:]) for row in changes}


def test_a_run_that_changed_a_few_paths_saves_those_not_every_path(rig: Rig) -> None:
    """The clean paths are a base and the changes since: a run writes the rows of what it
    changed, and what is loaded is the base with the changes."""
    base, _ = _clean_tables(rig)
    (rig.root / "n1.md").write_text("changed\n")
    kinds, _ = rig.run()
    assert kinds["n1.md"] == "Resolved"
    after, changes = _clean_tables(rig)
    assert after == base  # the base was not rewritten
    assert changes["n1.md"] == tuple(NOT_CLEAN)  # its file was written: not clean yet
    _settle()
    kinds, opened = rig.run()  # n1.md re-stamped once still: loaded from base + changes
    kinds, opened = rig.run()
    assert set(kinds.values()) == {"NoChange"} and opened == []
    assert _clean(rig)["n1.md"] == file_stat(os.stat(rig.root / "n1.md"))


def test_changes_past_the_limit_make_a_new_base(tmp_path: Path) -> None:
    cache = StatCache(blocksync.init(tmp_path / "store").index_db, KEY)
    made = Clean(["a", "b", "c"], 1, {f"p{i}": (i, i, i, i) for i in range(10)}, {"x"})
    cache.save_clean(made)
    loaded = cache.clean()
    assert loaded is not None and loaded.bound == made.bound and loaded.named == {"x"}
    for round_ in range(most_changes(10) + 2):  # one change per save: one past the limit
        loaded.still(f"p{round_ % 10}", (round_, 0, 0, 0))
        cache.save_clean(loaded)
    conn = cache.db.conn
    count = conn.execute(f"SELECT count(*) FROM {CLEAN_CHANGES_TABLE}").fetchone()[0]
    assert count < 10  # a new base took them in
    reloaded = cache.clean()
    assert reloaded is not None and reloaded.bound == loaded.bound
    loaded.forget("p3")
    cache.save_clean(loaded)
    again = cache.clean()
    assert again is not None and "p3" not in again.bound and again.bound == loaded.bound
    conn.execute(f"UPDATE {CLEAN_CHANGES_TABLE} SET size = 'big'")  # a damaged row of changes
    assert cache.clean() is None  # not trusted: the next run makes them anew
    cache.save_clean(None)
    assert cache.clean() is None
