"""The rest of a store as tools an agent can call: blocks read, list and update, a conflict's
undo, reconcile (dry run or real), notifications list and ack.

They complete :mod:`blocksync.agents.agent_tools` (conflicts list / show / resolve, block history
and rollback) into the set ``blocksync mcp`` serves (:mod:`blocksync.mcp_server`): each is a
:class:`~blocksync.agents.agent_tools.BuiltinTool`, so one :class:`~blocksync.agents.tools.ToolBox`
checks params and output of all of them against their JSON Schemas.

Who may act on what is the rule of the built-in tools, applied to what each one touches: a
block's owner; a conflict's ``owner``; a data source's agent (the ``<agent>`` of its
``[agents.<agent>.data_sources.<key>]`` table) for reconciling it and for the notifications it
emitted. An agent acts for itself and the owners ``may_act_for`` grants it
(:class:`~blocksync.errors.AgentNotAllowed` otherwise, before anything is done); listings show only
what it may see. A call naming no agent acts on everything, as the workspace's author.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Protocol

from blocksync.errors import NotFound

from .agent_tools import (  # one owner rule and one conflict shape for every built-in tool
    _LABEL,
    _OWNER,
    _SUMMARY,
    _VERSION_SPEC,
    JSON,
    PREFIX,
    BuiltinTool,
    Grants,
    _caller,
    _check,
    _object,
    _summary,
    author_of,
    own_only,
)

if TYPE_CHECKING:
    from blocksync.config import Config
    from blocksync.index.conflicts import Conflict
    from blocksync.index.notifications import NotificationLog, StoredNotification
    from blocksync.store.blocks import Block, BlockMeta, BlockStore
    from blocksync.sync.reconciler import ReconcileReport


class UndoOps(Protocol):
    """What the undo tool needs of ``ws.conflicts``."""

    def get(self, conflict_id: str) -> Conflict: ...
    def undo(self, conflict_id: str, resolver: str | None = None) -> Conflict: ...


class SourceKeys(Protocol):
    """What the reconcile tool needs of ``ws.reconciler``: the data-block sources' keys."""

    @property
    def keys(self) -> list[str]: ...


class StoreOps(Protocol):
    """What these tools need of a workspace (:class:`blocksync.workspace.Workspace`), each part
    reached only by the tools that use it."""

    @property
    def blocks(self) -> BlockStore: ...
    @property
    def conflicts(self) -> UndoOps: ...
    @property
    def notifications(self) -> NotificationLog: ...
    @property
    def reconciler(self) -> SourceKeys: ...
    @property
    def config(self) -> Config: ...
    def reconcile(
        self,
        sources: list[str] | None = None,
        paths: list[str] | None = None,
        dry_run: bool = False,
    ) -> ReconcileReport: ...


# -- schemas and shapes ----------------------------------------------------------------------

_META_PROPS: JSON = {
    "description": {"type": "string"},
    "block_type": {"enum": ["core", "working", "archival", "log"]},
    "schema": {"type": "string"},
    "char_limit": {"type": ["integer", "null"]},
}
_LISTED_PROPS: JSON = {
    "owner": {"type": "string"},
    "label": {"type": "string"},
    "version": {"type": "integer", "minimum": 1},
    **_META_PROPS,
}
_LISTED: JSON = {"type": "object", "properties": _LISTED_PROPS, "required": list(_LISTED_PROPS)}
_BLOCK_PROPS: JSON = {**_LISTED_PROPS, "content": {"type": "string"}, "commit": {"type": "string"}}
_BLOCK: JSON = {"type": "object", "properties": _BLOCK_PROPS, "required": list(_BLOCK_PROPS)}
_NOTIFICATIONS: JSON = _object(
    {"notifications": {"type": "array", "items": {"type": "object"}}}, ["notifications"]
)


def _meta(meta: BlockMeta) -> JSON:
    return {
        "description": meta.description,
        "block_type": meta.block_type.value,
        "schema": meta.schema,
        "char_limit": meta.char_limit,
    }


def _block(b: Block) -> JSON:
    """A block as ``blocksync block read --json`` prints it (its metadata flattened)."""
    return {
        "owner": b.owner,
        "label": b.label,
        "content": b.content,
        "version": b.version,
        "commit": b.commit,
        **_meta(b.meta),
    }


# -- tools -----------------------------------------------------------------------------------


