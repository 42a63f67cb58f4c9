"""Friendly wrappers around the host's `sync` interface: the sync state of this data-block source.

A base is what both sides held at the last successful sync of a path. Record a new base last,
after both the source and the block hold the content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from componentize_py_types import Err
from wit_world.imports import sync as _sync

from .host import call_host
from .model import Binding, BlockRef, MergeConflict, VersionInfo

__all__ = [
    "Binding",
    "PathState",
    "base",
    "bindings",
    "block_history",
    "block_read_at",
    "dry_run",
    "file_digests",
    "flush_files",
    "folder_digests",
    "folder_files",
    "forget",
    "merge3",
    "prepare_files",
    "read_blocks",
    "read_files",
    "remove_file",
    "report_conflict",
    "restoring",
    "set_base",
    "set_bases",
    "set_cursor",
    "states",
    "write_blocks",
    "write_file",
]


@dataclass(frozen=True)
class PathState:
    """What the host knows of a bound path without reading it (see `states`)."""

    owner: str
    label: str
    base_sha256: str  # sha256 hex of the base's UTF-8 bytes
    agent_changed: bool  # the block differs from the base (or is gone)


def base(path: str) -> tuple[Binding, str] | None:
    """The binding and base content of `path`; None if the path was never synced."""
    found = _sync.base(path)
    if found is None:
        return None
    binding, content = found
    return binding, content


def bindings() -> list[Binding]:
    """Every path this source has a base for (to notice paths gone from the source)."""
    return list(_sync.bindings())


def states(paths: list[str] | None = None) -> dict[str, PathState]:
    """The state of `paths` (None or empty: of every bound path) in one host call; paths
    without a base are left out. A path whose file hashes to `base_sha256` and whose block did
    not change is unchanged: reconcile can pass over it without reading its base or block."""
    found = json.loads(_sync.states(list(paths or [])))
    return {
        path: PathState(s["owner"], s["label"], s["base-sha256"], s["agent-changed"])
        for path, s in found.items()
    }


def folder_digests() -> dict[str, str | None]:
    """Every file under the folder granted to this plugin (/data), recursively: path -> sha256
    of its bytes (None: unreadable), in one host call. Raises HostError without a grant."""
    found: dict[str, str | None] = json.loads(call_host(_sync.folder_digests))
    return found


def folder_files() -> list[str]:
    """The paths `folder_digests` lists, without hashing a file: one quick host call for a
    paged source's listing. Raises HostError without a grant."""
    found: list[str] = json.loads(call_host(_sync.folder_files))
    return found


def file_digests(paths: list[str]) -> dict[str, str | None]:
    """`folder_digests` of `paths` only (one page's): path -> sha256 (None: not a readable
    regular file); paths without a file are left out. Raises HostError without a grant."""
    found: dict[str, str | None] = json.loads(call_host(_sync.file_digests, list(paths)))
    return found


def read_files(paths: list[str]) -> dict[str, str | dict[str, str] | None]:
    """The text of the files `paths` of the granted folder in one host call: path -> text,
    `{"unreadable": reason}`, or None (not read: the answer was full, ask again); paths
    without a file are left out. During a reconcile the host keeps what it read in its stat
    cache. Raises HostError without a grant."""
    found: dict[str, str | dict[str, str] | None] = json.loads(
        call_host(_sync.read_files, list(paths))
    )
    return found


def write_file(path: str, content: str, expected: str | None) -> bool:
    """Write `content` to `path` of the granted folder (/data) atomically and durably, unless
    its file's sha256 is no longer `expected` (None: no file may be there): False then, nothing
    written. Raises HostError when the folder is not granted read-write or the write fails."""
    return bool(call_host(_sync.write_file, path, content, expected))


def remove_file(path: str, expected: str) -> bool:
    """Delete `path` of the granted folder unless its sha256 is no longer `expected` (False)."""
    return bool(call_host(_sync.remove_file, path, expected))


def prepare_files(writes: list[tuple[str, str]]) -> None:
    """The (path, content) of the `write_file` calls to come: their temp files are written
    ahead and made durable together (during a reconcile the host drives)."""
    call_host(_sync.prepare_files, json.dumps([list(w) for w in writes]))


def flush_files() -> None:
    """Make the `write_file` / `remove_file` calls so far durable; before recording bases."""
    call_host(_sync.flush_files)


def set_bases(bases: list[tuple[str, str, str, str | None]]) -> None:
    """`set_base` (content None: `forget`) of many (path, owner, label, content) in one host
    call, in order. Record bases last, after both sides hold their content."""
    items = [{"path": p, "owner": o, "label": lb, "content": c} for p, o, lb, c in bases]
    call_host(_sync.set_bases, json.dumps(items))


def read_blocks(owner: str, labels: list[str]) -> dict[str, str | None]:
    """The content of many blocks of `owner` (None: no such block) in one host call."""
    found: dict[str, str | None] = json.loads(call_host(_sync.read_blocks, owner, list(labels)))
    return found


def write_blocks(writes: list[dict[str, object]]) -> None:
    """Block writes in one host call, in order: each `{"owner", "label", "content"}` (content
    None: delete), with `"create": True` and a `"description"` for a new block."""
    call_host(_sync.write_blocks, json.dumps(writes))


def dry_run() -> bool:
    """True while the host asks for a dry run: decide and report, write nothing."""
    return _sync.dry_run()


def restoring() -> bool:
    """True while the host restores this stream's recorded state into a fresh instance: the
    `start` (and `pause`) being called replays an earlier start. Restore your state; skip what
    a start does beyond it (a notification, a subscription)."""
    return _sync.restoring()


def report_conflict(path: str, block: BlockRef, disk: str | None, reason: str) -> None:
    """Before returning `NeedsResolution` for `path`: the conflicting block, the source's side
    (None: absent) and why, so the conflict index records all three sides exactly."""
    _sync.report_conflict(path, block, disk, reason)


def set_base(path: str, block: BlockRef, content: str) -> None:
    call_host(_sync.set_base, path, block, content)


def set_cursor(cursor: str) -> None:
    """In a data stream's `pull` only: the cursor the next pull gets (the position just after
    the notifications this pull returns). Stored by the host with them, once the pull returns;
    a cursor this stream used before is refused. Raises HostError outside a pull."""
    call_host(_sync.set_cursor, cursor)


def forget(path: str) -> None:
    """Drop the binding and base of `path` (after a deletion went through)."""
    call_host(_sync.forget, path)


def merge3(base: str, disk: str, agent: str) -> str:
    """Line-level three-way merge; raises `MergeConflict` (a `HostError`) on any overlap."""
    try:
        return _sync.merge3(base, disk, agent)
    except Err as exc:
        raise MergeConflict(str(exc.value)) from None


def block_history(block: BlockRef) -> list[VersionInfo]:
    """The block's versions, newest first."""
    return list(call_host(_sync.block_history, block))


def block_read_at(block: BlockRef, version_id: str) -> str:
    """The block's content at `version_id` (a `VersionInfo.version_id`)."""
    return call_host(_sync.block_read_at, block, version_id)
