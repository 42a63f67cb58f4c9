"""Git remotes: stores on several machines meeting through an ordinary git repository.

Git is the whole wire protocol (dulwich's clients: file paths, ``git://``, ``http(s)://``, ssh).
What travels is ``refs/heads/main`` only. ``refs/sync/<source>`` stay home: they are the bases
of *this machine's* folders and buckets, and another machine's base for a folder of the same
name says nothing about what this machine's folder held (taking it would turn its edits into
deletions or conflicts). Block content, the thing machines share, is all on main -- and so are
the conflicts still open between machines (see "Conflicts travel" below).

Pull
    Fetch the remote's main into the object store (nothing else is touched: a transfer cut
    off half-way leaves at most unreferenced objects); check every commit the fetch brought
    (:mod:`blocksync.remote_checks`: a malformed block or a tree that is no store's refuses the
    pull, :class:`MalformedRemote`); then move the local main by compare-and-swap, retried on
    a lost race, and only then note the fetch in ``refs/remotes/<name>/main``:

    * remote already in local history, or no remote main: nothing to do;
    * local main on the remote's *first-parent* chain (or no local main): fast-forward;
    * otherwise a merge commit, parents ``[local, remote]``, whose tree merges PER BLOCK with
      reconcile's three-way rules, base = the block in the merge base commit: one side
      changed -> that side; both changed -> identical, or a clean ``merge3`` line merge, else
      a conflict (overlap, delete vs modify, both created without a base) that keeps the
      local side in the block and records the remote side beside it, in the merge commit.

    Either way, a pull that would delete more than the mass-deletion threshold of this store's
    blocks (:func:`blocksync.sources.mass_deletion`) is refused before main moves, unless the
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
    blocks (``conflicts/<owner>/<label>/``, :mod:`blocksync.remote_conflicts`: the base and the
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

import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dulwich.client import LocalGitClient, get_transport_and_path
from dulwich.errors import HangupException, NotGitRepository, SendPackError
from dulwich.file import FileLocked
from dulwich.objects import ZERO_SHA, Blob, Commit, ObjectID, ShaFile
from dulwich.refs import Ref
from dulwich.repo import Repo

from . import config as config_mod
from . import layout, names
from . import remote_conflicts as records
from .blocks import MAIN, BlockMeta, BlockStore, block_problem
from .conflicts import ConflictIndex
from .errors import (
    AlreadyExists,
    BlockNotFound,
    BlocksyncError,
    ConcurrentUpdate,
    ConfigError,
    MalformedRemote,
    RepositoryCorrupt,
    NotFound,
    RemoteError,
    RemoteRejected,
    RemoteUnreachable,
    SourceChanged,
    StaleVersion,
    UnrelatedHistories,
    UsageError,
)
from .gitstore import TREE_MODE, GitStore, TreeEditor
from .merge import merge3
from .remote_checks import fetched_problems
from .remote_conflicts import Key
from .safefile import write_atomic
from .sources import ReconcileOutcome, Sides, mass_deletion

#: Conflict rows (and report entries) of a remote are of the source ``remote:<name>``.
SOURCE_PREFIX = "remote:"
#: Pushes retried after a lost race (each after a pull), and local compare-and-swaps of a merge.
MAX_PUSH_ATTEMPTS = 8
#: Seconds to wait before a retried push, times the attempt, with random jitter (0.5-1.5x).
PUSH_BACKOFF = 0.05
MAX_MERGE_ATTEMPTS = 20
BLOCKS_KEY = layout.BLOCKS
#: What a commit may hold at its root, and what each folder's entries must be (remote_checks).
FOLDER_CHECKS = {BLOCKS_KEY: block_problem, records.CONFLICTS_DIR: records.record_problem}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


# -- names, URLs, credentials ---------------------------------------------------------------


def redact(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)


def _secrets(url: str) -> list[str]:
    m = _USERINFO.search(url)
    if m is None:
        return []
    return [part for part in re.split(r"[:]", m.group("userinfo")) if len(part) >= 3]


def scrub(text: str, url: str) -> str:
    """``text`` (an error from a transport) safe to show: no URL credentials, and not the
    password or token of ``url`` anywhere else either (some errors quote it bare)."""
    out = redact(text)
    for secret in _secrets(url):
        out = out.replace(secret, "***")
    return out


def validate_name(name: str) -> None:
    if not _NAME.match(name):
        raise UsageError(
            f"remote name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )


def tracking_ref(name: str) -> Ref:
    return Ref(f"refs/remotes/{name}/main".encode())


@dataclass(frozen=True)
class Remote:
    name: str
    url: str

    @property
    def source(self) -> str:
        return SOURCE_PREFIX + self.name

    @property
    def shown_url(self) -> str:
        return redact(self.url)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "url": self.shown_url}


def parse_remotes(tables: dict[str, Any], where: str = "blocksync.toml") -> dict[str, Remote]:
    """The ``[remotes.<name>]`` tables, checked; in file order."""
    found: dict[str, Remote] = {}
    for name, table in dict(tables.get("remotes", {})).items():
        try:
            validate_name(name)
        except UsageError as exc:
            raise ConfigError(f"{where}: [remotes.{name}]: {exc}") from exc
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [remotes.{name}] must be a table with a url")
        unknown = sorted(set(table) - {"url"})
        if unknown:
            raise ConfigError(f"{where}: [remotes.{name}] has unknown key(s) {', '.join(unknown)}")
        url = table.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"{where}: [remotes.{name}] needs a url (text)")
        found[name] = Remote(name, url)
    return found


def _check_url(url: str) -> None:
    if not url or url != url.strip() or any(ord(c) < 0x20 for c in url):
        raise UsageError("a remote URL must be non-empty, without spaces around it or line breaks")


# -- blocksync.toml edits ----------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def add_remote(path: Path, name: str, url: str) -> Remote:
    """Append ``[remotes.<name>]`` to ``path``, every other byte of the file kept."""
    validate_name(name)
    _check_url(url)
    text = _read_text(path)
    doc = config_mod.read_toml(path) if text else {}
    if name in parse_remotes(doc, str(path)):
        raise AlreadyExists(f"remote {name!r} exists already: remove it first")
    sep = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
    new = text + sep + config_mod.toml_table(("remotes", name), {"url": url})
    _check_edit(path, new, doc, name, {"url": url})
    write_atomic(path, new.encode("utf-8"))  # never through a link at blocksync.toml
    return Remote(name, url)


def remove_remote(path: Path, name: str) -> Remote:
    """Remove the ``[remotes.<name>]`` table from ``path``, every other byte of the file kept."""
    text = _read_text(path)
    doc = config_mod.read_toml(path) if text else {}
    remotes = parse_remotes(doc, str(path))
    if name not in remotes:
        raise NotFound(f"no remote named {name!r} (known: {', '.join(remotes) or 'none'})")
    key = re.escape(name)
    header = re.compile(
        rf"""^[ \t]*\[[ \t]*remotes[ \t]*\.[ \t]*(?:{key}|"{key}"|'{key}')[ \t]*\][ \t]*(?:#.*)?$"""
    )
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if header.match(line.rstrip("\r\n"))), None)
    if start is None:
        raise ConfigError(f"{path}: cannot find the [remotes.{name}] table to remove: edit the file")
    end = start + 1
    while end < len(lines) and not re.match(r"^[ \t]*\[", lines[end]):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # blank lines before the next table stay
    if start > 0 and not lines[start - 1].strip():
        start -= 1  # the blank line `remote add` put before the table goes with it
    new = "".join(lines[:start] + lines[end:])
    _check_edit(path, new, doc, name, None)
    write_atomic(path, new.encode("utf-8"))  # never through a link at blocksync.toml
    return remotes[name]