def block_tools(ws: StoreOps, grants: Grants = own_only) -> list[BuiltinTool]:
    """``blocksync_block_read``, ``blocksync_block_list`` and ``blocksync_block_update``."""

    def read(params: JSON, meta: JSON) -> JSON:
        _check(grants, meta, params["owner"], f"read block {params['label']!r}")
        return _block(ws.blocks.read(params["owner"], params["label"], params.get("version")))

    def list_(params: JSON, meta: JSON) -> JSON:
        owner, agent = params.get("owner"), _caller(meta)
        if owner is not None:
            _check(grants, meta, owner, "list the blocks")
        found = ws.blocks.list(owner)
        if agent is not None:
            allowed = grants(agent)
            found = [b for b in found if b.owner in allowed]
        return {
            "blocks": [
                {"owner": b.owner, "label": b.label, "version": b.version, **_meta(b.meta)}
                for b in found
            ]
        }

    def update(params: JSON, meta: JSON) -> JSON:
        _check(grants, meta, params["owner"], f"update block {params['label']!r}")
        block = ws.blocks.update(
            params["owner"],
            params["label"],
            params["content"],
            description=params.get("description"),
            expected_version=params.get("expected_version"),
            author=author_of(meta),
            message=params.get("message"),
        )
        return _block(block)

    return [
        BuiltinTool(
            PREFIX + "block_read",
            "Read a memory block: its content, version and metadata (now, or as of a version).",
            _object(
                {
                    "owner": _OWNER,
                    "label": _LABEL,
                    "version": {
                        **_VERSION_SPEC,
                        "description": "A version number, or a commit id (prefix); "
                        "default: the newest.",
                    },
                },
                ["owner", "label"],
            ),
            _BLOCK,
            "Keep the version you read: pass it as expected_version to blocksync_block_update.",
            read,
        ),
        BuiltinTool(
            PREFIX + "block_list",
            "List memory blocks (without content): owner, label, newest version, metadata.",
            _object({"owner": {**_OWNER, "description": "Only this owner's blocks."}}, []),
            _object({"blocks": {"type": "array", "items": _LISTED}}, ["blocks"]),
            None,
            list_,
        ),
        BuiltinTool(
            PREFIX + "block_update",
            "Write a new version of a memory block (unchanged content writes nothing). With "
            "expected_version, fails if someone else wrote the block since that version.",
            _object(
                {
                    "owner": _OWNER,
                    "label": _LABEL,
                    "content": {"type": "string", "description": "The block's new content."},
                    "expected_version": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "The version you read; the update fails if the block "
                        "is at another one (read it again and retry).",
                    },
                    "description": {"type": "string", "description": "What the block is for."},
                    "message": {"type": "string", "description": "The commit message."},
                },
                ["owner", "label", "content"],
            ),
            _BLOCK,
            "Read the block first and pass its version as expected_version: a concurrent "
            "write is then refused instead of overwritten.",
            update,
        ),
    ]


def undo_tool(conflicts: UndoOps, grants: Grants = own_only) -> BuiltinTool:
    """``blocksync_conflict_undo``: the resolution of a conflict taken back."""

    def undo(params: JSON, meta: JSON) -> JSON:
        c = conflicts.get(params["id"])
        _check(grants, meta, c.owner, f"undo the resolution of conflict {c.id}")
        return _summary(conflicts.undo(c.id, author_of(meta)))

    return BuiltinTool(
        PREFIX + "conflict_undo",
        "Undo a conflict's resolution: the block, the source and the base go back to what "
        "they held before it, and the conflict is open again.",
        _object(
            {"id": {"type": "string", "minLength": 1, "description": "A conflict id (prefix)."}},
            ["id"],
        ),
        _SUMMARY,
        "Only for a resolution that was wrong; resolve the conflict again afterwards.",
        undo,
    )


def _own_sources(
    keys: Collection[str], owners: Mapping[str, str], allowed: Collection[str]
) -> list[str]:
    return [k for k in keys if owners.get(k) in allowed]


