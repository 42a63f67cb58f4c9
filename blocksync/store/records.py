"""Records: the rows of ``index.db`` that git holds nowhere else, kept in git under one ref.

Conflicts (with their three sides and every resolution), runs, notifications (with their ack
state), and the state and cursors of data streams are history no reconcile can re-detect. Each
such row is also a *record* on ``refs/blocksync/records``, a commit chain whose tree holds::

    conflicts/<h[:2]>/<h[2:4]>/<id>/row.json       the row but its sides; beside it the files
                                     /base, /disk, /agent   of the sides present (verbatim text)
    runs/<h[:2]>/<h[2:4]>/<run id>.json
    streams/<h[:2]>/<h[2:4]>/<stream>.json
    stream-cursors/<h[:2]>/<h[2:4]>/<stream>+<seq>.json
    notifications/<n >> 16>/<n >> 8 & 255>.jsonl   (hex, n the id: notifications n..n+255)

``h`` is the SHA-256 of the row's key: a record sits three folders deep, so writing one
rewrites four small trees whatever the number of records (O(log n), not O(n)). ``row.json``
and the ``.json`` files are every column of the row, sorted keys
(:func:`~blocksync.store.gitstore.json_document`); names are the key, encoded by :mod:`blocksync.names`
(a key over 200 bytes is named by its hash instead). Notifications come a thousand to a pull
and are each small: a file holds the rows of 256 consecutive ids, one JSON line each (sorted
keys), so a pull writes a handful of files instead of a thousand, and an ack rewrites one
file of at most 256 lines.

**Git first, git wins.** A write transaction of a record table (:mod:`blocksync.index.sqlitetable`)
makes its changes in SQLite, writes the rows it changed as ONE commit here (compare-and-swap of
the ref, retried like every ref blocksync moves), notes that commit in ``index.db`` (table
``records_head``) and only then commits SQLite. A process killed between the two leaves git
one commit ahead; the next transaction, or the next open of a record table, applies what git
has and the index lacks (O(changed records): a diff of two trees), so nothing git holds is
lost. ``blocksync index rebuild`` recreates every record table from the ref, and ``blocksync
fsck`` reports every row on which the two disagree; git is the truth for both. An index.db
whose ref is missing (a store from before records, or the ref deleted) is the only copy: its
rows are written to git at once, as the ref's first commit.

A row in a passing state (``RecordKind.in_flight``: a run's row while it runs) is index.db's
only until it leaves that state, so a run costs one records commit, not two; ``fsck`` does not
count such a row as a disagreement, and a reload from git keeps it.

The ref stays on its machine: only ``refs/heads/main`` travels to remotes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dulwich.objects import Blob, ShaFile
from dulwich.refs import Ref

from blocksync import names
from blocksync.errors import IndexCorrupt, RepositoryCorrupt
from blocksync.index.conflicts import RECORDS as CONFLICT_RECORDS
from blocksync.index.db import Connection, DatabaseError, IndexDb, OperationalError
from blocksync.index.notifications import CURSOR_RECORDS, NOTIFICATION_RECORDS, STREAM_RECORDS
from blocksync.index.runs import RECORDS as RUN_RECORDS
from blocksync.index.sqlitetable import Key, RecordKind, Staged

from .gitstore import FILE_MODE, TREE_MODE, Draft, GitStore, TreeEditor, json_document, tree_of

REF = Ref(b"refs/blocksync/records")
REF_NAME = REF.decode()
AUTHOR = "blocksync"
ROW_FILE = b"row.json"
#: longest record name made of the key itself; a longer key is named by its hash
NAME_BYTES = 200
#: differing records fsck names one by one; the rest are counted
REPORTED = 20
#: every kind of record, in the order a rebuild restores them
KINDS: tuple[RecordKind, ...] = (
    CONFLICT_RECORDS,
    RUN_RECORDS,
    NOTIFICATION_RECORDS,
    STREAM_RECORDS,
    CURSOR_RECORDS,
)

#: rows of a numbered kind one record holds (a range of 2**BUCKET_BITS numbers)
BUCKET_BITS = 8

Row = dict[str, Any]
Entry = tuple[int, bytes]  # a tree entry: (mode, hex sha)
RecordPath = tuple[bytes, ...]
Encoded = tuple[int, bytes, list[ShaFile]]  # a record's entry and the objects it needs
_LINE = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class Change:
    """A record that differs between two trees of the ref (None: absent from that tree)."""

    kind: RecordKind
    path: RecordPath
    old: Entry | None
    new: Entry | None


def record_path(kind: RecordKind, key: Key) -> RecordPath:
    """Where the record holding row ``key`` of ``kind`` lives in the tree (module docstring)."""
    parts: tuple[str, ...]
    if kind.numbered:
        (n,) = key
        bucket = int(n) >> BUCKET_BITS
        parts = (f"{bucket >> 8:x}", f"{bucket & 0xFF:02x}.jsonl")
    else:
        text = "\0".join(str(part) for part in key)
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        name = "+".join(names.encode(str(part)) for part in key)
        if len(name) > NAME_BYTES:
            name = digest
        parts = (digest[:2], digest[2:4], name + ("" if kind.files else ".json"))
    return (kind.folder.encode(), *(p.encode("ascii") for p in parts))


def _depth(kind: RecordKind) -> int:
    """How many names a record's path has."""
    return 3 if kind.numbered else 4


