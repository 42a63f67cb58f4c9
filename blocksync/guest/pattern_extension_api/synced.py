"""`SyncedSource`: a whole data-block source from four methods of an outside store.

Subclass it, implement the outside side — `list_paths`, `read`, `write`, `remove` — and register
the class: the SDK does the rest, the way blocksync's own file source does it. Every path is
reconciled by blocksync's truth table (`blocksync_truth`, shipped into every Python plugin): its
base, its outside content and its block go through `decide`, and `blocksync_apply` (shipped too:
the very protocol blockync's own folder source runs) carries the decision out: the block first,
then the outside (your `write` / `remove`, which must refuse when the path changed since it was
read), then the base, last. The four methods are `blocksync_apply.Outside`, the outside port. A conflict is reported to the host with all three sides; a dry run decides
and writes nothing. `load`, `create`, `save`, `delete`, `history`, `rollback` and `diff` come
with it.

    from pattern_extension_api import SyncedSource, register_extension

    class Notes(SyncedSource):
        label_prefix = "note"
        ...                      # list_paths, read, write, remove

    register_extension(Notes)

Configuration (the plugin's `config` table in blocksync.toml), read with `host.get_config`:
`owner` (required: the agent owning the blocks), `tag` (labels are
`<label_prefix>:<tag>:<path>`; default `default_tag`), `permission` (`read-only`, `read-write`
or `admin`, default `read-write`: what the plugin declares for every path; the user's
`permission_rules` may narrow it) and `name`.

Paths are `/`-separated and canonical (no empty, `.` or `..` part, no leading `/`). Outside
content that is not UTF-8 text is reported as no-change and logged: it is never touched.

**The cheap unchanged run.** The host tells in one `sync.states` call which bound blocks still
equal their base, and the base's sha256. Such a path is unchanged when the outside still holds
the base; two optional hooks let a source say so without reading the path:

* `digests(paths)` returns every outside path -> a fingerprint, from one cheap call (None, the
  default: the source has no such listing, and `list_paths` / `read` are used). A folder returns
  sha256 hex digests (`sync.folder_digests`); an S3 bucket its ListObjectsV2 entries (ETag and
  size). Its keys are the outside's paths when every path is reconciled.
* `unchanged(path, state, fingerprint)` says whether a fingerprint from `digests` proves the
  outside still holds the base. The default compares it with `state.base_sha256` (right for
  sha256 digests); S3 compares the ETag (an MD5) and size with the MD5 and length of the base
  text (`sync.base`). Return False when in doubt: it only ever costs a read.

**Pages.** A `SyncedSource` is `paged`: the host lists its paths first (`list_page`, from
`list_paths`, in pages) and then calls `reconcile` on a page of paths at a time, each page one call
whose writes are committed whole, so a source of 100,000 paths never needs one long call. `digests`
is then asked for the fingerprints of one page's bound, unchanged-block paths only (a folder:
`sync.file_digests`). Set `paged = False` for a source whose whole listing gives every fingerprint
at once and reading a path costs a request (S3): it is reconciled in one call.

A path that is not proven unchanged is read once: bytes hashing to the base's sha256 are
unchanged, any others are decided by the truth table (with the bytes already read). A page's
paths are read together, through `read_many` (by default `read` of each): override it when
the outside reads many paths in one request (a folder: `sync.read_files`).
"""

from __future__ import annotations

import difflib
from abc import abstractmethod
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import ClassVar

from blocksync_apply import (
    Change,
    DeleteRefused,
    NothingToDelete,
    Unreadable,
    Unwritable,
    apply,
    delete,
    sha256,
    text_of,
)
from blocksync_truth import Action, Decision, decide
from wit_world.imports.types import ReconcileResult_NeedsResolution

from . import host, sync
from .extensions import DataBlockExtension
from .host import LogLevel
from .model import (
    BlockRef,
    BlockSchemaSpec,
    HostError,
    MergeConflict,
    NeedsResolution,
    NoChange,
    PermissionLevel,
    PermissionRule,
    ReconcileResult,
    Resolved,
    VersionInfo,
)

__all__ = ["SyncedSource", "Unreadable", "Unwritable", "sha256"]

LEVELS = {
    "read-only": PermissionLevel.READ_ONLY,
    "read-write": PermissionLevel.READ_WRITE,
    "admin": PermissionLevel.ADMIN,
}
_ORDER = ("read-only", "read-write", "admin")
#: "not read yet" (None means "no block")
_UNREAD = object()


