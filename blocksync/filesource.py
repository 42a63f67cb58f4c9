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

**Reconcile.** Each path's base, disk and agent contents go through :func:`blocksync.truth.decide`
(the one truth table) under the path's permission level, and the decision is applied in this
order, so that a run killed at any point leaves every path with its old or its new content on
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
derived from the bases ref) is unchanged without reading its base or its block.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from . import interrupts, names, permissions
from .base_index import BaseIndex
from .bases import BaseEntry, SyncBases, ref_name
from .blocks import DEFAULT_SCHEMA, BlockStore
from .disk import Folder, Listing, is_vcs_path, printable_path, store_overlap
from .errors import (
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
from .gitstore import GitStore
from .merge import merge3
from .sources import (
    BLOCK_MOVED,
    MASS_DELETION_MIN,
    BlockRef,
    BlockSchemaSpec,
    NeedsResolution,
    NoChange,
    PermissionLevel,
    PermissionRule,
    ReconcileOutcome,
    ReconcileResult,
    Resolved,
    Sides,
    Skipped,
    VersionInfo,
    mass_deletion,
)
from .truth import Action, Decision, content_hash, decide

__all__ = [
    "FAULT_STEPS",
    "FileSource",
    "FileSourceSpec",
    "FileTarget",
    "parse_file_source",
]

LABEL_PREFIX = "file:"
DEFAULT_RULES = (PermissionRule("**", PermissionLevel.READ_WRITE),)
#: The write steps a fault hook is called at, in the order they happen.
FAULT_STEPS = (
    "before-block-commit",
    "after-block-commit",
    "before-file-write",
    "after-file-write",
    "before-bases",
    "after-bases",
)

Fault = Callable[[str], None]


# -- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSourceSpec:
    """One ``[agents.<agent>.data_sources.<key>]`` table of ``type = "file"``."""

    key: str  # the table key: the source's name (its bases live in refs/sync/<key>)
    agent: str  # owner of the blocks
    name: str
    paths: tuple[Path, ...]  # root folders, absolute
    recursive: bool = True
    include_patterns: tuple[str, ...] = ("**",)
    exclude_patterns: tuple[str, ...] = ()
    permission_rules: tuple[PermissionRule, ...] = DEFAULT_RULES


_FILE_KEYS = {
    "type", "name", "paths", "recursive", "include_patterns", "exclude_patterns",
    "permission_rules",
}


def parse_file_source(
    agent: str, key: str, table: Mapping[str, Any], store_root: Path
) -> FileSourceSpec:
    """Check one ``type = "file"`` table; every error names the table and the key at fault."""
    where = f"[agents.{agent}.data_sources.{key}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    try:
        names.validate(agent, "agent")
        ref_name(key)
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    unknown = sorted(set(table) - _FILE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_FILE_KEYS))}"
        )
    if table.get("type") != "file":
        raise ConfigError(f"{where}.type must be \"file\", not {table.get('type')!r}")
    name = table.get("name", key)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a string")
    raw_paths = table.get("paths")
    if (
        not isinstance(raw_paths, list)
        or not raw_paths
        or not all(isinstance(p, str) and p for p in raw_paths)
    ):
        raise ConfigError(f"{where}.paths must be a non-empty list of folder paths")
    roots = tuple(_resolve(store_root, p) for p in raw_paths)
    for i, root in enumerate(roots):
        for j, other in enumerate(roots[:i]):
            if root == other or root.is_relative_to(other) or other.is_relative_to(root):
                raise ConfigError(
                    f"{where}.paths: {raw_paths[j]!r} and {raw_paths[i]!r} overlap ({other} and "
                    f"{root}); a file must belong to one root only"
                )
    recursive = table.get("recursive", True)
    if not isinstance(recursive, bool):
        raise ConfigError(f"{where}.recursive must be true or false")
    include = _patterns(table.get("include_patterns", ["**"]), f"{where}.include_patterns")
    exclude = _patterns(table.get("exclude_patterns", []), f"{where}.exclude_patterns")
    rules = _rules(table.get("permission_rules"), f"{where}.permission_rules")
    for raw, root in zip(raw_paths, roots):
        problem = store_overlap(root, store_root)
        if problem is not None:
            raise ConfigError(f"{where}.paths: {raw!r} ({root}) {problem}")
    return FileSourceSpec(
        key=key,
        agent=agent,
        name=name,
        paths=roots,
        recursive=recursive,
        include_patterns=include,
        exclude_patterns=exclude,
        permission_rules=rules,
    )