def _check_edit(
    path: Path, new: str, doc: dict[str, Any], name: str, table: dict[str, Any] | None
) -> None:
    """Refuse an edit whose result is not exactly ``doc`` with the one remote changed."""
    import tomllib

    expected = json.loads(json.dumps(doc, default=str))
    remotes = dict(expected.get("remotes", {}))
    if table is None:
        remotes.pop(name, None)
    else:
        remotes[name] = table
    if remotes:
        expected["remotes"] = remotes
    else:
        expected.pop("remotes", None)
    try:
        got = json.loads(json.dumps(tomllib.loads(new), default=str))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: cannot edit the remotes automatically ({exc}): edit the file") from exc
    if got.get("remotes") == {}:
        got.pop("remotes")
    if got != expected:
        raise ConfigError(f"{path}: cannot edit [remotes.{name}] automatically: edit the file")


# -- results ---------------------------------------------------------------------------------


@dataclass
class PullResult:
    remote: str
    action: str  # "up-to-date", "fast-forward", "merged", "empty" (the remote has no main)
    before: str | None
    after: str | None
    remote_head: str | None
    merged: list[tuple[str, str]] = field(default_factory=list)  # (path, "remote"/"merged")
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (path, conflict id)

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote, "action": self.action, "before": self.before,
            "after": self.after, "remote_head": self.remote_head,
            "merged": [{"path": p, "how": h} for p, h in self.merged],
            "conflicts": [{"path": p, "conflict": c} for p, c in self.conflicts],
        }


