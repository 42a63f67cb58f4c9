"""What the rest of blocksync sees of a data source, stream or tool: typed values and Protocols.

The WIT types of ``wit/pattern.wit`` as plain Python values, and the host-side Protocols
``DataBlock``, ``DataStream`` and ``Tool``. WASM plugins are adapted to these by the bridges in
:mod:`blocksync.plugins`; native sources implement them directly. Nothing here knows wasmtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class BlockRef:
    block_id: str
    label: str
    agent_id: str


@dataclass(frozen=True)
class Notification:
    text: str
    blocks: tuple[BlockRef, ...]


class PermissionLevel(str, Enum):
    READ_ONLY = "read-only"
    READ_WRITE = "read-write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {PermissionLevel.READ_ONLY: 0, PermissionLevel.READ_WRITE: 1, PermissionLevel.ADMIN: 2}


@dataclass(frozen=True)
class PermissionRule:
    pattern: str  # gitignore/wildmatch glob; the first matching rule wins
    permission: PermissionLevel


class SourceStatus(str, Enum):
    STOPPED = "stopped"
    RUNNING = "running"
    PAUSED = "paused"


@dataclass(frozen=True)
class BlockSchemaSpec:
    name: str
    description: str
    schema_json: str


@dataclass(frozen=True)
class VersionInfo:
    version_id: str
    timestamp: str
    description: str | None


@dataclass(frozen=True)
class Resolved:
    """The path is in sync again; ``resolution`` says how (e.g. ``disk->agent``, ``merged``)."""

    path: str
    resolution: str


@dataclass(frozen=True)
class NeedsResolution:
    """Both sides changed and could not be merged: a conflict with both contents."""

    path: str
    disk: str
    agent: str


@dataclass(frozen=True)
class NoChange:
    path: str


ReconcileResult = Resolved | NeedsResolution | NoChange


@runtime_checkable
class DataBlock(Protocol):
    """A source of blocks kept in sync with an outside store (the seed's ``data-block``)."""

    def source_id(self) -> str: ...
    def name(self) -> str: ...
    def block_schema(self) -> BlockSchemaSpec: ...
    def permission_rules(self) -> list[PermissionRule]: ...
    def load(self, path: str, owner: str) -> BlockRef: ...
    def create(self, path: str, content: str | None, owner: str) -> BlockRef: ...
    def save(self, block: BlockRef) -> None: ...
    def delete(self, path: str) -> None: ...
    def history(self, block: BlockRef) -> list[VersionInfo]: ...
    def rollback(self, block: BlockRef, version: str) -> None: ...
    def diff(self, block: BlockRef, from_: str | None, to: str | None) -> str: ...
    def reconcile(self, paths: list[str]) -> list[ReconcileResult]: ...


@runtime_checkable
class DataStream(Protocol):
    """A source of notifications (the seed's ``data-stream``)."""

    def source_id(self) -> str: ...
    def name(self) -> str: ...
    def block_schemas(self) -> list[BlockSchemaSpec]: ...
    def start(self, owner: str) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def status(self) -> SourceStatus: ...
    def supports_pull(self) -> bool: ...
    def pull(self, limit: int, cursor: str | None) -> list[Notification]: ...


@runtime_checkable
class Tool(Protocol):
    """A tool an agent can call, with JSON Schemas for its parameters and output."""

    def name(self) -> str: ...
    def description(self) -> str: ...
    def parameters_schema(self) -> str: ...
    def output_schema(self) -> str: ...
    def usage_rule(self) -> str | None: ...
    def execute(self, params_json: str, meta_json: str) -> str: ...