def _resolve(store_root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else Path(store_root) / p).resolve()


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise ConfigError(f"{where} must be a list of glob patterns (strings)")
    for pattern in value:
        try:
            permissions.matches(pattern, "x")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return tuple(value)


def _rules(value: Any, where: str) -> tuple[PermissionRule, ...]:
    if value is None:
        return DEFAULT_RULES
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of {{ pattern, permission }} tables")
    rules = []
    levels = ", ".join(p.value for p in PermissionLevel)
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"pattern", "permission"}:
            raise ConfigError(f"{where}[{i}] must be {{ pattern = \"…\", permission = \"…\" }}")
        if not isinstance(item["pattern"], str) or not item["pattern"]:
            raise ConfigError(f"{where}[{i}].pattern must be a glob pattern (a string)")
        try:
            level = PermissionLevel(item["permission"])
        except ValueError:
            raise ConfigError(f"{where}[{i}].permission must be one of {levels}") from None
        try:
            permissions.matches(item["pattern"], "x")
        except ConfigError as exc:
            raise ConfigError(f"{where}[{i}]: {exc}") from exc
        rules.append(PermissionRule(item["pattern"], level))
    return tuple(rules)


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileTarget:
    """Where a source path lives on disk, and the label the scheme gives its block."""

    path: str  # the source path
    root: Path
    rel: str  # relative to the root, "/"-separated
    file: Path
    label: str  # the block label the scheme gives it (a binding may name another block)


@dataclass
class _Plan:
    target: FileTarget
    owner: str
    label: str
    base: str | None
    disk: str | None
    disk_hash: str | None
    agent: str | None
    version: int | None
    level: PermissionLevel
    decision: Decision
    result: ReconcileResult | None = None
    skipped: str | None = None


_BLOCK_ACTIONS = (Action.TO_AGENT, Action.MERGED, Action.DELETE_AGENT)
_FILE_ACTIONS = (Action.TO_DISK, Action.MERGED, Action.DELETE_DISK)


_CHANGED_WHILE_WRITING = "the file changed while reconcile was writing it"
#: a plan's mark: its block moved while this call wrote (decided again once, then BLOCK_MOVED)
_MOVED = "its block changed while reconcile was writing it"
_VCS = "it is in a version-control folder (.git, .hg, .svn, .jj, .bzr): never synced"
_UNCHANGED = "neither side changed since the last sync"  # as truth.decide says it


@dataclass
class _Snapshot:
    """What one reconcile call knows before it reads any path: every bound path with its base's
    hashes (the base index, caught up with the ref) and the newest content blob of the blocks."""

    entries: dict[str, BaseEntry]
    bound_blocks: dict[tuple[str, str], str]  # (owner, label) -> path
    latest: dict[tuple[str, str], tuple[int, str]]  # (owner, label) -> (version, content blob)


@dataclass
class _Survey:
    """The roots as one listing found them (a run over every path)."""

    listings: dict[int, Listing] = field(default_factory=dict)  # root index -> its listing
    files: set[str] = field(default_factory=set)  # selected regular files, as source paths
    present: set[str] = field(default_factory=set)  # every regular file, selected or not
    skipped: list[Skipped] = field(default_factory=list)  # odd entries (selected) and why

    def unknown(self, index: int, rel: str) -> str | None:
        """Why nothing can be said of ``rel`` of root ``index`` (None: it was listed)."""
        return self.listings[index].unknown(rel)


class _Disk:
    """The roots of a source opened for one call (see :mod:`blocksync.disk`): every read and
    write goes through them, never through a path the kernel resolves again."""

    def __init__(self, source: FileSource) -> None:
        self._source = source
        self._open: dict[Path, Folder] = {}

    def __getitem__(self, root: Path) -> Folder:
        folder = self._open.get(root)
        if folder is None:
            try:
                folder = Folder(root, avoid=self._source._avoid)
            except OSError as exc:
                raise NotFound(
                    f"root folder {root} of file source {self._source.key!r} is missing or "
                    f"unreadable ({_why(exc)}): refusing to treat its files as deleted"
                ) from exc
            self._open[root] = folder
        return folder

    def sync(self) -> None:
        for folder in self._open.values():
            folder.sync()

    def close(self) -> None:
        for folder in self._open.values():
            folder.close()
        self._open.clear()