def _merge(base: str, disk: str, agent: str) -> str | None:
    try:
        return sync.merge3(base, disk, agent)
    except MergeConflict:
        return None


def _left_alone(path: str, why: Exception) -> ReconcileResult:
    """A path this run does not touch, and why (logged): one odd path never fails the rest."""
    host.log(LogLevel.WARN, f"{path}: left alone: {why}")
    return NoChange(path)


class _Inside:
    """The blocks and the bases as a plugin reaches them (host calls): the Inside port of
    `blocksync_apply`, each side's writes of a batch of changes in one host call."""

    def __init__(self, source: SyncedSource) -> None:
        self._source = source

    def write_blocks(self, changes: Sequence[Change]) -> None:
        writes: list[dict[str, object]] = []
        for change in changes:
            owner, label, content = change.owner, change.label, change.decision.content
            if content is None:
                writes.append({"owner": owner, "label": label, "content": None})
            elif change.agent is None:
                description = f"{change.path} in {self._source.source_id()}"
                writes.append(
                    {
                        "owner": owner,
                        "label": label,
                        "content": content,
                        "create": True,
                        "description": description,
                    }
                )
            elif content != change.agent:
                writes.append({"owner": owner, "label": label, "content": content})
        if writes:
            sync.write_blocks(writes)

    def written(self) -> None:
        self._source.written()

    def write_bases(self, changes: Sequence[Change]) -> None:
        if changes:
            sync.set_bases([(c.path, c.owner, c.label, c.decision.content) for c in changes])

    def stopped(self) -> str | None:
        return None


