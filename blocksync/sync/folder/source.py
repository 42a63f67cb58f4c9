"""The native file source: text files in folders on disk, each mirrored by one memory block.

Configured as Pattern's ``FileSourceConfig``::

    [agents.alice.data_sources.notes]     # "notes": the table key, the source's name for bases
    type = "file"
    name = "Alice's notes"
    paths = ["notes", "/srv/shared"]      # root folders; relative ones are in the store folder
    recursive = true                      # false: only the files directly in each root
    include_patterns = ["**"]             # gitignore/wildmatch globs, on the path in its root
    exclude_patterns = ["*.tmp", "build/"]  # also exclude whole folders
    permission_rules = [{ pattern = "**", permission = "read-write" }]

**Paths.** A file's source path is its path relative to its root, with ``/`` separators
(``src/a.md``). With several roots it is prefixed by the root's index in ``paths`` and a colon
(``1:src/a.md``), so two roots may hold the same relative path. Patterns and permission rules
always match the path relative to its root (without the prefix). Paths are canonical: no empty,
``.`` or ``..`` component, no leading ``/``; anything else is refused with a
:class:`~blocksync.errors.UsageError`, never resolved against the disk.

**Blocks.** The block of a file is owned by the source's agent and labelled
``file:<root tag>:<relative path>`` (``file:3fa2c1d0:src/a.md``), where the root tag is the first
8 hex digits of the sha256 of the root's absolute path: a file keeps its label when roots are
added or reordered. Once synced, a path is bound to its block in the sync bases
(``refs/sync/<key>``), and the binding, not the label scheme, says which block mirrors it.

**Reconcile.** Each path's base, disk and agent contents go through :func:`blocksync.shared.truth.decide`
(the one truth table) under the path's permission level, and :func:`blocksync.shared.apply.apply` (the
one protocol, over the folder's :class:`~blocksync.sync.folder.disk.RootsOutside`) carries the decision
out in this order, so that a run killed at any point leaves every path with its old or its new content on
each side and the next run converges: (1) every block change of the call in ONE block-store
transaction; (2) each file written atomically (temp file in the same folder, fsync, the file's
hash re-checked, rename) or removed, then every folder written to fsynced once; (3) the sync
bases advanced in ONE update. Inside :func:`blocksync.interrupts.handling` a signal stops the
call at the next safe point: while deciding, before (1), nothing is written; between two files
of (2), the files not written yet are skipped (left for the next run) and (3) advances the bases
of the rest. A file that changed between classification and its write is not overwritten: that path
is reported as needing resolution. Files that are not UTF-8 (or not regular files, symlinks,
names that cannot be labels) are never touched: they are reported in ``skipped`` and left out
of the results. Contents are compared by content, never by modification time: a path whose file's sha256
and whose block's content blob id are its base's (the base index in ``index.db`` has both,
derived from the bases ref) is unchanged without reading its base or its block. A run over all
paths does not even read the file when the stat cache (:mod:`blocksync.index.statcache`, git's
index idea) holds a row for it with the very stat the survey found and no racy timestamp: that
row's sha256 is taken as the file's. Any other case reads the file (in
:mod:`~blocksync.sync.folder.hashing`, the one place files are read and hashed) and records it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from blocksync import interrupts, names
from blocksync.errors import (
    AccessDenied,
    AlreadyExists,
    BlockNotFound,
    ConcurrentUpdate,
    ConfigError,
    InvalidContent,
    MergeConflict,
    NotFound,
    SourceChanged,
    StoreCorrupt,
    UsageError,
)
from blocksync.fs.disk import Folder, is_vcs_path, store_overlap
from blocksync.index.base_index import BaseIndex, Bound
from blocksync.index.statcache import Clean, StatCache
from blocksync.shared import apply, collector, progress
from blocksync.shared.apply import Change, Unreadable
from blocksync.shared.truth import Action, Decision, content_hash, decide
from blocksync.shared.wit import (
    BlockRef,
    BlockSchemaSpec,
    PermissionLevel,
    PermissionRule,
    VersionInfo,
)
from blocksync.store.bases import Binding, SyncBases
from blocksync.store.blocks import DEFAULT_SCHEMA, BlockStore
from blocksync.store.gitstore import GitStore
from blocksync.store.merge import merge3
from blocksync.sync import permissions
from blocksync.sync.protocol import (
    BLOCK_MOVED,
    MASS_DELETION_MIN,
    UNCHANGED,
    WRITE,
    NeedsResolution,
    NoChange,
    ReconcileMode,
    ReconcileOutcome,
    ReconcileResult,
    Resolved,
    Settlement,
    Sides,
    Skipped,
    mass_deletion,
)

from . import disk as folder_disk
from .clean import CleanRows, Snapshot, unchanged
from .config import FileSourceSpec
from .disk import Roots, RootsOutside, Survey, opened, read_file, why
from .hashing import Hashing, Read

__all__ = [
    "FOLDER_FAULT_STEPS",
    "FileSource",
    "FileTarget",
    "root_tag",
]

LABEL_PREFIX = "file:"
#: The write steps a fault hook is called at, in the order they happen.
FOLDER_FAULT_STEPS = (
    "before-block-commit",
    "after-block-commit",
    "before-file-write",
    "after-file-write",
    "before-bases",
    "after-bases",
)

Fault = Callable[[str], None]


@dataclass(frozen=True)
class FileTarget:
    """Where a source path lives on disk, and the label the scheme gives its block."""

    path: str  # the source path
    root: Path
    rel: str  # relative to the root, "/"-separated
    file: Path
    label: str  # the block label the scheme gives it (a binding may name another block)


@dataclass(kw_only=True)
class _Plan(Change):
    """One path's change (see :class:`blocksync.shared.apply.Change`), with where it lives."""

    target: FileTarget
    version: int | None  # the block's, as decided on (None: no block)
    level: PermissionLevel


