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
bases advanced in ONE update. A file that changed between classification and its write is not overwritten: that path
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
import secrets
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from . import names, permissions
from .bases import BaseEntry, BaseIndex, SyncBases, ref_name
from .blocks import DEFAULT_SCHEMA, BlockStore
from .errors import (
    AccessDenied,
    AlreadyExists,
    BlockNotFound,
    ConcurrentUpdate,
    ConfigError,
    InvalidContent,
    MergeConflict,
    NotFound,
    UsageError,
)
from .gitstore import GitStore
from .merge import merge3
from .sources import (
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
    "file_hash",
    "parse_file_source",
    "remove_file_atomically",
    "write_file_atomically",
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
#: Temp files of interrupted writes are named ``.blocksync-<hex>.tmp``; scans ignore them.
TEMP_PREFIX = ".blocksync-"
TEMP_SUFFIX = ".tmp"
_READ_CHUNK = 1 << 20

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


# -- files on disk ----------------------------------------------------------------------------


def file_hash(path: Path) -> str | None:
    """sha256 hex of the file's bytes; None if there is no file. Not a regular file (a folder,
    a symlink, ...) gets a marker no content hash equals, so a writer expecting a file fails."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a parent is a file: no file here
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink"
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "not-a-regular-file"
        digest = hashlib.sha256()
        while chunk := os.read(fd, _READ_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(
    path: Path, text: str, expected_hash: str | None, *, synced_folders: set[Path] | None = None
) -> bool:
    """Replace ``path`` with ``text`` (UTF-8, bytes exactly as given) if it still holds what
    ``expected_hash`` says (its sha256 hex; None: the file must not exist).

    A temp file in the same folder is written and fsynced, the file's hash re-checked, then
    renamed over the file and the folder fsynced: readers and a killed writer see the old
    content or the new, never a mix. Returns False, writing nothing, if the file changed (like
    a compare-and-swap of a ref). The check and the rename are not one atomic step: a writer
    slipping in between them loses, as with any rename-based editor. An existing file keeps
    its permission bits; a new one gets 0o666 less the umask. Missing folders are created.

    ``synced_folders``: the folder is added to it instead of fsynced here, for a caller that
    writes many files and fsyncs each folder once afterwards (before anything that relies on
    the new content being durable, such as advancing a base).
    """
    data = text.encode("utf-8")  # strict: a lone surrogate is an error, never mangled
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                out.write(data)
            try:
                os.fchmod(fd, stat.S_IMODE(os.lstat(path).st_mode))
            except FileNotFoundError:
                pass
            os.fsync(fd)
        finally:
            os.close(fd)
        if file_hash(path) != expected_hash:
            os.unlink(tmp)
            return False
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    if synced_folders is None:
        _fsync_folder(folder)
    else:
        synced_folders.add(folder)
    return True


def remove_file_atomically(
    path: Path, expected_hash: str, *, synced_folders: set[Path] | None = None
) -> bool:
    """Delete ``path`` if it still holds what ``expected_hash`` says; False if it changed.
    ``synced_folders`` as for :func:`write_file_atomically`."""
    if file_hash(path) != expected_hash:
        return False
    os.unlink(path)
    if synced_folders is None:
        _fsync_folder(path.parent)
    else:
        synced_folders.add(path.parent)
    return True


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
_UNCHANGED = "neither side changed since the last sync"  # as truth.decide says it


@dataclass
class _Snapshot:
    """What one reconcile call knows before it reads any path: every bound path with its base's
    hashes (the base index, caught up with the ref) and the newest content blob of the blocks."""

    entries: dict[str, BaseEntry]
    bound_blocks: dict[tuple[str, str], str]  # (owner, label) -> path
    latest: dict[tuple[str, str], tuple[int, str]]  # (owner, label) -> (version, content blob)
    #: folder -> the reason files in it are left alone (its real path leaves the root), or None
    real_parents: dict[str, str | None] = field(default_factory=dict)


def _merge(base: str, disk: str, agent: str) -> str | None:
    return merge3(base, disk, agent).text


def _hash(text: str | None) -> str | None:
    return None if text is None else content_hash(text)


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
        # where the roots really are: a file whose folder resolves elsewhere left through a link
        self._real_roots = {root: Path(os.path.realpath(root)) for root in spec.paths}
        # each root as the text a file's path starts with (a Path per file read costs more)
        self._root_prefixes = {
            root: os.fspath(root) if os.fspath(root).endswith(os.sep) else os.fspath(root) + os.sep
            for root in spec.paths
        }
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
        return index, rel

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

    def scan(self) -> list[str]:
        """The selected regular files on disk now (symlinks and temp files left out), sorted."""
        found: list[str] = []
        for index, root in enumerate(self.spec.paths):
            self._scan(index, root, "", found)
        return sorted(found)

    def _scan(self, index: int, folder: Path, prefix: str, found: list[str]) -> None:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if self.spec.recursive and not self._folder_excluded(rel):
                    self._scan(index, Path(entry.path), rel + "/", found)
            elif entry.is_file(follow_symlinks=False):
                if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
                    continue
                if self.selects(rel):
                    found.append(self._source_path(index, rel))

    def candidates(self) -> list[str]:
        """Bound paths, selected files on disk, and the agent's blocks whose labels name a path
        of this source (a new block becomes a new file); sorted.

        Bound paths that no longer parse (their root was removed from the configuration) are
        left out: they stay bound, and untouched, until someone forgets them.
        """
        return self._candidates(self._snapshot())

    def _candidates(self, snap: _Snapshot) -> list[str]:
        paths = set(self.scan())
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
            path = self.path_for_label(label)
            if path is not None and self.selects(self.target(path).rel):
                paths.add(path)
        return sorted(paths)

    # -- reconcile --------------------------------------------------------------------------

    def guard(self) -> None:
        """Refuse a run over all paths whose folders are unreadable, or in which most bound
        files vanished at once (see :func:`blocksync.sources.mass_deletion`)."""
        for root in self.spec.paths:
            if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
                raise NotFound(
                    f"source {self.key!r}: folder {root} is missing or unreadable; "
                    "refusing to reconcile it in this run"
                )
        bound = [b.path for b in self.bases.bindings()]
        if len(bound) <= MASS_DELETION_MIN:
            return  # too few to tell an accident from deliberate deletions
        present = set(self.scan())
        refusal = mass_deletion(self.key, len(bound), [p for p in bound if p not in present])
        if refusal is not None:
            raise refusal

    def reconcile(self, paths: list[str]) -> list[ReconcileResult]:
        """Reconcile ``paths`` (see the module docstring); skipped ones land in ``skipped``."""
        outcome = self.reconcile_outcome(paths)
        return outcome.results

    def reconcile_outcome(
        self, paths: Iterable[str] | None = None, *, dry_run: bool = False
    ) -> ReconcileOutcome:
        """As :meth:`reconcile`, with the skipped paths and reasons; None: every candidate.

        ``dry_run`` decides every path and writes nothing: the results say what would happen.
        """
        wanted = None if paths is None else list(dict.fromkeys(paths))
        if wanted is not None:
            for p in wanted:
                self.target(p)  # every path checked before anything is read
        snap = self._snapshot()
        if wanted is None:
            wanted = self._candidates(snap)
        located = [self._locate(p) for p in wanted]
        roots = self.spec.paths
        for root in {roots[index] for index, _ in located}:
            if not root.is_dir():
                raise NotFound(
                    f"root folder {root} of file source {self.spec.key!r} is missing or not a "
                    "folder: refusing to treat its files as deleted"
                )
        outcome = ReconcileOutcome()
        plans: list[_Plan] = []
        # in the order of ``wanted``: a path found unchanged by its hashes alone, or its plan
        ordered: list[NoChange | _Plan] = []
        for path, (index, rel) in zip(wanted, located):
            root = roots[index]
            read = None
            entry = snap.entries.get(path)
            if entry is not None:  # a bound path's file is read first anyway (see _classify)
                read = self._read_at(root, rel, snap.real_parents)
                if self._unchanged(entry, read[0], snap):
                    ordered.append(NoChange(path))
                    continue
            target = FileTarget(
                path, root, rel, root.joinpath(*rel.split("/")), self._label(index, rel)
            )
            classified = self._classify(target, snap, read)
            if isinstance(classified, str):
                outcome.skipped.append(Skipped(target.path, classified))
            else:
                plans.append(classified)
                ordered.append(classified)
        if dry_run:
            for plan in plans:
                plan.result = _would(plan)
        else:
            self._apply(plans)
        for item in ordered:
            if isinstance(item, NoChange):
                outcome.results.append(item)
                outcome.reasons[item.path] = _UNCHANGED
                continue
            plan = item
            if plan.skipped is not None:
                outcome.skipped.append(Skipped(plan.target.path, plan.skipped))
                continue
            assert plan.result is not None
            outcome.results.append(plan.result)
            outcome.reasons[plan.target.path] = plan.decision.reason
            if isinstance(plan.result, NeedsResolution):
                disk = plan.disk
                if plan.decision.reason == _CHANGED_WHILE_WRITING:
                    disk, _, _ = self._read_disk(plan.target)
                outcome.conflicts[plan.target.path] = Sides(
                    plan.owner, plan.label, plan.base, disk, plan.agent
                )
        order = {p: i for i, p in enumerate(wanted)}
        outcome.skipped.sort(key=lambda s: order[s.path])
        self.skipped = list(outcome.skipped)
        return outcome

    def _read_disk(
        self, target: FileTarget, real_parents: dict[str, str | None] | None = None
    ) -> tuple[str | None, str | None, str | None]:
        """(text, sha256 of its bytes, None); (None, None, None) if there is no file; or
        (None, None, reason) if it cannot be synced as text: then it is left alone.

        ``real_parents`` caches folders' real paths over one reconcile call."""
        data, unreadable = self._read_bytes(target, real_parents)
        if data is None:
            return None, None, unreadable
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, None, (
                f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
                "binary files are left alone"
            )
        return text, hashlib.sha256(data).hexdigest(), None

    def _read_bytes(
        self, target: FileTarget, real_parents: dict[str, str | None] | None = None
    ) -> tuple[bytes | None, str | None]:
        """(the file's bytes, None); (None, None) if there is no file; (None, reason) if it
        cannot be synced (not a regular file, its folder leads out of the root, unreadable)."""
        return self._read_at(target.root, target.rel, real_parents)

    def _read_at(
        self, root: Path, rel: str, real_parents: dict[str, str | None] | None = None
    ) -> tuple[bytes | None, str | None]:
        """:meth:`_read_bytes` of the file ``rel`` in ``root``."""
        file = self._root_prefixes[root] + rel  # os.fspath(root.joinpath(...)), sooner
        parent = os.path.dirname(file)
        if real_parents is not None and parent in real_parents:
            outside = real_parents[parent]
        else:
            outside = None
            real_parent = Path(os.path.realpath(parent))
            if not real_parent.is_relative_to(self._real_roots[root]):
                outside = f"its folder leads outside the root {root} (a symbolic link)"
            if real_parents is not None:
                real_parents[parent] = outside
        if outside is not None:
            return None, outside
        try:
            fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None, "a symbolic link: only regular files are synced"
            return None, f"cannot read it: {exc.strerror}"
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None, "not a regular file"
            # sized to the file (a small file's read is not a megabyte's allocation), then
            # on to the end, wherever it is now
            chunks = [os.read(fd, min(info.st_size + 1, _READ_CHUNK))]
            if chunks[0]:
                while chunk := os.read(fd, _READ_CHUNK):
                    chunks.append(chunk)
        finally:
            os.close(fd)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks), None

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
        data, unreadable = self._read_bytes(target, snap.real_parents) if read is None else read
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
            try:
                disk = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (
                    f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
                    "binary files are left alone"
                )
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

    def _apply(self, plans: list[_Plan]) -> None:
        for plan in plans:
            action = plan.decision.action
            if action is Action.NO_CHANGE:
                plan.result = NoChange(plan.target.path)
            elif action is Action.CONFLICT:
                plan.result = NeedsResolution(plan.target.path, plan.disk or "", plan.agent or "")
        todo = [p for p in plans if p.result is None]
        self._write_blocks([p for p in todo if p.decision.action in _BLOCK_ACTIONS])
        folders: set[Path] = set()
        try:
            for plan in todo:
                if plan.skipped is None and plan.decision.action in _FILE_ACTIONS:
                    self._write_file(plan, folders)
        finally:
            # each folder written to fsynced once, after all its files were renamed and
            # before any base advances (ext4 and friends commit the renames together)
            for folder in sorted(folders):
                with suppress(FileNotFoundError):  # removed since: nothing left to persist
                    _fsync_folder(folder)
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
        with self.blocks.transaction(self._message(plans, "block(s)"), self.author) as tx:
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
        self._hook("after-block-commit")

    def _write_file(self, plan: _Plan, folders: set[Path] | None = None) -> None:
        path, file = plan.target.path, plan.target.file
        content = plan.decision.content
        self._hook("before-file-write")
        try:
            if content is None:  # DELETE_DISK
                assert plan.disk_hash is not None
                done = remove_file_atomically(file, plan.disk_hash, synced_folders=folders)
            elif content_hash(content) == plan.disk_hash:
                done = True  # the file holds the result already
            else:
                done = write_file_atomically(
                    file, content, plan.disk_hash, synced_folders=folders
                )
        except OSError as exc:
            plan.skipped = f"cannot write the file: {exc}"
            return
        self._hook("after-file-write")
        if done:
            return
        # changed since it was read: not overwritten; both sides as they are now
        disk, _, unreadable = self._read_disk(plan.target)
        if unreadable is not None:
            plan.skipped = f"the file changed while reconciling: {unreadable}"
            return
        agent = plan.agent if plan.decision.action is not Action.MERGED else content
        plan.result = NeedsResolution(path, disk or "", agent or "")
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
        disk, _, unreadable = self._read_disk(target)
        if unreadable is not None:
            raise UsageError(f"source {self.spec.key!r}: {path!r} is left alone: {unreadable}")
        try:
            agent: str | None = self.blocks.read(owner, label).content
        except BlockNotFound:
            agent = None
        return Sides(owner, label, None if found is None else found[1], disk, agent)

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
        if disk is None:
            done = disk_hash is None or remove_file_atomically(target.file, disk_hash)
        elif disk == expected.disk:
            done = True
        else:
            done = write_file_atomically(target.file, disk, disk_hash)
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
        if file_hash(target.file) is None:
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
        if file_hash(target.file) is not None:
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
        disk, disk_hash, unreadable = self._read_disk(target)
        if unreadable is not None:
            raise UsageError(f"source {self.spec.key!r}: {path!r} is left alone: {unreadable}")
        try:
            block = self.blocks.read(owner, label)
            agent, version = block.content, block.version
        except BlockNotFound:
            agent, version = None, None
        if disk is not None and disk != base and disk != agent:
            raise MergeConflict(
                f"source {self.spec.key!r}: {path!r} has changes no reconcile has recorded; "
                "reconcile it before deleting it"
            )
        if found is None and disk is None and agent is None:
            raise NotFound(f"source {self.spec.key!r} has no path {path!r}")
        if agent is not None:
            with self.blocks.transaction(f"file source {self.spec.key}: delete {path}", self.author) as tx:
                tx.delete(owner, label, expected_version=version)
                self._hook("before-block-commit")
            self._hook("after-block-commit")
        if disk_hash is not None:
            self._hook("before-file-write")
            if not remove_file_atomically(target.file, disk_hash):
                raise MergeConflict(
                    f"source {self.spec.key!r}: {path!r} changed while it was being deleted; its "
                    "block was deleted (its history keeps it), the file was kept"
                )
            self._hook("after-file-write")
        if found is not None:
            self._hook("before-bases")
            with self.bases.update(f"file source {self.spec.key}: delete {path}", self.author) as btx:
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