class SyncedSource(DataBlockExtension):
    """A data-block source mirroring the objects of an outside store, one block each."""

    #: the first part of every label: `<label_prefix>:<tag>:<path>`
    label_prefix: ClassVar[str] = "item"
    #: the tag when the config names none
    default_tag: ClassVar[str] = "default"
    #: reconciled in pages (see the module docstring); False: in one call, as the seed has it
    paged: ClassVar[bool] = True
    #: a dry run decides every path and writes nothing (`reconcile` asks `sync.dry_run()`)
    honours_dry_run: ClassVar[bool] = True
    #: paths per `list_page` page: a listing of 100,000 paths crosses in a few calls
    list_page_size: ClassVar[int] = 20_000
    #: `list_paths`, sorted, from the first page of a listing to its last
    _listing: list[str] | None = None

    # -- the outside side: what a subclass implements ------------------------------------

    # the four methods of `blocksync_apply.Outside`: its docstrings say what each must do

    @abstractmethod
    def list_paths(self) -> list[str]: ...

    @abstractmethod
    def read(self, path: str) -> bytes | None: ...

    @abstractmethod
    def write(self, path: str, data: bytes, expected: str | None) -> bool: ...

    @abstractmethod
    def remove(self, path: str, expected: str) -> bool: ...

    def written(self) -> None:
        """Called once the outside writes of a reconcile call are done, before any base is
        recorded: make them durable here if `write` / `remove` did not (the default: they did)."""

    def read_many(self, paths: list[str]) -> dict[str, bytes | None | Unreadable]:
        """`read` of every path in `paths`: path -> its bytes, None (absent), or the
        `Unreadable` that says why it is left alone. `reconcile` reads a page's paths with it.
        Override it when the outside reads many paths cheaper at once (a folder:
        `sync.read_files`, one host call a page, which also tells the host's stat cache of
        each file, so the next run need not read it again)."""
        found: dict[str, bytes | None | Unreadable] = {}
        for path in paths:
            try:
                found[path] = self.read(path)
            except Unreadable as exc:
                found[path] = exc
        return found

    def digests(self, paths: list[str]) -> Mapping[str, object] | None:
        """Every outside path -> a fingerprint of its content that `unchanged` understands (by
        default the sha256 hex of its bytes, None: unreadable), when the outside offers them
        cheaper than reading each path (a folder: `sync.folder_digests`, one host call; S3: one
        listing); None (the default) when it does not, and `list_paths` / `read` are used.
        `paths` are the paths whose fingerprints are wanted ([]: every path): return None
        when listing the whole outside would cost more than reading those few."""
        return None

    def unchanged(self, path: str, state: sync.PathState, fingerprint: object) -> bool:
        """True if `fingerprint` (the path's entry in `digests`) proves the outside still holds
        the base `state` describes; False (read the path) when it does not or cannot tell."""
        return fingerprint == state.base_sha256

    def check_available(self) -> None:
        """Raise when the outside cannot be reached at all (a folder not granted, a bucket
        missing), so that a reconcile over every path fails instead of reading all as gone."""

    # -- configuration (read once: each is a host call) ---------------------------------

    @cached_property
    def owner(self) -> str:
        owner = host.get_config("owner")
        if not owner:
            raise ValueError('this plugin needs config owner = "<agent>"')
        return owner

    @cached_property
    def tag(self) -> str:
        return host.get_config("tag") or self.default_tag

    @cached_property
    def permission(self) -> str:
        level = host.get_config("permission") or "read-write"
        if level not in LEVELS:
            raise ValueError(f"config permission must be one of {', '.join(LEVELS)}, not {level!r}")
        return level

    def source_id(self) -> str:
        return f"{self.label_prefix}:{self.tag}"

    def name(self) -> str:
        return host.get_config("name") or type(self).__name__

    def block_schema(self) -> BlockSchemaSpec:
        return BlockSchemaSpec(
            "text", "the text of one outside object (UTF-8)", '{"type": "string"}'
        )

    def permission_rules(self) -> list[PermissionRule]:
        return [PermissionRule("**", LEVELS[self.permission])]

    # -- paths and labels ----------------------------------------------------------------

    def check_path(self, path: str) -> None:
        if (
            not path
            or path.startswith("/")
            or "\0" in path
            or any(part in ("", ".", "..") for part in path.split("/"))
        ):
            raise ValueError(
                f"path {path!r} is not canonical (no leading '/', no empty, '.' or '..' parts)"
            )

    def label_namespace(self) -> str:
        return f"{self.label_prefix}:{self.tag}:"

    def label(self, path: str) -> str:
        return self.label_namespace() + path

    def path_for_label(self, label: str) -> str | None:
        prefix = self.label_namespace()
        return label[len(prefix) :] if label.startswith(prefix) else None

    # -- the three sides -----------------------------------------------------------------

    def _text(
        self, path: str, data: bytes | None = None, read: bool = False
    ) -> tuple[str | None, str | None]:
        """(text, sha256 of its bytes), (None, None) if absent; Unreadable if not text. `data`:
        the path's content when it was `read` already."""
        if not read:
            data = self.read(path)
        if data is None:
            return None, None
        return text_of(data), sha256(data)

    def _agent(self, owner: str, label: str) -> str | None:
        try:
            return host.memory_read_block(owner, label)
        except HostError as exc:
            if "no block" in exc.message:
                return None
            raise

    def _binding(self, path: str) -> tuple[str, str, str | None]:
        """(owner, label, base) of `path`: its binding, or the label scheme's before a sync."""
        found = sync.base(path)
        if found is None:
            return self.owner, self.label(path), None
        binding, base = found
        return binding.block.agent_id, binding.block.label, base

    # -- reconcile -----------------------------------------------------------------------

    def list_page(self, cursor: str | None) -> tuple[list[str], str | None]:
        """`list_paths` a page at a time: listed once, when the first page is asked for (or
        again by an instance that never saw the first: the cursor is a path, not a position)."""
        if cursor is None or self._listing is None:
            self.check_available()
            self._listing = sorted(set(self.list_paths()))
        listing = self._listing
        start = 0 if cursor is None else bisect_right(listing, cursor)
        page = listing[start : start + self.list_page_size]
        if start + len(page) >= len(listing):
            self._listing = None
            return page, None
        return page, page[-1]

    def reconcile(self, paths: list[str]) -> list[ReconcileResult]:
        self.check_available()
        states = sync.states(paths)
        if not paths:
            digests = self.digests([])
            listed = digests.keys() if digests is not None else self.list_paths()
            paths = sorted(set(states) | set(listed))
        else:  # a page: only bound paths whose block is its base can be proven unchanged
            quiet = [p for p in dict.fromkeys(paths) if p in states and not states[p].agent_changed]
            digests = self.digests(quiet) if quiet else None
        dry = sync.dry_run()
        decided: list[ReconcileResult | Change] = []
        unbound: list[str] = []
        bound: list[tuple[str, sync.PathState]] = []
        for path in dict.fromkeys(paths):
            try:
                self.check_path(path)
            except ValueError as exc:  # a path this source refuses: left alone, not the rest
                decided.append(_left_alone(path, exc))
                continue
            state = states.get(path)
            if state is None:  # never synced: decided below, its blocks read at once
                unbound.append(path)
            # the host says the block is its base: unchanged if the outside holds it too
            elif (
                not state.agent_changed
                and digests is not None
                and path in digests
                and self.unchanged(path, state, digests[path])
            ):
                decided.append(NoChange(path))
            else:
                bound.append((path, state))
        contents = self.read_many([path for path, _ in bound] + unbound)
        changed: list[tuple[str, sync.PathState, bytes | None]] = []
        for path, state in bound:
            data = contents[path]
            if isinstance(data, Unreadable):  # one odd path never fails the others
                decided.append(_left_alone(path, data))
            elif not state.agent_changed and data is not None and sha256(data) == state.base_sha256:
                decided.append(NoChange(path))
            else:  # decided below, its blocks read at once
                changed.append((path, state, data))
        decided += self._decide_bound(changed)
        decided += self._decide_unbound(unbound, contents)
        changes = [c for c in decided if isinstance(c, Change)]
        if changes and not dry:
            apply(changes, self, _Inside(self))  # blocks, then the outside, then bases
        return [self._result(c) if isinstance(c, Change) else c for c in decided]

    def _decide_bound(
        self, changed: list[tuple[str, sync.PathState, bytes | None]]
    ) -> list[ReconcileResult | Change]:
        """Decide bound paths (each with its state and outside content, read), their blocks
        read in one host call per owner. A base is read only when neither side hashes to it
        (what blocksync's own folder source spares too): by its hash, not by what `states`
        said, so a block an agent writes meanwhile is never taken for the base."""
        labels: dict[str, list[str]] = {}
        for _, state, _ in changed:
            labels.setdefault(state.owner, []).append(state.label)
        agents = {
            (owner, label): text
            for owner, wanted in labels.items()
            for label, text in sync.read_blocks(owner, wanted).items()
        }
        decided: list[ReconcileResult | Change] = []
        for path, state, data in changed:
            agent = agents.get((state.owner, state.label))
            if data is not None and sha256(data) == state.base_sha256:
                base: str | None = data.decode("utf-8")  # every base is UTF-8 text
            elif agent is not None and sha256(agent.encode("utf-8")) == state.base_sha256:
                base = agent
            else:
                base = self._binding(path)[2]
            binding = (state.owner, state.label, base)
            decided.append(self._decide(path, data, read=True, binding=binding, agent=agent))
        return decided

    def _decide_unbound(
        self, paths: list[str], contents: Mapping[str, bytes | None | Unreadable]
    ) -> list[ReconcileResult | Change]:
        """Decide paths without a base (a first sync: each a new block), with their outside
        `contents` (read), their blocks read in one host call."""
        labels = {path: self.label(path) for path in paths}
        agents = sync.read_blocks(self.owner, list(labels.values())) if paths else {}
        decided: list[ReconcileResult | Change] = []
        for path in paths:
            data = contents[path]
            if isinstance(data, Unreadable):
                decided.append(_left_alone(path, data))
                continue
            binding = (self.owner, labels[path], None)
            decided.append(
                self._decide(path, data, read=True, binding=binding, agent=agents[labels[path]])
            )
        return decided

    def _decide(
        self,
        path: str,
        data: bytes | None = None,
        read: bool = False,
        binding: tuple[str, str, str | None] | None = None,
        agent: str | None | object = _UNREAD,
    ) -> ReconcileResult | Change:
        """The path's decision as a Change to carry out (NoChange when there is nothing to
        do); `data`: its outside content when `read` already; `binding` and `agent` when
        known (else asked of the host)."""
        self.check_path(path)
        owner, label, base = binding or self._binding(path)
        try:
            disk, disk_hash = self._text(path, data, read)
        except Unreadable as exc:
            return _left_alone(path, exc)
        if agent is _UNREAD:
            agent = self._agent(owner, label)
        assert agent is None or isinstance(agent, str)
        decision = decide(base, disk, agent, self.permission, _merge)
        if decision.action is Action.NO_CHANGE:
            return NoChange(path)
        return Change(path, owner, label, base, disk, disk_hash, agent, decision)

    def _result(self, change: Change) -> ReconcileResult:
        """What became of a Change (carried out, or not in a dry run or a conflict)."""
        path = change.path
        if change.skipped is not None:
            host.log(LogLevel.WARN, f"{path}: left for the next run: {change.skipped}")
            return NoChange(path)
        if change.needs_resolution:
            disk, agent = change.sides_now()
            sync.report_conflict(
                path, BlockRef("", change.label, change.owner), disk, change.reason
            )
            return NeedsResolution(path, disk or "", agent or "")
        return Resolved(path, change.decision.action.value)

    def _reconcile_path(
        self, path: str, dry: bool = False, data: bytes | None = None, read: bool = False
    ) -> ReconcileResult:
        """Decide and carry out one path; `data`: its outside content when `read` already."""
        change = self._decide(path, data, read)
        if not isinstance(change, Change):
            return change
        if not dry:
            apply([change], self, _Inside(self))
        return self._result(change)

    def _settled(self, path: str, data: bytes | None = None, read: bool = False) -> None:
        """Reconcile one path for load/create/save; raise unless it ended in sync."""
        result = self._reconcile_path(path, data=data, read=read)
        if isinstance(result, ReconcileResult_NeedsResolution):
            raise RuntimeError(f"{path!r} needs resolution: reconcile it")  # noqa: TRY004 - a state, not a type error

    # -- single-block operations ---------------------------------------------------------

    def _check_owner(self, owner: str) -> None:
        if owner != self.owner:
            raise PermissionError(f"this source keeps blocks of {self.owner!r}, not {owner!r}")

    def _require(self, needed: str, action: str, path: str) -> None:
        if _ORDER.index(self.permission) < _ORDER.index(needed):
            raise PermissionError(f"cannot {action} {path!r}: the path is {self.permission}")

    def _ref(self, path: str) -> BlockRef:
        found = sync.base(path)
        if found is None:
            raise ValueError(f"{path!r} is not bound to a block")
        return found[0].block

    def path_of(self, block: BlockRef) -> str:
        for binding in sync.bindings():
            if binding.block.agent_id == block.agent_id and binding.block.label == block.label:
                return binding.path
        path = self.path_for_label(block.label)
        if path is None:
            raise FileNotFoundError(f"block {block.agent_id}/{block.label} mirrors no path")
        return path

    def load(self, path: str, owner: str) -> BlockRef:
        self._check_owner(owner)
        self.check_path(path)
        data = self.read(path)
        if data is None:
            raise FileNotFoundError(f"no {path!r} in the source")
        self._settled(path, data, read=True)
        return self._ref(path)

    def create(self, path: str, content: str | None, owner: str) -> BlockRef:
        self._check_owner(owner)
        self.check_path(path)
        self._require("read-write", "create", path)
        if self.read(path) is not None or sync.base(path) is not None:
            raise FileExistsError(f"{path!r} exists already")
        host.memory_create_block(
            owner, self.label(path), f"{path} in {self.source_id()}", content or ""
        )
        self._settled(path)
        return self._ref(path)

    def save(self, block: BlockRef) -> None:
        path = self.path_of(block)
        self._require("read-write", "write", path)
        self._settled(path)

    def delete(self, path: str) -> None:
        self.check_path(path)
        self._require("admin", "delete", path)
        owner, label, base = self._binding(path)
        disk, disk_hash = self._text(path)
        agent = self._agent(owner, label)
        change = Change(
            path,
            owner,
            label,
            base,
            disk,
            disk_hash,
            agent,
            Decision(Action.FORGET, None, "deleted"),
        )
        try:
            delete(change, self, _Inside(self))
        except NothingToDelete:
            raise FileNotFoundError(f"no path {path!r}") from None
        except DeleteRefused as exc:
            raise RuntimeError(f"{path!r}: {exc}") from None

    # -- versions (through the host) -----------------------------------------------------

    def history(self, block: BlockRef) -> list[VersionInfo]:
        return sync.block_history(block)

    def rollback(self, block: BlockRef, version: str) -> None:
        host.memory_update_block(block.agent_id, block.label, sync.block_read_at(block, version))

    def diff(self, block: BlockRef, from_: str | None, to: str | None) -> str:
        versions = [v.version_id for v in sync.block_history(block)]  # newest first
        to = to or versions[0]
        if from_ is None:
            from_ = versions[1] if len(versions) > 1 and to == versions[0] else to
        before = sync.block_read_at(block, from_)
        after = sync.block_read_at(block, to)
        return "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True), from_, to
            )
        )