def _why(exc: OSError) -> str:
    """An OS error as the reason a path is left alone."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link is in the way (blocksync never follows one out of the folder)"
    return exc.strerror or str(exc)


def _merge(base: str, disk: str, agent: str) -> str | None:
    return merge3(base, disk, agent).text


def _hash(text: str | None) -> str | None:
    return None if text is None else content_hash(text)


def _path_of(item: NoChange | _Plan) -> str:
    return item.path if isinstance(item, NoChange) else item.target.path


def _would(plan: _Plan) -> ReconcileResult:
    """What applying ``plan`` would report (for a dry run)."""
    action, path = plan.decision.action, plan.target.path
    if action is Action.NO_CHANGE:
        return NoChange(path)
    if action is Action.CONFLICT:
        return NeedsResolution(path, plan.disk or "", plan.agent or "")
    return Resolved(path, action.value)


# -- the source -------------------------------------------------------------------------------


class FileSource:
    """A folder-backed data block source; implements :class:`blocksync.sources.DataBlock`.

    ``blocks`` is the store's block store. ``bases`` defaults to the source's sync bases in the
    same repository (opened, and closed by :meth:`close`, here). ``config_rules`` narrows the
    spec's permission rules (never widens them). ``fault`` is called with each step of
    :data:`FAULT_STEPS` as reconcile reaches it: tests kill the process there.
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

    def close(self) -> None:
        if self._base_index is not None:
            self._base_index.close()
            self._base_index = None
        if self._git is not None:
            self._git.close()

    def base_index(self) -> BaseIndex:
        """The index of the bases in the store's ``index.db`` (opened on first use)."""
        if self._base_index is None:
            self._base_index = BaseIndex(Path(self.blocks._index.path))
        return self._base_index

    def _snapshot(self) -> _Snapshot:
        index = self.base_index()
        entries = index.entries(self.bases)
        self.bases.expect(entries)  # spares reading the bindings a write checks (verified)
        self.blocks.catch_up_index()
        latest: dict[tuple[str, str], tuple[int, str]] = {}
        for owner in {self.spec.agent} | {e.owner for e in entries.values()}:
            for label, row in index.latest_contents(owner).items():
                latest[(owner, label)] = row
        bound = {(e.owner, e.label): e.path for e in entries.values()}
        return _Snapshot(entries, bound, latest)

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
            raise UsageError(f"source {self.spec.key!r}: a path must be non-empty text, not {path!r}")
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
            text, digest, unreadable = self._read_disk(target, disk[target.root])
        if unreadable is not None:
            raise UsageError(f"source {self.spec.key!r}: {target.path!r} is left alone: {unreadable}")
        return text, digest

    def _label(self, index: int, rel: str) -> str:
        return f"{LABEL_PREFIX}{self.tags[index]}:{rel}"

    def _source_path(self, index: int, rel: str) -> str:
        return f"{index}:{rel}" if len(self.spec.paths) > 1 else rel

    def path_for_label(self, label: str) -> str | None:
        """The source path the label scheme gives ``label``; None if not one of this source's."""
        if not label.startswith(LABEL_PREFIX):
            return None
        tag, colon, rel = label[len(LABEL_PREFIX):].partition(":")
        if not colon or tag not in self.tags:
            return None
        path = self._source_path(self.tags.index(tag), rel)
        try:
            self.target(path)
        except UsageError:
            return None
        return path

    def level(self, rel: str) -> PermissionLevel:
        return permissions.level_for(rel, self.spec.permission_rules, self.config_rules)

    def _excluded(self, rel: str) -> bool:
        """As in .gitignore: a pattern excludes a file it matches, or any folder above it
        (``build/`` with its trailing slash matches folders only)."""
        if not self.spec.exclude_patterns:
            return False
        parts = rel.split("/")
        if any(
            permissions.matches(p, rel) for p in self.spec.exclude_patterns if not p.endswith("/")
        ):
            return True
        return any(self._folder_excluded("/".join(parts[:i])) for i in range(1, len(parts)))

    def _folder_excluded(self, folder: str) -> bool:
        if not self.spec.exclude_patterns:
            return False
        return any(permissions.matches(p.rstrip("/"), folder) for p in self.spec.exclude_patterns)

    def selects(self, rel: str) -> bool:
        """Does the configuration select the file ``rel`` (recursive, include, exclude)?"""
        if not self.spec.recursive and "/" in rel:
            return False
        if not any(permissions.matches(p, rel) for p in self.spec.include_patterns):
            return False
        return not self._excluded(rel)

    @contextmanager
    def _disk(self) -> Iterator[_Disk]:
        disk = _Disk(self)
        try:
            yield disk
        finally:
            disk.close()

    def scan(self) -> list[str]:
        """The selected regular files on disk now, sorted (see :meth:`_survey`)."""
        with self._disk() as disk:
            return sorted(self._survey(disk).files)

    def _survey(self, disk: _Disk) -> _Survey:
        """Every root listed (never through a link, never into the store or a version-control
        folder): the selected files, what is skipped and why, folders that cannot be listed."""
        survey = _Survey()
        for index, root in enumerate(self.spec.paths):
            listing = survey.listings[index] = disk[root].scan(
                recursive=self.spec.recursive, skip=self._folder_excluded
            )
            for folder, reason in listing.unlisted:
                if not folder:
                    raise NotFound(
                        f"source {self.key!r}: folder {root} cannot be listed ({reason}); "
                        "refusing to reconcile it in this run"
                    )
                survey.skipped.append(Skipped(
                    self._source_path(index, folder + "/"),
                    f"this folder cannot be listed ({reason}): its files are left as they are",
                ))
            for rel, reason in listing.odd:
                # a name that is not UTF-8 is reported whatever the patterns: the entry may
                # be a folder, whose files the patterns would select
                shown = printable_path(rel)
                if shown != rel or self.selects(rel):
                    survey.skipped.append(Skipped(self._source_path(index, shown), reason))
            for rel in listing.files:
                path = self._source_path(index, rel)
                survey.present.add(path)
                if self.selects(rel):
                    survey.files.add(path)
        return survey

    def candidates(self) -> list[str]:
        """Bound paths, selected files on disk, and the agent's blocks whose labels name a path
        of this source (a new block becomes a new file); sorted.

        Bound paths that no longer parse (their root was removed from the configuration) are
        left out: they stay bound, and untouched, until someone forgets them.
        """
        with self._disk() as disk:
            return self._candidates(self._snapshot(), self._survey(disk))[0]

    def _candidates(self, snap: _Snapshot, survey: _Survey) -> tuple[list[str], list[Skipped]]:
        """The candidates, and the agent's blocks that name a path never synced (and why)."""
        paths = set(survey.files)
        skipped: list[Skipped] = []
        for bound in snap.entries:
            if bound in paths:
                continue
            try:
                self.target(bound)
            except UsageError:
                continue
            paths.add(bound)
        tags = {tag: index for index, tag in enumerate(self.tags)}
        for owner, label in snap.latest:
            if owner != self.spec.agent or not label.startswith(LABEL_PREFIX):
                continue
            tag, _, rel = label[len(LABEL_PREFIX):].partition(":")
            if tag in tags and self._source_path(tags[tag], rel) in paths:
                continue  # already a candidate (the usual case): no need to parse it again
            if tag in tags and is_vcs_path(rel):
                path = self._source_path(tags[tag], rel)
                skipped.append(Skipped(path, f"block {owner}/{label} names it, but {_VCS}"))
                continue
            named = self.path_for_label(label)
            if named is not None and self.selects(self.target(named).rel):
                paths.add(named)
        return sorted(paths), skipped

    # -- reconcile --------------------------------------------------------------------------

    def _guard(self, snap: _Snapshot, survey: _Survey) -> None:
        """Refuse a run over all paths in which most bound files vanished at once, or most of
        their blocks were deleted (see :func:`blocksync.sources.mass_deletion`). Files in
        folders that cannot be listed are unknown, not gone; version-control paths never sync."""
        bound = 0
        gone: list[str] = []
        blocks_gone: list[str] = []
        for path, entry in snap.entries.items():
            if path in survey.present:  # listed: a path of a root, no VCS file, known
                bound += 1
                if (entry.owner, entry.label) not in snap.latest:
                    blocks_gone.append(path)
                continue
            try:
                index, rel = self._locate(path)
            except UsageError:
                continue  # its root left the configuration, or a VCS path: never synced
            if survey.unknown(index, rel) is None:
                bound += 1
                gone.append(path)
        if bound <= MASS_DELETION_MIN:
            return  # too few to tell an accident from deliberate deletions
        for side, missing in (("disk", gone), ("agent", blocks_gone)):
            refusal = mass_deletion(self.key, bound, missing, side=side)
            if refusal is not None:
                raise refusal

    def reconcile(self, paths: list[str]) -> list[ReconcileResult]:
        """Reconcile ``paths`` (see the module docstring); skipped ones land in ``skipped``."""
        outcome = self.reconcile_outcome(paths)
        return outcome.results

    def reconcile_outcome(
        self,
        paths: Iterable[str] | None = None,
        *,
        dry_run: bool = False,
        allow_mass_delete: bool = False,
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
        with self._disk() as disk:
            snap = self._snapshot()
            survey = None
            if wanted is None:
                survey = self._survey(disk)
                if not allow_mass_delete:
                    self._guard(snap, survey)
                wanted, skipped = self._candidates(snap, survey)
                outcome.skipped += survey.skipped + skipped
            else:  # a missing root fails the call before anything is decided
                for root in {self.spec.paths[self._locate(p)[0]] for p in wanted}:
                    disk[root]
            ordered = self._decide(wanted, snap, disk, survey, outcome)
            plans = [item for item in ordered if isinstance(item, _Plan)]
            stopped = interrupts.reason()
            if dry_run:
                for plan in plans:
                    plan.result = _would(plan)
            elif stopped is not None:  # a signal came while deciding: nothing written at all
                for plan in plans:
                    plan.skipped = stopped
            else:
                self._apply(plans, disk)
                moved = {plan.target.path for plan in plans if plan.skipped == _MOVED}
                if moved:  # decided again once, with the block as it is now
                    again = self._decide(sorted(moved), self._snapshot(), disk, survey, outcome)
                    self._apply([item for item in again if isinstance(item, _Plan)], disk)
                    redone = {_path_of(item): item for item in again}
                    ordered = [
                        redone[path] if path in redone else item
                        for item in ordered
                        if (path := _path_of(item)) not in moved or path in redone
                    ]
            for item in ordered:
                self._report(item, outcome, disk)
        order = {p: i for i, p in enumerate(wanted)}
        outcome.skipped.sort(key=lambda s: order.get(s.path, -1))
        self.skipped = list(outcome.skipped)
        return outcome

    def _decide(
        self,
        wanted: list[str],
        snap: _Snapshot,
        disk: _Disk,
        survey: _Survey | None,
        outcome: ReconcileOutcome,
    ) -> list[NoChange | _Plan]:
        """In the order of ``wanted``: each path found unchanged by its hashes alone, or its
        plan; paths left alone go to ``outcome.skipped`` with the reason."""
        roots = self.spec.paths
        ordered: list[NoChange | _Plan] = []
        for path in wanted:
            stopped = interrupts.reason()
            if stopped is not None:  # a signal: what is not decided yet is left for the next run
                outcome.skipped.append(Skipped(path, stopped))
                continue
            index, rel = self._locate(path)
            root = roots[index]
            why = None if survey is None else survey.unknown(index, rel)
            if why is not None:
                outcome.skipped.append(Skipped(path, why))
                continue
            folder = disk[root]
            read = None
            entry = snap.entries.get(path)
            if entry is not None:  # a bound path's file is read first anyway (see _classify)
                read = folder.read(rel, listed=survey is not None and path in survey.present)
                if self._unchanged(entry, read[0], snap):
                    ordered.append(NoChange(path))
                    continue
            target = FileTarget(
                path, root, rel, root.joinpath(*rel.split("/")), self._label(index, rel)
            )
            try:
                classified = self._classify(target, snap, folder, read)
            except StoreCorrupt as exc:  # one damaged object fails its path, not the source
                classified = str(exc)
            if isinstance(classified, str):
                outcome.skipped.append(Skipped(target.path, classified))
            else:
                ordered.append(classified)
        return ordered

    def _report(self, item: NoChange | _Plan, outcome: ReconcileOutcome, disk: _Disk) -> None:
        if isinstance(item, NoChange):
            outcome.results.append(item)
            outcome.reasons[item.path] = _UNCHANGED
            return
        plan = item
        if plan.skipped is not None:
            reason = BLOCK_MOVED if plan.skipped == _MOVED else plan.skipped
            outcome.skipped.append(Skipped(plan.target.path, reason))
            return
        assert plan.result is not None
        outcome.results.append(plan.result)
        outcome.reasons[plan.target.path] = plan.decision.reason
        if isinstance(plan.result, NeedsResolution):
            disk_text = plan.disk
            if plan.decision.reason == _CHANGED_WHILE_WRITING:
                disk_text, _, _ = self._read_disk(plan.target, disk[plan.target.root])
            outcome.conflicts[plan.target.path] = Sides(
                plan.owner, plan.label, plan.base, disk_text, plan.agent
            )

    @staticmethod
    def _text_of(data: bytes) -> tuple[str | None, str | None]:
        """(text, None), or (None, why) when ``data`` is not UTF-8."""
        try:
            return data.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return None, (
                f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
                "binary files are left alone"
            )

    def _read_disk(
        self, target: FileTarget, folder: Folder
    ) -> tuple[str | None, str | None, str | None]:
        """(text, sha256 of its bytes, None); (None, None, None) if there is no file; or
        (None, None, reason) if it cannot be synced as text: then it is left alone."""
        data, unreadable = folder.read(target.rel)
        if data is None:
            return None, None, unreadable
        text, why = self._text_of(data)
        if text is None:
            return None, None, why
        return text, hashlib.sha256(data).hexdigest(), None

    @staticmethod
    def _unchanged(entry: BaseEntry, data: bytes | None, snap: _Snapshot) -> bool:
        """Are the file (its bytes ``data``) and the block of bound path ``entry`` both its
        base, by their hashes? What :meth:`_classify` finds first, without a target or plan."""
        if data is None:
            return False
        latest = snap.latest.get((entry.owner, entry.label))
        return (
            latest is not None
            and latest[1] == entry.base_blob
            and hashlib.sha256(data).hexdigest() == entry.base_sha256
        )

    def _classify(
        self,
        target: FileTarget,
        snap: _Snapshot,
        folder: Folder,
        read: tuple[bytes | None, str | None] | None = None,
    ) -> _Plan | str:
        """The plan for one path, or the reason it is left alone.

        Hashes first: a path whose file's sha256 is its base's, and whose block's newest
        content blob is its base's blob, is unchanged on both sides, and only its file is read
        (never the base or the block). Any other path reads all three texts for the table.
        """
        try:
            target.rel.encode("utf-8")
        except UnicodeEncodeError:
            return "its name is not UTF-8: it cannot be a block label"
        entry = snap.entries.get(target.path)
        if entry is not None:
            owner, label = entry.owner, entry.label
        else:
            owner, label = self.spec.agent, target.label
            try:
                names.validate(label, "label")
            except UsageError as exc:
                return f"its name cannot be a block label: {exc}"
            other = snap.bound_blocks.get((owner, label))
            if other is not None:
                return f"its block {owner}/{label} is bound to path {other!r}"
            if not self.selects(target.rel):
                return "not selected by the source's recursive/include/exclude settings"
        data, unreadable = folder.read(target.rel) if read is None else read
        if unreadable is not None:
            return unreadable
        disk_hash = None if data is None else hashlib.sha256(data).hexdigest()
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
                target, owner, label, text, text, disk_hash, text, latest[0],
                self.level(target.rel), Decision(Action.NO_CHANGE, text, _UNCHANGED),
            )
        disk: str | None = None
        if data is not None:
            disk, why = self._text_of(data)
            if disk is None:
                assert why is not None
                return why
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
                agent = self.blocks._text(blob.encode("ascii"))
        if not base_known:
            assert entry is not None
            if latest is not None and latest[1] == entry.base_blob:
                base = agent
            else:
                base = self.bases.text(entry.base_blob)
        level = self.level(target.rel)
        decision = decide(base, disk, agent, level.value, _merge)
        return _Plan(target, owner, label, base, disk, disk_hash, agent, version, level, decision)

    def _hook(self, step: str) -> None:
        if self.fault is not None:
            self.fault(step)

    def _apply(self, plans: list[_Plan], disk: _Disk) -> None:
        for plan in plans:
            action = plan.decision.action
            if action is Action.NO_CHANGE:
                plan.result = NoChange(plan.target.path)
            elif action is Action.CONFLICT:
                plan.result = NeedsResolution(plan.target.path, plan.disk or "", plan.agent or "")
        todo = [p for p in plans if p.result is None]
        self._write_blocks([p for p in todo if p.decision.action in _BLOCK_ACTIONS])
        try:
            for plan in todo:
                if plan.skipped is None and plan.decision.action in _FILE_ACTIONS:
                    # a signal stops the writes between two files; the bases of those written
                    # still advance below, the others stay as they were for the next run
                    plan.skipped = interrupts.reason()
                    if plan.skipped is None:
                        self._write_file(plan, disk[plan.target.root])
        finally:
            # each folder written to fsynced once, after all its files were renamed and
            # before any base advances (ext4 and friends commit the renames together)
            disk.sync()
        settle = [p for p in todo if p.skipped is None and p.result is None]
        if settle:
            self._hook("before-bases")
            with self.bases.update(self._message(settle, "base(s)"), self.author) as tx:
                for plan in settle:
                    content = plan.decision.content
                    if content is None:
                        tx.forget(plan.target.path)
                    else:
                        tx.set_base(plan.target.path, plan.owner, plan.label, content)
            self.base_index().record(self.bases, tx)
            self._hook("after-bases")
        for plan in settle:
            plan.result = Resolved(plan.target.path, plan.decision.action.value)

    def _message(self, plans: list[_Plan], what: str) -> str:
        shown = ", ".join(p.target.path for p in plans[:3]) + (", ..." if len(plans) > 3 else "")
        head = f"reconcile file source {self.spec.key}: {len(plans)} {what}"
        return f"{head} ({shown})".replace("\0", "\\0")

    def _write_blocks(self, plans: list[_Plan]) -> None:
        if not plans:
            return
        message = self._message(plans, "block(s)")
        with self.blocks.transaction(message, self.author, skip_stale=True) as tx:
            for plan in plans:
                action, content = plan.decision.action, plan.decision.content
                try:
                    if action is Action.DELETE_AGENT:
                        tx.delete(plan.owner, plan.label, expected_version=plan.version)
                    elif plan.agent is None:
                        assert content is not None
                        tx.create(
                            plan.owner, plan.label, content,
                            description=f"{plan.target.rel} in {plan.target.root}",
                        )
                    else:
                        assert content is not None
                        tx.update(plan.owner, plan.label, content, expected_version=plan.version)
                except InvalidContent as exc:  # e.g. over the block's char_limit
                    plan.skipped = f"the block cannot hold it: {exc}"
            self._hook("before-block-commit")
        for plan in plans:  # an agent wrote these meanwhile: nothing of them was written
            if (plan.owner, plan.label) in tx.stale:
                plan.skipped = _MOVED
        self._hook("after-block-commit")

    def _write_file(self, plan: _Plan, folder: Folder) -> None:
        rel = plan.target.rel
        content = plan.decision.content
        self._hook("before-file-write")
        try:
            if content is None:  # DELETE_DISK
                assert plan.disk_hash is not None
                done = folder.remove(rel, plan.disk_hash)
            elif content_hash(content) == plan.disk_hash:
                done = True  # the file holds the result already
            else:
                done = folder.write(rel, content.encode("utf-8"), plan.disk_hash)
        except OSError as exc:
            plan.skipped = f"cannot write the file: {_why(exc)}"
            return
        self._hook("after-file-write")
        if done:
            return
        # changed since it was read: not overwritten; both sides as they are now
        disk, _, unreadable = self._read_disk(plan.target, folder)
        if unreadable is not None:
            plan.skipped = f"the file changed while reconciling: {unreadable}"
            return
        agent = plan.agent if plan.decision.action is not Action.MERGED else content
        plan.result = NeedsResolution(plan.target.path, disk or "", agent or "")
        plan.decision = Decision(Action.CONFLICT, None, _CHANGED_WHILE_WRITING)

    def _one(self, path: str) -> FileTarget:
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
        owner, label = (found[0].owner, found[0].label) if found else (self.spec.agent, target.label)
        text, _ = self._read_now(target)
        try:
            agent: str | None = self.blocks.read(owner, label).content
        except BlockNotFound:
            agent = None
        return Sides(owner, label, None if found is None else found[1], text, agent)

    def settle(
        self,
        path: str,
        *,
        disk: str | None,
        agent: str | None,
        base: str | None,
        expected: Sides,
        message: str,
        author: str,
    ) -> int | None:
        """Write the block, then the file, then the base of one path, in reconcile's order;
        ``expected`` is what the caller checked both sides hold (a side that moved since is
        refused, never overwritten). Returns the block's new version (None: no block)."""
        target = self.target(path)
        version: int | None = None
        with self.blocks.transaction(message, author) as tx:
            current = self.blocks.read(expected.owner, expected.label) if tx.exists(
                expected.owner, expected.label) else None
            if _hash(current.content if current else None) != _hash(expected.agent):
                raise ConcurrentUpdate(f"block {expected.owner}/{expected.label}", 1,
                                       "it changed while the conflict was being resolved")
            if agent is None and current is not None:
                tx.delete(expected.owner, expected.label, expected_version=current.version)
            elif agent is not None and current is None:
                tx.create(expected.owner, expected.label, agent,
                          description=f"{target.rel} in {target.root}")
            elif agent is not None and current is not None and agent != current.content:
                tx.update(expected.owner, expected.label, agent, expected_version=current.version)
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
                    self.key, path, f"cannot write its file {target.file}: {_why(exc)}"
                ) from exc
        if not done:
            raise ConcurrentUpdate(f"file {target.file}", 1,
                                   "it changed while the conflict was being resolved")
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
        owner, label = (found[0].owner, found[0].label) if found else (self.spec.agent, target.label)
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
        self._one(path)
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
            owner, target.label, content or "", description=f"{target.rel} in {target.root}",
            author=self.author, message=f"file source {self.spec.key}: create {path}",
        )
        self._one(path)
        return self.block_of(path)

    def save(self, block: BlockRef) -> None:
        """Carry the block's content to its file (a reconcile of its path: a disk edit made
        since the last sync is merged, or raised as a :class:`MergeConflict`, never lost)."""
        path = self.path_of(block)
        self._require(self.target(path), PermissionLevel.READ_WRITE, "write")
        self._one(path)

    def delete(self, path: str) -> None:
        """Delete the file, its block and its binding (admin only). Refused, touching nothing,
        if the file holds text neither its base nor its block has: reconcile it first."""
        target = self.target(path)
        self._require(target, PermissionLevel.ADMIN, "delete")
        found = self.bases.get(path)
        owner, label = (found[0].owner, found[0].label) if found else (self.spec.agent, target.label)
        base = None if found is None else found[1]
        text, disk_hash = self._read_now(target)
        try:
            block = self.blocks.read(owner, label)
            agent, version = block.content, block.version
        except BlockNotFound:
            agent, version = None, None
        if text is not None and text != base and text != agent:
            raise MergeConflict(
                f"source {self.spec.key!r}: {path!r} has changes no reconcile has recorded; "
                "reconcile it before deleting it"
            )
        if found is None and text is None and agent is None:
            raise NotFound(f"source {self.spec.key!r} has no path {path!r}")
        message = f"file source {self.spec.key}: delete {path}"
        if agent is not None:
            with self.blocks.transaction(message, self.author) as tx:
                tx.delete(owner, label, expected_version=version)
                self._hook("before-block-commit")
            self._hook("after-block-commit")
        if disk_hash is not None:
            self._hook("before-file-write")
            why = "it changed while it was being deleted"
            with self._disk() as disk:
                folder = disk[target.root]
                try:
                    removed = folder.remove(target.rel, disk_hash)
                    folder.sync()
                except OSError as exc:
                    removed, why = False, _why(exc)
            if not removed:
                raise MergeConflict(
                    f"source {self.spec.key!r}: {path!r}: {why}; its block was deleted (its "
                    "history keeps it), the file was kept"
                )
            self._hook("after-file-write")
        if found is not None:
            self._hook("before-bases")
            with self.bases.update(message, self.author) as btx:
                btx.forget(path)
            self._hook("after-bases")

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


def root_tag(root: Path) -> str:
    """The 8 hex digits naming a root in labels: of the sha256 of its absolute path's bytes."""
    return hashlib.sha256(os.fsencode(root)).hexdigest()[:8]