#: a plan's mark: its block moved while this call wrote (decided again once, then BLOCK_MOVED)
_MOVED = "its block changed while reconcile was writing it"
_VCS = "it is in a version-control folder (.git, .hg, .svn, .jj, .bzr): never synced"
_UNCHANGED = UNCHANGED
#: a run with more paths than this to decide one by one loads the whole snapshot at once
_PARTIAL_MOST = 2000


def _rewrites(decision: Decision) -> bool:
    """Does carrying ``decision`` out write or remove the file, or forget the path's base?
    (What the stat cache must then forget of it.)"""
    return decision.action in apply.OUTSIDE_ACTIONS or decision.content is None


def _settles(plan: _Plan, based: dict[str, str | None]) -> bool:
    """Did carrying ``plan`` out leave its file as read, and its block and base holding the
    very text of it (so the file's stat, if not racy, is clean)?"""
    content = plan.decision.content
    return (
        plan.skipped is None
        and not plan.needs_resolution
        and plan.decision.action in (Action.TO_AGENT, Action.IDENTICAL)
        and content is not None
        and based.get(plan.path) == content
        and plan.outside_hash == content_hash(content)
    )


def _merge(base: str, disk: str, agent: str) -> str | None:
    return merge3(base, disk, agent).text


def _hash(text: str | None) -> str | None:
    return None if text is None else content_hash(text)


def _result(plan: _Plan) -> ReconcileResult:
    """What became of an applied plan (or would, in a dry run), as reconcile reports it."""
    action, path = plan.decision.action, plan.path
    if action is Action.NO_CHANGE:
        return NoChange(path)
    if plan.needs_resolution:
        disk, agent = plan.sides_now()
        return NeedsResolution(path, disk or "", agent or "")
    return Resolved(path, action.value)


class _Inside:
    """The block store and the sync bases of a file source: :class:`blocksync.shared.apply.Inside`.
    ``message``: the commit message of a single-path change (None: one naming the batch);
    ``skip_stale``: a block that moved since it was read is marked, not an error."""

    def __init__(
        self, source: FileSource, roots: Roots, message: str | None = None, skip_stale: bool = True
    ) -> None:
        self._source = source
        self._roots = roots
        self._message = message
        self._skip_stale = skip_stale

    def _say(self, plans: Sequence[_Plan], what: str) -> str:
        if self._message is not None:
            return self._message
        shown = ", ".join(p.path for p in plans[:3]) + (", ..." if len(plans) > 3 else "")
        head = f"reconcile file source {self._source.key}: {len(plans)} {what}"
        return f"{head} ({shown})".replace("\0", "\\0")

    def stopped(self) -> str | None:
        return interrupts.reason()

    def written(self) -> None:
        # each folder written to fsynced once, after all its files were renamed and
        # before any base advances (ext4 and friends commit the renames together): started
        # here, waited for by the bases commit right before its ref moves
        self._roots.sync(wait=False)

    def write_blocks(self, plans: Sequence[_Plan]) -> None:
        if not plans:
            return
        source = self._source
        blocks = source.blocks
        with blocks.transaction(
            self._say(plans, "block(s)"), source.author, skip_stale=self._skip_stale
        ) as tx:
            tx.preload((plan.owner, plan.label) for plan in plans)
            for plan in plans:
                action, content = plan.decision.action, plan.decision.content
                try:
                    if action is Action.DELETE_AGENT:
                        tx.delete(plan.owner, plan.label, expected_version=plan.version)
                    elif plan.agent is None:
                        assert content is not None
                        tx.create(
                            plan.owner,
                            plan.label,
                            content,
                            description=f"{plan.target.rel} in {plan.target.root}",
                        )
                    else:
                        assert content is not None
                        tx.update(plan.owner, plan.label, content, expected_version=plan.version)
                except InvalidContent as exc:  # e.g. over the block's char_limit
                    plan.skipped = f"the block cannot hold it: {exc}"
            source._hook("before-block-commit")
        for plan in plans:  # an agent wrote these meanwhile: nothing of them was written
            if (plan.owner, plan.label) in tx.stale:
                plan.skipped = _MOVED
        if tx.result is not None and tx.result.commit is not None:
            source._blocks_written.append(tx.result.commit)
        source._hook("after-block-commit")

    def write_bases(self, plans: Sequence[_Plan]) -> None:
        source = self._source
        source._hook("before-bases")
        say = self._say(plans, "base(s)")
        with source.bases.update(say, source.author, ready=self._roots.synced) as tx:
            for plan in plans:
                content = plan.decision.content
                if content is None:
                    tx.forget(plan.path)
                else:
                    tx.set_base(plan.path, plan.owner, plan.label, content)
        source.base_index().record(source.bases, tx)
        if tx.commit_id is not None:
            source._bases_written.append((tx.parent_id, tx.commit_id, tx.written()))
        source._hook("after-bases")


# -- the source -------------------------------------------------------------------------------


