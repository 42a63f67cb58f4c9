"""Git remotes: stores on several machines meeting through an ordinary git repository.

The remotes API the workspace uses (pull, push, their results, the conflicts of a remote);
talking to the other repository is :mod:`blocksync.sync.remotes.transport`, merging trees per block
:mod:`blocksync.sync.remotes.treemerge`.

Git is the whole wire protocol (dulwich's clients: file paths, ``git://``, ``http(s)://``, ssh).
What travels is ``refs/heads/main`` only. ``refs/sync/<source>`` stay home: they are the bases
of *this machine's* folders and buckets, and another machine's base for a folder of the same
name says nothing about what this machine's folder held (taking it would turn its edits into
deletions or conflicts). Block content, the thing machines share, is all on main -- and so are
the conflicts still open between machines (see "Conflicts travel" below).

Pull
    Fetch the remote's main into the object store (nothing else is touched: a transfer cut
    off half-way leaves at most unreferenced objects); check every commit the fetch brought
    (:mod:`blocksync.sync.remotes.checks`: a malformed block or a tree that is no store's refuses the
    pull, :class:`MalformedRemote`; a main of another store format than this code writes is
    refused too, :class:`RemoteFormatError`, naming the upgrade); then move the local main by
    compare-and-swap, retried on a lost race, and only then note the fetch in
    ``refs/remotes/<name>/main``. History from before an upgrade travels as it is: a merge base
    of format 1 (two machines in sync before each upgraded) is read in its own layout
    (:func:`blocksync.store.upgrade.diff_keys`, the upgrade's own key mapping):

    * remote already in local history, or no remote main: nothing to do;
    * local main on the remote's *first-parent* chain (or no local main): fast-forward;
    * otherwise a merge commit, parents ``[local, remote]``, whose tree merges PER BLOCK with
      reconcile's three-way rules, base = the block in the merge base commit: one side
      changed -> that side; both changed -> identical, or a clean ``merge3`` line merge, else
      a conflict (overlap, delete vs modify, both created without a base) that keeps the
      local side in the block and records the remote side beside it, in the merge commit.

    Either way, a pull that would delete more than the mass-deletion threshold of this store's
    blocks (:func:`blocksync.sync.protocol.mass_deletion`) is refused before main moves, unless the
    caller confirms (``allow_mass_delete``): an emptied remote must not empty every machine.

    The version index follows first parents, so a merge commit is indexed as one commit whose
    changes against its first parent (local) are what the remote brought: new versions of
    those blocks. A local main that is in the remote's history but not on its first-parent
    chain (another machine merged it as a second parent) is not fast-forwarded -- the index
    could not follow it -- but merged like any other: when the trees are equal nothing moves.

Conflicts travel
    A conflict kept only in one machine's index would be pushed as if the kept side were
    settled: the next machine would take it as the remote's edit and the other side would
    survive only in history. So an open conflict is recorded in the tree itself, beside the
    blocks (``conflicts/<owner>/<f1>/<f2>/<label>/``, :mod:`blocksync.sync.remotes.conflicts`: the base and the
    waiting side as blob ids, and the reason), as jj keeps conflicts inside commits. Every
    machine then holds the same thing meanwhile: the block holds the side the merging machine
    kept, the record the other. After each pull the conflict rows of remotes follow the
    records of main (:meth:`RemoteSync._follow_records`): a record is an open row (source
    ``remote:<name>``, path ``<owner>/<label>`` encoded as in the repository, *disk* = the
    waiting side, *agent* = the block), a record gone closes its row as resolved on the remote.
    Resolving or undoing (:class:`RemoteSource`) writes the block and the record in one commit,
    which the next push carries. Merges treat records three-way as well: both sides resolved
    alike -> settled; one resolved, the other untouched -> resolved; resolved differently -> a
    new conflict between the two choices; both still (or newly) conflicted -> every waiting
    side is kept, stacked in the record and raised one after the other. The version index,
    ``block list``, ``fsck`` and data sources read only ``blocks/``: a record is no block.

Push
    Compare-and-swap through git's own protocol: the update names the remote main it replaces
    (never a force). A remote main that is not in local history is pulled (fetched and merged)
    first; a push that loses the race is retried after a pull, a bounded number of times. A
    repository with a work tree whose checked-out branch is main is refused, as git itself
    refuses it (``receive.denyCurrentBranch``): the push would change files under someone's feet.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dulwich.objects import Blob

from blocksync import names
from blocksync.errors import (
    BlockExists,
    BlockNotFound,
    ConcurrentUpdate,
    MalformedRemote,
    RemoteFormatError,
    RemoteRejected,
    RepositoryCorrupt,
    SourceChanged,
    StaleVersion,
    StoreFormatError,
    UnrelatedHistories,
    UsageError,
)
from blocksync.index.conflicts import ConflictIndex
from blocksync.store import layout
from blocksync.store.blocks import MAIN, BlockStore, block_problem
from blocksync.store.gitstore import GitStore
from blocksync.store.upgrade import all_keys, check_readable
from blocksync.sync.outcome import Settled, Waiting, record_outcome
from blocksync.sync.protocol import (
    WRITE,
    ReconcileMode,
    ReconcileOutcome,
    Settlement,
    Sides,
    mass_deletion,
)

from . import conflicts as records
from .checks import fetched_problems
from .transport import MAX_MERGE_ATTEMPTS, SOURCE_PREFIX, Remote, Transport
from .treemerge import BLOCKS_KEY, TreeMerge, key_path

#: Pushes retried after a lost race (each after a pull).
MAX_PUSH_ATTEMPTS = 8
#: Seconds to wait before a retried push, times the attempt, with random jitter (0.5-1.5x).
PUSH_BACKOFF = 0.05
#: What a commit may hold at its root, and what each folder's entries must be (remote_checks).
FOLDER_CHECKS = {BLOCKS_KEY: block_problem, records.CONFLICTS_DIR: records.record_problem}


# -- results ---------------------------------------------------------------------------------


@dataclass
class RemotePull:
    remote: str
    action: str  # "up-to-date", "fast-forward", "merged", "empty" (the remote has no main)
    before: str | None
    after: str | None
    remote_head: str | None
    merged: list[tuple[str, str]] = field(default_factory=list)  # (path, "remote"/"merged")
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (path, conflict id)

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "action": self.action,
            "before": self.before,
            "after": self.after,
            "remote_head": self.remote_head,
            "merged": [{"path": p, "how": h} for p, h in self.merged],
            "conflicts": [{"path": p, "conflict": c} for p, c in self.conflicts],
        }


@dataclass
class RemotePush:
    remote: str
    action: str  # "pushed", "up-to-date", "nothing" (no local main)
    commit: str | None
    attempts: int
    pulls: list[RemotePull] = field(default_factory=list)  # merges a lost race needed

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "action": self.action,
            "commit": self.commit,
            "attempts": self.attempts,
            "pulls": [p.to_json() for p in self.pulls],
        }


# -- pull and push ---------------------------------------------------------------------------


class RemoteSync:
    """Pulls from and pushes to the remotes of one block store."""

    def __init__(
        self,
        store: BlockStore,
        conflicts: ConflictIndex,
        author: str,
        client: Callable[[str], tuple[Any, str]] | None = None,
    ) -> None:
        self.store = store
        self.git: GitStore = store.git
        self.conflicts = conflicts
        self.author = author
        self.transport = Transport(store.git, client)
        self.trees = TreeMerge(store.git, author)

    # -- pull -----------------------------------------------------------------------------

    def pull(self, remote: Remote, run_id: str, *, allow_mass_delete: bool = False) -> RemotePull:
        """Fetch, check what came (:class:`MalformedRemote`) and integrate it; only then is the
        fetch noted in ``refs/remotes/<name>/main``."""
        head = self.transport.fetch(remote)
        if head is not None:
            self._check(remote, head)
        result = self.integrate(remote, head, run_id, allow_mass_delete=allow_mass_delete)
        if head is not None:
            self.transport.track(remote, head)
        return result

    def _check(self, remote: Remote, head: bytes) -> None:
        ours = self.git.ref(MAIN)
        if head == ours or self.store.indexed(head.decode()):
            return  # nothing new: the usual sync of an idle remote
        found = self._format(head)
        if found > layout.FORMAT:  # before its trees are read in a layout they do not have
            raise self._format_refused(remote, head, found)
        known = set() if ours is None else self.transport.ancestors(ours)
        problems = fetched_problems(self.git, head, known, FOLDER_CHECKS)
        if problems:
            raise MalformedRemote(
                remote.name,
                f"main at {remote.shown_url} ({head.decode()[:12]}) brings what is not a "
                f"blocksync store's: {'; '.join(problems)}. Refusing to pull: nothing was "
                "applied (main, the index and refs/remotes are as they were).",
                problems,
            )
        if found != layout.FORMAT:
            raise self._format_refused(remote, head, found)

    def _format(self, head: bytes) -> int:
        """The store format of the remote main ``head`` (0: its format file names none, which
        the checks of what it brings report)."""
        try:
            return check_readable(self.git, self.git.commit_tree(head), "remote main")
        except StoreFormatError as exc:
            return exc.found
        except RepositoryCorrupt:
            return 0

    def _format_refused(self, remote: Remote, head: bytes, found: int) -> RemoteFormatError:
        """The refusal of a remote main, new to this store, of another store format than this
        code writes: format 1 was pushed by a machine still running an older blocksync
        (merging its new commits would mix two layouts), a newer one by a newer blocksync."""
        shown = f"main at {remote.shown_url} ({head.decode()[:12]})"
        if found < layout.FORMAT:
            how = (
                "run a blocksync that writes store format "
                f"{layout.FORMAT} (this one) on the machine that pushed it -- opening its store "
                "upgrades it in place -- and push from there again"
            )
        else:
            how = "upgrade blocksync on this machine (`pip install -U blocksync`) to pull it"
        return RemoteFormatError(
            remote.name,
            f"{shown} holds a format-{found} store, this blocksync writes format "
            f"{layout.FORMAT}: {how}. Refusing to pull: nothing was applied.",
            found,
            layout.FORMAT,
        )

    def integrate(
        self, remote: Remote, theirs: bytes | None, run_id: str, *, allow_mass_delete: bool = False
    ) -> RemotePull:
        """Make local main contain the fetched ``theirs`` (see the module docstring); then the
        conflict rows of ``remote:<name>`` follow the records of the new main."""
        for _ in range(MAX_MERGE_ATTEMPTS):
            self.store.catch_up_index()
            ours = self.git.ref(MAIN)
            result = self._move(remote, ours, theirs, allow_mass_delete)
            if result is not None:
                after = None if result.after is None else result.after.encode()
                result.conflicts = self._follow_records(remote, ours, after, run_id)
                return result
        raise ConcurrentUpdate(
            "refs/heads/main", MAX_MERGE_ATTEMPTS, f"merging remote {remote.name!r}"
        )

    def _move(
        self, remote: Remote, ours: bytes | None, theirs: bytes | None, allow_mass_delete: bool
    ) -> RemotePull | None:
        """Main moved onto (or merged with) ``theirs``; None if a local writer moved it first."""
        before = None if ours is None else ours.decode()
        if theirs is None:
            return RemotePull(remote.name, "empty", before, before, None)
        shown = theirs.decode()
        bases = [] if ours is None else self.transport.merge_bases(ours, theirs)
        if ours == theirs or theirs in bases:
            return RemotePull(remote.name, "up-to-date", before, before, shown)
        if ours is None or (ours in bases and self._on_first_parents(ours, theirs)):
            changed = list(self.trees.diff(ours, theirs))
            gone = [k for k in changed if self.trees.value(theirs, k).folder is None]
            self._guard(remote, ours, [key_path(k) for k in gone], allow_mass_delete)
            if not self.git.swap_ref(MAIN, ours, theirs):
                return None
            self.store.catch_up_index()
            brought = [(key_path(k), "remote") for k in changed]  # each block it changed
            return RemotePull(remote.name, "fast-forward", before, shown, shown, brought)
        if not bases:
            raise UnrelatedHistories(
                remote.name,
                f"main at {remote.shown_url} ({shown[:12]}) shares no history with the local "
                f"main ({before[:12] if before else '-'}): refusing to merge, nothing changed. "
                "Pull into a new empty store, or use another remote.",
            )
        plan = self.trees.plan(ours, theirs, bases)
        if not plan.edits and ours in bases:
            # local main is in the remote's history, off its first-parent chain, with the
            # same blocks: nothing to bring (a merge commit here would only ping-pong)
            return RemotePull(remote.name, "up-to-date", before, before, shown)
        deleted = [
            key_path(k)
            for k, edit in plan.edits.items()
            if edit.folder is None and self.trees.value(ours, k).folder is not None
        ]
        self._guard(remote, ours, deleted, allow_mass_delete)
        commit = self.trees.commit(remote.name, ours, theirs, plan)
        if not self.git.swap_ref(MAIN, ours, commit.id):
            return None  # a local writer moved main: merge again onto its commit
        self.store.catch_up_index()
        return RemotePull(remote.name, "merged", before, commit.id.decode(), shown, plan.merged)

    # -- the mass-deletion guard ----------------------------------------------------------

    def _guard(
        self, remote: Remote, ours: bytes | None, deleted: list[str], allow_mass_delete: bool
    ) -> None:
        if allow_mass_delete or not deleted:
            return
        total = len(all_keys(self.git, self.git.commit_tree(ours), BLOCKS_KEY))
        refused = mass_deletion(remote.source, total, sorted(deleted), side="remote")
        if refused is not None:
            raise refused

    def _on_first_parents(self, ours: bytes, theirs: bytes) -> bool:
        """Whether ``ours`` is on the first-parent chain of ``theirs`` (the walk stops at the
        first commit the version index already knows)."""
        sha: bytes | None = theirs
        while sha is not None:
            if sha == ours:
                return True
            if self.store.indexed(sha.decode()):
                return False
            commit = self.git.commit(sha)
            sha = bytes(commit.parents[0]) if commit.parents else None
        return False

    def _follow_records(
        self, remote: Remote, before: bytes | None, after: bytes | None, run_id: str
    ) -> list[tuple[str, str]]:
        """Make the open conflict rows of remotes say what the records of main (now ``after``)
        say: a record is an open row (the one a remote already has for its path, else one of
        ``remote``), a record gone since ``before`` closes its row as resolved on the remote.
        Returns (path, conflict id) of the rows this pull opened or moved."""
        old = records.all_records(self.git, self.git.commit_tree(before))
        new = records.all_records(self.git, self.git.commit_tree(after))
        rows = {
            c.path: c for c in self.conflicts.list("open") if c.source.startswith(SOURCE_PREFIX)
        }
        opened: list[tuple[str, str]] = []
        for key, record in sorted(new.items()):
            path = key_path(key)
            top = records.read(self.git, record)[0]
            block = self.trees.value(after, key).folder
            sides = Sides(
                layout.owner_of(key),
                self.store.label_of(key[-1], record),
                base=self.trees.maybe_text(top.base),
                disk=self.trees.maybe_text(top.other),
                agent=self.trees.maybe_text(self.trees.content(block)),
            )
            source = rows[path].source if path in rows else remote.source
            waiting = Waiting(sides, top.reason, decisions_hold=False)  # the record says it is open
            row, is_new = record_outcome(self.conflicts, source, path, waiting, run_id)
            moved = old.get(key) != record or self.trees.value(before, key).folder != block
            if row.status == "open" and (is_new or moved):
                opened.append((path, row.id))
        for key in old.keys() - new.keys():
            if (gone := rows.get(key_path(key))) is not None:
                settled = Settled("resolved", "remote", remote.source)
                record_outcome(self.conflicts, gone.source, gone.path, settled, run_id)
        return opened

    # -- push -----------------------------------------------------------------------------

    def push(self, remote: Remote, run_id: str, *, allow_mass_delete: bool = False) -> RemotePush:
        """Push main; a remote that moved on is pulled first (``allow_mass_delete`` as for
        :meth:`pull`)."""
        pulls: list[RemotePull] = []
        for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
            ours = self.git.ref(MAIN)
            if ours is None:
                return RemotePush(remote.name, "nothing", None, attempt, pulls)
            seen: dict[str, Any] = {}
            outcome = self.transport.send(remote, ours, seen)
            if outcome in ("pushed", "up-to-date"):
                if outcome == "pushed":
                    self.transport.track(remote, ours)
                return RemotePush(remote.name, outcome, ours.decode(), attempt, pulls)
            # diverged or lost the race: bring the remote's main in, then try again
            if outcome == "rejected" and seen.get("now") == seen.get("old"):
                raise RemoteRejected(
                    remote.name,
                    f"{remote.shown_url} refused the push of main "
                    f"({seen.get('message', b'').decode('utf-8', 'replace')})",
                )
            pulls.append(self.pull(remote, run_id, allow_mass_delete=allow_mass_delete))
            if attempt > 1:  # several pushers in step: spread them out
                time.sleep(PUSH_BACKOFF * attempt * (0.5 + random.random()))
        raise ConcurrentUpdate(
            f"main at remote {remote.name!r}",
            MAX_PUSH_ATTEMPTS,
            "other machines kept pushing; run sync again",
        )


def parse_path(path: str) -> tuple[str, str]:
    """(owner, label) of a conflict path ``<owner>/<label>`` (components encoded as in git)."""
    owner, sep, label = path.partition("/")
    if not sep or "/" in label:
        raise UsageError(f"{path!r} is not a block path <owner>/<label>")
    return names.decode(owner), names.decode(label)


# -- conflicts of a remote, resolved through the reconciler ------------------------------------


class RemoteSource:
    """The :class:`~blocksync.sync.protocol.SyncSource` of ``remote:<name>`` conflicts, for resolve
    and undo only (a remote is never part of a reconcile run: pulls detect its conflicts).

    ``agent`` is the block here now; ``disk`` and ``base`` are the first waiting side of the
    block's record in main (:mod:`blocksync.sync.remotes.conflicts`), the same on every machine that
    pulled it. Settling writes the block and the record in one commit: a resolution drops the
    first waiting side, an undo puts it back, and the next push carries either to the others.
    """

    def __init__(self, key: str, store: BlockStore, conflicts: ConflictIndex) -> None:
        self.key = key
        self._store = store
        self._conflicts = conflicts

    def reconcile_outcome(
        self, paths: Iterable[str] | None = None, mode: ReconcileMode = WRITE
    ) -> ReconcileOutcome:
        return ReconcileOutcome()

    def path_problem(self, path: str) -> str | None:
        return f"{self.key} is not reconciled by path: its conflicts come with pulls"

    def has_path(self, path: str) -> bool | None:
        return False

    def _agent(self, owner: str, label: str) -> tuple[str | None, int | None]:
        try:
            block = self._store.read(owner, label)
        except BlockNotFound:
            return None, None
        return block.content, block.version

    def _text(self, blob: bytes | None) -> str | None:
        return (
            None if blob is None else self._store.git.blob(blob).decode("utf-8", "surrogateescape")
        )

    def _names(self, path: str) -> tuple[str, str]:
        """The owner and label of a conflict's path (a long label's from the conflict's row:
        its path component names it only by hash)."""
        rows = [c for c in self._conflicts.list("all", self.key) if c.path == path]
        return (rows[0].owner, rows[0].label) if rows else parse_path(path)

    def sides(self, path: str) -> Sides:
        owner, label = self._names(path)
        agent, _ = self._agent(owner, label)
        git = self._store.git
        record = git.lookup(git.commit_tree(git.ref(MAIN)), *layout.record_path(owner, label))
        layers = records.read(git, record)
        if layers:
            return Sides(
                owner, label, self._text(layers[0].base), self._text(layers[0].other), agent
            )
        rows = [c for c in self._conflicts.list("open", self.key) if c.path == path]
        disk = rows[0].disk if rows else agent  # a row from before conflicts were recorded
        base = rows[0].base if rows else None
        return Sides(owner, label, base, disk, agent)

    def settle(self, settlement: Settlement) -> int | None:
        """The block becomes ``agent``; when ``disk`` is the same (a resolution) the record's
        first waiting side goes, else (an undo) ``disk`` over ``base`` waits again, first."""
        path, disk, agent, base, expected, message, author, _ = settlement
        owner, label = self._names(path)
        current, version = self._agent(owner, label)
        if current != expected.agent:
            raise SourceChanged(self.key, path, "the block changed meanwhile: nothing was written")
        git, label_blob = self._store.git, self._label_blob(label)
        first = [] if disk == agent else [self._layer(path, base, disk)]

        def edit(record: bytes | None) -> bytes | None:
            # a resolution settles the first waiting side; an undo puts it back
            rest = records.read(git, record)[0 if first else 1 :]
            new, objects = records.write(first + rest, label_blob)
            git.write(objects)
            return new

        try:
            with self._store.transaction(message, author) as tx:
                if version is None and tx.exists(owner, label):
                    raise BlockExists(owner, label)  # created meanwhile: a create says so
                tx.hold(owner, label, agent, expected_version=version)
                tx.edit_record(owner, label, edit)
        except StaleVersion as exc:
            raise SourceChanged(
                self.key, path, "the block changed meanwhile: nothing was written"
            ) from exc
        assert tx.result is not None
        return tx.result.versions.get((owner, label), version)

    def _blob(self, text: str | None) -> bytes | None:
        """The id of the blob of ``text``, written (it is usually there already)."""
        if text is None:
            return None
        blob = Blob.from_string(text.encode("utf-8"))
        self._store.git.write([blob])
        return bytes(blob.id)

    def _label_blob(self, label: str) -> bytes | None:
        """The blob a record keeps of a long label (None: the label is not long)."""
        return self._blob(label) if layout.is_long(layout.label_component(label)) else None

    def _layer(self, path: str, base: str | None, disk: str | None) -> records.Layer:
        """The waiting side an undo puts back: ``disk`` over ``base``, with its row's reason."""
        rows = [c for c in self._conflicts.list("all", self.key) if c.path == path]
        return records.Layer(
            self._blob(base), self._blob(disk), rows[0].reason if rows else "restored"
        )

    def close(self) -> None:
        return None


__all__ = [
    "FOLDER_CHECKS",
    "RemotePull",
    "RemotePush",
    "RemoteSource",
    "RemoteSync",
    "parse_path",
]