def describe(kind: RecordKind, key: Key) -> str:
    """A record as messages name it: ``conflict c-0123456789``, ``stream cursor feed #3``."""
    if len(key) == 2:
        return f"{kind.noun} {key[0]} #{key[1]}"
    return f"{kind.noun} {key[0]}"


class Records:
    """``refs/blocksync/records`` of one repository, and index.db's record tables kept in step
    with it (the :class:`~blocksync.index.sqlitetable.Recorder` those tables are opened with)."""

    def __init__(
        self, repo_path: Path, *, durable: bool = False, kinds: Sequence[RecordKind] = KINDS
    ) -> None:
        self.git = GitStore(repo_path, durable=durable)
        self.kinds = {kind.folder.encode(): kind for kind in kinds}
        # the git side is shared by every table of a workspace, in any thread
        self._lock = threading.RLock()

    def close(self) -> None:
        self.git.close()

    def head(self) -> bytes | None:
        """The ref's commit, None before the first record."""
        return self.git.ref(REF)

    # -- the Recorder protocol ------------------------------------------------------------

    def follow(self, conn: Connection) -> None:
        """Catch index.db up with the ref, when it is behind (one read when it is not)."""
        if _indexed(conn) == _hex(self.head()):
            return
        with _transaction(conn):
            self.catch_up(conn)

    def catch_up(self, conn: Connection) -> None:
        """Inside a write transaction: make the record tables hold what the ref holds now."""
        with self._lock:
            indexed, head = _indexed(conn), self.head()
            if indexed == _hex(head):
                return
            _create_head_table(conn)
            if head is None:
                # no ref, or it was deleted: index.db is the only copy, so git gets it
                head = self._write(conn, self._everything(conn), None, "records kept by index.db")
            elif indexed == "":  # the ref did not exist when index.db last looked
                self._apply(conn, self._diff(None, self._tree(head)))
            elif indexed is None or not self._exists(indexed):
                self._reload(conn, head)
            else:
                self._apply(conn, self._diff(self._tree(indexed.encode()), self._tree(head)))
            _set_indexed(conn, head)

    def commit(self, conn: Connection, staged: Staged) -> None:
        """Write the records of the staged rows, as ``conn`` holds them now, as one commit."""
        with self._lock:
            by_kind: dict[str, tuple[RecordKind, list[Key]]] = {}
            for kind, key in staged.rows.values():
                by_kind.setdefault(kind.folder, (kind, []))[1].append(key)
            records: dict[RecordPath, Encoded | None] = {}
            for kind, keys in by_kind.values():
                found: dict[RecordPath, list[Row]] = {record_path(kind, key): [] for key in keys}
                for row in _rows(conn, kind, keys):
                    found[record_path(kind, _key(kind, row))].append(row)
                records.update((path, encode(kind, rows)) for path, rows in found.items())
            # on the commit index.db follows (the ref's, unless a writer that does not share
            # this index.db moved it since: then the compare-and-swap fails and _write merges)
            indexed = _indexed(conn)
            parent = indexed.encode("ascii") if indexed else None
            head = self._write(conn, records, parent, staged.message)
            _set_indexed(conn, head)

    # -- rebuild and fsck -----------------------------------------------------------------

    def restore(self, index_db: IndexDb) -> None:
        """Recreate every record table of ``index_db`` from the ref (git wins); with no ref,
        keep the rows and write them to git (they are the only copy)."""
        with _translated(index_db), index_db.atomic() as conn, self._lock:
            _create_head_table(conn)
            head = self.head()
            if head is None:
                head = self._write(conn, self._everything(conn), None, "records kept by index.db")
            else:
                self._reload(conn, head)
            _set_indexed(conn, head)

    def check(self, index_db: IndexDb) -> list[str]:
        """Every row on which the record tables of ``index_db`` and the ref disagree, named
        (empty: none). Catches index.db up first: a writer killed between git and index.db is
        not damage."""
        with _translated(index_db), index_db.reading() as conn, self._lock:
            self.follow(conn)
            head = self.head()
            problems = []
            if _indexed(conn) != _hex(head):
                problems.append(
                    f"index.db follows {REF_NAME} at {_indexed(conn) or 'nothing'}, "
                    f"the ref is at {_hex(head) or 'nothing'}"
                )
            in_git = {c.path: c for c in self._diff(None, self._tree(head))}
            in_index = self._grouped(conn)
            for path in sorted(in_git.keys() | in_index.keys()):
                problems += self._compare(path, in_git.get(path), in_index.get(path))
        if len(problems) > REPORTED:
            problems[REPORTED:] = [f"... and {len(problems) - REPORTED} more rows differ"]
        return problems

    def _compare(
        self, path: RecordPath, change: Change | None, indexed: tuple[RecordKind, list[Row]] | None
    ) -> list[str]:
        """What differs between the rows of one record in git and in index.db."""
        if change is not None:
            kind, rows, entry = change.kind, [] if indexed is None else indexed[1], change.new
        else:
            assert indexed is not None
            (kind, rows), entry = indexed, None
        encoded = encode(kind, rows)
        if entry is not None and encoded is not None and encoded[:2] == entry:
            return []
        kept = [] if entry is None else self._decode(kind, path, entry)
        ours = {_key(kind, row): row for row in rows}
        theirs = {_key(kind, row): row for row in kept}
        problems = []
        for key in sorted(ours.keys() | theirs.keys(), key=str):
            what = describe(kind, key)
            row, record = ours.get(key), theirs.get(key)
            if record is None and row is not None and _in_flight(kind, row):
                continue  # not recorded yet, by design
            if record is None:
                problems.append(f"{what} is in index.db, not in {REF_NAME}")
            elif row is None:
                problems.append(f"{what} is in {REF_NAME}, not in index.db")
            elif fields := [c for c in kind.columns if row.get(c) != record.get(c)]:
                shown = "; ".join(
                    f"{c} is {_short(row.get(c))} in index.db, {_short(record.get(c))} in git"
                    for c in fields[:3]
                )
                more = f" (and {len(fields) - 3} more columns)" if len(fields) > 3 else ""
                problems.append(f"{what} differs from {REF_NAME}: {shown}{more}")
        return problems

    # -- reading the ref ------------------------------------------------------------------

    def _tree(self, commit: bytes | None) -> bytes | None:
        return self.git.commit_tree(commit)

    def _exists(self, commit: str) -> bool:
        try:
            self.git.commit(commit.encode("ascii"))
        except (RepositoryCorrupt, UnicodeError, ValueError):
            return False
        return True

    def _diff(self, old: bytes | None, new: bytes | None) -> list[Change]:
        """The records that differ between two trees of the ref: O(changed records)."""
        git = self.git
        out: list[Change] = []
        for (name,), before, after in git.diff_trees(old, new):
            kind = self.kinds.get(name)
            if kind is None:  # a folder of a later blocksync is left alone
                continue
            folders = (git.subtree((name,), before), git.subtree((name,), after))
            for path, was, now in git.diff_trees(*folders, _depth(kind) - 1, (name,)):
                out.append(Change(kind, path, was, now))
        return out

    def _decode(self, kind: RecordKind, path: RecordPath, entry: Entry) -> list[Row]:
        """The rows a record holds (each checked against its kind's columns)."""
        mode, sha = entry
        if kind.files:
            return [self._decode_folder(kind, path, entry)]
        if mode != FILE_MODE:
            raise self._corrupt(path, "is a folder, not a record")
        data = self.git.blob(sha)
        try:
            docs = (
                [json.loads(line) for line in data.splitlines()]
                if kind.numbered
                else [json.loads(data)]
            )
        except ValueError as exc:
            raise self._corrupt(path, f"is not JSON ({exc})") from exc
        return [self._row(kind, path, doc) for doc in docs]

    def _decode_folder(self, kind: RecordKind, path: RecordPath, entry: Entry) -> Row:
        if entry[0] != TREE_MODE:
            raise self._corrupt(path, "is a file, not a record folder")
        files = {
            item.path.decode("utf-8", "replace"): item.sha
            for item in self.git.tree(entry[1]).items()
        }
        row_blob = files.pop(ROW_FILE.decode(), None)
        if row_blob is None or not set(files) <= set(kind.files):
            raise self._corrupt(path, f"holds {sorted(files)}, not row.json and sides")
        try:
            doc = json.loads(self.git.blob(row_blob))
        except ValueError as exc:
            raise self._corrupt(path, f"row.json is not JSON ({exc})") from exc
        row = self._row(kind, path, doc)
        for column in kind.files:
            blob = files.get(column)
            try:
                row[column] = None if blob is None else self.git.blob(blob).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self._corrupt(path, f"{column} is not UTF-8") from exc
        return row

    def _row(self, kind: RecordKind, path: RecordPath, doc: object) -> Row:
        expected = set(kind.columns) - set(kind.files)
        if not isinstance(doc, dict) or set(doc) != expected:
            got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            raise self._corrupt(path, f"holds {got}, not the columns of {kind.table}")
        return doc

    def _corrupt(self, path: RecordPath, detail: str) -> RepositoryCorrupt:
        where = b"/".join(path).decode("utf-8", "replace")
        return RepositoryCorrupt(str(self.git.path), f"{REF_NAME}:{where} {detail}")

    # -- writing --------------------------------------------------------------------------

    def _write(
        self,
        conn: Connection,
        records: dict[RecordPath, Encoded | None],
        parent: bytes | None,
        message: str,
    ) -> bytes | None:
        """One commit of ``records`` (None: removed) on ``parent``, the ref moved to it by
        compare-and-swap; the ref's commit after it (``parent`` when nothing changed)."""
        git = self.git

        def build(head: bytes | None) -> Draft | None:
            nonlocal parent
            if head != parent:
                if head is None:  # deleted meanwhile: the next transaction writes everything
                    raise git.gave_up(REF, 1)
                # a writer that does not share this index.db moved the ref: take its records,
                # but for those written here (this transaction's win), and build on it
                theirs = self._diff(git.commit_tree(parent), git.commit_tree(head))
                self._apply(conn, [c for c in theirs if c.path not in records])
                parent = head
            tree = git.commit_tree(parent)
            root = TreeEditor(git, tree)
            objects: list[ShaFile] = []
            for path, record in records.items():
                if root.put(path, None if record is None else record[:2]) and record is not None:
                    objects += record[2]
            if root.write(objects) == tree:
                return None
            return Draft(root, objects, AUTHOR, message)

        _, commit = git.commit_with_retry(REF, build)
        return parent if commit is None else commit.id

    def _grouped(self, conn: Connection) -> dict[RecordPath, tuple[RecordKind, list[Row]]]:
        """Every row of every record table, by the record that holds it."""
        out: dict[RecordPath, tuple[RecordKind, list[Row]]] = {}
        for kind in self.kinds.values():
            for row in _select(conn, kind, None):
                out.setdefault(record_path(kind, _key(kind, row)), (kind, []))[1].append(row)
        return out

    def _everything(self, conn: Connection) -> dict[RecordPath, Encoded | None]:
        # tables an older blocksync made are brought up to date first: a column they lack
        # would otherwise be read as its own name (SQLite's double-quoted string literals)
        for kind in self.kinds.values():
            kind.prepare(conn)
        return {path: encode(kind, rows) for path, (kind, rows) in self._grouped(conn).items()}

    def _reload(self, conn: Connection, head: bytes) -> None:
        """Make the record tables what the ref holds, but for their in-flight rows git lacks."""
        flying: list[tuple[RecordKind, Row]] = []
        for kind in self.kinds.values():
            kind.prepare(conn)
            if kind.in_flight is not None:
                flying += [(kind, row) for row in _select(conn, kind, None) if kind.in_flight(row)]
            conn.execute(f"DELETE FROM {kind.table}")
        self._apply(conn, self._diff(None, self._tree(head)))
        for kind, row in flying:  # a row git holds (by its key or its place) stays git's
            _upsert(conn, kind, row, replace=False)

    def _apply(self, conn: Connection, changes: Iterable[Change]) -> None:
        """Make the rows of each changed record what its new version holds."""
        prepared: set[str] = set()
        for change in changes:
            kind = change.kind
            if kind.folder not in prepared:
                kind.prepare(conn)
                prepared.add(kind.folder)
            new = [] if change.new is None else self._decode(kind, change.path, change.new)
            for row in new:
                _upsert(conn, kind, row)
            if change.old is not None:
                kept = {_key(kind, row) for row in new}
                for row in self._decode(kind, change.path, change.old):
                    if _key(kind, row) not in kept:
                        _delete(conn, kind, _key(kind, row))