class FileSource:
    """A folder-backed data block source; implements :class:`blocksync.sync.protocol.DataBlock`.

    ``blocks`` is the store's block store. ``bases`` defaults to the source's sync bases in the
    same repository (opened, and closed by :meth:`close`, here). ``config_rules`` narrows the
    spec's permission rules (never widens them). ``fault`` is called with each step of
    :data:`FOLDER_FAULT_STEPS` as reconcile reaches it: tests kill the process there.
    """

    def __init__(
        self,
        spec: FileSourceSpec,
        blocks: BlockStore,
        bases: SyncBases | None = None,
        *,
        config_rules: Sequence[PermissionRule] | None = None,
        fault: Fault | None = None,
    ) -> None:
        if not spec.paths:
            raise UsageError(f"file source {spec.key!r} has no root folder")
        for root in spec.paths:
            if not root.is_absolute():
                raise UsageError(f"file source {spec.key!r}: root {root} is not absolute")
        names.validate(spec.agent, "owner")
        self.spec = spec
        self.key = spec.key
        self.blocks = blocks
        self._git: GitStore | None = None
        if bases is None:
            self._git = GitStore(blocks.repo_path, durable=blocks.durable)
            bases = SyncBases(self._git, spec.key)
        elif bases.source != spec.key:
            raise UsageError(f"bases of source {bases.source!r} given to file source {spec.key!r}")
        self.bases = bases
        self.config_rules = None if config_rules is None else tuple(config_rules)
        self.fault = fault
        self.author = f"source:{spec.key}"
        self.tags = tuple(root_tag(root) for root in spec.paths)
        # the store is never synced: refused as a root, and never entered below one (a bind
        # mount, a folder moved in)
        store = Path(blocks.repo_path).resolve().parent
        for root in spec.paths:
            problem = store_overlap(root, store)
            if problem is not None:
                raise ConfigError(f"file source {spec.key!r}: root {root} {problem}")
        self._avoid: set[tuple[int, int]] = set()
        for folder in (store, Path(blocks.repo_path)):
            try:
                info = os.stat(folder)
            except OSError:
                continue
            self._avoid.add((info.st_dev, info.st_ino))
        #: paths the last reconcile call left alone, and why
        self.skipped: list[Skipped] = []
        self._base_index: BaseIndex | None = None
        self._stat_cache: StatCache | None = None
        self._rows: _NamedRows | None = None
        #: the bases commits of this reconcile call: (parent, commit, what it set)
        self._blocks_written: list[str] = []  # the commits of main of this call
        self._bases_written: list[
            tuple[str | None, str, list[tuple[str, Binding | None, str | None]]]
        ] = []

    def close(self) -> None:
        if self._base_index is not None:
            self._base_index.close()
            self._base_index = None
        if self._git is not None:
            self._git.close()

    def base_index(self) -> BaseIndex:
        """The index of the bases in the store's ``index.db`` (opened on first use)."""
        if self._base_index is None:
            self._base_index = BaseIndex(self.blocks.index_db)
        return self._base_index

    def stat_cache(self) -> StatCache:
        """The source's rows of the stat cache in ``index.db`` (opened on first use)."""
        if self._stat_cache is None:
            self._stat_cache = StatCache(self.blocks.index_db, self.key)
        return self._stat_cache

    def _snapshot(self) -> Snapshot:
        return self._clean_rows().snapshot()

    def _clean_rows(self) -> _NamedRows:
        """The source's clean row, kept (see :mod:`blocksync.sync.folder.clean`)."""
        if self._rows is None:
            self._rows = _NamedRows(self)
        return self._rows

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- identity ---------------------------------------------------------------------------

    def source_id(self) -> str:
        return f"file:{self.spec.key}"

    def name(self) -> str:
        return self.spec.name

    def block_schema(self) -> BlockSchemaSpec:
        return BlockSchemaSpec("file", "the text of one file (UTF-8)", DEFAULT_SCHEMA)

    def permission_rules(self) -> list[PermissionRule]:
        return list(self.spec.permission_rules)

    # -- paths ------------------------------------------------------------------------------

    def target(self, path: str) -> FileTarget:
        """Where ``path`` lives; refuses a path outside the roots or not in canonical form."""
        index, rel = self._locate(path)
        root = self.spec.paths[index]
        return FileTarget(path, root, rel, root.joinpath(*rel.split("/")), self._label(index, rel))

    def _locate(self, path: str) -> tuple[int, str]:
        """As :meth:`target`: the index of ``path``'s root and its relative path, checked."""
        if not isinstance(path, str) or not path:
            raise UsageError(
                f"source {self.spec.key!r}: a path must be non-empty text, not {path!r}"
            )
        roots = self.spec.paths
        index, rel = 0, path
        if len(roots) > 1:
            head, colon, rest = path.partition(":")
            if not colon or not head.isdigit() or str(int(head)) != head or int(head) >= len(roots):
                raise UsageError(
                    f"source {self.spec.key!r} has {len(roots)} roots, so its paths are "
                    f"'<root index 0..{len(roots) - 1}>:<relative path>'; {path!r} is not one"
                )
            index, rel = int(head), rest
        # an empty, "." or ".." part shows as "//", "/./" or "/../" once the path is framed
        framed = f"/{rel}/"
        if "//" in framed or "/./" in framed or "/../" in framed or "\0" in rel:
            raise UsageError(
                f"source {self.spec.key!r}: path {path!r} is outside its root folders or not "
                "canonical (no leading '/', no empty, '.' or '..' parts)"
            )
        if "/." in framed and is_vcs_path(rel):
            raise UsageError(f"source {self.spec.key!r}: path {path!r}: {_VCS}")
        return index, rel

    def path_problem(self, path: str) -> str | None:
        try:
            self._locate(path)
        except UsageError as exc:
            return str(exc)
        return None

    def has_path(self, path: str) -> bool:
        target = self.target(path)
        if self.bases.get(path) is not None:
            return True
        try:
            if self._exists(target):
                return True
        except NotFound:
            pass  # no root: no file
        return self.blocks.exists(self.spec.agent, target.label)

    def _exists(self, target: FileTarget) -> bool:
        """Is there anything at ``target`` now (a file, a link, a FIFO...)?"""
        with self._disk() as disk:
            return disk[target.root].exists(target.rel)

    def _read_now(self, target: FileTarget) -> tuple[str | None, str | None]:
        """The text of ``target`` and the sha256 of its bytes now ((None, None): no file);
        UsageError when it is left alone (no regular file, not UTF-8)."""
        with self._disk() as disk:
            text, digest, unreadable = read_file(disk[target.root], target.rel)
        if unreadable is not None:
            raise UsageError(
                f"source {self.spec.key!r}: {target.path!r} is left alone: {unreadable}"
            )
        return text, digest

    def _label(self, index: int, rel: str) -> str:
        return f"{LABEL_PREFIX}{self.tags[index]}:{rel}"

    def path_for_label(self, label: str) -> str | None:
        """The source path the label scheme gives ``label``; None if not one of this source's."""
        path = self._scheme_path(label)
        if path is None:
            return None
        try:
            self.target(path)
        except UsageError:
            return None
        return path

    def level(self, rel: str) -> PermissionLevel:
        return permissions.level_for(rel, self.spec.permission_rules, self.config_rules)

    def selects(self, rel: str) -> bool:
        """Does the configuration select the file ``rel`` (recursive, include, exclude)?"""
        return self.spec.selects(rel)

    def _disk(self) -> contextlib.AbstractContextManager[Roots]:
        return opened(self.key, self._avoid)

    def _outside(self, disk: Roots) -> RootsOutside:
        """The :class:`blocksync.shared.apply.Outside` port over ``disk``, the roots opened for a call."""

        def locate(path: str) -> tuple[Path, str]:
            index, rel = self._locate(path)
            return self.spec.paths[index], rel

        return RootsOutside(disk, self.spec, locate, self._hook)

    def scan(self) -> list[str]:
        """The selected regular files on disk now, sorted (see :func:`folder_disk.survey`)."""
        with self._disk() as disk:
            return self._outside(disk).list_paths()

    def candidates(self) -> list[str]:
        """Bound paths, selected files on disk, and the agent's blocks whose labels name a path
        of this source (a new block becomes a new file); sorted.

        Bound paths that no longer parse (their root was removed from the configuration) are
        left out: they stay bound, and untouched, until someone forgets them.
        """
        with self._disk() as disk:
            return self._candidates(self._snapshot(), folder_disk.survey(disk, self.spec))[0]

    def _candidates(self, snap: Snapshot, survey: Survey) -> tuple[list[str], list[Skipped]]:
        """The candidates, and the agent's blocks that name a path never synced (and why)."""
        paths, skipped = self._candidates_of(
            snap.entries.keys() - survey.files, snap.latest, survey
        )
        return sorted(paths), skipped

    def _candidates_of(
        self, bound: Iterable[str], blocks: Iterable[tuple[str, str]], survey: Survey
    ) -> tuple[set[str], list[Skipped]]:
        """As :meth:`_candidates` (unsorted): ``bound`` holds every bound path not among the survey's
        files, ``blocks`` every existing block whose label may name a path."""
        paths = set(survey.files)
        skipped: list[Skipped] = []
        for bound_path in bound:
            try:
                self.target(bound_path)
            except UsageError:
                continue
            paths.add(bound_path)
        tags = {tag: index for index, tag in enumerate(self.tags)}
        for owner, label in blocks:
            if owner != self.spec.agent or not label.startswith(LABEL_PREFIX):
                continue
            tag, _, rel = label[len(LABEL_PREFIX) :].partition(":")
            if tag in tags and self.spec.source_path(tags[tag], rel) in paths:
                continue  # already a candidate (the usual case): no need to parse it again
            if tag in tags and is_vcs_path(rel):
                path = self.spec.source_path(tags[tag], rel)
                skipped.append(Skipped(path, f"block {owner}/{label} names it, but {_VCS}"))
                continue
            named = self.path_for_label(label)
            if named is not None and self.selects(self.target(named).rel):
                paths.add(named)
        return paths, skipped

    # -- reconcile --------------------------------------------------------------------------

    def _refuse(
        self, present: int, absent: Iterable[str], blocks_gone: list[str], survey: Survey
    ) -> None:
        """Refuse a run over all paths in which most bound files vanished at once, or most of
        their blocks were deleted (see :func:`blocksync.sync.protocol.mass_deletion`): of the
        bound paths, ``present`` were listed, the ``absent`` ones not, and the listed ones of
        ``blocks_gone`` lost their blocks. Files in folders that cannot be listed are unknown,
        not gone; version-control paths never sync."""
        bound = present
        gone: list[str] = []
        for path in sorted(absent):
            try:
                index, rel = self._locate(path)
            except UsageError:
                continue  # its root left the configuration, or a VCS path: never synced
            if survey.unknown(index, rel) is None:
                bound += 1
                gone.append(path)
        if bound <= MASS_DELETION_MIN:
            return  # too few to tell an accident from deliberate deletions
        for side, missing in (("disk", gone), ("agent", sorted(blocks_gone))):
            refusal = mass_deletion(self.key, bound, missing, side=side)
            if refusal is not None:
                raise refusal

    # -- clean paths (see :mod:`blocksync.index.statcache`) ----------------------------------

    def _scheme_path(self, label: str) -> str | None:
        """The path the label scheme gives ``label`` (unchecked); None if not of this source."""
        if not label.startswith(LABEL_PREFIX):
            return None
        tag, colon, rel = label[len(LABEL_PREFIX) :].partition(":")
        if not colon or tag not in self.tags:
            return None
        return self.spec.source_path(self.tags.index(tag), rel)

    def _scheme_label(self, path: str) -> str | None:
        try:
            index, rel = self._locate(path)
        except UsageError:
            return None
        return self._label(index, rel)

    def _unname(self, clean: Clean) -> None:
        """Drop the named labels bound at the very path they name (the usual end of a block
        changed since: it is a candidate as that path's block), so they stay few."""
        at = {path: label for label in clean.named if (path := self._scheme_path(label))}
        agent = self.spec.agent
        for path, entry in self.base_index().entries_of(self.key, at).items():
            if (entry.owner, entry.label) == (agent, at[path]):
                clean.unname(at[path])

    def _partial(self, clean: Clean, rest: Iterable[str]) -> Snapshot:
        """The snapshot of the ``rest`` of the paths (and of the named blocks) only."""
        index = self.base_index()
        agent = self.spec.agent
        entries = index.entries_of(self.key, [p for p in rest if p in clean.bound])
        labels: dict[str, set[str]] = {agent: set()}
        new = {}
        for path in rest:
            if path in entries:
                entry = entries[path]
                labels.setdefault(entry.owner, set()).add(entry.label)
            else:
                label = self._scheme_label(path)
                if label is not None:
                    new[label] = path
        labels[agent] |= new.keys()
        latest = {
            (owner, label): row
            for owner, wanted in labels.items()
            for label, row in index.latest_contents_of(owner, wanted).items()
        }
        bound = {
            (agent, label): path
            for label, path in index.paths_of_blocks(self.key, agent, new).items()
        }
        self.bases.expect(entries)
        return Snapshot(entries, bound, latest)

    def _plan_all(
        self,
        clean: Clean,
        snap: Snapshot | None,
        survey: Survey,
        outcome: ReconcileOutcome,
        allow_mass_delete: bool,
    ) -> tuple[Snapshot, set[str], list[str]]:
        """A run over all paths, with the clean paths (and the snapshot, if loading them
        made one) and a survey that knew their stats: the snapshot of the rest, every
        candidate, and the rest: those not found unchanged by their stat alone (listed as
        unchanged in ``outcome``)."""
        bound = clean.bound
        # the survey left out most files whose stat is the clean one: of those it kept, some
        # may still be (a source of several folders keeps every stat)
        missed = {path for path, stat in survey.stats.items() if bound.get(path) != stat}
        files = survey.files
        quick = files - missed
        if snap is None:
            self._unname(clean)
        named = [(self.spec.agent, label) for label in clean.named]
        if snap is None:  # only blocks that exist name a path
            alive = self.base_index().latest_contents_of(self.spec.agent, clean.named)
            named = [block for block in named if block[1] in alive]
        wanted, skipped = self._candidates_of(bound.keys() - files, named, survey)
        rest = sorted(wanted - quick)
        if snap is None and len(rest) > _PARTIAL_MOST:
            snap = self._snapshot()  # most paths to decide: one pass beats lookups by path
        elif snap is None:
            snap = self._partial(clean, rest)
        if not allow_mass_delete:
            absent = bound.keys() - survey.present
            blocks_gone = [
                path
                for path in rest
                if path in bound
                and path in survey.present
                and (entry := snap.entries.get(path)) is not None
                and (entry.owner, entry.label) not in snap.latest
            ]
            self._refuse(len(bound) - len(absent), absent, blocks_gone, survey)
        outcome.skipped += survey.skipped + skipped
        outcome.unchanged = list(quick)
        return snap, wanted, rest

    def reconcile(self, paths: list[str]) -> list[ReconcileResult]:
        """Reconcile ``paths`` (see the module docstring); skipped ones land in ``skipped``."""
        return self.reconcile_outcome(paths).results

    def reconcile_outcome(
        self, paths: Iterable[str] | None = None, mode: ReconcileMode = WRITE
    ) -> ReconcileOutcome:
        """As :meth:`reconcile`, with the skipped paths and reasons; None: every candidate,
        after the mass-deletion guard (unless ``allow_mass_delete``) and with every entry of
        the folders that is not synced reported in ``skipped``.

        ``dry_run`` decides every path and writes nothing: the results say what would happen.
        A path whose block an agent changes while this call writes is decided again once with
        what it holds then, and otherwise left for the next run (a skip saying so): one busy
        block never fails the others.
        """
        wanted = None if paths is None else list(dict.fromkeys(paths))
        if wanted is not None:
            for p in wanted:
                self.target(p)  # every path checked before anything is read
        outcome = ReconcileOutcome()
        # the collector runs again once the call's survey, clean paths and plans are freed:
        # the collection that comes due then walks what lives on, not 10,000-path sets
        with collector.paused():
            self._reconcile_into(outcome, wanted, mode)
        return outcome

    def _reconcile_into(
        self, outcome: ReconcileOutcome, wanted: list[str] | None, mode: ReconcileMode
    ) -> None:
        """:meth:`reconcile_outcome` of the checked ``wanted`` paths, into ``outcome``."""
        dry_run, allow_mass_delete = mode
        self._bases_written, self._blocks_written = [], []
        with self._disk() as disk:
            survey = None
            clean: Clean | None = None
            every: set[str] = set()
            if wanted is None:
                clean, loaded = self._clean_rows().load()
                survey = folder_disk.survey(disk, self.spec, stats=True, known=clean.bound)
                snap, every, rest = self._plan_all(
                    clean, loaded, survey, outcome, allow_mass_delete
                )
                only = rest if len(rest) <= _PARTIAL_MOST else None
                hashing = Hashing(self.stat_cache(), survey.stats, only)
                ordered: list[NoChange | _Plan] = self._decide(
                    rest, snap, disk, survey, outcome, hashing
                )
            else:  # a missing root fails the call before anything is decided
                snap = self._snapshot()
                for root in {self.spec.paths[self._locate(p)[0]] for p in wanted}:
                    disk[root]
                hashing = Hashing(self.stat_cache(), None)
                ordered = self._decide(wanted, snap, disk, survey, outcome, hashing)
            plans = [item for item in ordered if isinstance(item, _Plan)]
            stopped = interrupts.reason()
            if stopped is not None and not dry_run:  # a signal came while deciding: no writes
                for plan in plans:
                    plan.skipped = stopped
            elif not dry_run:
                self._apply(plans, disk)
                moved = {plan.path for plan in plans if plan.skipped == _MOVED}
                if moved:  # decided again once, with the block as it is now
                    again = self._decide(
                        sorted(moved), self._snapshot(), disk, survey, outcome, hashing
                    )
                    redone_plans = [item for item in again if isinstance(item, _Plan)]
                    self._apply(redone_plans, disk)
                    plans += redone_plans
                    redone = {item.path: item for item in again}
                    ordered = [
                        redone.get(path, item)
                        for item in ordered
                        if (path := item.path) not in moved or path in redone
                    ]
            if not dry_run:
                if clean is not None and self._clean_rows().orphans_possible(clean, every):
                    self.stat_cache().known_paths()
                hashing.record(
                    (p.path for p in plans if _rewrites(p.decision)),
                    keep_only=None if survey is None else every,
                )
                if clean is not None:
                    self._keep_clean(clean, ordered, hashing)
            for item in ordered:
                self._report(item, outcome)
        if outcome.skipped and wanted is None:  # the paths of a run over all: sorted
            outcome.skipped.sort(key=lambda s: (s.path in every, s.path if s.path in every else ""))
        elif outcome.skipped and wanted is not None:
            order = {p: i for i, p in enumerate(wanted)}
            outcome.skipped.sort(key=lambda s: order.get(s.path, -1))
        self.skipped = list(outcome.skipped)

    def _keep_clean(self, clean: Clean, ordered: list[NoChange | _Plan], hashing: Hashing) -> None:
        """Save ``clean`` with what this run found of the paths it decided one by one (still
        valid for its key: what the run wrote shows as changes since it, at the next run)."""
        rows = self._clean_rows()
        rows.found(
            clean,
            {
                item.path: hashing.settled(item.path) if isinstance(item, NoChange) else None
                for item in ordered
            },
        )
        based = rows.advance(clean, self._blocks_written, self._bases_written)
        for item in ordered:  # a file this call left as it was, now in its block and base too
            if isinstance(item, _Plan) and item.path in based and _settles(item, based):
                clean.still(item.path, hashing.settled(item.path))
        rows.save(clean, hashing.stamp)

    def _decide(
        self,
        wanted: list[str],
        snap: Snapshot,
        disk: Roots,
        survey: Survey | None,
        outcome: ReconcileOutcome,
        hashing: Hashing,
    ) -> list[NoChange | _Plan]:
        """In the order of ``wanted``: each path found unchanged by its hashes alone (the file's
        from the stat cache when it vouches for it), or its plan; paths left alone go to
        ``outcome.skipped`` with the reason."""
        roots = self.spec.paths
        entries = snap.entries
        ordered: list[NoChange | _Plan] = []
        for path in progress.counted(wanted, f"hashing {self.spec.key}"):
            stopped = interrupts.reason()
            if stopped is not None:  # a signal: what is not decided yet is left for the next run
                outcome.skipped.append(Skipped(path, stopped))
                continue
            entry = entries.get(path)
            if entry is not None and unchanged(entry, hashing.known(path), snap.latest):
                ordered.append(NoChange(path))  # listed with the stat its hash was cached with
                continue
            index, rel = self._locate(path)
            root = roots[index]
            why = None if survey is None else survey.unknown(index, rel)
            if why is not None:
                outcome.skipped.append(Skipped(path, why))
                continue
            folder = disk[root]
            read = None
            if entry is not None:  # a bound path's file is read first anyway (see _classify)
                listed = survey is not None and path in survey.present
                read = hashing.read(path, folder, rel, listed=listed)
                if unchanged(entry, read.sha256, snap.latest):
                    ordered.append(NoChange(path))
                    continue
            target = FileTarget(
                path, root, rel, root.joinpath(*rel.split("/")), self._label(index, rel)
            )
            try:
                classified = self._classify(target, snap, folder, hashing, read)
            except StoreCorrupt as exc:  # one damaged object fails its path, not the source
                classified = Skipped(path, str(exc))
            if isinstance(classified, Skipped):
                outcome.skipped.append(classified)
            else:
                ordered.append(classified)
        return ordered

    @staticmethod
    def _report(item: NoChange | _Plan, outcome: ReconcileOutcome) -> None:
        if isinstance(item, NoChange):
            outcome.decided.append(item)
            outcome.reasons[item.path] = _UNCHANGED
            return
        plan = item
        if plan.skipped is not None:
            reason = BLOCK_MOVED if plan.skipped == _MOVED else plan.skipped
            outcome.skipped.append(Skipped(plan.path, reason))
            return
        result = _result(plan)
        outcome.decided.append(result)
        outcome.reasons[plan.path] = plan.reason
        if isinstance(result, NeedsResolution):
            disk_text = plan.outside_now if plan.conflict is not None else plan.outside
            outcome.conflicts[plan.path] = Sides(
                plan.owner, plan.label, plan.base, disk_text, plan.agent
            )

    def _classify(
        self,
        target: FileTarget,
        snap: Snapshot,
        folder: Folder,
        hashing: Hashing,
        read: Read | None = None,
    ) -> _Plan | Skipped:
        """The plan for one path, or the reason it is left alone.

        Hashes first: a path whose file's sha256 is its base's, and whose block's newest
        content blob is its base's blob, is unchanged on both sides, and only its file is read
        (never the base or the block). Any other path reads all three texts for the table.
        """
        try:
            target.rel.encode("utf-8")
        except UnicodeEncodeError:
            return Skipped(target.path, "its name is not UTF-8: it cannot be a block label")
        entry = snap.entries.get(target.path)
        if entry is not None:
            owner, label = entry.owner, entry.label
        else:
            owner, label = self.spec.agent, target.label
            try:
                names.validate(label, "label")
            except UsageError as exc:
                return Skipped(target.path, f"its name cannot be a block label: {exc}")
            other = snap.bound_blocks.get((owner, label))
            if other is not None:
                return Skipped(target.path, f"its block {owner}/{label} is bound to path {other!r}")
            if not self.selects(target.rel):
                return Skipped(
                    target.path, "not selected by the source's recursive/include/exclude settings"
                )
        if read is None:
            read = hashing.read(target.path, folder, target.rel)
        data, unreadable, disk_hash = read
        if unreadable is not None:
            return Skipped(target.path, unreadable)
        latest = snap.latest.get((owner, label))
        if (
            entry is not None
            and data is not None
            and latest is not None
            and disk_hash == entry.base_sha256
            and latest[1] == entry.base_blob
        ):
            # the same bytes as the base (UTF-8, as every base is) on both sides
            text = data.decode("utf-8")
            return _Plan(
                target.path,
                owner,
                label,
                text,
                text,
                disk_hash,
                text,
                Decision(Action.NO_CHANGE, text, _UNCHANGED),
                target=target,
                version=latest[0],
                level=self.level(target.rel),
            )
        disk: str | None = None
        if data is not None:
            try:
                disk = apply.text_of(data)
            except Unreadable as exc:
                return Skipped(target.path, str(exc))
        # both sides as of the snapshot (a block that moves since is refused by its expected
        # version when written); a text known to equal another is never read twice: a file
        # hashing to its base's sha256 holds the base, a block whose blob is the base's too
        base: str | None = None
        base_known = entry is None
        if entry is not None and disk is not None and disk_hash == entry.base_sha256:
            base, base_known = disk, True
        agent: str | None = None
        version: int | None = None
        if latest is not None:
            version, blob = latest
            if entry is not None and base_known and blob == entry.base_blob:
                agent = base
            else:
                agent = self.blocks.read_blob(blob)
        if not base_known:
            assert entry is not None
            if latest is not None and latest[1] == entry.base_blob:
                base = agent
            else:
                base = self.bases.text(entry.base_blob)
        level = self.level(target.rel)
        decision = decide(base, disk, agent, level.value, _merge)
        return _Plan(
            target.path,
            owner,
            label,
            base,
            disk,
            disk_hash,
            agent,
            decision,
            target=target,
            version=version,
            level=level,
        )

    def _hook(self, step: str) -> None:
        if self.fault is not None:
            self.fault(step)

    def _apply(self, plans: list[_Plan], disk: Roots) -> None:
        outside, inside = self._outside(disk), _Inside(self, disk)
        with progress.current().task(f"writing {len(plans)} changes of {self.spec.key}"):
            apply._prepare(outside.ahead(), inside, plans)  # fsyncing while blocks commit
            apply.apply(plans, outside, inside)
            disk.synced()  # the folders' fsyncs, when no base waited for them

    def _reconcile_in_sync(self, path: str) -> FileTarget:
        """Reconcile one path for load/save/create; raise if it did not end in sync."""
        outcome = self.reconcile_outcome([path])
        if outcome.skipped:
            raise UsageError(
                f"source {self.spec.key!r}: {path!r} is left alone: {outcome.skipped[0].reason}"
            )
        (result,) = outcome.results
        if isinstance(result, NeedsResolution):
            raise MergeConflict(
                f"source {self.spec.key!r}: {path!r} needs resolution: {outcome.reasons[path]}"
            )
        return self.target(path)

    # -- conflict resolution -----------------------------------------------------------------

    def sides(self, path: str) -> Sides:
        """The path's block and its base, disk and agent contents as they are now."""
        target = self.target(path)
        found = self.bases.get(path)
        owner, label = (
            (found[0].owner, found[0].label) if found else (self.spec.agent, target.label)
        )
        text, _ = self._read_now(target)
        try:
            agent: str | None = self.blocks.read(owner, label).content
        except BlockNotFound:
            agent = None
        return Sides(owner, label, None if found is None else found[1], text, agent)

    def settle(self, settlement: Settlement) -> int | None:
        """Write the block, then the file, then the base of one path, in reconcile's order;
        ``expected`` is what the caller checked both sides hold (a side that moved since is
        refused, never overwritten). Returns the block's new version (None: no block)."""
        path, disk, agent, base, expected, message, author, _ = settlement
        target = self.target(path)
        version: int | None = None
        with self.blocks.transaction(message, author) as tx:
            current = (
                self.blocks.read(expected.owner, expected.label)
                if tx.exists(expected.owner, expected.label)
                else None
            )
            if _hash(current.content if current else None) != _hash(expected.agent):
                raise ConcurrentUpdate(
                    f"block {expected.owner}/{expected.label}",
                    1,
                    "it changed while the conflict was being resolved",
                )
            tx.hold(
                expected.owner,
                expected.label,
                agent,
                expected_version=None if current is None else current.version,
                description=f"{target.rel} in {target.root}",
            )
        if tx.result is not None:
            version = tx.result.versions.get((expected.owner, expected.label))
        if version is None and agent is not None:
            version = self.blocks.read(expected.owner, expected.label).version
        disk_hash = _hash(expected.disk)  # a UTF-8 file's hash is its text's content hash
        with self._disk() as folders:
            folder = folders[target.root]
            try:
                if disk is None:
                    done = disk_hash is None or folder.remove(target.rel, disk_hash)
                elif disk == expected.disk:
                    done = True
                else:
                    done = folder.write(target.rel, disk.encode("utf-8"), disk_hash)
                folder.sync()
            except OSError as exc:
                raise SourceChanged(
                    self.key, path, f"cannot write its file {target.file}: {why(exc)}"
                ) from exc
        if not done:
            raise ConcurrentUpdate(
                f"file {target.file}", 1, "it changed while the conflict was being resolved"
            )
        with self.bases.update(message, author) as btx:
            if base is None:
                btx.forget(path)
            else:
                btx.set_base(path, expected.owner, expected.label, base)
        return version

    # -- single-block operations ------------------------------------------------------------

    def _check_owner(self, owner: str) -> None:
        if owner != self.spec.agent:
            raise AccessDenied(
                f"file source {self.spec.key!r} keeps blocks of agent {self.spec.agent!r}, "
                f"not of {owner!r}"
            )

    def _require(self, target: FileTarget, needed: PermissionLevel, action: str) -> None:
        level = self.level(target.rel)
        if level.rank < needed.rank:
            raise AccessDenied(
                f"cannot {action} {target.path!r} of source {self.spec.key!r}: the path is "
                f"{level.value} ({needed.value} needed)"
            )

    def block_of(self, path: str) -> BlockRef:
        """The block that mirrors ``path`` (bound, or by the label scheme)."""
        target = self.target(path)
        found = self.bases.get(path)
        owner, label = (
            (found[0].owner, found[0].label) if found else (self.spec.agent, target.label)
        )
        return BlockRef(BlockStore.git_path(owner, label), label, owner)

    def path_of(self, block: BlockRef) -> str:
        """The path ``block`` mirrors: its binding, else the label scheme."""
        self._check_owner(block.agent_id)
        binding = self.bases.binding_for_block(block.agent_id, block.label)
        if binding is not None:
            return binding.path
        path = self.path_for_label(block.label)
        if path is None:
            raise NotFound(
                f"block {block.agent_id}/{block.label} mirrors no path of file source "
                f"{self.spec.key!r}"
            )
        return path

    def load(self, path: str, owner: str) -> BlockRef:
        """Sync the existing file ``path`` into its block (created if new); the block's ref.

        A reconcile of that one path: a block edit is kept (merged, or a conflict raised as
        :class:`MergeConflict`), never overwritten.
        """
        self._check_owner(owner)
        target = self.target(path)
        if not self._exists(target):
            raise NotFound(f"source {self.spec.key!r} has no file {path!r} ({target.file})")
        self._reconcile_in_sync(path)
        return self.block_of(path)

    def create(self, path: str, content: str | None, owner: str) -> BlockRef:
        """Create a new file ``path`` and its block, holding ``content`` (default empty)."""
        self._check_owner(owner)
        target = self.target(path)
        self._require(target, PermissionLevel.READ_WRITE, "create")
        if not self.selects(target.rel):
            raise UsageError(
                f"source {self.spec.key!r}: {path!r} is not selected by its recursive/include/"
                "exclude settings"
            )
        if self._exists(target):
            raise AlreadyExists(f"source {self.spec.key!r} already has a file {path!r}")
        if self.bases.get(path) is not None:
            raise AlreadyExists(f"source {self.spec.key!r}: {path!r} is bound already")
        self.blocks.create(
            owner,
            target.label,
            content or "",
            description=f"{target.rel} in {target.root}",
            author=self.author,
            message=f"file source {self.spec.key}: create {path}",
        )
        self._reconcile_in_sync(path)
        return self.block_of(path)

    def save(self, block: BlockRef) -> None:
        """Carry the block's content to its file (a reconcile of its path: a disk edit made
        since the last sync is merged, or raised as a :class:`MergeConflict`, never lost)."""
        path = self.path_of(block)
        self._require(self.target(path), PermissionLevel.READ_WRITE, "write")
        self._reconcile_in_sync(path)

    def delete(self, path: str) -> None:
        """Delete the file, its block and its binding (admin only). Refused, touching nothing,
        if the file holds text neither its base nor its block has: reconcile it first."""
        target = self.target(path)
        self._require(target, PermissionLevel.ADMIN, "delete")
        found = self.bases.get(path)
        owner, label = (
            (found[0].owner, found[0].label) if found else (self.spec.agent, target.label)
        )
        base = None if found is None else found[1]
        text, disk_hash = self._read_now(target)
        try:
            block = self.blocks.read(owner, label)
            agent, version = block.content, block.version
        except BlockNotFound:
            agent, version = None, None
        gone = _Plan(
            path,
            owner,
            label,
            base,
            text,
            disk_hash,
            agent,
            Decision(Action.FORGET, None, "deleted"),
            target=target,
            version=version,
            level=PermissionLevel.ADMIN,
        )
        message = f"file source {self.spec.key}: delete {path}"
        try:
            with self._disk() as disk:
                apply.delete(gone, self._outside(disk), _Inside(self, disk, message, False))
        except apply.NothingToDelete:
            raise NotFound(f"source {self.spec.key!r} has no path {path!r}") from None
        except apply.DeleteRefused as exc:
            raise MergeConflict(f"source {self.spec.key!r}: {path!r}: {exc}") from None

    # -- versions (through the block store) -------------------------------------------------

    def history(self, block: BlockRef) -> list[VersionInfo]:
        """The block's versions, newest first (as the WIT's ``block-history``)."""
        self._check_owner(block.agent_id)
        return [
            VersionInfo(
                str(v.version),
                v.timestamp,
                f"{v.message} ({v.author}{', deleted' if v.deleted else ''})",
            )
            for v in reversed(self.blocks.history(block.agent_id, block.label))
        ]

    def rollback(self, block: BlockRef, version: str) -> None:
        """Make ``version``'s content the block's newest version; the file follows at the next
        reconcile (or :meth:`save`), through the truth table like any block edit."""
        self._check_owner(block.agent_id)
        self.blocks.rollback(block.agent_id, block.label, version, author=self.author)

    def diff(self, block: BlockRef, from_: str | None, to: str | None) -> str:
        """Unified diff between two versions of the block (defaults: the newest and the one
        before it)."""
        self._check_owner(block.agent_id)
        return self.blocks.diff(block.agent_id, block.label, from_, to).unified


