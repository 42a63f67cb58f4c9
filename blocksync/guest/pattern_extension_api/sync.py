"""Friendly wrappers around the host's `sync` interface: the sync state of this data-block source.

A base is what both sides held at the last successful sync of a path. Record a new base last,
after both the source and the block hold the content.
"""

from __future__ import annotations

from componentize_py_types import Err
from wit_world.imports import sync as _sync

from .host import call_host
from .model import Binding, BlockRef, MergeConflict, VersionInfo

__all__ = [
    "Binding",
    "base",
    "bindings",
    "block_history",
    "block_read_at",
    "forget",
    "merge3",
    "set_base",
]


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


def set_base(path: str, block: BlockRef, content: str) -> None:
    call_host(_sync.set_base, path, block, content)


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