def encode(kind: RecordKind, rows: Sequence[Row]) -> Encoded | None:
    """The record holding ``rows`` (None: no rows, no record): its entry and new objects."""
    if not rows:
        return None
    if kind.numbered:
        ordered = sorted(rows, key=lambda row: _key(kind, row))
        blob = Blob.from_string("".join(_LINE.encode(row) + "\n" for row in ordered).encode())
        return FILE_MODE, blob.id, [blob]
    (row,) = rows
    doc = {column: row[column] for column in kind.columns if column not in kind.files}
    blob = Blob.from_string(json_document(doc))
    if not kind.files:
        return FILE_MODE, blob.id, [blob]
    entries: dict[bytes, tuple[int, bytes]] = {ROW_FILE: (FILE_MODE, blob.id)}
    objects: list[ShaFile] = [blob]
    for column in kind.files:
        text = row[column]
        if text is not None:
            side = Blob.from_string(text.encode("utf-8"))
            entries[column.encode()] = (FILE_MODE, side.id)
            objects.append(side)
    folder = tree_of(entries)
    objects.append(folder)
    return TREE_MODE, folder.id, objects


# -- index.db ---------------------------------------------------------------------------------


@contextmanager
def _translated(index_db: IndexDb) -> Iterator[None]:
    try:
        yield
    except DatabaseError as exc:
        raise IndexCorrupt(str(index_db.path), f"cannot keep its records ({exc})") from exc


