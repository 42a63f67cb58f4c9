"""The WIT record and enum types of ``wit/pattern.wit`` as plain Python values.

Standard library only: the vocabulary every layer speaks (the index records notifications of
block references, the sync protocol and the plugin bridges pass them on)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
