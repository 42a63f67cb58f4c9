"""The host functions a plugin may call (WIT interfaces ``host``, ``http`` and ``sync``).

Each runs with the calling plugin's grants: memory functions only for the agents it is attached
to and within its permission rules (writes need read-write, delete needs admin), HTTP only to
its allowed hosts. A refusal is returned to the plugin as the ``err`` of its WIT ``result``.

Nothing but a WIT value or a ``WasmtimeError`` ever leaves a host function (:func:`_guard`).
wasmtime-py's component call path parks any other ``Exception`` in one process-wide slot, which
the next call on *any* thread picks up (errors crossed threads, or became a bare "python
exception"), and lets a ``BaseException`` (``KeyboardInterrupt``, ``SystemExit``) unwind
through the C frames of the call (the process died with SIGSEGV). So the guard catches
everything, keeps the real exception on the plugin's :class:`HostContext` (its calls run one at a
time), and traps the call with a ``WasmtimeError``; the runtime then raises the kept exception
as the call's error, or re-raises a ``BaseException`` once the plugin call is over. The guard
also lowers the result once itself (a value of the wrong shape would fail inside wasmtime-py,
in that same slot), and bounds the host function by the plugin call's time limit
(:mod:`blocksync.deadlines`): past it the call fails with reason ``timeout`` naming the host
function.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from wasmtime import WasmtimeError
from wasmtime.component import LinkerInstance, Record, Variant

from blocksync import deadlines
from blocksync.errors import (
    AccessDenied,
    BlocksyncError,
    MergeConflict,
    TransportError,
)
from blocksync.fs.disk import NOT_A_FILE, FileStat, Folder, is_vcs_path, printable_path
from blocksync.index.notifications import NotificationLog
from blocksync.logs import plugin_logger
from blocksync.plugins.batch import BlockBatch, SyncBatch
from blocksync.plugins.spec import MiB, PluginSpec
from blocksync.shared.apply import Unreadable, text_of
from blocksync.shared.paths import source_path_problem
from blocksync.shared.wit import BlockRef, PermissionLevel, PermissionRule
from blocksync.store import merge, provenance
from blocksync.store.blocks import BlockStore
from blocksync.sync import permissions
from blocksync.sync.folder.hashing import Hashing
from blocksync.text import parse_json

from . import fetch, lift

HOST = "pattern:extension/host@0.1.0"
HTTP = "pattern:extension/http@0.1.0"
SYNC = "pattern:extension/sync@0.1.0"

#: bytes of file text one ``sync.read-files`` answer holds at most (then null: asked again):
#: the guest parses the answer in its own memory, a few times its size
READ_BUDGET = 8 * MiB
#: WIT ``log`` levels (0 trace .. 4 error) as Python logging levels.
LOG_LEVELS = (5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)

T = TypeVar("T")


@dataclass
class HostServices:
    """What host functions reach in the store; None where a store is not attached."""

    blocks: BlockStore | None = None
    notifications: NotificationLog | None = None
    #: where each plugin's log file is kept (``<store>/logs/plugins``; see blocksync.logs)
    log_folder: Path | None = None


def block_id(owner: str, label: str) -> str:
    return BlockStore.git_path(owner, label)


class HostContext:
    """One plugin's view of the host: its spec, grants, logger and the store services."""

    def __init__(self, spec: PluginSpec, services: HostServices) -> None:
        self.spec = spec
        self.services = services
        self.log = plugin_logger(spec.key, services.log_folder)
        self.author = f"plugin:{spec.key}"
        #: the sha256 of the file serving now (set by the plugin as it loads a version)
        self.sha256: str | None = None
        self.plugin_rules: Sequence[PermissionRule] = permissions.DEFAULT_RULES
        self.http = fetch.HttpPolicy(
            spec.allowed_hosts, spec.limits.http_timeout, spec.limits.http_response_mb * MiB
        )
        #: open while the host drives a reconcile (a SyncBatch) or a pull: memory writes are
        #: staged in it and committed after the call
        self.batch: BlockBatch | None = None
        #: when the plugin call in progress must end (``time.monotonic()``), set per call
        self.deadline: float | None = None
        #: what the first failing host function of the call in progress raised, and its name
        self.fault: tuple[BaseException, str] | None = None
        #: the host function running now (named when a call is stuck)
        self.host_call: str | None = None
        #: while the host reconciles a plugin mirroring its folder: that run's hashing, whose
        #: stat cache ``file-digests`` consults (see ``paging.mirrors-folder`` in the WIT)
        self.hashing: Hashing | None = None
        #: while the host reconciles a plugin mirroring its folder: that folder, kept open for
        #: the run, so ``prepare-files`` stages what the ``write-file`` calls then take
        self.folder: Folder | None = None

    def take_fault(self) -> tuple[BaseException, str] | None:
        fault, self.fault = self.fault, None
        return fault

    # -- grants ---------------------------------------------------------------------------

    def level(self, label: str) -> PermissionLevel:
        return permissions.level_for(label, self.plugin_rules, self.spec.permission_rules)

    def require(self, owner: str, label: str, needed: PermissionLevel, action: str) -> BlockStore:
        if owner not in self.spec.owners:
            attached = ", ".join(sorted(self.spec.owners))
            raise AccessDenied(
                f"cannot {action} a block of {owner!r}: this plugin is attached only to {attached}"
            )
        level = self.level(label)
        if level.rank < needed.rank:
            raise AccessDenied(
                f"cannot {action} {owner}/{label}: the path is {level.value} for this plugin "
                f"({needed.value} needed)"
            )
        if self.services.blocks is None:
            raise AccessDenied("no block store is attached to this plugin")
        return self.services.blocks

    # -- host -----------------------------------------------------------------------------

    def _write_level(self) -> PermissionLevel:
        """The level a block write needs. Read-only means the *agent* may not change the
        source: the source's own changes still reach the block. So inside a reconcile the host
        drives (a SyncBatch is open; the truth table decides what flows where, and a read-only
        path only ever flows disk -> agent) a read-only path's block may be written; outside
        one a plugin writing a read-only path on its own initiative is refused."""
        reconciling = isinstance(self.batch, SyncBatch)
        return PermissionLevel.READ_ONLY if reconciling else PermissionLevel.READ_WRITE

    @property
    def made_by(self) -> str:
        """Who the versions this plugin writes name as their maker: ``plugin:<key>@<sha>``."""
        if self.sha256 is None:
            return self.author
        return provenance.plugin(self.spec.key, self.sha256)

    def memory_create_block(self, owner: str, label: str, description: str, content: str) -> str:
        store = self.require(owner, label, self._write_level(), "create")
        if self.batch is not None:
            self.batch.create(owner, label, content, description)
        else:
            store.create(
                owner,
                label,
                content,
                description=description,
                author=self.author,
                made_by=self.made_by,
            )
        return block_id(owner, label)

    def memory_read_block(self, owner: str, label: str) -> str:
        store = self.require(owner, label, PermissionLevel.READ_ONLY, "read")
        if self.batch is not None:
            return self.batch.read(owner, label)
        return store.read(owner, label).content

    def memory_update_block(self, owner: str, label: str, content: str) -> None:
        store = self.require(owner, label, self._write_level(), "update")
        if self.batch is not None:
            self.batch.update(owner, label, content)
        else:
            store.update(owner, label, content, author=self.author, made_by=self.made_by)

    def memory_delete_block(self, owner: str, label: str) -> None:
        store = self.require(owner, label, PermissionLevel.ADMIN, "delete")
        if self.batch is not None:
            self.batch.delete(owner, label)
        else:
            store.delete(owner, label, author=self.author, made_by=self.made_by)

    def read_blocks(self, owner: str, labels: list[str]) -> str:
        """See ``sync.read-blocks`` in the WIT."""
        if not labels:
            return "{}"
        for label in labels:  # each checked as memory-read-block checks it
            store = self.require(owner, label, PermissionLevel.READ_ONLY, "read")
        found: dict[str, str | None]
        if self.batch is not None:
            found = self.batch.read_many(owner, labels)
        else:
            newest = store.newest_of(owner, labels)
            found = {label: newest[label][1] if label in newest else None for label in labels}
        return json.dumps(found, ensure_ascii=False)

    def write_blocks(self, writes: str) -> None:
        """See ``sync.write-blocks`` in the WIT."""
        for item in json_items(writes, "write-blocks", {"owner", "label", "content"}):
            owner, label, content = item["owner"], item["label"], item["content"]
            if content is None:
                self.memory_delete_block(owner, label)
            elif item.get("create"):
                self.memory_create_block(owner, label, str(item.get("description", "")), content)
            else:
                self.memory_update_block(owner, label, content)

    def log_message(self, level: int, message: str) -> None:
        self.log.log(LOG_LEVELS[min(level, len(LOG_LEVELS) - 1)], "%s", message)

    def http_get(self, url: str, headers_json: str) -> str:
        return self._text_body("GET", url, headers_json, None)

    def http_post(self, url: str, headers_json: str, body: str) -> str:
        return self._text_body("POST", url, headers_json, body.encode("utf-8"))

    def _text_body(self, method: str, url: str, headers_json: str, body: bytes | None) -> str:
        try:
            headers = parse_json(headers_json) if headers_json.strip() else {}
        except ValueError as exc:
            raise AccessDenied(f"headers-json is not JSON: {exc}") from exc
        if not isinstance(headers, dict):
            raise AccessDenied("headers-json must be a JSON object of header names to values")
        resp = fetch.request(
            self.http, method, url, [(str(k), str(v)) for k, v in headers.items()], body
        )
        if not 200 <= resp.status < 300:
            raise TransportError(f"{method} {url} answered HTTP {resp.status}")
        try:
            return resp.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TransportError(
                f"{method} {url} answered a body that is not UTF-8 text; use http.request"
            ) from exc

    def get_config(self, key: str) -> str | None:
        return self.spec.config_value(key)

    def emit_notification(self, text: str, blocks: tuple[BlockRef, ...]) -> None:
        if self.services.notifications is None:
            self.log.warning("notification dropped (no store attached): %s", text)
            return
        self.services.notifications.add(self.spec.key, text, blocks)

    # -- sync -----------------------------------------------------------------------------

    def folder_digests(self) -> str:
        """See ``sync.folder-digests`` in the WIT: the granted folder's files and their hashes.

        Listed as the native source lists its folders (:mod:`blocksync.fs.disk`): never through a
        link, never a version-control folder, only regular files opened. During a reconcile
        the entries that cannot be synced (a FIFO, a link, a name that is not UTF-8, a folder
        that cannot be listed) are told to the batch, which reports them as skipped; files in
        a folder that cannot be listed are unknown, not gone (digest None: the plugin reads
        them, fails, and leaves them as they are)."""
        with self.granted() as folder:
            files = self.listed(folder)
            digests = {rel: None if rel in files.unknown else _digest(folder, rel) for rel in files}
        return json.dumps(digests, ensure_ascii=False)

    def folder_files(self) -> str:
        """See ``sync.folder-files`` in the WIT: ``folder_digests``' paths, nothing hashed."""
        with self.granted() as folder:
            files = self.listed(folder)
        return json.dumps(list(files), ensure_ascii=False)

    def file_digests(self, paths: list[str]) -> str:
        """See ``sync.file-digests`` in the WIT: the hashes of ``paths`` only (a page's);
        during a run with :attr:`hashing`, a file whose listed stat its stat cache vouches for
        is not read, and what is read is recorded for the next run."""
        digests: dict[str, str | None] = {}
        hashing = self.hashing
        with self.granted() as folder:
            for rel in dict.fromkeys(paths):
                if folder_path_problem(rel) is not None:
                    continue  # outside the folder, or never synced: no listing has it
                if hashing is not None:
                    known = hashing.known(rel)
                    if known is None:
                        read = hashing.read(rel, folder, rel)
                        if read.data is None and read.unreadable is None:
                            continue  # no file
                        known = read.sha256
                    digests[rel] = known
                    continue
                try:
                    found = folder.digest(rel)
                except (OSError, ValueError):
                    digests[rel] = None  # a folder on the way that cannot be entered
                    continue
                if found is not None:
                    digests[rel] = None if found in NOT_A_FILE else found
        return json.dumps(digests, ensure_ascii=False)

    def read_files(self, paths: list[str]) -> str:
        """See ``sync.read-files`` in the WIT: the text of ``paths`` (a page's), read as the
        native source reads its files, up to :data:`READ_BUDGET` bytes an answer. During a
        run with :attr:`hashing` each file is read through it, which keeps its stat with its
        sha256 for the stat cache: the plugin's reads of a first sync are what spares the
        next run reading every file again."""
        texts: dict[str, str | dict[str, str] | None] = {}
        budget, hashing = READ_BUDGET, self.hashing
        with self.granted() as folder:
            for rel in dict.fromkeys(paths):
                problem = folder_path_problem(rel)
                if problem is not None:
                    texts[rel] = {"unreadable": f"it {problem}"}
                    continue
                if budget <= 0:
                    texts[rel] = None  # the plugin asks again
                    continue
                if hashing is not None:
                    data, unreadable, _ = hashing.read(rel, folder, rel)
                else:
                    data, unreadable = folder.read(rel)
                if unreadable is not None:
                    texts[rel] = {"unreadable": unreadable}
                elif data is not None:
                    budget -= len(data)
                    try:
                        texts[rel] = text_of(data)
                    except Unreadable as exc:
                        texts[rel] = {"unreadable": str(exc)}
        return json.dumps(texts, ensure_ascii=False)

    def write_file(self, path: str, content: str, expected: str | None) -> bool:
        """See ``sync.write-file`` in the WIT (the native source's write: Folder.write)."""
        with self._writable() as folder:
            return folder.write(self._writable_path(path), content.encode("utf-8"), expected)

    def remove_file(self, path: str, expected: str) -> bool:
        """See ``sync.remove-file`` in the WIT."""
        with self._writable() as folder:
            return folder.remove(self._writable_path(path), expected)

    def prepare_files(self, writes: str) -> None:
        """See ``sync.prepare-files`` in the WIT: the temp files staged (Folder.stage) in the
        run's folder; outside a run there is no folder to keep them in, and nothing to do."""
        try:
            items = parse_json(writes)
        except ValueError as exc:
            raise AccessDenied(f"prepare-files: not JSON: {exc}") from exc
        if not isinstance(items, list) or not all(
            isinstance(i, list) and len(i) == 2 and all(isinstance(v, str) for v in i)
            for i in items
        ):
            raise AccessDenied("prepare-files: expected a JSON list of [path, content] pairs")
        staged = [(self._writable_path(path), content.encode("utf-8")) for path, content in items]
        if self.folder is not None:
            with self._writable() as folder:
                folder.stage(staged)

    def flush_files(self) -> None:
        """See ``sync.flush-files`` in the WIT: the run's folder synced (outside a run each
        write was made durable by its own call)."""
        if self.folder is None:
            return
        try:  # nothing written (a read-only grant, a run writing no file): nothing to do
            self.folder.sync()
        except OSError as exc:
            raise AccessDenied(f"cannot sync the granted folder: {exc.strerror or exc}")

    def _writable_path(self, path: str) -> str:
        problem = folder_path_problem(path)
        if problem is not None:
            raise AccessDenied(f"cannot write {path!r} in the granted folder: it {problem}")
        return path

    @contextmanager
    def _writable(self) -> Iterator[Folder]:
        """The granted folder to write in: the run's, or one opened (and made durable, then
        closed) for this call. AccessDenied unless it is granted read-write."""
        if self.spec.dir_mode != "read-write":
            raise AccessDenied(
                f"the folder {self.spec.dir} is granted read-only (config dir_mode): "
                "nothing is written in it"
            )
        if self.spec.dir is None:
            raise AccessDenied("no folder is granted to this plugin (config `dir`)")
        try:
            if self.folder is not None:
                yield self.folder
                return
            with Folder(self.spec.dir) as folder:
                yield folder
                folder.sync()
        except OSError as exc:
            raise AccessDenied(f"cannot write in the granted folder: {exc.strerror or exc}")

    @contextmanager
    def granted(self) -> Iterator[Folder]:
        """The folder granted to the plugin, opened (AccessDenied: none, or it cannot be)."""
        if self.spec.dir is None:
            raise AccessDenied("no folder is granted to this plugin (config `dir`)")
        try:
            with Folder(self.spec.dir) as folder:
                yield folder
        except OSError as exc:
            raise AccessDenied(f"cannot list the granted folder {self.spec.dir}: {exc.strerror}")

    def listed(
        self, folder: Folder, *, stats: bool = False, bound: Iterable[str] | None = None
    ) -> Files:
        """The folder's regular files, sorted, with the bound paths below folders that cannot
        be listed (``unknown``); during a reconcile, what cannot be synced is told to the batch.
        ``stats``: each listed file's stat too (what the stat cache compares); ``bound``: the
        bound paths (default: the batch's)."""
        listing = folder.scan(clean_temps=self.spec.dir_mode == "read-write", stats=stats)
        files = Files(listing.files, listing.stats or {})
        if isinstance(self.batch, SyncBatch):
            for rel, reason in listing.odd:
                self.batch.skipped[printable_path(rel)] = reason
            for rel, reason in listing.unlisted:
                self.batch.skipped[rel + "/"] = (
                    f"this folder cannot be listed ({reason}): its files are left as they are"
                )
            for path in (self.batch.bound if bound is None else bound) or ():
                if listing.unknown(path) is not None:
                    files.unknown.add(path)
            files += sorted(files.unknown.difference(files))
        return files

    def _block(self, ref: Any) -> tuple[BlockStore, str, str]:
        owner, label = getattr(ref, "agent-id"), ref.label
        return self.require(owner, label, PermissionLevel.READ_ONLY, "read"), owner, label

    def block_history(self, ref: Any) -> list[Record]:
        """Newest first, as the WIT documents it."""
        store, owner, label = self._block(ref)
        return [
            record(
                **{
                    "version-id": str(v.version),
                    "timestamp": v.timestamp,
                    "description": f"{v.message} ({v.author}{', deleted' if v.deleted else ''})",
                }
            )
            for v in reversed(store.history(owner, label))
        ]

    def block_read_at(self, ref: Any, version_id: str) -> str:
        store, owner, label = self._block(ref)
        return store.read(owner, label, version_id).content

    # -- http -----------------------------------------------------------------------------

    def http_request(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> fetch.HttpResponse:
        return fetch.request(self.http, method, url, headers, body)


def json_items(text: str, function: str, keys: set[str]) -> list[dict[str, Any]]:
    """A JSON list of objects with ``keys`` (text values, ``content`` text or null) as a host
    function of many writes takes it; AccessDenied (the call's err) when it is not one."""
    try:
        items = parse_json(text)
    except ValueError as exc:
        raise AccessDenied(f"{function}: not JSON: {exc}") from exc
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise AccessDenied(f"{function}: expected a JSON list of objects")
    for item in items:
        for key in keys:
            value = item.get(key, ...)
            if not isinstance(value, str) and not (key == "content" and value is None):
                raise AccessDenied(f"{function}: {key!r} must be text in every item")
    return items


class Files(list[str]):
    """A folder's listed files, which of them are unknown (below a folder that cannot be
    listed: neither read nor gone), and the stat of each file as listed (when asked for)."""

    def __init__(self, files: list[str], stats: dict[str, FileStat]) -> None:
        super().__init__(files)
        self.unknown: set[str] = set()
        self.stats = stats


def folder_path_problem(path: str) -> str | None:
    """Why ``path`` is no file of a granted folder the host reads or writes (None: it is)."""
    problem = source_path_problem(path)
    if problem is None and is_vcs_path(path):
        problem = "is in a version-control folder: never synced"
    return problem


def _digest(folder: Folder, rel: str) -> str | None:
    """sha256 hex of a listed file; None when it is no longer a readable regular file."""
    try:
        found = folder.digest(rel)
    except OSError:
        return None
    return None if found in NOT_A_FILE else found  # swapped meanwhile


def _guard(
    ctx: HostContext, name: str, fn: Callable[..., T], check: lift.Lower | None
) -> Callable[..., T]:
    """``fn`` as a host import wasmtime-py can call safely (see the module docstring)."""

    def guarded(store: Any, *args: Any) -> T:
        ctx.host_call = name
        try:
            if deadlines.expired_at(ctx.deadline):  # the runtime reports it as a timeout
                raise TimeoutError(name)
            with deadlines.until(ctx.deadline):
                value = fn(*args)
            if deadlines.expired_at(ctx.deadline):
                raise TimeoutError(name)
            if check is not None:
                lift.check_lowers(check, store, value)
            return value
        except BaseException as exc:  # noqa: BLE001 - only a WasmtimeError may reach wasmtime-py
            if ctx.fault is None:
                ctx.fault = (exc, name)
            raise WasmtimeError(f"host function {name} failed") from None
        finally:
            ctx.host_call = None

    return guarded


def as_result(fn: Callable[..., Any], tagged: bool) -> Callable[..., Any]:
    """A WIT ``result``: blocksync errors become the ``err`` the plugin sees.

    wasmtime-py wants a ``Variant`` when ok and err have the same Python type (string/string)
    and the bare payload otherwise.
    """

    def wrapped(*args: Any) -> Any:
        try:
            value = fn(*args)
        except BlocksyncError as exc:
            return Variant("err", str(exc)) if tagged else str(exc)
        return Variant("ok", value) if tagged else value

    return wrapped


def _notification(record: Any) -> tuple[str, tuple[BlockRef, ...]]:
    blocks = tuple(
        BlockRef(getattr(b, "block-id"), b.label, getattr(b, "agent-id")) for b in record.blocks
    )
    return record.text, blocks


#: a WIT record value as wasmtime-py lowers it (the name plugins/ outside host/ use for it)
WitRecord = Record


def record(**fields: Any) -> Record:
    """A WIT record for wasmtime-py (field names as in the WIT, dashes included).

    A Record, not any object with those attributes: a ``result`` whose ok case is a record is
    lowered untagged, and wasmtime-py picks that case only for an instance of Record (a
    SimpleNamespace failed every http.request with "value not valid for this variant").
    """
    value = Record()
    value.__dict__.update(fields)
    return value


def _response(resp: fetch.HttpResponse) -> Record:
    return record(status=resp.status, headers=resp.headers, body=resp.body)


def _merge3(base: str, disk: str, agent: str) -> str:
    result = merge.merge3(base, disk, agent)
    if result.text is None:
        raise MergeConflict(
            f"conflict: {result.conflicts} region(s) changed differently on both sides"
        )
    return result.text


class SyncBaseFunctions(Protocol):
    """The ``sync`` functions that keep a plugin's sync bases (the WIT names, snake_cased):
    :class:`blocksync.plugins.syncbases.PluginBases` for a store's data-block plugins, built
    with the plugin's :class:`HostContext`; :class:`NoBases` for every other plugin."""

    def base(self, path: str) -> Any: ...  # option<tuple<binding, string>>
    def bindings(self) -> list[Any]: ...  # list<binding>
    def states(self, paths: list[str]) -> str: ...
    def set_base(self, path: str, block: Any, content: str) -> None: ...
    def forget(self, path: str) -> None: ...
    def set_bases(self, bases: str) -> None: ...
    def dry_run(self) -> bool: ...
    def report_conflict(self, path: str, block: Any, disk: str | None, reason: str) -> None: ...


#: makes a plugin's sync bases once its host context exists: (that context, the plugin's exports)
BasesFactory = Callable[[HostContext, tuple[str, ...]], SyncBaseFunctions]


_NO_BASES = "sync bases are kept only for data-block sources during reconcile"


class NoBases:
    """What a plugin loaded without a store's sync bases sees: none, and it cannot record any."""

    def base(self, path: str) -> Any:
        return None

    def bindings(self) -> list[Any]:
        return []

    def states(self, paths: list[str]) -> str:
        return "{}"

    def set_base(self, path: str, block: Any, content: str) -> None:
        raise AccessDenied(_NO_BASES)

    def forget(self, path: str) -> None:
        raise AccessDenied(_NO_BASES)

    def set_bases(self, bases: str) -> None:
        raise AccessDenied(_NO_BASES)

    def dry_run(self) -> bool:
        return False

    def report_conflict(self, path: str, block: Any, disk: str | None, reason: str) -> None:
        return None


def bases_functions(bases: SyncBaseFunctions) -> dict[str, Callable[..., Any]]:
    """``bases`` as the ``sync`` host functions of those names (results lowered as WIT has them)."""
    return {
        "base": bases.base,
        "bindings": bases.bindings,
        "states": bases.states,
        "set-base": as_result(bases.set_base, tagged=False),
        "forget": as_result(bases.forget, tagged=False),
        "set-bases": as_result(bases.set_bases, tagged=False),
        "dry-run": bases.dry_run,
        "report-conflict": bases.report_conflict,
    }


def _set_cursor(ctx: HostContext, cursor: str) -> None:
    """``sync.set-cursor``: kept by the notification log while it runs this stream's pull."""
    if ctx.services.notifications is None:
        raise AccessDenied("no store is attached to keep a stream cursor")
    ctx.services.notifications.set_cursor(ctx.spec.key, cursor)


def _restoring(ctx: HostContext) -> bool:
    """``sync.restoring``: whether this stream's state is being restored into the instance."""
    log = ctx.services.notifications
    return log is not None and log.is_restoring(ctx.spec.key)


def define(
    linker_root: Any,
    ctx: HostContext,
    bases: SyncBaseFunctions | None = None,
    checks: dict[tuple[str, str], lift.Lower] | None = None,
) -> None:
    """Define the ``host``, ``http`` and ``sync`` instances for one plugin on a linker root.

    ``bases`` are the plugin's sync bases (``base``, ``bindings``, ``set-base``, ``forget``,
    ...); without them (:class:`NoBases`) a plugin sees no bases and cannot record any. ``checks`` maps
    (interface, function) to the lowering of the result the component expects (see
    :func:`_guard`); functions it does not import need none.
    """
    host: dict[str, Callable[..., Any]] = {
        "memory-create-block": as_result(ctx.memory_create_block, tagged=True),
        "memory-read-block": as_result(ctx.memory_read_block, tagged=True),
        "memory-update-block": as_result(ctx.memory_update_block, tagged=False),
        "memory-delete-block": as_result(ctx.memory_delete_block, tagged=False),
        "log": ctx.log_message,
        "http-get": as_result(ctx.http_get, tagged=True),
        "http-post": as_result(ctx.http_post, tagged=True),
        "get-config": ctx.get_config,
        "emit-notification": lambda record: ctx.emit_notification(*_notification(record)),
    }
    http: dict[str, Callable[..., Any]] = {
        "request": as_result(lambda *a: _response(ctx.http_request(*a)), tagged=False),
    }
    sync: dict[str, Callable[..., Any]] = {
        **bases_functions(bases or NoBases()),
        "folder-digests": as_result(ctx.folder_digests, tagged=True),
        "folder-files": as_result(ctx.folder_files, tagged=True),
        "file-digests": as_result(ctx.file_digests, tagged=True),
        "read-files": as_result(ctx.read_files, tagged=True),
        "write-file": as_result(ctx.write_file, tagged=False),
        "remove-file": as_result(ctx.remove_file, tagged=False),
        "prepare-files": as_result(ctx.prepare_files, tagged=False),
        "flush-files": as_result(ctx.flush_files, tagged=False),
        "read-blocks": as_result(ctx.read_blocks, tagged=True),
        "write-blocks": as_result(ctx.write_blocks, tagged=False),
        "merge3": as_result(_merge3, tagged=True),
        "block-history": as_result(ctx.block_history, tagged=False),
        "block-read-at": as_result(ctx.block_read_at, tagged=True),
        "set-cursor": as_result(partial(_set_cursor, ctx), tagged=False),
        "restoring": partial(_restoring, ctx),
    }
    checks = checks or {}
    for interface, functions in ((HOST, host), (HTTP, http), (SYNC, sync)):
        with linker_root.add_instance(interface) as instance:
            _add(instance, ctx, interface, functions, checks)


def _add(
    instance: LinkerInstance,
    ctx: HostContext,
    interface: str,
    functions: dict[str, Callable[..., Any]],
    checks: dict[tuple[str, str], lift.Lower],
) -> None:
    for name, fn in functions.items():
        instance.add_func(name, _guard(ctx, name, fn, checks.get((interface, name))))