@contextmanager
def _transaction(conn: Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _hex(commit: bytes | None) -> str:
    """A commit as ``records_head`` notes it: "" for none (the ref did not exist)."""
    return "" if commit is None else commit.decode("ascii")


def _indexed(conn: Connection) -> str | None:
    """The commit index.db's record tables follow; None if they never followed the ref."""
    try:
        found = conn.execute("SELECT head FROM records_head WHERE ref = ?", [REF_NAME]).fetchone()
    except OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if found is None else str(found[0])


def _create_head_table(conn: Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS records_head (ref TEXT PRIMARY KEY, head TEXT NOT NULL)"
    )


def _set_indexed(conn: Connection, head: bytes | None) -> None:
    conn.execute("INSERT OR REPLACE INTO records_head VALUES (?, ?)", [REF_NAME, _hex(head)])


def _quoted(columns: Iterable[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _key(kind: RecordKind, row: Row) -> Key:
    return tuple(row[column] for column in kind.key)


def _has_table(conn: Connection, table: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
        ).fetchone()
        is not None
    )


def _select(conn: Connection, kind: RecordKind, keys: Sequence[Key] | None) -> list[Row]:
    """The rows of ``keys`` (None: every row) of ``kind``'s table, as column -> value."""
    if not _has_table(conn, kind.table):
        return []
    query = f"SELECT {_quoted(kind.columns)} FROM {kind.table}"
    if keys is None:
        found = conn.execute(query).fetchall()
    elif len(kind.key) == 1:
        found = []
        for start in range(0, len(keys), 500):
            chunk = [key[0] for key in keys[start : start + 500]]
            marks = ", ".join("?" * len(chunk))
            found += conn.execute(f'{query} WHERE "{kind.key[0]}" IN ({marks})', chunk).fetchall()
    else:
        where = " AND ".join(f'"{c}" = ?' for c in kind.key)
        found = [r for key in keys for r in conn.execute(f"{query} WHERE {where}", key).fetchall()]
    return [dict(zip(kind.columns, values)) for values in found]


def _rows(conn: Connection, kind: RecordKind, keys: list[Key]) -> list[Row]:
    """The rows the records of ``keys`` hold now: those rows, or for a numbered kind every row
    of the records' ranges of numbers."""
    if not kind.numbered:
        return _select(conn, kind, keys)
    column, span = kind.key[0], 1 << BUCKET_BITS
    query = (
        f'SELECT {_quoted(kind.columns)} FROM {kind.table} WHERE "{column}" >= ? AND "{column}" < ?'
    )
    found = []
    for low in sorted({int(n) >> BUCKET_BITS << BUCKET_BITS for (n,) in keys}):
        found += conn.execute(query, [low, low + span]).fetchall()
    return [dict(zip(kind.columns, values)) for values in found]


def _in_flight(kind: RecordKind, row: Row) -> bool:
    return kind.in_flight is not None and kind.in_flight(row)


def _upsert(conn: Connection, kind: RecordKind, row: Row, *, replace: bool = True) -> None:
    marks = ", ".join("?" * len(kind.columns))
    verb = "REPLACE" if replace else "IGNORE"
    conn.execute(
        f"INSERT OR {verb} INTO {kind.table} ({_quoted(kind.columns)}) VALUES ({marks})",
        [row[column] for column in kind.columns],
    )


def _delete(conn: Connection, kind: RecordKind, key: Key) -> None:
    where = " AND ".join(f'"{c}" = ?' for c in kind.key)
    conn.execute(f"DELETE FROM {kind.table} WHERE {where}", list(key))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
