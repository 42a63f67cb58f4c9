"""The three extension base classes: the seed's `DataBlockExtension`, `DataStreamExtension` and
`ToolExtension` traits, in Python.

Subclass one (or several), implement every abstract method, and pass the class to
`register_extension`. The class is instantiated once, with no arguments, on the first call from the
host (never at build time), so `__init__` may call the host, e.g. `host.get_config`.

Methods that return a WIT `result` report failure by raising: any exception becomes the call's
`err` as "<ExceptionType>: <message>" (raise `componentize_py_types.Err("text")` to choose the
exact text). An exception from the other methods, or a MemoryError, traps the plugin instance.

Unless the class sets `needs_filesystem = True`, the plugin is built without WASI: opening files,
reading the clock (`time.time()`, `datetime.now()`), `os.urandom` and importing a module for the
first time inside a method all trap. Import everything at module level (that runs at build time).

`blocksync plugin build` reads these classes' abstract methods from this file to check a plugin
before building it: keep each required method marked `@abstractmethod`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from .model import (
    BlockRef,
    BlockSchemaSpec,
    ExecutionMeta,
    Notification,
    PermissionRule,
    ReconcileResult,
    SourceStatusValue,
    VersionInfo,
)

__all__ = ["DataBlockExtension", "DataStreamExtension", "ToolExtension"]


class _Extension(ABC):
    #: Build with WASI (files in a folder the user's config grants, clocks, randomness). Without
    #: it the component imports no WASI at all and such calls trap. Read by the build from the
    #: source: write it as a literal `needs_filesystem = True` in the class body.
    needs_filesystem: ClassVar[bool] = False


class DataBlockExtension(_Extension):
    """A data source mirrored to memory blocks, path by path (WIT interface `data-block`)."""

    @abstractmethod
    def source_id(self) -> str: ...

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def block_schema(self) -> BlockSchemaSpec:
        """`schema_json` may be a JSON string or a Python value (dumped for you)."""

    @abstractmethod
    def permission_rules(self) -> list[PermissionRule]:
        """First match wins; `(pattern, PermissionLevel)` pairs are accepted too."""

    @abstractmethod
    def load(self, path: str, owner: str) -> BlockRef:
        """Read `path` from the source into a block owned by `owner`."""

    @abstractmethod
    def create(self, path: str, content: str | None, owner: str) -> BlockRef:
        """Create `path` in the source (empty when `content` is None) and bind it to a block."""

    @abstractmethod
    def save(self, block: BlockRef) -> None:
        """Write the block's current content back to the source."""

    @abstractmethod
    def delete(self, path: str) -> None: ...

    @abstractmethod
    def history(self, block: BlockRef) -> list[VersionInfo]: ...

    @abstractmethod
    def rollback(self, block: BlockRef, version: str) -> None: ...

    @abstractmethod
    def diff(self, block: BlockRef, from_: str | None, to: str | None) -> str:
        """Unified diff between two versions; None means the oldest (`from_`) / current (`to`)."""

    #: The source lists its paths (`list_page`), so the host reconciles it in pages of paths,
    #: each page a call of its own (WIT interface `paging`). False: the host calls
    #: `reconcile([])` once per run and the source finds every path itself.
    paged: ClassVar[bool] = False
    #: A `paged` source declaring that it mirrors its granted folder (/data) one to one: its
    #: paths are the files `sync.folder_files` lists, a path's outside side is that file's
    #: bytes, and a path whose file and block still hold its base is a no-change (WIT
    #: `paging.mirrors-folder`). The host then finds those paths itself and passes only the
    #: others to `reconcile`. Declare it only when all of that is true.
    mirrors_folder: ClassVar[bool] = False
    #: The source honours `sync.dry_run()`: in a dry run its `reconcile` writes nothing, its
    #: source and any state of its own alike (WIT `paging.honours-dry-run`; `SyncedSource`
    #: does). False (the seed's contract): the host never asks it to reconcile in a dry run.
    honours_dry_run: ClassVar[bool] = False

    def label_namespace(self) -> str | None:
        """The prefix of every label this source gives a path, the path following it (WIT
        `paging.label-namespace`): the host then offers the blocks an agent creates under it
        as new paths. None (the default): the source declares no namespace."""
        return None

    def list_page(self, cursor: str | None) -> tuple[list[str], str | None]:
        """For a `paged` source: the paths the source holds now, in sorted order, after
        `cursor` (None: from the first), a page at a time, and the cursor of the next page
        (None: that was the last); the cursor is best the page's last path, so that a fresh
        instance can carry on. `SyncedSource` implements it from `list_paths`."""
        raise NotImplementedError(f"{type(self).__name__} does not list its paths in pages")

    @abstractmethod
    def reconcile(self, paths: list[str]) -> list[ReconcileResult]:
        """Exactly one `Resolved` / `NeedsResolution` / `NoChange` per path, in any order."""


class DataStreamExtension(_Extension):
    """A source of notifications, pushed with `host.emit_notification` or pulled (`data-stream`)."""

    @abstractmethod
    def source_id(self) -> str: ...

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def block_schemas(self) -> list[BlockSchemaSpec]: ...

    @abstractmethod
    def start(self, owner: str) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def pause(self) -> None: ...

    @abstractmethod
    def resume(self) -> None: ...

    @abstractmethod
    def status(self) -> SourceStatusValue:
        """`SourceStatus.RUNNING`, `.STOPPED` or `.PAUSED`."""

    def supports_pull(self) -> bool:
        return False

    def pull(self, limit: int, cursor: str | None) -> list[Notification]:
        """At most `limit` notifications after `cursor` (None: from the start)."""
        return []


class ToolExtension(_Extension):
    """A tool an agent can call (WIT interface `tool`). Schemas, params and output are Python
    values here and JSON text on the wire."""

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def description(self) -> str: ...

    @abstractmethod
    def parameters_schema(self) -> Any:
        """The JSON schema of `execute`'s `params`, as a Python value (usually a dict)."""

    @abstractmethod
    def output_schema(self) -> Any:
        """The JSON schema of `execute`'s return value, as a Python value."""

    def usage_rule(self) -> str | None:
        """When the agent should (or must not) use the tool, if the tool wants to say."""
        return None

    @abstractmethod
    def execute(self, params: Any, meta: ExecutionMeta) -> Any:
        """Run the tool: decoded params in, any JSON-serialisable value out."""
