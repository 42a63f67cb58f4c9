"""The values plugins exchange with the host: the WIT types, plus friendlier constructors.

The WIT records (`BlockRef`, `Notification`, ...) are the dataclasses componentize-py generates
from `wit/pattern.wit`; they are re-exported unchanged so a value built here goes over the wire
as is. What the generated code makes awkward gets a helper: `Resolved` / `NeedsResolution` /
`NoChange` build `reconcile-result` variants, `SourceStatus.RUNNING` and friends the
`source-status` variant, `ExecutionMeta` reads a tool call's `meta-json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wit_world.imports.http import Response as _WitResponse
from wit_world.imports.sync import Binding
from wit_world.imports.types import (
    BlockRef,
    BlockSchemaSpec,
    Notification,
    PermissionLevel,
    PermissionRule,
    ReconcileResult,
    ReconcileResult_NeedsResolution,
    ReconcileResult_NoChange,
    ReconcileResult_Resolved,
    SourceStatus_Paused,
    SourceStatus_Running,
    SourceStatus_Stopped,
    VersionInfo,
)
from wit_world.imports.types import SourceStatus as SourceStatusValue

__all__ = [
    "Binding",
    "BlockRef",
    "BlockSchemaSpec",
    "ExecutionMeta",
    "HostError",
    "MergeConflict",
    "NeedsResolution",
    "NoChange",
    "Notification",
    "PermissionLevel",
    "PermissionRule",
    "ReconcileResult",
    "Resolved",
    "Response",
    "SourceStatus",
    "SourceStatusValue",
    "VersionInfo",
]


class HostError(Exception):
    """The host refused or failed a call (the `err` side of a host import's `result`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MergeConflict(HostError):
    """`sync.merge3` found overlapping edits: the path needs resolution, it is not a failure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def Resolved(path: str, resolution: str) -> ReconcileResult:
    """Both sides of `path` now agree; `resolution` says how ("disk->agent", "merged", ...)."""
    return ReconcileResult_Resolved((path, resolution))


def NeedsResolution(path: str, disk: str, agent: str) -> ReconcileResult:
    """A real conflict on `path`: the host files it in the conflict index."""
    return ReconcileResult_NeedsResolution((path, disk, agent))


def NoChange(path: str) -> ReconcileResult:
    """Neither side of `path` changed since the last sync."""
    return ReconcileResult_NoChange(path)


RECONCILE_RESULT_TYPES = (
    ReconcileResult_Resolved,
    ReconcileResult_NeedsResolution,
    ReconcileResult_NoChange,
)


class SourceStatus:
    """The `source-status` values a data stream reports from `status()`."""

    STOPPED: SourceStatusValue = SourceStatus_Stopped()
    RUNNING: SourceStatusValue = SourceStatus_Running()
    PAUSED: SourceStatusValue = SourceStatus_Paused()

    TYPES = (SourceStatus_Stopped, SourceStatus_Running, SourceStatus_Paused)
    _BY_NAME: ClassVar[dict[str, SourceStatusValue]] = {
        "stopped": STOPPED,
        "running": RUNNING,
        "paused": PAUSED,
    }

    @classmethod
    def coerce(cls, value: object) -> SourceStatusValue:
        """A WIT status from a WIT status or one of the names "stopped", "running", "paused"."""
        if isinstance(value, cls.TYPES):
            return value
        if isinstance(value, str) and value in cls._BY_NAME:
            return cls._BY_NAME[value]
        raise TypeError(
            f"status() must return SourceStatus.RUNNING, .STOPPED or .PAUSED, not {value!r}"
        )


@dataclass(frozen=True)
class ExecutionMeta:
    """What the host says about one tool call (`meta-json`): who calls, which call.

    `raw` holds every field the host sent, including ones this SDK does not name.
    """

    agent_id: str | None = None
    call_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, meta_json: str) -> ExecutionMeta:
        data = json.loads(meta_json) if meta_json.strip() else {}
        if not isinstance(data, dict):
            raise TypeError(f"meta-json must be a JSON object, not {type(data).__name__}")
        agent_id, call_id = data.get("agent_id"), data.get("call_id")
        return cls(
            agent_id=None if agent_id is None else str(agent_id),
            call_id=None if call_id is None else str(call_id),
            raw=data,
        )


@dataclass(frozen=True)
class Response:
    """An HTTP response from `host.http_request` (any status: only transport failures raise)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def from_wit(cls, response: _WitResponse) -> Response:
        return cls(int(response.status), list(response.headers), bytes(response.body))

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)