def reconcile_tool(ws: StoreOps, grants: Grants = own_only) -> BuiltinTool:
    """``blocksync_reconcile``: the data sources (the agent's own, or those named) reconciled
    with their blocks, or only previewed (``dry_run``)."""

    def reconcile(params: JSON, meta: JSON) -> JSON:
        agent, named = _caller(meta), params.get("sources")
        sources: list[str] | None = named
        if agent is not None:
            owners = ws.config.source_owners()
            for key in named or ():
                if key not in owners:
                    mine = _own_sources(owners, owners, grants(agent))
                    raise NotFound(
                        f"no data source named {key!r} that agent {agent!r} may reconcile "
                        f"(its sources: {', '.join(mine) or 'none'})"
                    )
                _check(grants, meta, owners[key], f"reconcile data source {key!r}")
            if named is None:
                sources = _own_sources(ws.reconciler.keys, owners, grants(agent))
                if not sources:  # an empty list would mean every source
                    raise NotFound(
                        f"agent {agent!r} has no data source to reconcile: attach one as "
                        f"[agents.{agent}.data_sources.<key>] in blocksync.toml"
                    )
        report = ws.reconcile(sources, params.get("paths"), dry_run=params.get("dry_run", False))
        return report.to_json()

    entry = {"type": "object"}
    return BuiltinTool(
        PREFIX + "reconcile",
        "Reconcile data sources (folders, plugins) with their memory blocks: a change on one "
        "side is carried to the other, changes to different lines are merged, anything else "
        "becomes a conflict. exit_code: 0 in sync, 3 conflicts open, 1 a source failed.",
        _object(
            {
                "dry_run": {
                    "type": "boolean",
                    "default": False,
                    "description": "Decide every path, write nothing.",
                },
                "sources": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "description": "Only these data sources (default: every one you own).",
                },
                "paths": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "description": "Only these paths of the sources.",
                },
            },
            [],
        ),
        {
            "type": "object",
            "properties": {
                "run_id": {"type": "string"},
                "sources": {"type": "array", "items": entry},
                "open_conflicts": {"type": "integer", "minimum": 0},
                "dry_run": {"type": "boolean"},
                "exit_code": {"type": "integer"},
            },
            "required": ["run_id", "sources", "open_conflicts", "dry_run", "exit_code"],
        },
        "Run it after resolving conflicts, and before editing blocks bound to a data source; "
        "dry_run first to see what it would do.",
        reconcile,
    )


def notification_tools(ws: StoreOps, grants: Grants = own_only) -> list[BuiltinTool]:
    """``blocksync_notifications_list`` and ``blocksync_notifications_ack``."""

    def visible(found: list[StoredNotification], meta: JSON) -> list[StoredNotification]:
        agent = _caller(meta)
        if agent is None:
            return found
        owners, allowed = ws.config.source_owners(), grants(agent)
        return [n for n in found if owners.get(n.source) in allowed]

    def list_(params: JSON, meta: JSON) -> JSON:
        found = ws.notifications.list(
            unacked=not params.get("all", False), source=params.get("source")
        )
        return {"notifications": [n.to_json() for n in visible(found, meta)]}

    def ack(params: JSON, meta: JSON) -> JSON:
        ids = set(params["ids"])
        if _caller(meta) is not None:
            owners = ws.config.source_owners()
            for n in ws.notifications.list():
                if n.id in ids:  # unknown ids: ack refuses them all below
                    owner = owners.get(n.source, f"(no agent: {n.source})")
                    _check(grants, meta, owner, f"acknowledge notification {n.id}")
        return {"notifications": [n.to_json() for n in ws.notifications.ack(ids)]}

    return [
        BuiltinTool(
            PREFIX + "notifications_list",
            "List notifications your data sources and streams delivered (default: those not "
            "acknowledged yet), oldest first, with the blocks each refers to.",
            _object(
                {
                    "all": {
                        "type": "boolean",
                        "default": False,
                        "description": "Acknowledged ones too.",
                    },
                    "source": {"type": "string", "description": "Only this source's."},
                },
                [],
            ),
            _NOTIFICATIONS,
            "Acknowledge the ones you handled with blocksync_notifications_ack.",
            list_,
        ),
        BuiltinTool(
            PREFIX + "notifications_ack",
            "Acknowledge notifications by id (none is acknowledged if an id is unknown).",
            _object(
                {
                    "ids": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "minItems": 1,
                        "description": "The notifications' ids.",
                    }
                },
                ["ids"],
            ),
            _NOTIFICATIONS,
            None,
            ack,
        ),
    ]


def store_tools(ws: StoreOps, grants: Grants = own_only) -> list[BuiltinTool]:
    """Every tool of this module, in listing order."""
    return [
        *block_tools(ws, grants),
        undo_tool(ws.conflicts, grants),
        reconcile_tool(ws, grants),
        *notification_tools(ws, grants),
    ]


__all__ = [
    "SourceKeys",
    "StoreOps",
    "UndoOps",
    "block_tools",
    "notification_tools",
    "reconcile_tool",
    "store_tools",
    "undo_tool",
]