class _NamedRows(CleanRows):
    """The clean row of a folder source, with its label scheme: the labels of blocks that
    may name a path not bound to them (``Clean.named``), and bound blocks looked up at the
    paths their labels name first."""

    def __init__(self, source: FileSource) -> None:
        super().__init__(
            source.stat_cache(),
            source.base_index(),
            source.bases,
            source.blocks,
            "\0".join([source.spec.agent, *source.tags]),
        )
        self.source = source
        self.agent = source.spec.agent

    def owners(self) -> set[str]:
        return {self.agent}

    def made(self, clean: Clean, snap: Snapshot) -> None:
        for owner, label in snap.latest:
            if owner == self.agent and label.startswith(LABEL_PREFIX):
                scheme = self.source._scheme_path(label)
                if scheme is None or snap.bound_blocks.get((owner, label)) != scheme:
                    clean.name(label)

    def block_changed(self, clean: Clean, owner: str, label: str) -> None:
        if owner == self.agent and label.startswith(LABEL_PREFIX):
            clean.name(label)  # it may name a new path

    def named_paths(self, owner: str, labels: Iterable[str]) -> dict[str, str]:
        if owner != self.agent:
            return {}
        scheme = self.source._scheme_path
        return {path: label for label in labels if (path := scheme(label))}

    def rebound(self, clean: Clean, path: str, binding: Bound | None) -> None:
        # the block its label names may name it now (unless bound there: the usual case)
        named = self.source._scheme_label(path)
        ours = binding is not None and (binding.owner, binding.label) == (self.agent, named)
        if named is not None and not ours:
            clean.name(named)


def root_tag(root: Path) -> str:
    """The 8 hex digits naming a root in labels: of the sha256 of its absolute path's bytes."""
    return hashlib.sha256(os.fsencode(root)).hexdigest()[:8]