@dataclass
class PushResult:
    remote: str
    action: str  # "pushed", "up-to-date", "nothing" (no local main)
    commit: str | None
    attempts: int
    pulls: list[PullResult] = field(default_factory=list)  # merges a lost race needed

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote, "action": self.action, "commit": self.commit,
            "attempts": self.attempts, "pulls": [p.to_json() for p in self.pulls],
        }


# -- pull and push ---------------------------------------------------------------------------


#: A block's state in one commit: its folder and its conflict record (None: absent).
Value = tuple[bytes | None, bytes | None]


@dataclass
class _Plan:
    edits: dict[Key, Value] = field(default_factory=dict)
    objects: list[ShaFile] = field(default_factory=list)
    merged: list[tuple[str, str]] = field(default_factory=list)


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
        self._client = client or (lambda url: get_transport_and_path(url))

    # -- transport ------------------------------------------------------------------------

    def _connect(self, remote: Remote) -> tuple[Any, str]:
        try:
            return self._client(remote.url)
        except Exception as exc:  # noqa: BLE001 -- dulwich raises anything on a bad URL
            raise RemoteError(remote.name, f"cannot use URL {remote.shown_url}: "
                              f"{scrub(str(exc), remote.url)}") from None

    def _failed(self, remote: Remote, what: str, exc: BaseException) -> RemoteError:
        detail = scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, remote.url)
        return RemoteUnreachable(remote.name, f"{what} {remote.shown_url} failed ({detail})")

    def fetch(self, remote: Remote) -> bytes | None:
        """Bring the remote's main and its objects here; its head (None: no main there)."""
        client, path = self._connect(remote)
        store = self.git.repo.object_store

        advertised: list[bytes | None] = []  # main as the fetch saw it (refs may move after)

        def wants(refs: dict[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            sha = refs.get(MAIN)
            advertised.append(None if sha is None or sha == ZERO_SHA else bytes(sha))
            if sha is None or sha == ZERO_SHA or sha in store:
                return []
            return [sha]

        try:
            result = client.fetch(path, self.git.repo, determine_wants=wants)
        except BlocksyncError:
            raise
        except Exception as exc:  # noqa: BLE001 -- socket, protocol, missing repository
            raise self._failed(remote, "fetch from", exc) from None
        head = advertised[-1] if advertised else result.refs.get(MAIN)
        if head is None or head == ZERO_SHA:
            return None
        if ObjectID(head) not in store:
            raise RemoteUnreachable(remote.name, f"fetch from {remote.shown_url} did not bring "
                                    f"main's commit {head.decode()}: nothing was applied")
        return bytes(head)

    def _track(self, remote: Remote, head: bytes) -> None:
        ref = tracking_ref(remote.name)
        for _ in range(MAX_MERGE_ATTEMPTS):
            old = self.git.ref(ref)
            if old == head or self.git.swap_ref(ref, old, head):
                return

    # -- pull -----------------------------------------------------------------------------

    def pull(self, remote: Remote, run_id: str, *, allow_mass_delete: bool = False) -> PullResult:
        """Fetch, check what came (:class:`MalformedRemote`) and integrate it; only then is the
        fetch noted in ``refs/remotes/<name>/main``."""
        head = self.fetch(remote)
        if head is not None:
            self._check(remote, head)
        result = self.integrate(remote, head, run_id, allow_mass_delete=allow_mass_delete)
        if head is not None:
            self._track(remote, head)
        return result

    def _check(self, remote: Remote, head: bytes) -> None:
        ours = self.git.ref(MAIN)
        if head == ours or self.store.indexed(head.decode()):
            return  # nothing new: the usual sync of an idle remote
        known = set() if ours is None else self._ancestors(ours)
        problems = fetched_problems(self.git, head, known, FOLDER_CHECKS)
        if problems:
            raise MalformedRemote(
                remote.name,
                f"main at {remote.shown_url} ({head.decode()[:12]}) brings what is not a "
                f"blocksync store's: {'; '.join(problems)}. Refusing to pull: nothing was "
                "applied (main, the index and refs/remotes are as they were).",
                problems,
            )

    def integrate(
        self, remote: Remote, theirs: bytes | None, run_id: str, *, allow_mass_delete: bool = False
    ) -> PullResult:
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
        raise ConcurrentUpdate("refs/heads/main", MAX_MERGE_ATTEMPTS, f"merging remote {remote.name!r}")

    def _move(
        self, remote: Remote, ours: bytes | None, theirs: bytes | None, allow_mass_delete: bool
    ) -> PullResult | None:
        """Main moved onto (or merged with) ``theirs``; None if a local writer moved it first."""
        before = None if ours is None else ours.decode()
        if theirs is None:
            return PullResult(remote.name, "empty", before, before, None)
        shown = theirs.decode()
        bases = [] if ours is None else self.merge_bases(ours, theirs)
        if ours == theirs or theirs in bases:
            return PullResult(remote.name, "up-to-date", before, before, shown)
        if ours is None or (ours in bases and self._on_first_parents(ours, theirs)):
            self._guard(remote, ours, self._deleted_by(ours, theirs), allow_mass_delete)
            if not self.git.swap_ref(MAIN, ours, theirs):
                return None
            self.store.catch_up_index()
            return PullResult(remote.name, "fast-forward", before, shown, shown)
        if not bases:
            raise UnrelatedHistories(
                remote.name,
                f"main at {remote.shown_url} ({shown[:12]}) shares no history with the local "
                f"main ({before[:12] if before else '-'}): refusing to merge, nothing changed. "
                "Pull into a new empty store, or use another remote.",
            )
        plan = self._plan(ours, theirs, bases)
        if not plan.edits and ours in bases:
            # local main is in the remote's history, off its first-parent chain, with the
            # same blocks: nothing to bring (a merge commit here would only ping-pong)
            return PullResult(remote.name, "up-to-date", before, before, shown)
        deleted = [_path(k) for k, (folder, _) in plan.edits.items()
                   if folder is None and self._value(ours, k)[0] is not None]
        self._guard(remote, ours, deleted, allow_mass_delete)
        commit = self._merge_commit(remote, ours, theirs, plan)
        if not self.git.swap_ref(MAIN, ours, commit.id):
            return None  # a local writer moved main: merge again onto its commit
        self.store.catch_up_index()
        return PullResult(remote.name, "merged", before, commit.id.decode(), shown, plan.merged)

    # -- the mass-deletion guard ----------------------------------------------------------

    def _deleted_by(self, ours: bytes | None, theirs: bytes) -> list[str]:
        """The blocks of ``ours`` that ``theirs`` lacks."""
        mine, yours = self._folder_of(ours, BLOCKS_KEY), self._folder_of(theirs, BLOCKS_KEY)
        return [_path(k) for k in self._diff(mine, yours) if self.git.lookup(yours, *k) is None]

    def _guard(
        self, remote: Remote, ours: bytes | None, deleted: list[str], allow_mass_delete: bool
    ) -> None:
        if allow_mass_delete or not deleted:
            return
        folder = self._folder_of(ours, BLOCKS_KEY)
        total = sum(1 for _ in self.git.diff_trees(None, folder, layout.KEY_DEPTH))
        refused = mass_deletion(remote.source, total, sorted(deleted), side="remote")
        if refused is not None:
            raise refused

    def _contains(self, descendant: bytes, ancestor: bytes) -> bool:
        return ancestor in self._ancestors(descendant, until=ancestor)

    def _ancestors(self, start: bytes, until: bytes | None = None) -> set[bytes]:
        """``start`` and every commit it descends from (the walk ends early at ``until``).

        By parents alone: commit times (which dulwich's merge-base search orders by) are
        whole seconds, and many commits share one.
        """
        seen = {start}
        todo = [start]
        while todo:
            sha = todo.pop()
            if sha == until:
                break
            for parent in self.git.commit(sha).parents:
                if bytes(parent) not in seen:
                    seen.add(bytes(parent))
                    todo.append(bytes(parent))
        return seen

    def merge_bases(self, ours: bytes, theirs: bytes) -> list[bytes]:
        """The lowest common ancestors of two commits (``theirs`` itself when ``ours``
        contains it; ``ours`` itself when ``theirs`` contains it); empty when unrelated."""
        mine = self._ancestors(ours)
        if theirs in mine:
            return [theirs]
        frontier: list[bytes] = []
        seen = {theirs}
        todo = [theirs]
        while todo:
            sha = todo.pop()
            if sha in mine:
                frontier.append(sha)
                continue
            for parent in self.git.commit(sha).parents:
                if bytes(parent) not in seen:
                    seen.add(bytes(parent))
                    todo.append(bytes(parent))
        if len(frontier) <= 1:
            return frontier
        below = {c: self._ancestors(c) - {c} for c in frontier}
        return sorted(c for c in frontier if not any(c in below[d] for d in frontier))

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

    def _folder_of(self, commit: bytes | None, name: bytes) -> bytes | None:
        return self.git.lookup(self.git.commit_tree(commit), name)

    def _value(self, commit: bytes | None, key: Key) -> Value:
        root = self.git.commit_tree(commit)
        block = self.git.lookup(root, *layout.key_path(BLOCKS_KEY, key))
        return block, self.git.lookup(root, *records.path_of(key))

    def _diff(self, old: bytes | None, new: bytes | None) -> Iterator[Key]:
        """(owner, label) path components of every block folder (or record) that differs."""
        for path, _, _ in self.git.diff_trees(old, new, layout.KEY_DEPTH):
            yield path[0], path[-1]

    def _plan(self, ours: bytes, theirs: bytes, bases: list[bytes]) -> _Plan:
        candidates: set[Key] = set()
        for commit in bases:
            for name in (BLOCKS_KEY, records.CONFLICTS_DIR):
                candidates.update(self._diff(self._folder_of(commit, name), self._folder_of(theirs, name)))
        plan = _Plan()
        for key in sorted(candidates):
            mine, yours = self._value(ours, key), self._value(theirs, key)
            if mine == yours:
                continue
            base = _pick_base([self._value(commit, key) for commit in bases], mine, yours)
            if mine == base:
                plan.edits[key] = yours
                if yours[1] is None:
                    plan.merged.append((_path(key), "remote"))
            elif yours != base:
                self._merge_path(key, base, mine, yours, plan)
        return plan

    def _merge_path(self, key: Key, base: Value, mine: Value, yours: Value, plan: _Plan) -> None:
        """Both sides changed the block or its record: merge the block, and stack every side
        still waiting (a new conflict on top) in the record (see :mod:`remote_conflicts`)."""
        waiting, settled = records.merge(*(records.read(self.git, v[1]) for v in (base, mine, yours)))
        mine_content, yours_content = self._content(mine[0]), self._content(yours[0])
        if settled and mine_content != yours_content:
            # both resolved a conflict, each its own way: the choices are a conflict in turn
            folder, held = mine[0], mine_content
            new: records.Layer | None = records.Layer(
                settled[0].base, yours_content, "resolved differently here and on the remote"
            )
        else:
            folder, held, new = self._merge_block(base[0], mine[0], yours[0], plan)
        layers = records.stack(([new] if new else []) + waiting, held)
        record, objects = records.write(layers, self._label_blob(key, (base, mine, yours)))
        plan.objects += objects
        if (folder, record) == mine:
            return
        plan.edits[key] = (folder, record)
        if not layers and folder != mine[0]:
            plan.merged.append((_path(key), "merged"))

    def _merge_block(
        self, base: bytes | None, mine: bytes | None, yours: bytes | None, plan: _Plan,
    ) -> tuple[bytes | None, bytes | None, records.Layer | None]:
        """The block folder a merge keeps, its content blob, and the conflict it found (None: a
        clean merge). A conflict keeps the local side; the remote's waits in the record."""
        b, m, y = (self._folder(d) for d in (base, mine, yours))
        yours_content = None if y is None else y[0]
        base_content = None if b is None else b[0]

        def conflict(reason: str) -> tuple[bytes | None, bytes | None, records.Layer]:
            return mine, None if m is None else m[0], records.Layer(base_content, yours_content, reason)

        if m is None or y is None:
            if m == y:
                return None, None, None
            return conflict("deleted here, changed on the remote" if m is None
                            else "deleted on the remote, changed here")
        if b is None:
            if m[0] != y[0]:
                return conflict("created here and on the remote with different content")
            content = m[0]
        elif m[0] == y[0] or y[0] == b[0]:
            content = m[0]
        elif m[0] == b[0]:
            content = y[0]
        else:
            merged = merge3(self._text(b[0]), self._text(m[0]), self._text(y[0]))
            if merged.text is None:
                return conflict(f"both changed, {merged.conflicts} overlapping region(s)")
            blob = Blob.from_string(merged.text.encode("utf-8"))
            plan.objects.append(blob)
            content = bytes(blob.id)
        # the merged metadata may be a blob not written yet: its limit comes from the merge
        meta, merged_meta = self._merge_meta(None if b is None else b[1], m[1], y[1], plan)
        limit = merged_meta.char_limit
        if limit is not None and len(self._text(content)) > limit:
            return conflict(f"the merged content is over the block's char_limit of {limit}")
        assert mine is not None
        kept = self.git.tree(mine)  # a long label's, kept whole beside
        label = kept[layout.LABEL_FILE][1] if layout.LABEL_FILE in kept else None
        folder = layout.block_folder(content, meta, label)
        if folder.id != mine:
            plan.objects.append(folder)
        return bytes(folder.id), content, None

    def _merge_meta(
        self, base: bytes | None, mine: bytes, yours: bytes, plan: _Plan
    ) -> tuple[bytes, BlockMeta]:
        """Metadata merged field by field (a field both sides changed differently keeps ours):
        its blob, maybe a new one only in ``plan.objects`` yet, and what it says."""
        if mine == yours or yours == base or mine == base:
            kept = yours if mine == base else mine
            return kept, BlockMeta.from_json(self.git.blob(kept))
        docs = [json.loads(self.git.blob(s)) if s is not None else {} for s in (base, mine, yours)]
        out = dict(docs[1])
        for name, value in docs[2].items():
            if docs[1].get(name) == docs[0].get(name):
                out[name] = value
        meta = BlockMeta.from_json(json.dumps(out).encode())
        blob = Blob.from_string(meta.to_json())
        plan.objects.append(blob)
        return bytes(blob.id), meta

    def _folder(self, sha: bytes | None) -> tuple[bytes, bytes] | None:
        if sha is None:
            return None
        tree = self.git.tree(sha)
        return bytes(tree[layout.CONTENT_FILE][1]), bytes(tree[layout.META_FILE][1])

    def _label_blob(self, key: Key, values: Iterable[Value]) -> bytes | None:
        """The blob of a long label's whole text (None: the label is not long), from a block
        folder or record that keeps it beside."""
        if not layout.is_long(key[1]):
            return None
        for sha in (sha for value in values for sha in value if sha is not None):
            if layout.LABEL_FILE in (tree := self.git.tree(sha)):
                return bytes(tree[layout.LABEL_FILE][1])
        raise RepositoryCorrupt(str(self.git.path), f"no folder keeps the label of {_path(key)}")

    def _content(self, folder: bytes | None) -> bytes | None:
        """The content blob of a block folder (None: no block)."""
        found = self._folder(folder)
        return None if found is None else found[0]

    def _text(self, blob: bytes) -> str:
        return self.git.blob(blob).decode("utf-8", "surrogateescape")

    def _maybe_text(self, blob: bytes | None) -> str | None:
        return None if blob is None else self._text(blob)

    def _merge_commit(self, remote: Remote, ours: bytes, theirs: bytes, plan: _Plan) -> Commit:
        root = TreeEditor(self.git, self.git.commit_tree(ours))
        for key, (folder, record) in plan.edits.items():
            for top, sha in ((BLOCKS_KEY, folder), (layout.CONFLICTS, record)):
                root.put(layout.key_path(top, key), None if sha is None else (TREE_MODE, sha))
        waiting = sum(1 for _, record in plan.edits.values() if record is not None)
        counts = f"{len(plan.merged)} block(s) from the remote, {waiting} in conflict"
        message = f"merge remote {remote.name} ({counts})"
        commit, objects = self.git.commit_objects(root, [ours, theirs], self.author, message)
        self.git.write(plan.objects + objects)
        return commit

    def _follow_records(
        self, remote: Remote, before: bytes | None, after: bytes | None, run_id: str
    ) -> list[tuple[str, str]]:
        """Make the open conflict rows of remotes say what the records of main (now ``after``)
        say: a record is an open row (the one a remote already has for its path, else one of
        ``remote``), a record gone since ``before`` closes its row as resolved on the remote.
        Returns (path, conflict id) of the rows this pull opened or moved."""
        old = records.all_records(self.git, self.git.commit_tree(before))
        new = records.all_records(self.git, self.git.commit_tree(after))
        rows = {c.path: c for c in self.conflicts.list("open") if c.source.startswith(SOURCE_PREFIX)}
        opened: list[tuple[str, str]] = []
        for key, record in sorted(new.items()):
            path = _path(key)
            top = records.read(self.git, record)[0]
            block = self._value(after, key)[0]
            row, is_new = self.conflicts.record(
                source=rows[path].source if path in rows else remote.source, path=path,
                owner=layout.owner_of(key), label=self.store.label_of(key[1], record),
                base=self._maybe_text(top.base), disk=self._maybe_text(top.other),
                agent=self._maybe_text(self._content(block)), reason=top.reason,
                run_id=run_id, decisions_hold=False,  # the record says it is open
            )
            moved = old.get(key) != record or self._value(before, key)[0] != block
            if row.status == "open" and (is_new or moved):
                opened.append((path, row.id))
        for key in old.keys() - new.keys():
            if (gone := rows.get(_path(key))) is not None:
                self.conflicts.close(gone.source, gone.path, status="resolved", resolution="remote",
                                     resolver=remote.source, result_version=None)
        return opened

    # -- push -----------------------------------------------------------------------------

    def push(self, remote: Remote, run_id: str, *, allow_mass_delete: bool = False) -> PushResult:
        """Push main; a remote that moved on is pulled first (``allow_mass_delete`` as for
        :meth:`pull`)."""
        pulls: list[PullResult] = []
        for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
            ours = self.git.ref(MAIN)
            if ours is None:
                return PushResult(remote.name, "nothing", None, attempt, pulls)
            seen: dict[str, Any] = {}
            outcome = self._send(remote, ours, seen)
            if outcome in ("pushed", "up-to-date"):
                if outcome == "pushed":
                    self._track(remote, ours)
                return PushResult(remote.name, outcome, ours.decode(), attempt, pulls)
            # diverged or lost the race: bring the remote's main in, then try again
            if outcome == "rejected" and seen.get("now") == seen.get("old"):
                raise RemoteRejected(remote.name, f"{remote.shown_url} refused the push of main "
                                     f"({seen.get('message', b'').decode('utf-8', 'replace')})")
            pulls.append(self.pull(remote, run_id, allow_mass_delete=allow_mass_delete))
            if attempt > 1:  # several pushers in step: spread them out
                time.sleep(PUSH_BACKOFF * attempt * (0.5 + random.random()))
        raise ConcurrentUpdate(f"main at remote {remote.name!r}", MAX_PUSH_ATTEMPTS,
                               "other machines kept pushing; run sync again")

    def _send(self, remote: Remote, ours: bytes, seen: dict[str, Any]) -> str:
        client, path = self._connect(remote)
        if isinstance(client, LocalGitClient) and _checked_out_main(path):
            # git's receive.denyCurrentBranch, which dulwich's local transport does not apply
            raise RemoteRejected(
                remote.name, f"{remote.shown_url} has main checked out in a work tree: pushing "
                "there would change the branch under that work tree, so git refuses it, and so "
                "does blocksync. Push to a bare repository (git init --bare), or check out "
                "another branch there.")
        repo = self.git.repo
        state = {"outcome": "pushed"}

        def update_refs(refs: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
            theirs = refs.get(MAIN)
            seen["old"] = theirs
            if theirs == ours:
                state["outcome"] = "up-to-date"
                return {}
            if theirs is not None and theirs != ZERO_SHA:
                if theirs not in repo.object_store or not self._contains(ours, theirs):
                    if theirs in repo.object_store and self._contains(theirs, ours):
                        state["outcome"] = "up-to-date"  # the remote has all of ours already
                    else:
                        state["outcome"] = "diverged"
                    return {}
            return {MAIN: ObjectID(ours)}

        try:
            result = client.send_pack(path, update_refs, repo.generate_pack_data)
        except FileLocked:
            return "raced"  # a file remote's main is mid-update by another pusher
        except SendPackError as exc:
            raise RemoteRejected(remote.name, f"{remote.shown_url} refused the push "
                                 f"({scrub(str(exc), remote.url)})") from None
        except (HangupException, Exception) as exc:
            if isinstance(exc, BlocksyncError):
                raise
            raise self._failed(remote, "push to", exc) from None
        if state["outcome"] != "pushed":
            return state["outcome"]
        status = (getattr(result, "ref_status", None) or {}).get(MAIN)
        if status is None:
            return "pushed"
        seen["message"] = scrub(str(status), remote.url).encode()
        try:
            now = client.get_refs(path)
            refs = getattr(now, "refs", now)
            seen["now"] = refs.get(MAIN)
        except Exception:  # noqa: BLE001 -- then count it as a race and pull
            seen["now"] = None
        return "rejected"


def _checked_out_main(path: str) -> bool:
    """Whether the repository at ``path`` has a work tree whose branch is main and does not
    allow pushes to it (``receive.denyCurrentBranch``: git refuses them by default)."""
    try:
        with Repo(path) as target:
            if target.bare or target.refs.get_symrefs().get(Ref(b"HEAD")) != MAIN:
                return False
            try:
                deny = target.get_config().get((b"receive",), b"denyCurrentBranch").lower()
            except KeyError:
                return True
    except (NotGitRepository, OSError):
        return False  # the push itself says what is wrong there
    return deny not in (b"false", b"ignore", b"warn", b"no", b"off", b"0")


V = TypeVar("V")


def _pick_base(candidates: list[V], mine: V, yours: V) -> V:
    """The base of a block when there are several merge bases: the one all agree on, else one
    a side still holds (the other side changed it), else the first."""
    if len(set(candidates)) == 1:
        return candidates[0]
    for sha in candidates:
        if sha == mine or sha == yours:
            return sha
    return candidates[0]


def _path(key: tuple[bytes, bytes]) -> str:
    return f"{key[0].decode()}/{key[1].decode()}"


def parse_path(path: str) -> tuple[str, str]:
    """(owner, label) of a conflict path ``<owner>/<label>`` (components encoded as in git)."""
    owner, sep, label = path.partition("/")
    if not sep or "/" in label:
        raise UsageError(f"{path!r} is not a block path <owner>/<label>")
    return names.decode(owner), names.decode(label)


# -- conflicts of a remote, resolved through the reconciler ------------------------------------


class RemoteSource:
    """The :class:`~blocksync.sources.SyncSource` of ``remote:<name>`` conflicts, for resolve
    and undo only (a remote is never part of a reconcile run: pulls detect its conflicts).

    ``agent`` is the block here now; ``disk`` and ``base`` are the first waiting side of the
    block's record in main (:mod:`blocksync.remote_conflicts`), the same on every machine that
    pulled it. Settling writes the block and the record in one commit: a resolution drops the
    first waiting side, an undo puts it back, and the next push carries either to the others.
    """

    def __init__(self, key: str, store: BlockStore, conflicts: ConflictIndex) -> None:
        self.key = key
        self._store = store
        self._conflicts = conflicts

    def reconcile_outcome(
        self,
        paths: Iterable[str] | None = None,
        *,
        dry_run: bool = False,
        allow_mass_delete: bool = False,
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
        return None if blob is None else self._store.git.blob(blob).decode("utf-8", "surrogateescape")

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
            return Sides(owner, label, self._text(layers[0].base), self._text(layers[0].other), agent)
        rows = [c for c in self._conflicts.list("open", self.key) if c.path == path]
        disk = rows[0].disk if rows else agent  # a row from before conflicts were recorded
        base = rows[0].base if rows else None
        return Sides(owner, label, base, disk, agent)

    def settle(
        self, path: str, *, disk: str | None, agent: str | None, base: str | None,
        expected: Sides, message: str, author: str,
    ) -> int | None:
        """The block becomes ``agent``; when ``disk`` is the same (a resolution) the record's
        first waiting side goes, else (an undo) ``disk`` over ``base`` waits again, first."""
        owner, label = self._names(path)
        current, version = self._agent(owner, label)
        if current != expected.agent:
            raise SourceChanged(self.key, path, "the block changed meanwhile: nothing was written")
        git, label_blob = self._store.git, self._label_blob(label)
        first = [] if disk == agent else [self._layer(path, base, disk)]

        def edit(record: bytes | None) -> bytes | None:
            # a resolution settles the first waiting side; an undo puts it back
            rest = records.read(git, record)[0 if first else 1:]
            new, objects = records.write(first + rest, label_blob)
            git.write(objects)
            return new

        try:
            with self._store.transaction(message, author) as tx:
                if agent is None:
                    if version is not None:
                        tx.delete(owner, label, expected_version=version)
                elif version is None:
                    tx.create(owner, label, agent)
                else:
                    tx.update(owner, label, agent, expected_version=version)
                tx.edit_record(owner, label, edit)
        except StaleVersion as exc:
            raise SourceChanged(self.key, path, "the block changed meanwhile: nothing was written") from exc
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
        return records.Layer(self._blob(base), self._blob(disk), rows[0].reason if rows else "restored")

    def close(self) -> None:
        return None


__all__ = [
    "PullResult", "PushResult", "Remote", "RemoteSource", "RemoteSync",
    "add_remote", "parse_remotes", "redact", "remove_remote",
]
